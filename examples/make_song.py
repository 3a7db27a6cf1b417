"""Synthesise examples/groove.wav: an 8-second, 120 BPM track made for trying dreamvid's music reaction.

0–1.5 s: a quiet pad (the dream should be calm); 1.5–3.5 s: kick drum every beat with hi-hats (each kick should pulse);
3.5–8 s: the loud part, kick + snare + bass + lead (the dream should go hard). Deterministic: run it again and
the same file comes out. ``python examples/make_song.py [out.wav]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
BPM = 120.0
BEAT = 60.0 / BPM


def _env(n: int, decay: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * SR)).astype(np.float32)


def kick(n=int(0.35 * SR)):
    t = np.arange(n) / SR
    freq = 50 + 90 * np.exp(-t * 30)  # pitch drop
    return np.sin(2 * np.pi * np.cumsum(freq) / SR) * _env(n, 0.12)


def snare(rng, n=int(0.25 * SR)):
    t = np.arange(n) / SR
    return (0.6 * rng.standard_normal(n) + 0.4 * np.sin(2 * np.pi * 190 * t)) * _env(n, 0.06)


def hat(rng, n=int(0.06 * SR)):
    x = rng.standard_normal(n)
    x = np.diff(x, prepend=0.0)  # crude high-pass
    return x * _env(n, 0.015)


def tone(freq, n, decay=0.4, harmonics=(1.0, 0.5, 0.25)):
    t = np.arange(n) / SR
    return sum(a * np.sin(2 * np.pi * freq * (i + 1) * t) for i, a in enumerate(harmonics)) * _env(n, decay)


def make(seconds: float = 8.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * SR) + SR, np.float32)

    def add(x, at, gain):
        i = int(round(at * SR))
        y[i : i + len(x)] += gain * x[: len(y) - i]

    t = np.arange(len(y)) / SR
    pad = 0.02 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277.2 * t) + np.sin(2 * np.pi * 329.6 * t))
    y += (pad * np.clip(1 - np.abs(t - 1.0) / 3, 0.2, 1)).astype(np.float32)
    bass_notes = [55.0, 55.0, 65.4, 49.0]
    lead_notes = [440.0, 523.3, 659.3, 587.3, 523.3, 440.0, 392.0, 440.0]
    beat = 0
    at = 1.5
    while at < seconds:
        loud = at >= 3.5
        add(kick(), at, 0.9 if loud else 0.7)
        add(hat(rng), at + BEAT / 2, 0.15 if loud else 0.08)
        if loud:
            if beat % 2 == 1:
                add(snare(rng), at, 0.5)
            add(tone(bass_notes[(beat // 4) % 4], int(BEAT * SR), decay=0.3), at, 0.35)
            add(tone(lead_notes[beat % 8], int(BEAT * SR * 0.9), decay=0.25), at, 0.18)
            add(hat(rng), at, 0.12)
        beat += 1
        at += BEAT
    y = y[: int(seconds * SR)]
    return (0.9 * y / np.max(np.abs(y))).astype(np.float32)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("groove.wav")
    sf.write(out, make(), SR, subtype="PCM_16")
    print(out)
