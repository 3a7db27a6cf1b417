"""One compiled XLA program per video frame (JAX): the coherence step, every octave and step, and the governor.

What :class:`dreamvid.coherence.Coherence` and :class:`dreamvid.dream.Dreamer` do for a frame in numpy, between
one network call and the next, runs here inside one program, so the image goes to the device once (uint8, with the
flows) and comes back once (uint8)::

    carried dream  warp(prev_out − prev_src) by the backward flow (bicubic), or warp(prev_out) ("frame")
    masks          forward–backward consistency × inside the frame × photometric exp(−α‖I_t − warp(I_t−1)‖²)
    start, anchor  init = src + c·(ω − src); the per-pixel step map; or "blend"'s feedback init
    ascent         every octave (resize by exact cv2-equivalent matrices), every step in a ``fori_loop``: roll by
                   the host's seeded shifts, (tiled) gradient, normalised step scaled by the step map, the anchor's
                   proximal pull, clip
    governor       the dream's mean |out − src| scaled to the frame's target within the gain limits

The model's variables, the resize matrices and the tile windows are arguments of the program, never constants
baked into it, so one compiled program serves every weights file and its text stays small. Layer weights, step
size, step count (up to a bucket), the anchor's strength, the masks' parameters, the governor's target and limits
are run-time values: the music changes them without a recompile. A program is compiled once per frame shape,
octave shapes, steps bucket and coherence mode, and cached (also on disk, by JAX's compilation cache).

Everything here matches the numpy path within float rounding: ``cv2.resize`` (area to shrink, bilinear to grow) is
separable, so each resize is two small matrix products with matrices made by cv2 itself; ``cv2.remap`` with float
maps (OpenCV ≥ 5) samples at the exact coordinates, as :func:`warp` does. tests/test_frame_program.py compares them.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..dream.tiles import tile_plan
from ..model import as_keras
from .jax_common import losses_fn, variables

_HI = lax.Precision.HIGHEST  # resize products in full float32 (a GPU would otherwise use TF32)

#: coherence modes this program plans on the device (``None``: a fresh frame)
MODES = (None, "anchor", "blend")


# -- resizing: exactly dream.octaves.resize, as two matrix products ------------------------------------------------
@functools.lru_cache(maxsize=64)
def resize_matrices(src: tuple[int, int], dst: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(My (h, H), Mx (w, W))`` such that ``My @ img @ Mx.T`` is ``dream.octaves.resize(img, dst)``; None if equal.

    Made by resizing identity matrices with cv2 under the interpolation ``resize`` picks for the whole image (area
    averaging to shrink, bilinear to grow): both are separable, so this is exact up to float rounding.
    """
    (H, W), (h, w) = src, dst
    if (H, W) == (h, w):
        return None
    interp = cv2.INTER_AREA if h * w < H * W else cv2.INTER_LINEAR

    def axis(n_in: int, n_out: int) -> np.ndarray:
        if n_in == n_out:
            return np.eye(n_in, dtype=np.float32)
        return np.ascontiguousarray(cv2.resize(np.eye(n_in, dtype=np.float32), (n_in, n_out), interpolation=interp))

    return axis(H, h), axis(W, w)


def resize(x, mats):
    """Resize (H, W) or (H, W, C) ``x`` with :func:`resize_matrices`' pair (None: unchanged)."""
    if mats is None:
        return x
    my, mx = mats
    if x.ndim == 2:
        return jnp.einsum("ij,jk,lk->il", my, x, mx, precision=_HI)
    return jnp.einsum("ij,jkc,lk->ilc", my, x, mx, precision=_HI)


# -- coherence: video.flow and coherence.py, on the device ----------------------------------------------------------
def _cubic(t):
    """cv2's bicubic weights (A = −0.75) of the taps at −1, 0, 1, 2 for a fractional offset ``t``."""
    a = -0.75
    c0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    c1 = ((a + 2) * t - (a + 3)) * t * t + 1
    c2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return (c0, c1, c2, 1 - c0 - c1 - c2)


