"""JAX gradient step: ``jax.jit(jax.grad(...))`` over the Keras model's ``stateless_call``.

The model's variables are passed to the compiled function as arguments, not captured as constants, so XLA
compiles the network once per tile shape without baking 22M parameters into the program, and one compiled
step serves every weights file. Only the input gets a gradient.

Besides the per-batch step of the contract, this backend offers :func:`make_octave`: a whole octave of ascent
(roll, tiled gradient, normalised step, clip, for every step) compiled into one XLA program that stays on the
accelerator. The host loop in :class:`dreamvid.dream.Dreamer` copies the image to and from the device and does
the roll/normalise/clip in numpy at every step; on a GPU at 1080p that host work costs more than the network.
And :func:`make_frame` / :func:`stage`: a whole video frame in one program (:mod:`.jax_frame`).

The pieces this module and :mod:`.jax_frame` share (the loss over the model's outputs, its variables, the
compilation cache) live in :mod:`.jax_common`, below both.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..dream.tiles import tile_plan
from ..model import as_keras
from .jax_common import full_precision, losses_fn, variables
from .jax_frame import make_frame, stage  # noqa: F401  (the backend contract: the one-program frame)

name = "jax"


def has_gpu() -> bool:
    return any(d.platform in ("gpu", "cuda", "rocm") for d in jax.devices())


def _use_jit(jit) -> bool:
    # "auto": always — op-by-op JAX is far slower than one XLA program on every device.
    return True if jit == "auto" else bool(jit)


def _grad_fn(model, channels):
    """``(grad, trainable, non_trainable)``: ``grad(tiles, weights, tv, ntv) -> (d sum(losses)/d tiles, losses)``."""
    losses_of = losses_fn(model, channels)

    def total(tiles, weights, tv, ntv, targets=()):
        losses = losses_of(tiles, weights, tv, ntv, targets)
        return jnp.sum(losses), losses

    return (jax.grad(total, has_aux=True), *variables(model))


def make_step(model, *, channels, matches: int = 0, precision: str = "fp32", jit: str | bool = "auto"):
    """Build the step function for ``model`` (outputs = the objective's layer terms, then ``matches`` match
    terms' layers). See ``backends.base``."""
    grad, tv, ntv = _grad_fn(as_keras(model), channels)
    if _use_jit(jit):
        grad = jax.jit(grad)

    def run(tiles: np.ndarray, weights: np.ndarray, targets=()):
        if len(targets) != matches:
            raise ValueError(f"this step has {matches} match terms, got {len(targets)} targets")
        g, losses = grad(jnp.asarray(tiles, jnp.float32), jnp.asarray(weights, jnp.float32), tv, ntv,
                         tuple(jnp.asarray(t, jnp.float32) for t in targets))
        return np.asarray(g, np.float32), np.asarray(losses, np.float32)

    return run


def make_forward(model, *, precision: str = "fp32", jit: str | bool = "auto"):
    """``forward(tiles (B, H, W, 3)) -> [float32 activation (B, h, w, C) per output of model]``."""
    keras_model = as_keras(model)
    tv, ntv = variables(keras_model)

    def forward(tiles, tv, ntv):
        with full_precision(keras_model):
            acts, _ = keras_model.stateless_call(tv, ntv, tiles, training=False)
        return [a.astype(jnp.float32) for a in (acts if isinstance(acts, (list, tuple)) else [acts])]

    fn = jax.jit(forward) if _use_jit(jit) else forward
    return lambda tiles: [np.asarray(a, np.float32) for a in fn(jnp.asarray(tiles, jnp.float32), tv, ntv)]


def make_octave(model, *, channels, precision: str = "fp32", jit: str | bool = "auto",
                tile: int = 512, overlap: int = 64, batch: int = 4):
    """Build ``octave(img, shifts, weights, step_size) -> (img, losses)``, every step on the device.

    img
        float32 (H, W, 3) in [-1, 1], numpy or a device array.
    shifts
        int (steps, 2): the roll of each step, drawn by the caller's seeded generator exactly as the host loop
        draws them, so both paths dream the same image. Its length is the number of steps.
    weights, step_size
        float32 (L,) layer weights and the step size: run-time values, so the music can change them (and the
        number of steps) without a recompile.

    Returns the ascended image (a device array) and the mean tile loss of each step (steps,).

    One step (roll, tiled gradient, normalised update, clip) is one XLA program, compiled once per image
    shape; the steps are dispatched from Python, asynchronously, so the image stays on the device and the
    host never waits. (An XLA ``fori_loop`` over the steps measured 2.5x slower on CPU, whose while-loop
    bodies run without the usual intra-op parallelism; an unrolled loop would compile once per step count.)
    """
    grad, tv, ntv = _grad_fn(as_keras(model), channels)

    @functools.lru_cache(maxsize=None)
    def program(H: int, W: int):
        plan = tile_plan(H, W, tile=tile, overlap=overlap)

        def gradient(x, weights, tv, ntv, windows, inverse):
            if plan.single:
                g, losses = grad(x[None], weights, tv, ntv)
                return g[0], losses[0]
            acc = jnp.zeros_like(x)
            loss_sum = 0.0
            for chunk in plan.chunks(batch):
                tiles = jnp.stack([x[y : y + plan.th, xx : xx + plan.tw] for y, xx in chunk])
                g, losses = grad(tiles, weights, tv, ntv)
                loss_sum = loss_sum + jnp.sum(losses)
                for (y, xx), gi in zip(chunk, g):
                    acc = acc.at[y : y + plan.th, xx : xx + plan.tw].add(gi * windows[f"{y},{xx}"])
            return acc * inverse, loss_sum / plan.count

        # the model's variables and the tile windows are arguments, not constants baked into the program
        def one_step(x, shift, weights, step_size, tv, ntv, windows, inverse):
            g, loss = gradient(jnp.roll(x, (shift[0], shift[1]), axis=(0, 1)), weights, tv, ntv, windows, inverse)
            g = jnp.roll(g, (-shift[0], -shift[1]), axis=(0, 1))
            # normalised as in the original DeepDream (and as the host loop does)
            return jnp.clip(x + (step_size / (jnp.mean(jnp.abs(g)) + 1e-8)) * g, -1.0, 1.0), loss

        windows = {f"{y},{x}": jnp.asarray(plan.window(y, x)[..., None]) for y, x in plan.positions}
        consts = (tv, ntv, windows, jnp.asarray(plan.inverse_weight_sum[..., None]))
        return (jax.jit(one_step) if _use_jit(jit) else one_step), consts

    def octave(img, shifts, weights, step_size: float):
        x = jnp.asarray(img, jnp.float32)
        fn, consts = program(int(x.shape[0]), int(x.shape[1]))
        w, size = jnp.asarray(weights, jnp.float32), jnp.float32(step_size)
        losses = []
        for shift in np.asarray(shifts, np.int32):  # dispatch is asynchronous: the image never leaves the device
            x, loss = fn(x, jnp.asarray(shift), w, size, *consts)
            losses.append(loss)
        return x, (jnp.stack(losses) if losses else jnp.zeros((0,), jnp.float32))

    octave.program = program  # (H, W) -> (jitted step, its constant arguments): for tests and benchmarks
    return octave


def to_host(x) -> np.ndarray:
    return np.asarray(x, np.float32)
