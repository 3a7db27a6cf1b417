"""`dreamvid live --audio-in`: the causal features against the offline ones, on real songs.

Each song is fed to ``audio.CausalAnalyzer`` block by block (512 samples at 44.1 kHz, as a sound card gives them,
heard once from the start: the normalisation knows only what came before) and compared with ``audio.analyze`` (what
a render uses) frame by frame. Printed per song and feature: the correlation at the lag that fits best, and that
lag in frames (the causal frame k against the offline frame k - lag); the beats' F-measure (a causal beat within
one frame and 70 ms of a tracked one); how many times faster than real time the analysis ran. Then the latency on a
click track: the frames between a click and the first frame whose onset shows it.

    python benchmarks/audio_in.py SONG [SONG ...] [--fps 25] [--memory 120] [--json out.json]

Debian's asc-music (``apt-get download asc-music``; docs/live.md) was used for the numbers in docs/live.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dreamvid.audio import HEARD_NAMES, CausalAnalyzer, analyze, load_song  # noqa: E402

FEATURES = ("rms", "energy", "level", "onset", "low", "mid", "high")


def heard(y: np.ndarray, sr: int, fps: float, *, block: int, memory: float) -> tuple[np.ndarray, float]:
    """The causal features of ``y`` fed ``block`` samples at a time, and the seconds it took."""
    an = CausalAnalyzer(sr=sr, fps=fps, memory=memory)
    rows = []
    t = time.perf_counter()
    for a in range(0, len(y), block):
        rows += [f.values() for f in an.push(y[a:a + block])]
    return np.asarray(rows, np.float64), time.perf_counter() - t


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else float("nan")


def compare(path: Path, *, fps: float, sr: int, block: int, memory: float) -> dict:
    y, _ = load_song(path, sr=sr)
    off = analyze((y, sr), fps=fps)
    rows, took = heard(y, sr, fps, block=block, memory=memory)
    n = min(len(rows), off.n_frames)
    out: dict = {"song": path.name, "seconds": round(len(y) / sr, 1), "fps": fps, "memory": memory,
                 "realtime": round(len(y) / sr / took, 1)}
    for name in FEATURES:
        c = rows[:n, HEARD_NAMES.index(name)]
        o = np.asarray(off.level if name == "level" else off.feature(name), np.float64)[:n]
        lags = {lag: _r(c[lag:], o[:n - lag]) for lag in range(4)}
        best = max(lags, key=lambda lag: -2 if math.isnan(lags[lag]) else lags[lag])
        out[name] = {"r": round(lags[best], 3), "lag": best, "r0": round(lags[0], 3)}
    tol = 0.07 + 1 / fps
    causal = np.flatnonzero(rows[:n, HEARD_NAMES.index("beat")] > 0) / fps
    tracked = off.beat_frames[off.beat_frames < n] / fps
    p = np.mean([np.any(np.abs(tracked - t) <= tol) for t in causal]) if len(causal) else 0.0
    r = np.mean([np.any(np.abs(causal - t) <= tol) for t in tracked]) if len(tracked) else 0.0
    out["beat"] = {"f": round(2 * p * r / max(p + r, 1e-9), 3), "causal": int(len(causal)), "tracked": len(tracked)}
    return out


def click_latency(*, fps: float, sr: int, block: int) -> dict:
    """Clicks at random times: the first frame whose causal onset reaches 0.5, in frames after the click's time and
    after the frame the offline onset puts it on (``round(t * fps)``)."""
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(1.0, 59.0, 80))
    times = times[np.concatenate([[True], np.diff(times) > 0.4])]
    y = 0.01 * rng.standard_normal(60 * sr).astype(np.float32)
    for t in times:
        s = int(t * sr)
        y[s:s + 220] += 0.8 * np.exp(-np.arange(220) / 40.0).astype(np.float32) * rng.standard_normal(220)
    rows, _ = heard(y, sr, fps, block=block, memory=120.0)
    onset = rows[:, HEARD_NAMES.index("onset")]
    delays, behind = [], []
    for t in times:
        k0 = int(math.floor(t * fps))
        ks = np.flatnonzero(onset[k0:k0 + 6] >= 0.5)
        if len(ks):
            delays.append(k0 + int(ks[0]) - t * fps)
            behind.append(k0 + int(ks[0]) - round(t * fps))
    d = np.asarray(delays)
    return {"clicks": len(times), "found": len(d), "frames_median": round(float(np.median(d)), 2),
            "frames_max": round(float(d.max()), 2), "ms_max": round(1000 * float(d.max()) / fps, 1),
            "behind_offline": {int(v): int(c) for v, c in zip(*np.unique(behind, return_counts=True))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("songs", nargs="+", type=Path)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--sr", type=int, default=44100)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--memory", type=float, default=120.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = [compare(p, fps=args.fps, sr=args.sr, block=args.block, memory=args.memory) for p in args.songs]
    clicks = click_latency(fps=args.fps, sr=args.sr, block=args.block)
    print(f"| song | {' | '.join(FEATURES)} | beat F | × real time |")
    print(f"|---|{'---|' * len(FEATURES)}---|---|")
    for r in results:
        cells = " | ".join(f"{r[f]['r']:.2f} (lag {r[f]['lag']})" for f in FEATURES)
        print(f"| {r['song']} ({r['seconds']:.0f} s) | {cells} | {r['beat']['f']:.2f} | {r['realtime']:.0f} |")
    print(f"clicks: {clicks}")
    if args.json:
        args.json.write_text(json.dumps({"songs": results, "clicks": clicks, "args": {k: str(v) for k, v in
                                                                                      vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
