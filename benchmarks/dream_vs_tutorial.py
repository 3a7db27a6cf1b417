"""dreamvid's engine vs. a faithful copy of the TensorFlow DeepDream tutorial, on CPU.

Both dream the same image with the same layers (mixed3 + mixed5, equal weights), octave sizes, steps per octave,
step size and 512-px tiles; the objective (sum over layers of the mean activation) is then measured on each
result at full size by the same network. Prints seconds per image, the final objective, and the ratio.

    python benchmarks/dream_vs_tutorial.py --weights ../shared/models/inception_v3_notop_q8.weights.h5

Timings are the best of ``--repeats`` runs after a warm-up run (tracing/compilation excluded for both), and
the runs of the two sides are interleaved so that noise from a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dreamvid import model  # noqa: E402
from dreamvid.config import DreamParams, parse_layers  # noqa: E402
from dreamvid.dream import Dreamer, from_unit, to_unit  # noqa: E402
from dreamvid.dream.octaves import octave_shapes  # noqa: E402
from dreamvid.images import read_image  # noqa: E402


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS"))
    ap.add_argument("--image", default=str(ROOT / "examples" / "coffee.png"))
    ap.add_argument("--sizes", default="512,1280", help="longest sides to test, comma-separated")
    ap.add_argument("--octaves", type=int, default=3)
    ap.add_argument("--octave-scale", type=float, default=1.4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import tutorial_baseline as tb

    params = DreamParams(layers=parse_layers("mixed3:1,mixed5:1"), octaves=args.octaves, octave_scale=args.octave_scale,
                         steps=args.steps, step_size=args.step_size, tile_size=512, tile_overlap=0, jitter=32)
    precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    dreamers = {p: Dreamer(weights=args.weights, precision=p) for p in precisions}
    judge = dreamers["fp32"]
    baseline_model = model.feature_model(judge.weights, params.layer_names)
    print(f"weights: {judge.weights.describe()}")
    print(f"workload: {params.layers[0]}+{params.layers[1]}, {args.octaves} octaves x{args.octave_scale}, "
          f"{args.steps} steps, step {args.step_size}, 512-px tiles; cores: {os.cpu_count()}; bf16 CPU: {cpu_has_bf16()}")
    src = read_image(args.image)
    rows = []
    for side in [int(s) for s in args.sizes.split(",")]:
        f = side / max(src.shape[:2])
        img = cv2.resize(src, (round(src.shape[1] * f), round(src.shape[0] * f)), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
        shapes = octave_shapes(*img.shape[:2], octaves=params.octaves, scale=params.octave_scale)

        def run_baseline():
            return from_unit(tb.run_deep_dream_with_octaves(to_unit(img), baseline_model, octave_sizes=shapes,
                                                            steps_per_octave=params.steps, step_size=params.step_size))

        runners = {"tutorial": run_baseline}
        for p, d in dreamers.items():
            runners[f"dreamvid-{p}"] = lambda d=d: d.dream(img, params, rng=np.random.default_rng(0))
        best = dict.fromkeys(runners, float("inf"))
        outs = {}
        for name, fn in runners.items():  # warm-up: tracing and compilation
            fn()
        for _ in range(args.repeats):
            for name, fn in runners.items():
                t = time.perf_counter()
                outs[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t)
        objective = {name: judge.objective_value(o, params) for name, o in outs.items()}
        base_t, base_o = best["tutorial"], objective["tutorial"]
        print(f"\n{img.shape[1]}x{img.shape[0]} (objective of the input: {judge.objective_value(img, params):.4f})")
        print(f"  {'':16s} {'s/image':>8s} {'objective':>10s} {'speed-up':>9s} {'objective ratio':>16s}")
        for name in runners:
            print(f"  {name:16s} {best[name]:8.2f} {objective[name]:10.4f} {base_t / best[name]:8.2f}x "
                  f"{objective[name] / base_o:15.3f}")
            rows.append((side, name, best[name], objective[name], base_t / best[name]))
    fastest = max((r for r in rows if r[1] != "tutorial"), key=lambda r: r[4])
    print(f"\nbest ratio: {fastest[1]} at {fastest[0]} px is {fastest[4]:.2f}x the tutorial's speed")


if __name__ == "__main__":
    main()
