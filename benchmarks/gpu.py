"""Frames per second of the fixed GPU workload, per backend and precision, beside the eager-torchvision peer.

    python benchmarks/gpu.py                                  # every installed backend, fp32+bf16, 720p+1080p
    python benchmarks/gpu.py --backends jax --precisions bf16 --sizes 1920x1080 --frames 16
    python benchmarks/gpu.py --sizes 640x360 --frames 1 --no-end-to-end    # a quick look on a CPU
    python benchmarks/gpu.py --backends "" --no-baseline                   # only the CPU stages, per frame
    python benchmarks/gpu.py --backends jax --sizes 160x90 --frames 2 --repeat 1  # everything, tiny, on a CPU

The workload (issue 5): layers mixed3, mixed4 and mixed5 equally weighted; 3 octaves at scale 1.4; 6 steps per
octave; flow blending on (end to end). Tiles are as large as the frame (``--tile-size``), as a GPU wants.

For each backend × precision × size it prints, from a fresh process per backend (Keras fixes its backend at
import):

- ``step_ms``: one gradient step (roll, gradient, normalised update) on the full frame;
- ``dream_fps``: frames/s of the dream alone (3 octaves × 6 steps, each frame from its source frame);
- ``tflops`` and ``peak``: convolution work done per second (forward + input gradient, counted from the
  network's shapes) and its fraction of the device's dense bf16 peak (``--peak-tflops``; known GPUs by name);
- ``frame_fps`` and ``frame_ms`` (JAX): one carried frame as one compiled program (coherence, the carried octaves,
  the governor), split into the flow pair (CPU, ahead), the upload of the frame and its flows, the program, the
  download, and the fresh frame's program; ``frame_peak``: the program's share of the bf16 peak;
- ``e2e_fps`` and the seconds per stage: ``dreamvid render`` of ``--frames`` frames of the example clip scaled to
  the size (decode, flow, dream, encode overlapped), from its report, with ``accelerator_idle_fraction``.

The peer baseline (``--baseline``, needs torchvision) is the same step written the usual way: torchvision's
InceptionV3 in eager PyTorch, hooks on Mixed_6a/6b/6c (Keras' mixed3/4/5), loss.backward() to the input.
Ratios are taken within one run, against that baseline, because these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS = "mixed3:1,mixed4:1,mixed5:1"
OCTAVES, SCALE, STEPS, STEP_SIZE = 3, 1.4, 6, 0.01
# dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets)
PEAKS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
         "RTX 4090": 165.0, "A10": 125.0}


def octave_sizes(h: int, w: int) -> list[tuple[int, int]]:
    from dreamvid.dream.octaves import octave_shapes

    return octave_shapes(h, w, octaves=OCTAVES, scale=SCALE)


def source_frame(h: int, w: int, index: int = 60):
    """A real frame (``index``) from the example clip, scaled to h×w (uint8 RGB)."""
    import cv2

    cap = cv2.VideoCapture(str(ROOT / "examples" / "bigbuckbunny.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    assert ok, "examples/bigbuckbunny.mp4 is unreadable"
    return cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def scaled_clip(w: int, h: int, frames: int, folder: Path) -> Path:
    """The example clip's first frames, scaled to w×h, as an H.264 file (for the end-to-end run)."""
    from dreamvid.video.decode import ffmpeg_exe

    out = folder / f"clip_{w}x{h}.mp4"
    if not out.exists():
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(ROOT / "examples" / "bigbuckbunny.mp4"),
                        "-frames:v", str(frames + 1), "-vf", f"scale={w}:{h}", "-an", "-c:v", "libx264", "-crf", "12",
                        "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def conv_flops(model, h: int, w: int) -> float:
    """Multiply-adds ×2 of every convolution of ``model`` for one h×w image: the forward pass's FLOPs."""
    import keras

    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    probe = keras.Model(model.input, [l.output for l in convs])
    specs = probe.compute_output_spec(keras.KerasTensor((1, h, w, 3)))
    total = 0.0
    for layer, spec in zip(convs, specs):
        kh, kw, cin, cout = layer.kernel.shape
        total += 2.0 * spec.shape[1] * spec.shape[2] * kh * kw * cin * cout
    return total


def device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return getattr(d, "device_kind", d.platform)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"


def peak_for(name: str, given: float | None) -> float | None:
    if given:
        return given
    for key, value in PEAKS.items():  # most specific first ("H100 PCIe" before "H100")
        if key.lower() in name.lower():
            return value
    return None


