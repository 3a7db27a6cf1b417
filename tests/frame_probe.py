"""Run in a fresh JAX process by ``test_frame_program.py`` (the test process runs Keras on TensorFlow).

    python tests/frame_probe.py WEIGHTS OUT.npz

Writes what the one-program frame (``backends/jax_frame.py``) gives beside what the host path gives for the same
inputs: single frames fresh, anchored and blended, tiled and not; the device-side coherence pieces beside their
numpy versions; and what the compiled programs embed (their StableHLO text size and argument count).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.pop("KERAS_BACKEND", None)
os.environ["DREAMVID_BACKEND"] = "jax"


def pan_pair(size=(112, 128), dx=3):
    from tests.conftest import load_example

    img = load_example("coffee.png", 320)
    h, w = size
    return np.ascontiguousarray(img[20 : 20 + h, 10 : 10 + w]), np.ascontiguousarray(img[20 : 20 + h, 10 + dx : 10 + dx + w])


def coherence_pieces(out: dict) -> None:
    """The device's masks, warps, plans and governor beside video.flow's and coherence.py's, on a real pan."""
    import jax.numpy as jnp

    from dreamvid.backends import jax_frame as jf
    from dreamvid.coherence import Coherence, photometric_mask
    from dreamvid.config import VideoParams
    from dreamvid.video import coherent_init, consistency_mask, flow_pair, warp

    a, b = pan_pair()
    rng = np.random.default_rng(0)
    prev_out = np.clip(a.astype(int) + rng.integers(-25, 26, a.shape), 0, 255).astype(np.uint8)
    bwd, fwd = flow_pair(b, a)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    delta = (prev_out.astype(np.float32) - a) / 127.5
    pairs = {
        "warp_cubic": (jf.warp(f(delta), f(bwd), cubic=True), warp(delta, bwd, cubic=True)),
        "warp_linear": (jf.warp(f(delta), f(bwd)), warp(delta, bwd)),
        "warp_u8": (jf.warp_u8(f(a), f(bwd)), warp(a, bwd)),
        "consistency": (jf.consistency_mask(f(bwd), f(fwd), 1.0), consistency_mask(bwd, fwd, tol=1.0)),
        "photometric": (jf.photometric_mask(f(b), jf.warp_u8(f(a), f(bwd)), 50.0),
                        photometric_mask(b, warp(a, bwd), alpha=50.0)),
    }
    for warp_mode in ("delta", "frame"):
        v = VideoParams(warp=warp_mode)
        plan = Coherence(v).plan(b, a, prev_out, flows=(bwd, fwd))
        s = {"tol": jnp.float32(v.consistency), "alpha": jnp.float32(v.photometric),
             "carried_step": jnp.float32(v.carried_step), "blend": jnp.float32(0.6)}
        init, omega, weight, step = jf.plan_anchor(f(b), f(a), f(prev_out), f(bwd), f(fwd), s, warp_mode=warp_mode)
        pairs[f"anchor_{warp_mode}_init"] = (init, plan.init)
        pairs[f"anchor_{warp_mode}_omega"] = (omega, plan.anchor.image)
        pairs[f"anchor_{warp_mode}_weight"] = (weight, plan.anchor.weight)
        pairs[f"anchor_{warp_mode}_step"] = (step, plan.anchor.step)
        blend_init, _ = coherent_init(b, a, prev_out, mode=warp_mode, blend=0.6, flows=(bwd, fwd))
        got = jf.plan_blend(f(b), f(a), f(prev_out), f(bwd), f(fwd), s, warp_mode=warp_mode)
        pairs[f"blend_{warp_mode}_init"] = ((got + 1.0) * 127.5, blend_init.astype(np.float32))
    dreamed = np.clip(b.astype(np.float32) / 127.5 - 1 + rng.normal(0, 0.1, b.shape), -1, 1).astype(np.float32)
    coh = Coherence(VideoParams(gain_limits=(0.5, 2.0)))
    for target in (0.0, 3.0, 40.0):
        ref = coh.finish(b, dreamed, target=target)
        got, gain = jf.govern(f(b), f(dreamed), jnp.float32(target), jnp.float32(0.5), jnp.float32(2.0))
        pairs[f"govern_{target:g}"] = (got, ref)
        out[f"gain_{target:g}"] = np.array([float(gain), coh.gain])
    from dreamvid.dream.octaves import resize

    # the octave resizes: area to shrink (octaves, a small frame's way back), bilinear to grow (details, a small
    # frame's way up), as matrix products
    img = rng.uniform(-1, 1, (112, 128, 3)).astype(np.float32)
    for dst in ((80, 91), (57, 65), (150, 171)):
        pairs[f"resize_{dst[0]}x{dst[1]}"] = (jf.resize(f(img), jf.resize_matrices((112, 128), dst)), resize(img, dst))
    pairs["resize_2d"] = (jf.resize(f(img[..., 0]), jf.resize_matrices((112, 128), (80, 91))), resize(img[..., 0], (80, 91)))
    for name, (dev, ref) in pairs.items():
        out[f"dev_{name}"], out[f"ref_{name}"] = np.asarray(dev, np.float32), np.asarray(ref, np.float32)


