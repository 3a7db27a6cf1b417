"""The GPU path, checked end to end: the same tiny render with the one-program frame forced on and off, at fp32 and
bf16, compared frame by frame (issue 21). Runs anywhere JAX runs (a CPU too, slowly); on a GPU ``frame="auto"`` picks
the program, so the host path is what a GPU user never runs and the program what no CPU test runs by default.

    KERAS_BACKEND=jax python benchmarks/gpu_check.py --size 256 --frames 12 --json out.json

Prints, per precision: each render's seconds, and the mean |difference| (grey levels) of the program's frames
against the host path's, frame by frame. The dream is chaotic (a grey level's difference in a carried frame grows),
so frame 0 (fresh, identical inputs) is the sharp test; the rest must stay a dream of the same picture.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="the longest side")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--preset", default="lysergic")
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS") or "random")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import numpy as np

    from dreamvid.config import resolve
    from dreamvid.dream import Dreamer
    from dreamvid.pipeline import RenderOptions, render
    from dreamvid.video import iter_frames

    cfg = resolve(preset=args.preset)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions.split(","):
            outs = {}
            for frame in (True, False):
                dreamer = Dreamer(weights=args.weights, backend="jax", precision=precision, seed=0, frame=frame)
                out = Path(tmp) / f"{precision}-{'program' if frame else 'host'}.mp4"
                t = time.perf_counter()
                rep = render(RenderOptions(input=ROOT / "examples" / "bigbuckbunny.mp4", song=ROOT / "examples" / "groove.wav",
                                           output=out, duration=args.frames / 24.0, max_side=args.size, crf=0,
                                           x264_preset="veryfast"), cfg, dreamer)
                row = {"precision": precision, "program": dreamer.frame, "seconds": round(time.perf_counter() - t, 2),
                       "frames": rep.get("frames"), "dream_strength": rep.get("dream_strength"),
                       "temporal_stability": rep.get("temporal_stability"), "audio_sync": rep.get("audio_sync")}
                print("RENDER " + json.dumps(row), flush=True)
                rows.append(row)
                outs[frame] = list(iter_frames(out))
            a, b = outs[True], outs[False]
            diffs = [round(float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean()), 3) for x, y in zip(a, b)]
            change = [round(float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean()), 3) for x, y in zip(b, b[1:])]
            cmp = {"precision": precision, "frames": [len(a), len(b)], "program_vs_host": diffs,
                   "host_frame_to_frame": change}
            print("COMPARE " + json.dumps(cmp), flush=True)
            rows.append(cmp)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
