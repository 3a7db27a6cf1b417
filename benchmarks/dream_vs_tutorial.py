"""dreamvid vs. a faithful copy of the TensorFlow DeepDream tutorial, on CPU: as whole processes, and in-process.

Both dream the same 512x512 photo with the same layers (mixed3 + mixed5, equal weights), octave sizes, steps per
octave, step size and 512-px tiles; the objective (sum over layers of the mean activation) is then measured on each
result at full size by the same network, so a faster side cannot win by dreaming less.

**Whole processes** (the default): what a user waits for, start-up included (imports, building the network, loading
the weights, tracing, dreaming, writing the PNG). The tutorial side is a new Python process that runs the tutorial's
code (``tutorial_baseline.py``: ``import tensorflow``, ``keras.applications.InceptionV3`` + ``load_weights``, its
shape-polymorphic ``tf.function``); the dreamvid side is ``python -m dreamvid dream``. Runs alternate (tutorial,
dreamvid, tutorial, ...) so that load from a shared machine hits both alike. Prints every time, the median and
spread per side, and the whole-process ratio (tutorial median / dreamvid median)::

    python benchmarks/dream_vs_tutorial.py --weights ../shared/models/inception_v3_notop_q8.weights.h5

**In-process** (``--in-process``): seconds per image after a warm-up run (tracing/compilation excluded on both sides),
best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
LAYERS = "mixed3:1,mixed5:1"


def _args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS"))
    ap.add_argument("--image", default=str(ROOT / "examples" / "coffee.png"),
                    help="cropped to a square and scaled to --side")
    ap.add_argument("--side", type=int, default=512, help="the photo is side x side pixels")
    ap.add_argument("--octaves", type=int, default=3)
    ap.add_argument("--octave-scale", type=float, default=1.3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3, help="whole-process runs per side (in-process: timed runs)")
    ap.add_argument("--also", metavar="ROOT", help="also time the dreamvid of another checkout (e.g. an older commit)")
    ap.add_argument("--in-process", action="store_true", help="time the dream alone, in one process, after warm-up")
    ap.add_argument("--sizes", default="512,1280", help="(--in-process) longest sides to test")
    ap.add_argument("--child-tutorial", nargs=4, metavar=("IMAGE", "OUT", "WEIGHTS", "SPEC"), help=argparse.SUPPRESS)
    return ap.parse_args()


# ---- the tutorial as a whole process ------------------------------------------------------------------------------

def tutorial_process(image: str, out: str, weights: str, spec: str) -> None:
    """The tutorial's program: import TensorFlow, build InceptionV3 and the dream model, dream, save."""
    sys.path.insert(0, str(HERE))
    import cv2
    import numpy as np
    import tensorflow as tf

    import tutorial_baseline as tb

    s = json.loads(spec)
    base_model = tf.keras.applications.InceptionV3(include_top=False, weights=None)
    base_model.load_weights(weights)  # the tutorial's weights="imagenet" loads the same kind of file
    layers = [base_model.get_layer(name).output for name in ("mixed3", "mixed5")]
    dream_model = tf.keras.Model(inputs=base_model.input, outputs=layers)
    img = cv2.cvtColor(cv2.imread(image, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    x = tf.keras.applications.inception_v3.preprocess_input(img.astype(np.float32))
    y = tb.run_deep_dream_with_octaves(x, dream_model, octave_sizes=[tuple(o) for o in s["octave_sizes"]],
                                       steps_per_octave=s["steps"], step_size=s["step_size"])
    y = np.clip(np.rint((y + 1.0) * 127.5), 0, 255).astype(np.uint8)
    assert cv2.imwrite(out, cv2.cvtColor(y, cv2.COLOR_RGB2BGR))


def _photo(args, folder: Path) -> Path:
    import cv2

    im = cv2.imread(args.image, cv2.IMREAD_COLOR)
    h, w = im.shape[:2]
    s = min(h, w)
    im = im[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    path = folder / f"photo{args.side}.png"
    cv2.imwrite(str(path), cv2.resize(im, (args.side, args.side), interpolation=cv2.INTER_AREA if s > args.side
                                      else cv2.INTER_CUBIC))
    return path


def _timed(cmd: list[str], cwd: str | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": cwd} if cwd else None
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return elapsed


def whole_process(args) -> None:
    sys.path.insert(0, str(ROOT))
    from dreamvid.dream.octaves import octave_shapes

    work = Path(tempfile.mkdtemp(prefix="dream_vs_tutorial."))
    photo = _photo(args, work)
    shapes = octave_shapes(args.side, args.side, octaves=args.octaves, scale=args.octave_scale)
    spec = json.dumps({"octave_sizes": [list(s) for s in shapes], "steps": args.steps, "step_size": args.step_size})
    cfg = work / "bench.toml"  # every dream key explicit: no preset value leaks into the comparison
    cfg.write_text(f'[dream]\nlayers = "{LAYERS}"\noctaves = {args.octaves}\noctave_scale = {args.octave_scale}\n'
                   f"steps = {args.steps}\nstep_size = {args.step_size}\njitter = 32\ntile_size = 512\n"
                   "tile_overlap = 0\nseed = 0\n")
    outs = {"tutorial": work / "tutorial.png", "dreamvid": work / "dreamvid.png", "also": work / "also.png"}

    def dreamvid(out: Path) -> list[str]:
        return [sys.executable, "-m", "dreamvid", "dream", str(photo), "-o", str(out), "--config", str(cfg),
                "--weights", str(Path(args.weights).resolve()), "--precision", "fp32", "--overwrite", "-q"]

    cmds = {
        "tutorial": [sys.executable, __file__, "--child-tutorial", str(photo), str(outs["tutorial"]), args.weights, spec],
        "dreamvid": dreamvid(outs["dreamvid"]),
    }
    if args.also:
        cmds["also"] = dreamvid(outs["also"])
    else:
        del outs["also"]
    roots = {"dreamvid": str(ROOT), "also": str(Path(args.also).resolve()) if args.also else None}
    print(f"workload: {args.side}x{args.side} photo, {LAYERS}, {args.octaves} octaves x{args.octave_scale} "
          f"({' -> '.join(f'{h}x{w}' for h, w in shapes)}), {args.steps} steps, step {args.step_size}, 512-px tiles, "
          f"fp32; cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for r in range(args.repeats):
        for name in list(cmds) if r % 2 == 0 else list(reversed(cmds)):
            times[name].append(_timed(cmds[name], roots.get(name)))
            print(f"  run {r + 1} {name:9s} {times[name][-1]:6.2f} s", flush=True)

    # the judge: the same network measures both results at full size (after all timings)
    import cv2
    import numpy as np

    from dreamvid.config import DreamParams, parse_layers
    from dreamvid.dream import Dreamer

    params = DreamParams(layers=parse_layers(LAYERS), tile_size=512, tile_overlap=0)
    judge = Dreamer(weights=args.weights)

    def objective(path: Path) -> float:
        img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return judge.objective_value(np.ascontiguousarray(img), params)

    obj = {name: objective(p) for name, p in outs.items()}
    print(f"\nwhole process, {args.repeats} runs each (objective of the input: {objective(photo):.4f})")
    print(f"  {'':9s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'objective':>10s}")
    for name in cmds:
        t = times[name]
        print(f"  {name:9s} {statistics.median(t):9.2f} {min(t):7.2f} {max(t):7.2f} {obj[name]:10.4f}")
    if args.also:
        print(f"  (also = python -m dreamvid from {args.also}: "
              f"{statistics.median(times['tutorial']) / statistics.median(times['also']):.2f}x the tutorial's speed)")
    ratio = statistics.median(times["tutorial"]) / statistics.median(times["dreamvid"])
    lo = min(times["tutorial"]) / max(times["dreamvid"])
    hi = max(times["tutorial"]) / min(times["dreamvid"])
    print(f"\nwhole-process ratio (tutorial / dreamvid, medians): {ratio:.2f}x  (range {lo:.2f}x-{hi:.2f}x); "
          f"objective ratio (dreamvid / tutorial): {obj['dreamvid'] / obj['tutorial']:.3f}")


# ---- in-process ---------------------------------------------------------------------------------------------------

def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def in_process(args) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    import cv2
    import numpy as np

    import tutorial_baseline as tb
    from dreamvid import model
    from dreamvid.config import DreamParams, parse_layers
    from dreamvid.dream import Dreamer, from_unit, to_unit
    from dreamvid.dream.octaves import octave_shapes
    from dreamvid.images import read_image

    params = DreamParams(layers=parse_layers(LAYERS), octaves=args.octaves, octave_scale=args.octave_scale,
                         steps=args.steps, step_size=args.step_size, tile_size=512, tile_overlap=0, jitter=32)
    precisions = ["fp32"] + (["bf16"] if cpu_has_bf16() else [])
    dreamers = {p: Dreamer(weights=args.weights, precision=p) for p in precisions}
    judge = dreamers["fp32"]
    baseline_model = model.feature_model(judge.weights, params.layer_names)
    print(f"weights: {judge.weights.describe()}")
    print(f"workload: {LAYERS}, {args.octaves} octaves x{args.octave_scale}, {args.steps} steps, step "
          f"{args.step_size}, 512-px tiles; cores: {os.cpu_count()}; bf16 CPU: {cpu_has_bf16()}")
    src = read_image(args.image)
    rows = []
    for side in [int(s) for s in args.sizes.split(",")]:
        f = side / max(src.shape[:2])
        img = cv2.resize(src, (round(src.shape[1] * f), round(src.shape[0] * f)),
                         interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
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
    print(f"\nbest in-process ratio: {fastest[1]} at {fastest[0]} px is {fastest[4]:.2f}x the tutorial's speed")


def main() -> None:
    args = _args()
    if args.child_tutorial:
        tutorial_process(*args.child_tutorial)
        return
    if not args.weights:
        sys.exit("give --weights FILE (or set DREAMVID_WEIGHTS): an InceptionV3 no-top weights file")
    in_process(args) if args.in_process else whole_process(args)


if __name__ == "__main__":
    main()