def timed(fn, repeat: int) -> float:
    """Best-of-``repeat`` seconds of ``fn()`` (which must block until its work is done)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# -- one backend, in its own process ------------------------------------------------------------------------
def child(args) -> None:
    import dataclasses

    import numpy as np

    from dreamvid import model
    from dreamvid.config import DreamParams, parse_layers
    from dreamvid.dream import Dreamer, Objective
    from dreamvid.dream.dreamer import to_unit

    backend = args.child
    obj = Objective.parse(LAYERS)
    params = dataclasses.replace(DreamParams(), layers=parse_layers(LAYERS), octaves=OCTAVES, octave_scale=SCALE,
                                 steps=STEPS, step_size=STEP_SIZE, tile_size=args.tile_size, tile_overlap=64)
    for precision in args.precisions.split(","):
        # frame=True: the one-program frame wherever the backend has it, a CPU included (its "auto" is GPU only)
        dreamer = Dreamer(weights=args.weights, backend=backend, precision=precision, frame=True)
        name = device_name(dreamer.backend_name)
        peak = peak_for(name, args.peak_tflops)
        feats = model.feature_model(dreamer.weights, obj.names, precision)
        for size in args.sizes.split(","):
            w, h = map(int, size.split("x"))
            row = {"backend": backend, "precision": precision, "size": size, "device": name,
                   "fused": dreamer.fused}
            t0 = time.perf_counter()
            dreamer.warm_up(params, (h, w))
            row["compile_s"] = round(time.perf_counter() - t0, 2)
            x = to_unit(source_frame(h, w))
            step_s = step_seconds(dreamer, obj, params, x, args.repeat)
            flops_step = 2 * conv_flops(feats, h, w)  # forward + gradient w.r.t. the input
            flops_frame = sum(STEPS * 2 * conv_flops(feats, *s) for s in octave_sizes(h, w))
            frame_s = timed(lambda: [dreamer.dream_float(x, params, rng=np.random.default_rng(k))
                                     for k in range(args.frames)], 1) / args.frames
            row.update(step_ms=round(1000 * step_s, 2), dream_fps=round(1 / frame_s, 3),
                       tflops=round(flops_frame / frame_s / 1e12, 2),
                       step_tflops=round(flops_step / step_s / 1e12, 2),
                       peak=round(flops_frame / frame_s / 1e12 / peak, 4) if peak else None)
            if dreamer.frame:  # the one-program frame (JAX): its own split, and its share of the peak
                split = frame_split(dreamer, params, h, w, args.repeat)
                row.update(split)
                carried_flops = sum(STEPS * 2 * conv_flops(feats, *s) for s in octave_sizes(h, w)[-2:])
                row["frame_peak"] = (round(carried_flops / (split["frame_ms"]["program"] / 1000) / 1e12 / peak, 4)
                                     if peak else None)
            if args.end_to_end:
                row.update(end_to_end(dreamer, params, w, h, args))
            print("ROW " + json.dumps(row), flush=True)


def step_seconds(dreamer, obj, params, x, repeat: int) -> float:
    """Seconds per ascent step on the full frame: on the device where the backend keeps the octave there."""
    import dataclasses

    import numpy as np

    n = 2 * STEPS
    shifts = np.random.default_rng(0).integers(-32, 33, (n, 2)).astype(np.int32)
    fused = dreamer.octave_fn(obj, params)
    if fused is not None:
        be = dreamer._backend
        return timed(lambda: be.to_host(fused(x, shifts, obj.weights, STEP_SIZE)[0]), repeat) / n
    one = dataclasses.replace(params, octaves=1, steps=n)
    return timed(lambda: dreamer.dream_float(x, one, rng=np.random.default_rng(0)), repeat) / n


def frame_split(dreamer, params, h: int, w: int, repeat: int) -> dict:
    """Milliseconds of one carried frame in the one-program path, by stage: the flow pair (CPU, in the render's
    decode thread), the upload of the frame and its flows, the program (coherence, the carried octaves' ascent,
    governor; inputs already on the device, as the decode thread stages them), the download of the result; and the
    fresh frame's program (all octaves, e.g. after a scene cut)."""
    import jax
    import numpy as np

    from dreamvid.backends import jax_frame
    from dreamvid.config import VideoParams
    from dreamvid.video import flow_pair

    a, b = source_frame(h, w, 60), source_frame(h, w, 61)
    video = VideoParams(strength=12.0)
    flow_s = timed(lambda: flow_pair(b, a, max_side=video.flow_max_side), repeat)
    flows = flow_pair(b, a, max_side=video.flow_max_side)
    t = time.perf_counter()
    prev, _ = dreamer.dream_frame(a, params, rng=np.random.default_rng(0), video=video, target=12.0)
    fresh_first = time.perf_counter() - t
    dreamer.dream_frame(b, params, rng=np.random.default_rng(0), video=video, carry=(a, prev, *flows), target=12.0)

    def upload():
        jax.block_until_ready([jax.device_put(x) for x in (b, *flows)])

    def staged(fn):
        def run():
            inputs = (a, prev.copy(), *flows)
            dreamer.stage(b, *inputs)
            jax.block_until_ready([v for _, v in list(jax_frame._STAGED.values())])  # the copies are done
            t = time.perf_counter()
            fn(inputs)
            return time.perf_counter() - t
        return lambda: min(run() for _ in range(repeat))

    on_device = jax.device_put(b)
    download = timed(lambda: np.asarray(on_device + 0), repeat) - timed(lambda: (on_device + 0).block_until_ready(),
                                                                        repeat)
    carried = staged(lambda inputs: dreamer.dream_frame(b, params, rng=np.random.default_rng(0), video=video,
                                                          carry=inputs, target=12.0))()
    fresh = staged(lambda inputs: dreamer.dream_frame(b, params, rng=np.random.default_rng(0), video=video,
                                                        target=12.0))()
    ms = {"flow": flow_s, "upload": timed(upload, repeat), "program": carried - max(0.0, download),
          "download": max(0.0, download), "fresh_program": fresh}
    return {"frame_ms": {k: round(1000 * v, 2) for k, v in ms.items()}, "frame_fps": round(1 / carried, 3),
            "frame_compile_s": round(fresh_first, 2)}