def frames(weights: str, out: dict, info: dict) -> None:
    """Single frames through Coherence.dream: the one-program frame against the host path, same inputs."""
    from dreamvid.coherence import Coherence
    from dreamvid.config import DreamParams, VideoParams, parse_layers
    from dreamvid.dream import Dreamer
    from dreamvid.video import flow_pair

    a, b = pan_pair()
    params = DreamParams(layers=parse_layers("mixed0:1,mixed1[3-9]:0.5"), octaves=2, octave_scale=1.4, steps=2,
                         step_size=0.03, jitter=8, tile_size=512, tile_overlap=32)
    host = Dreamer(weights=weights, backend="jax", frame=False)
    dev = Dreamer(weights=weights, backend="jax", frame=True)
    assert dev.frame and not host.frame
    flows = flow_pair(b, a)
    cases = {
        "fresh": (VideoParams(strength=12.0), params, None),
        "anchor": (VideoParams(strength=12.0), params, "carry"),
        "blend": (VideoParams(coherence="blend", strength=0.0), params, "carry"),
        "tiled": (VideoParams(strength=12.0), params.replace(tile_size=80, tile_overlap=16), "carry"),
    }
    prev_out = None
    for name, (video, p, carry) in cases.items():
        if carry and prev_out is None:
            prev_out, _ = Coherence(video).dream(host, a, None, None, p, flows=None, target=12.0)
        results = []
        for d in (host, dev):
            coh = Coherence(video)
            args = (b, a, prev_out) if carry else (b, None, None)
            img, plan = coh.dream(d, *args, p, flows=flows if carry else None, target=video.strength)
            results.append(img)
            info[f"{name}_gain_{'dev' if d is dev else 'host'}"] = coh.gain
            info[f"{name}_carried_{'dev' if d is dev else 'host'}"] = bool(plan.carried)
        out[f"frame_{name}_host"], out[f"frame_{name}_dev"] = results
    out["frame_source"] = b
    # what the programs embed: the weights are arguments, not constants
    runner = dev.frame_fn(dev.objective(params), params)  # the untiled one
    spec = next(iter(runner._programs))
    text = runner.lowered_text(spec)
    n_vars = sum(len(v) for v in runner.variables)
    main = text.split("@main(", 1)[1].split(") ->", 1)[0]
    info["frame_hlo_chars"] = len(text)
    info["frame_main_args"] = main.count("%arg")
    info["n_variables"] = n_vars
    info["variable_bytes"] = int(sum(np.asarray(v).nbytes for vs in runner.variables for v in vs))
    info["programs"] = len(runner._programs)
    # a different step count and step size reuse the compiled program (run-time values)
    rng = np.random.default_rng(3)
    before = len(runner._programs)
    coh = Coherence(VideoParams(strength=12.0))
    coh.dream(dev, b, None, None, params.replace(steps=1, step_size=0.02), flows=None, target=12.0, rng=rng)
    info["programs_after_other_steps"] = len(runner._programs) - before
    # the per-octave program of make_octave: variables passed as arguments too
    fused = host.octave_fn(host.objective(params), params)
    fn, consts = fused.program(112, 128)
    import jax.numpy as jnp

    lowered = fn.lower(jnp.zeros((112, 128, 3)), jnp.zeros((2,), jnp.int32), jnp.zeros((2,), jnp.float32),
                       jnp.float32(0.01), *consts)
    info["octave_hlo_chars"] = len(lowered.as_text())


def render(weights: str, info: dict, folder: Path) -> None:
    """A tiny render through pipeline.render with the one-program frames: the report, its stages, the frames."""
    from dreamvid.config import resolve
    from dreamvid.dream import Dreamer
    from dreamvid.pipeline import RenderOptions, render
    from dreamvid.video import FrameWriter, iter_frames

    clip, out = folder / "pan.mp4", folder / "out.mp4"
    img = pan_pair()[0]
    with FrameWriter(clip, fps=25.0, size=(128, 112), crf=10, preset="ultrafast") as w:
        for k in range(4):
            w.write(np.ascontiguousarray(np.roll(img, 2 * k, axis=1)))
    cfg = resolve({"dream": {"layers": "mixed0:1,mixed1[3-9]:0.5", "octaves": 2, "octave_scale": 1.4, "steps": 2,
                             "step_size": 0.03, "jitter": 8, "tile_size": 512, "tile_overlap": 32},
                   "video": {"strength": 12.0}})
    dev = Dreamer(weights=weights, backend="jax", frame=True)
    report = render(RenderOptions(input=clip, output=out, x264_preset="ultrafast"), cfg, dev)
    frames = list(iter_frames(out))
    info["render"] = {"frames": report["frames"], "decoded": len(frames), "seconds": report["seconds"],
                      "strength": report["dream_strength"], "stability": report["temporal_stability"],
                      "idle": report["accelerator_idle_fraction"], "programs": sum(len(r._programs)
                                                                                    for r in dev._frames.values())}


def main(weights: str, dest: str) -> None:
    from dreamvid import backends

    backends.load("jax")
    out: dict = {}
    info: dict = {}
    coherence_pieces(out)
    if weights != "-":
        frames(weights, out, info)
        render(weights, info, Path(dest).parent)
    np.savez(dest, **out)
    Path(dest).with_suffix(".json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