def warp(img, flow, *, cubic: bool = False):
    """``out[x] = img[x + flow[x]]``, bilinear or bicubic, border replicate: ``video.flow.warp`` on the device.

    img : float32 (H, W) or (H, W, C); flow : float32 (H, W, 2). Returns float32 of ``img``'s shape (a uint8
    image's warp is this, rounded and clipped, as :func:`warp_u8` does).
    """
    H, W = img.shape[:2]
    x = jnp.arange(W, dtype=jnp.float32)[None, :] + flow[..., 0]
    y = jnp.arange(H, dtype=jnp.float32)[:, None] + flow[..., 1]
    x0, y0 = jnp.floor(x), jnp.floor(y)
    tx, ty = x - x0, y - y0
    ix, iy = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = img.reshape(H * W, -1)

    def tap(dy, dx):
        r = jnp.clip(iy + dy, 0, H - 1)
        c = jnp.clip(ix + dx, 0, W - 1)
        return jnp.take(flat, (r * W + c).ravel(), axis=0).reshape(H, W, -1)

    if cubic:
        wx, wy = _cubic(tx), _cubic(ty)
        out = 0.0
        for j in range(4):
            row = 0.0
            for i in range(4):
                row = row + wx[i][..., None] * tap(j - 1, i - 1)
            out = out + wy[j][..., None] * row
    else:
        ax, ay = tx[..., None], ty[..., None]
        out = (1 - ay) * ((1 - ax) * tap(0, 0) + ax * tap(0, 1)) + ay * ((1 - ax) * tap(1, 0) + ax * tap(1, 1))
    return out.reshape(img.shape)


def warp_u8(img, flow, *, cubic: bool = False):
    """The warp of a uint8 image (given as uint8 or float32 holding integers), rounded and clipped like cv2's;
    float32 values in 0..255."""
    return jnp.clip(jnp.round(warp(img.astype(jnp.float32), flow, cubic=cubic)), 0, 255)


def _grad_np(p, axis: int):
    """np.gradient along ``axis``: central differences inside, one-sided at the borders."""
    n = p.shape[axis]
    if n < 2:
        return jnp.zeros_like(p)
    lo = lax.slice_in_dim(p, 1, 2, axis=axis) - lax.slice_in_dim(p, 0, 1, axis=axis)
    hi = lax.slice_in_dim(p, n - 1, n, axis=axis) - lax.slice_in_dim(p, n - 2, n - 1, axis=axis)
    if n == 2:
        return jnp.concatenate([lo, hi], axis=axis)
    mid = 0.5 * (lax.slice_in_dim(p, 2, n, axis=axis) - lax.slice_in_dim(p, 0, n - 2, axis=axis))
    return jnp.concatenate([lo, mid, hi], axis=axis)


def _box3(m, op):
    """3×3 ``op`` (min or mean) with the border replicated."""
    p = jnp.pad(m, 1, mode="edge")
    H, W = m.shape
    views = [p[dy : dy + H, dx : dx + W] for dy in range(3) for dx in range(3)]
    if op == "min":
        return functools.reduce(jnp.minimum, views)
    return sum(views) * np.float32(1.0 / 9.0)


def consistency_mask(bwd, fwd, tol):
    """``video.flow.consistency_mask(bwd, fwd, tol=tol)`` with its defaults (motion boundaries, erode 1, soften 1)."""
    w_tilde = warp(fwd, bwd)
    hx, hy = bwd[..., 0], bwd[..., 1]
    tx, ty = w_tilde[..., 0], w_tilde[..., 1]
    hat2 = hx * hx + hy * hy
    tilde2 = tx * tx + ty * ty
    lhs = (tx + hx) ** 2 + (ty + hy) ** 2
    reliable = lhs <= 0.01 * tilde2 + 0.01 * hat2 + 0.5 * tol
    grad = sum(_grad_np(p, 1) ** 2 + _grad_np(p, 0) ** 2 for p in (hx, hy))
    reliable = reliable & (grad <= 0.01 * hat2 + 0.002 * tol)
    mask = _box3(reliable.astype(jnp.float32), "min")
    return jnp.clip(_box3(mask, "mean"), 0.0, 1.0)