def end_to_end(dreamer, params, w: int, h: int, args) -> dict:
    from dreamvid.config import resolve
    from dreamvid.pipeline import RenderOptions, render

    import numpy as np

    from dreamvid import metrics
    from dreamvid.config import parse_layers

    cfg = resolve({"dream": {"layers": LAYERS, "octaves": OCTAVES, "octave_scale": SCALE, "steps": STEPS,
                             "step_size": STEP_SIZE, "tile_size": args.tile_size},
                   "video": {"flow": "dis", "blend": 0.6, "strength": 12.0}})
    # compiled before the clock starts, as a long render amortises them: the frame programs (render's warm-up) and
    # the dream_gain measure's network (every 10th frame, in the measures' thread)
    dreamer.warm_up(cfg.dream, (h, w), video=cfg.video)
    dreamer.objective_value(np.zeros((h, w, 3), np.uint8), cfg.dream.replace(layers=parse_layers(metrics.GAIN_LAYERS)))
    with tempfile.TemporaryDirectory() as tmp:
        clip = scaled_clip(w, h, args.frames, Path(tmp))
        out = Path(tmp) / "out.mp4"
        t = time.perf_counter()
        rep = render(RenderOptions(input=clip, output=out, duration=args.frames / 25.0, x264_preset="veryfast"),
                     cfg, dreamer)
        wall = time.perf_counter() - t
    frames = rep.get("frames", args.frames)
    seconds = {k: round(v, 2) for k, v in rep.get("seconds", {}).items()}
    return {"e2e_fps": round(frames / wall, 3), "e2e_frames": frames, "stage_s": seconds,
            "idle": rep.get("accelerator_idle_fraction")}


