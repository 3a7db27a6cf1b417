"""Synthetic songs for the audio and schedule tests: numpy + soundfile only, deterministic and short."""

from __future__ import annotations

import numpy as np

SR = 22050
KICKS = tuple(2.0 + 0.5 * i for i in range(8))  # 2.0 … 5.5 s
LOUD_START = 6.0
LOUD_END = 8.0


def kick(sr: int = SR, seconds: float = 0.45, amp: float = 0.5, seed: int = 0) -> np.ndarray:
    """One kick drum: a sine sweeping 150 → 50 Hz with a decaying envelope, plus a 5 ms noise click."""
    t = np.arange(int(seconds * sr)) / sr
    freq = 50.0 + 100.0 * np.exp(-t / 0.03)
    y = amp * np.exp(-t / 0.12) * np.sin(2 * np.pi * np.cumsum(freq) / sr)
    n = int(0.005 * sr)
    y[:n] += 0.3 * np.random.default_rng(seed).standard_normal(n) * np.exp(-np.arange(n) / (0.0015 * sr))
    return y


def kick_song(sr: int = SR) -> np.ndarray:
    """2 s of silence, a kick every 0.5 s for 4 s, then 2 s of loud noise + tones. Mono float32, 8 s."""
    y = np.zeros(int(LOUD_END * sr))
    for i, t0 in enumerate(KICKS):
        k = kick(sr, seed=i)
        s = int(round(t0 * sr))
        y[s : s + len(k)] += k
    t = np.arange(len(y)) / sr
    loud = t >= LOUD_START
    rng = np.random.default_rng(42)
    y[loud] += (
        0.35 * rng.standard_normal(loud.sum())
        + 0.3 * np.sin(2 * np.pi * 110 * t[loud])
        + 0.2 * np.sin(2 * np.pi * 2500 * t[loud])
    )
    return y.astype(np.float32)


def click_track(times: list[float], seconds: float, sr: int) -> np.ndarray:
    """Silence with a soft 60 Hz hum and a sharp broadband click (2 ms) at each of ``times``."""
    t = np.arange(int(round(seconds * sr))) / sr
    y = 0.01 * np.sin(2 * np.pi * 60 * t)
    n = max(4, int(0.002 * sr))
    burst = 0.8 * np.random.default_rng(7).standard_normal(n) * np.hanning(2 * n)[n:]
    for c in times:
        s = int(round(c * sr))
        y[s : s + n] += burst
    return y.astype(np.float32)