def inside(flow):
    """1 where ``x + flow[x]`` lies inside the frame, else 0 (coherence._inside)."""
    H, W = flow.shape[:2]
    gx = jnp.arange(W, dtype=jnp.float32)[None, :] + flow[..., 0]
    gy = jnp.arange(H, dtype=jnp.float32)[:, None] + flow[..., 1]
    return ((gx >= 0) & (gx <= W - 1) & (gy >= 0) & (gy <= H - 1)).astype(jnp.float32)


def photometric_mask(src, warped_prev_src, alpha):
    """``coherence.photometric_mask`` (both images 0..255 floats holding integers); ``alpha`` <= 0 gives ones."""
    d = jnp.abs(src - warped_prev_src) * np.float32(1.0 / 255.0)
    m = jnp.exp(jnp.sum(d * d, axis=-1) * -alpha)
    return jnp.where(alpha > 0, m, jnp.ones_like(m))


def _to_unit(u8f):
    return u8f * np.float32(1.0 / 127.5) - 1.0


def plan_anchor(src, prev_src, prev_out, bwd, fwd, s, *, warp_mode: str):
    """Coherence.plan in "anchor" mode: ``(init, omega, weight, step)``; images as 0..255 floats, ``s`` the scalars."""
    mask = consistency_mask(bwd, fwd, s["tol"])
    weight = mask * inside(bwd) * photometric_mask(src, warp_u8(prev_src, bwd), s["alpha"])
    src_u = _to_unit(src)
    if warp_mode == "delta":
        omega = src_u + warp((prev_out - prev_src) * np.float32(1.0 / 127.5), bwd, cubic=True)
    else:
        omega = _to_unit(warp_u8(prev_out, bwd, cubic=True))
    omega = jnp.clip(omega, -1.0, 1.0)
    init = src_u + weight[..., None] * (omega - src_u)
    moved = jnp.minimum(jnp.sqrt(bwd[..., 0] ** 2 + bwd[..., 1] ** 2), 1.0)
    step = 1.0 - weight * (1.0 - s["carried_step"] * moved)
    return init, omega, weight, step


def plan_blend(src, prev_src, prev_out, bwd, fwd, s, *, warp_mode: str):
    """``video.flow.coherent_init`` (what "blend" mode starts from), as a float image in [-1, 1]."""
    wgt = (s["blend"] * consistency_mask(bwd, fwd, s["tol"]))[..., None]
    if warp_mode == "delta":
        init = src + wgt * warp(prev_out - prev_src, bwd)
    else:
        init = (1.0 - wgt) * src + wgt * warp(prev_out, bwd)
    return _to_unit(jnp.clip(jnp.round(init), 0, 255))


def govern(src, dreamed, target, lo, hi):
    """Coherence.finish: ``(out uint8, gain)``; ``target`` <= 0 leaves the dream as it is (gain 1)."""
    delta = (dreamed + 1.0) * np.float32(127.5) - src
    measured = jnp.mean(jnp.abs(delta))
    gain = jnp.where(target > 0, jnp.clip(target / jnp.maximum(measured, 1e-3), lo, hi), 1.0)
    return jnp.clip(jnp.round(src + delta * gain), 0, 255).astype(jnp.uint8), gain


# -- host arrays already on the device ---------------------------------------------------------------------------------
_STAGED: OrderedDict[int, tuple] = OrderedDict()  # id(host array) -> (host array, its device copy)
_LOCK = threading.Lock()  # staged from the decode thread, used by the dream's


def stage(*arrays) -> None:
    """Start copying host arrays to the device now (the render's decode thread does it for each coming frame and
    its flows); a frame program given the same array objects uses the copies. Bounded: the oldest are dropped."""
    for a in arrays:
        if a is None:
            continue
        dev = jax.device_put(a)  # asynchronous
        with _LOCK:
            _STAGED[id(a)] = (a, dev)
            while len(_STAGED) > 24:
                _STAGED.popitem(last=False)