# -- what the CPU must keep up with, per frame ----------------------------------------------------------------
def cpu_stages(args) -> None:
    """Milliseconds per frame of every CPU stage of a render, at each size (no network involved)."""
    import numpy as np

    from dreamvid import metrics, video
    from dreamvid.config import VideoParams
    from dreamvid.images import write_image

    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        n = max(4, args.frames)
        with tempfile.TemporaryDirectory() as tmp:
            clip = scaled_clip(w, h, n, Path(tmp))
            t = time.perf_counter()
            frames = list(video.iter_frames(clip, first=0, count=n, size=(w, h)))
            ms = {"decode": (time.perf_counter() - t) / n}
            rng = np.random.default_rng(0)
            dreams = [np.clip(f.astype(np.int16) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8)
                      for f in frames]
            stab, strength = metrics.StabilityMeter(), metrics.StrengthMeter()
            acc = dict.fromkeys(("scene_cut", "flow", "init", "metrics", "strength", "png", "png compressed",
                                 "x264 medium", "x264 veryfast"), 0.0)
            writers = {p: video.FrameWriter(Path(tmp) / f"{p}.mp4", fps=25.0, size=(w, h), preset=p)
                       for p in ("medium", "veryfast")}
            for k in range(1, n):
                src, prev = frames[k], frames[k - 1]
                t = time.perf_counter()
                video.scene_cut_score(prev, src)
                t1 = time.perf_counter()
                flows = video.flow_pair(src, prev, max_side=VideoParams().flow_max_side)
                t2 = time.perf_counter()
                video.coherent_init(src, prev, dreams[k - 1], flows=flows)
                t3 = time.perf_counter()
                stab.update(prev, src, dreams[k - 1], dreams[k])  # its own flow: independent of the carrying one
                t4 = time.perf_counter()
                strength.update(src, dreams[k])  # on the dream's thread; the stability measure runs behind it
                acc["strength"] += time.perf_counter() - t4
                t4 = time.perf_counter()
                write_image(Path(tmp) / f"{k}.png", dreams[k], overwrite=True, fast=True)  # the render's checkpoint
                t5 = time.perf_counter()
                write_image(Path(tmp) / f"{k}c.png", dreams[k], overwrite=True)
                acc["png compressed"] += time.perf_counter() - t5
                t5 = time.perf_counter()
                for p, wr in writers.items():
                    t6 = time.perf_counter()
                    wr.write(dreams[k])
                    acc[f"x264 {p}"] += time.perf_counter() - t6
                for key, dt in zip(("scene_cut", "flow", "init", "metrics", "png"),
                                   (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                    acc[key] += dt
            for p, wr in writers.items():
                t6 = time.perf_counter()
                wr.close()
                acc[f"x264 {p}"] += time.perf_counter() - t6
            ms.update({k: v / (n - 1) for k, v in acc.items()})
        print("ROW " + json.dumps({"cpu_stages": size, "ms_per_frame": {k: round(1000 * v, 1) for k, v in ms.items()},
                                   "cores": os.cpu_count()}), flush=True)


# -- the peer: eager torchvision ------------------------------------------------------------------------------
def baseline(args) -> None:
    import numpy as np
    import torch
    import torchvision

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval().to(dev)
    for p in net.parameters():
        p.requires_grad_(False)
    acts = []
    for m in (net.Mixed_6a, net.Mixed_6b, net.Mixed_6c):
        m.register_forward_hook(lambda _m, _i, o: acts.append(o))
    blocks = torch.nn.Sequential(*[getattr(net, n) for n in (
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
        "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c")])
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"

    def step(img, precision):
        img = img.detach().requires_grad_(True)
        acts.clear()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=precision == "bf16"):
            blocks(img)
        loss = sum(a.float().mean() for a in acts)
        loss.backward()
        g = img.grad
        with torch.no_grad():
            return (img + STEP_SIZE / (g.abs().mean() + 1e-8) * g).clamp(-1, 1)

    def frame(x, precision):
        import torch.nn.functional as F

        for s in octave_sizes(*x.shape[2:]):
            x = F.interpolate(x, size=s, mode="bilinear", align_corners=False)
            for _ in range(STEPS):
                x = step(x, precision)
        if dev == "cuda":
            torch.cuda.synchronize()
        return x

    for precision in args.precisions.split(","):
        for size in args.sizes.split(","):
            w, h = map(int, size.split("x"))
            x = torch.from_numpy(source_frame(h, w).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None].to(dev)
            frame(x, precision)  # warm-up (cuDNN autotune)
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
            step_s = timed(lambda: (step(x, precision), sync()), args.repeat)
            frame_s = timed(lambda: [frame(x, precision) for _ in range(args.frames)], 1) / args.frames
            print("ROW " + json.dumps({"backend": "torchvision eager (peer)", "precision": precision, "size": size,
                                       "device": name, "step_ms": round(1000 * step_s, 2),
                                       "dream_fps": round(1 / frame_s, 3)}), flush=True)


# -- the parent: one process per backend, then the table -------------------------------------------------------
def installed(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]) is not None