def _device(a, *, keep: bool = True):
    """The device copy of host array ``a``: the staged one (dropped unless ``keep``: its buffer may be donated)."""
    with _LOCK:
        hit = _STAGED.get(id(a))
        if hit is not None and hit[0] is a:
            if not keep:
                del _STAGED[id(a)]
            return hit[1]
    return jax.device_put(a)


def _remember(host, device) -> None:
    """Record that ``device`` holds ``host`` (a frame's output: the next frame carries it)."""
    with _LOCK:
        _STAGED[id(host)] = (host, device)


# -- the program ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameSpec:
    """What a compiled frame program depends on (its cache key); everything else is a run-time argument.

    size : (H, W) of the frame; dream : (h, w) it is dreamed at (larger for frames under the network's minimum);
    shapes : the octave shapes dreamed, smallest first; steps_cap : the length of the shifts array (a bucket);
    mode : None (fresh), "anchor" or "blend"; warp : "delta" or "frame".
    """

    size: tuple[int, int]
    dream: tuple[int, int]
    shapes: tuple[tuple[int, int], ...]
    steps_cap: int
    mode: str | None = None
    warp: str = "delta"


class FrameRunner:
    """Builds, caches and runs the frame programs for one model and objective structure.

    Parameters
    ----------
    model : a Keras feature model (outputs = the objective's layers), any precision (bf16 runs its convolutions
        in bfloat16)
    channels : the objective's channels per layer
    tile, overlap, batch : tiling, as ``dream.tiles`` (a frame that fits in one tile is not tiled; otherwise every
        batch of tiles has the same shape, the last padded)
    """

    def __init__(self, model, *, channels, tile: int = 512, overlap: int = 64, batch: int = 4):
        model = as_keras(model)
        self._losses = losses_fn(model, channels)
        self.variables = variables(model)
        self.n_layers = len(channels)
        self.tile, self.overlap, self.batch = int(tile), int(overlap), max(1, int(batch))
        self._programs: dict[FrameSpec, object] = {}
        self._consts: dict[FrameSpec, dict] = {}
        self.donate = jax.default_backend() != "cpu"  # XLA:CPU cannot reuse donated buffers (it would only warn)

    # the gradient of the objective for one image, tiled where it does not fit one tile
    def _gradient(self, spec_shape, consts):
        def total(tiles, weights, variables):
            losses = self._losses(tiles, weights, *variables)
            return jnp.sum(losses), losses

        grad = jax.grad(total, has_aux=True)  # with respect to the tiles only
        plan = tile_plan(*spec_shape, tile=self.tile, overlap=self.overlap)
        if plan.single:

            def gradient(x, weights, variables):
                g, losses = grad(x[None], weights, variables)
                return g[0], losses[0]
            return gradient
        th, tw, B = plan.th, plan.tw, self.batch

        def gradient(x, weights, variables):
            def chunk(carry, inp):
                acc, loss_sum = carry
                pos, win, valid = inp
                tiles = jnp.stack([lax.dynamic_slice(x, (pos[b, 0], pos[b, 1], 0), (th, tw, 3)) for b in range(B)])
                g, losses = grad(tiles, weights, variables)
                for b in range(B):
                    at = (pos[b, 0], pos[b, 1], 0)
                    acc = lax.dynamic_update_slice(acc, lax.dynamic_slice(acc, at, (th, tw, 3)) + g[b] * win[b], at)
                return (acc, loss_sum + jnp.sum(losses * valid)), None

            (acc, loss_sum), _ = lax.scan(chunk, (jnp.zeros_like(x), jnp.float32(0.0)),
                                          (consts["pos"], consts["win"], consts["valid"]))
            return acc * consts["inverse"], loss_sum / plan.count

        return gradient

    def _tile_consts(self, shape) -> dict:
        plan = tile_plan(*shape, tile=self.tile, overlap=self.overlap)
        if plan.single:
            return {}
        B = self.batch
        pos = plan.positions
        n = -(-len(pos) // B) * B
        wins = [plan.window(*p)[..., None] for p in pos] + [np.zeros((plan.th, plan.tw, 1), np.float32)] * (n - len(pos))
        pos = pos + [(0, 0)] * (n - len(pos))
        valid = np.array([1.0] * plan.count + [0.0] * (n - plan.count), np.float32)
        return {"pos": np.array(pos, np.int32).reshape(n // B, B, 2),
                "win": np.stack(wins).reshape(n // B, B, plan.th, plan.tw, 1),
                "valid": valid.reshape(n // B, B), "inverse": plan.inverse_weight_sum[..., None]}

    def consts(self, spec: FrameSpec) -> dict:
        """The program's constant inputs for ``spec`` (resize matrices, tile windows), on the device, built once."""
        if spec not in self._consts:
            c = {"down": [resize_matrices(spec.dream, s) for s in spec.shapes],
                 "up": [None] + [resize_matrices(a, b) for a, b in zip(spec.shapes, spec.shapes[1:])],
                 "anchor": [resize_matrices(spec.size, s) for s in spec.shapes],
                 "in": resize_matrices(spec.size, spec.dream), "out": resize_matrices(spec.dream, spec.size),
                 "tiles": [self._tile_consts(s) for s in spec.shapes]}
            self._consts[spec] = jax.device_put(c)
        return self._consts[spec]

    def program(self, spec: FrameSpec):
        """The jitted frame program for ``spec`` (built once)."""
        if spec not in self._programs:
            self._programs[spec] = self._build(spec)
        return self._programs[spec]

    def _build(self, spec: FrameSpec):
        def frame(src, prev, shifts, n_steps, weights, s, variables, consts):
            src_f = src.astype(jnp.float32)
            anchor = None
            if spec.mode is None:
                init = _to_unit(src_f)
            else:
                prev_src, prev_out = prev[0].astype(jnp.float32), prev[1].astype(jnp.float32)
                planner = plan_anchor if spec.mode == "anchor" else plan_blend
                got = planner(src_f, prev_src, prev_out, prev[2], prev[3], s, warp_mode=spec.warp)
                if spec.mode == "anchor":
                    init, *anchor = got
                else:
                    init = got
            x = resize(init, consts["in"])
            bases = [resize(x, m) for m in consts["down"]]
            detail = jnp.zeros_like(bases[0])
            losses = []
            img = base = bases[0]
            for i, base in enumerate(bases):
                detail = resize(detail, consts["up"][i])
                img = base + detail
                gradient = self._gradient(spec.shapes[i], consts["tiles"][i])
                pull = None
                if anchor is not None:
                    omega, weight, step = anchor
                    m = consts["anchor"][i]
                    target = resize(omega, m)
                    keep = 1.0 / (1.0 + s["strength"] * jnp.clip(resize(weight, m), 0.0, 1.0)[..., None])
                    pull = (target, keep, jnp.clip(resize(step, m), 0.0, 1.0)[..., None])
                img, loss_i = self._ascent(img, gradient, shifts[i], n_steps, weights, s["step_size"], pull,
                                           variables, consts["tiles"][i])
                losses.append(loss_i)
                detail = img - base
            out = resize(base + detail, consts["out"])
            u8, gain = govern(src_f, out, s["target"], s["lo"], s["hi"])
            return u8, gain, jnp.stack(losses)

        donate = (1,) if self.donate and spec.mode is not None else ()
        return jax.jit(frame, donate_argnums=donate)

    @staticmethod
    def _ascent(img, gradient, shifts, n_steps, weights, step_size, pull, variables, tiles):
        """``n_steps`` normalised, rolled steps of one octave in a ``fori_loop`` (no host sync)."""
        def body(k, carry):
            x, losses = carry
            sh = shifts[k]
            g, loss = gradient(jnp.roll(x, (sh[0], sh[1]), axis=(0, 1)), weights, variables)
            g = jnp.roll(g, (-sh[0], -sh[1]), axis=(0, 1))
            move = step_size / (jnp.mean(jnp.abs(g)) + 1e-8)  # as the original DeepDream, and the host loop
            if pull is None:
                x = x + move * g
            else:
                target, keep, step_scale = pull
                x = x + move * step_scale * g
                x = (x - target) * keep + target
            return jnp.clip(x, -1.0, 1.0), losses.at[k].set(loss)

        return lax.fori_loop(0, n_steps, body, (img, jnp.zeros((shifts.shape[0],), jnp.float32)))

    # -- running ------------------------------------------------------------------------------------------------
    def __call__(self, src: np.ndarray, *, dream: tuple[int, int], shapes, mode: str | None = None,
                 warp: str = "delta", prev=None, shifts: np.ndarray, n_steps: int, weights: np.ndarray,
                 scalars: dict[str, float]):
        """Run one frame.

        src : uint8 (H, W, 3); dream : the size it is dreamed at; shapes : the octave shapes, smallest first;
        mode, warp : see :class:`FrameSpec`; prev : (prev_src, prev_out, bwd, fwd) host arrays for a carried frame;
        shifts : int32 (octaves, steps_cap, 2), the rolls drawn by the host's seeded generator; n_steps : steps
        per octave (<= steps_cap); weights : float32 (L,); scalars : every name of :data:`SCALARS`.

        Returns ``(out uint8 (H, W, 3) numpy, gain float, losses (octaves, steps_cap) numpy)``.
        """
        if mode not in MODES:
            raise ValueError(f"unknown frame mode {mode!r}")
        spec = FrameSpec(tuple(src.shape[:2]), tuple(dream), tuple(tuple(s) for s in shapes), int(shifts.shape[1]),
                         mode, warp)
        fn = self.program(spec)
        s = {k: jnp.float32(v) for k, v in scalars.items()}
        dev_prev = None
        if spec.mode is not None:
            # the previous output and flows are used once: their device buffers may be donated to this frame's
            dev_prev = tuple(_device(a, keep=False) for a in prev)
        src_d = _device(src)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*donated buffers.*")
            out, gain, losses = fn(src_d, dev_prev, jnp.asarray(shifts, jnp.int32), jnp.int32(n_steps),
                                   jnp.asarray(weights, jnp.float32), s, self.variables, self.consts(spec))
        host = np.asarray(out)  # the one copy back
        _remember(host, out)
        return host, float(gain), np.asarray(losses)

    def lowered_text(self, spec: FrameSpec) -> str:
        """The program's StableHLO text for ``spec`` (to check what it embeds: no weights)."""
        H, W = spec.size
        u8 = jax.ShapeDtypeStruct((H, W, 3), jnp.uint8)
        fl = jax.ShapeDtypeStruct((H, W, 2), jnp.float32)
        prev = None if spec.mode is None else (u8, u8, fl, fl)
        shifts = jax.ShapeDtypeStruct((len(spec.shapes), spec.steps_cap, 2), jnp.int32)
        weights = jax.ShapeDtypeStruct((self.n_layers,), jnp.float32)
        scal = {k: jnp.float32(0) for k in SCALARS}
        return self.program(spec).lower(u8, prev, shifts, jnp.int32(0), weights, scal, self.variables,
                                        self.consts(spec)).as_text()


#: the run-time scalars of every program (unused ones are ignored by a mode that needs none)
SCALARS = ("step_size", "target", "lo", "hi", "tol", "alpha", "strength", "carried_step", "blend")


def make_frame(model, *, channels, precision: str = "fp32", jit: str | bool = "auto", tile: int = 512,
               overlap: int = 64, batch: int = 4) -> FrameRunner:
    """The backend's frame program builder (see :class:`FrameRunner`). ``precision`` is honoured by how the model
    was built (bf16: Keras' mixed_bfloat16 policy); the program is always jitted (``jit`` is for the contract)."""
    return FrameRunner(model, channels=channels, tile=tile, overlap=overlap, batch=batch)