def spawn(extra: list[str], backend: str | None) -> list[dict]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("KERAS_BACKEND", None)
    if backend:
        env["DREAMVID_BACKEND"] = backend
    proc = subprocess.Popen([sys.executable, __file__, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    rows = []
    for line in proc.stdout:
        if line.startswith("ROW "):
            rows.append(json.loads(line[4:]))
            print(format_row(rows[-1]), flush=True)
    err = proc.stderr.read()
    if proc.wait() != 0:
        print(f"  ({backend or 'baseline'} failed: {err.strip().splitlines()[-1] if err.strip() else '?'})")
    return rows


def format_row(r: dict) -> str:
    if "cpu_stages" in r:
        return f"CPU stages at {r['cpu_stages']} ({r['cores']} cores), ms/frame: {r['ms_per_frame']}"
    cells = [f"{r['backend']:<26}", f"{r['precision']:<5}", f"{r['size']:>9}", f"step {r['step_ms']:>8.1f} ms",
             f"dream {r['dream_fps']:>7.3f} fps"]
    if r.get("tflops") is not None:
        cells.append(f"{r['tflops']:>7.2f} TFLOP/s" + (f" ({100 * r['peak']:.1f} % of peak)" if r.get("peak") else ""))
    if r.get("frame_fps") is not None:
        cells.append(f"frame program {r['frame_fps']:.3f} fps {r['frame_ms']}")
    if r.get("e2e_fps") is not None:
        cells.append(f"e2e {r['e2e_fps']:.3f} fps idle {r['idle']}  stages {r['stage_s']}")
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="tensorflow,jax,torch")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--sizes", default="1280x720,1920x1080", help="WxH,...")
    ap.add_argument("--frames", type=int, default=8, help="frames timed per configuration")
    ap.add_argument("--repeat", type=int, default=5, help="best of N for the single-step time")
    ap.add_argument("--tile-size", type=int, default=2048)
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS") or "random",
                    help="weights file (speed does not depend on them); default $DREAMVID_WEIGHTS or random")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not known by name")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--cpu-stages", action=argparse.BooleanOptionalAction, default=True,
                    help="time every CPU stage of a render (decode, flow, init, metrics, PNG, x264) per frame")
    ap.add_argument("--json", help="also write every row to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stages-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stages_only:
        return cpu_stages(args)
    if args.child:
        return child(args)
    if args.peer:
        return baseline(args)

    common = ["--precisions", args.precisions, "--sizes", args.sizes, "--frames", str(args.frames),
              "--repeat", str(args.repeat), "--tile-size", str(args.tile_size), "--weights", args.weights]
    if args.peak_tflops:
        common += ["--peak-tflops", str(args.peak_tflops)]
    if not args.end_to_end:
        common.append("--no-end-to-end")
    print(f"workload: {LAYERS}, {OCTAVES} octaves ×{SCALE}, {STEPS} steps; {time.strftime('%Y-%m-%d')}", flush=True)
    rows = []
    if args.cpu_stages:
        rows += spawn(["--stages-only", *common], None)
    if args.baseline:
        try:
            import importlib.util

            has_tv = importlib.util.find_spec("torchvision") is not None
        except Exception:
            has_tv = False
        if has_tv:
            rows += spawn(["--peer", *common], None)
        else:
            print("  (no torchvision here: peer baseline skipped)")
    for b in [b for b in args.backends.split(",") if b]:
        if not installed(b):
            print(f"  ({b} is not installed: skipped)")
            continue
        rows += spawn(["--child", b, *common], b)
    rows_net = [r for r in rows if "backend" in r]
    peer = {(r["precision"], r["size"]): r["dream_fps"] for r in rows_net if "peer" in r["backend"]}
    best_peer = {}
    for (p, s), fps in peer.items():
        best_peer[s] = max(best_peer.get(s, 0.0), fps)
    if best_peer:
        print("\nvs the eager-torchvision peer (its best precision at each size):")
        for r in rows_net:
            if "peer" not in r["backend"] and r["size"] in best_peer:
                print(f"  {r['backend']:<10} {r['precision']:<5} {r['size']:>9}: dream "
                      f"{r['dream_fps'] / best_peer[r['size']]:.2f}×"
                      + (f", frame program {r['frame_fps'] / best_peer[r['size']]:.2f}×" if r.get("frame_fps") else "")
                      + (f", end to end {r['e2e_fps'] / best_peer[r['size']]:.2f}×" if r.get("e2e_fps") else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
