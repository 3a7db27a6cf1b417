"""The ascent loop: octaves × (roll → tiled gradient → normalised step → clip), with detail re-injection.

:class:`Dreamer` owns the expensive state (the model and its compiled step functions), built once per process
and reused for every image or frame. Every parameter comes per call in a :class:`~dreamvid.config.DreamParams`,
so a video can modulate them frame by frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

import numpy as np

from .. import backends, model
from ..config import DreamParams
from .objective import CLASS_LAYER, Objective
from .octaves import MIN_SIDE, octave_shapes, resize
from .tiles import roll, tiled_gradient


def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (0..255) → float32 in [-1, 1] (InceptionV3's ``preprocess_input``). The one place for it."""
    return image.astype(np.float32) / 127.5 - 1.0


def from_unit(x: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] → uint8 RGB."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class StepInfo:
    """Passed to the per-step callback."""

    octave: int
    octaves: int
    step: int
    steps: int
    loss: float
    shape: tuple[int, int]


@dataclass(frozen=True)
class Anchor:
    """Holds a frame's dream to the one carried from the previous frame, inside the ascent.

    Every step of every octave pulls the image toward ``image`` (resized to the octave) with the proximal update
    ``x ← (x + λc·ω) / (1 + λc)``, where ``c = weight`` per pixel and ``λ = strength``: where the previous dream
    could be carried (``c`` near 1) the dream stays where the footage moved it; where it could not (``c`` = 0:
    disoccluded, inconsistent or relit pixels) the frame dreams freely. ``step`` scales each step per pixel (1 for
    fresh pixels, less for carried ones). ``octaves`` > 0 dreams only that many of the finest octaves (a carried
    frame already holds the coarse structure).

    Attributes
    ----------
    image : float32 (H, W, 3) in [-1, 1], the anchor ω at the frame's full size
    weight : float32 (H, W) in [0, 1], the confidence c
    step : float32 (H, W) in [0, 1], the share of each step a pixel takes
    strength : float >= 0, λ
    octaves : int >= 0 (0 = all)
    """

    image: np.ndarray
    weight: np.ndarray
    step: np.ndarray
    strength: float = 1.0
    octaves: int = 0


GUIDE_SIDE = 320  # a guide image is fitted to this long side before its features are taken


def _draw_shift(rng: np.random.Generator, jitter: int) -> tuple[int, int]:
    """The random roll of one step: two scalar draws, y then x (every path draws them the same way)."""
    j = int(jitter)
    return (int(rng.integers(-j, j + 1)), int(rng.integers(-j, j + 1))) if j > 0 else (0, 0)


def _dream_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The size an image is dreamed at: itself, or upscaled so its short side reaches the network's minimum."""
    H, W = shape
    if min(H, W) >= MIN_SIDE:
        return (H, W)
    f = MIN_SIDE / min(H, W)
    return (int(np.ceil(H * f)), int(np.ceil(W * f)))


class _AnchorAt:
    """An :class:`Anchor` resized to one octave: the proximal pull and the per-pixel step scale."""

    def __init__(self, anchor: Anchor, shape: tuple[int, int]):
        c = np.clip(resize(anchor.weight, shape), 0.0, 1.0)[..., None].astype(np.float32)
        k = np.float32(anchor.strength) * c
        self.target = resize(anchor.image, shape).astype(np.float32)
        self.keep = 1.0 / (1.0 + k)  # x ← (x + kω)/(1 + k) = keep·x + (1 − keep)·ω
        self.step_scale = np.clip(resize(anchor.step, shape), 0.0, 1.0)[..., None].astype(np.float32)

    def apply(self, img: np.ndarray) -> None:
        img -= self.target
        img *= self.keep
        img += self.target


class Dreamer:
    """Dreams images with a pretrained InceptionV3.

    Parameters
    ----------
    weights : a weights file, ``"imagenet"``, ``"random"`` or None (see :func:`dreamvid.model.resolve_weights`)
    backend : ``"tensorflow"`` (default), ``"jax"`` or ``"torch"``
    precision : ``"fp32"`` or ``"bf16"`` (where the backend supports it)
    tile_batch : how many tiles go through the network at once (memory vs. speed)
    fused : run each octave's whole ascent on the device where the backend can (JAX); ``"auto"`` = yes
    frame : dream each video frame as one compiled program (coherence, every octave and step, the governor) where
        the backend can (JAX) and the objective has only layer terms; ``"auto"`` = on a GPU
    top_weights : the ImageNet top for class dreaming (see :func:`dreamvid.model.resolve_top`); None: the usual
        places (``$DREAMVID_TOP_WEIGHTS``, Keras' cache), downloaded where needed
    """

    def __init__(self, *, weights=None, backend: str | None = None, precision: str = "fp32",
                 jit: str | bool = "auto", tile_batch: int = 4, seed: int = 0, fused: str | bool = "auto",
                 top_weights=None, frame: str | bool = "auto"):
        self._backend = backends.load(backend)
        self.backend_name = self._backend.name
        self.weights = model.resolve_weights(weights, seed=seed)
        self.precision = precision
        self.jit = jit
        self.tile_batch = tile_batch
        self._steps: dict[tuple, Callable] = {}
        self._octaves: dict[tuple, Callable] = {}
        self._forwards: dict[tuple, Callable] = {}
        self._guides: dict[tuple, dict[str, np.ndarray]] = {}
        self.top_weights = top_weights
        has_fused = hasattr(self._backend, "make_octave")
        self.fused = has_fused if fused == "auto" else bool(fused) and has_fused
        # "auto": on a GPU; XLA:CPU runs the program's step loop (a while loop) without intra-op threads, slower
        # than the host loop there (benchmarks/gpu.py measures both)
        has_frame = hasattr(self._backend, "make_frame")
        self.frame = has_frame and self._backend.has_gpu() if frame == "auto" else bool(frame) and has_frame
        self._frames: dict[tuple, Callable] = {}
        # the UI's preview and render threads share one Dreamer: each program is built once, by one thread
        self._build_lock = threading.RLock()

    def _cached(self, cache: dict, key, build: Callable[[], Any]):
        """``cache[key]``, built by ``build()`` the first time, under a lock (a second thread waits for it)."""
        try:
            return cache[key]
        except KeyError:
            pass
        with self._build_lock:
            if key not in cache:
                cache[key] = build()
            return cache[key]

    # -- compiled state, built once --------------------------------------------------------------------------
    def step_fn(self, objective: Objective):
        def build():
            feats = model.Features(self.weights, objective.outputs, self.precision)  # the backend builds what it needs
            extra = {"matches": len(objective.matches)} if objective.matches else {}
            return self._backend.make_step(feats, channels=objective.channels, precision=self.precision,
                                           jit=self.jit, **extra)

        return self._cached(self._steps, objective.structure, build)

    def octave_fn(self, objective: Objective, params: DreamParams):
        """The backend's on-device octave ascent (see ``jax_backend.make_octave``), or None without one."""
        if not self.fused or objective.matches:  # guide and class terms run in the host loop
            return None
        return self._compiled(self._octaves, self._backend.make_octave, objective, params)

    def frame_fn(self, objective: Objective, params: DreamParams):
        """The backend's one-program frame (see ``jax_frame.FrameRunner``), or None: no such backend, or an
        objective with guide or class terms (those frames take the host path)."""
        if not self.frame or objective.matches:
            return None
        return self._compiled(self._frames, self._backend.make_frame, objective, params)

    def _compiled(self, cache: dict, make, objective: Objective, params: DreamParams):
        """``make``'s program for this objective's structure and tiling, built once and kept in ``cache``."""
        def build():
            feats = model.feature_model(self.weights, objective.names, self.precision)
            return make(feats, channels=objective.channels, precision=self.precision, jit=self.jit,
                        tile=params.tile_size, overlap=params.tile_overlap, batch=self.tile_batch)

        return self._cached(cache, (objective.structure, params.tile_size, params.tile_overlap), build)

    def warm_up(self, params: DreamParams, shape: tuple[int, int], *, video=None) -> None:
        """Compile every octave/tile shape a run of ``params`` at ``shape`` will use, before the first frame
        (with ``video``, a render's :class:`~dreamvid.config.VideoParams`: its fresh and carried frame programs)."""
        obj = self.objective(params)
        if video is not None and self.frame_fn(obj, params) is not None:
            src, flow = np.zeros((*shape, 3), np.uint8), np.zeros((*shape, 2), np.float32)
            rng = np.random.default_rng(0)
            self.dream_frame(src, params, rng=rng, video=video, steps=0)
            if video.coherence != "none":
                self.dream_frame(src, params, rng=rng, video=video, steps=0, carry=(src, src, flow, flow), blend=1.0)
            return
        fused = self.octave_fn(obj, params)
        step = None if fused else obj.bind(self.step_fn(obj))
        for s in octave_shapes(*_dream_shape(shape), octaves=params.octaves, scale=params.octave_scale):
            x = np.zeros((*s, 3), np.float32)
            if fused:  # one zero-size step compiles the program
                self._backend.to_host(fused(x, np.zeros((1, 2), np.int32), obj.weights, 0.0)[0])
            else:
                tiled_gradient(x, step, obj.weights, tile=params.tile_size, overlap=params.tile_overlap,
                               batch=self.tile_batch)

    # -- what to dream toward ----------------------------------------------------------------------------------
    def objective(self, params: DreamParams) -> Objective:
        """The objective ``params`` asks for (:meth:`Objective.from_params`): its layers, and its guide and class
        terms, whose targets are computed once (per guide file and layers, per class) and then reused."""
        if not params.guide and params.dream_class == "":
            return Objective(params.layers)
        guide = self.guide_features(params.guide, params.layer_names) if params.guide else None
        cls = self.class_vector(params.dream_class) if params.dream_class != "" else None
        return Objective.from_params(params, guide=guide, class_vector=cls)

    def forward_fn(self, layers: tuple[str, ...]):
        """The backend's forward pass to ``layers`` (built once per layer tuple)."""
        def build():
            feats = model.Features(self.weights, tuple(layers), self.precision)
            return self._backend.make_forward(feats, precision=self.precision, jit=self.jit)

        return self._cached(self._forwards, layers, build)

    def features(self, image: np.ndarray, layers: tuple[str, ...]) -> list[np.ndarray]:
        """The activations of ``layers`` for one image (uint8 RGB, or float32 in [-1, 1]; dreamed sizes apply:
        at least 75 px a side): float32 (h, w, C) each."""
        x = to_unit(image) if image.dtype == np.uint8 else image.astype(np.float32)
        shape = _dream_shape(x.shape[:2])
        if shape != x.shape[:2]:
            x = resize(x, shape)
        return [a[0] for a in self.forward_fn(tuple(layers))(x[None])]

    def guide_features(self, guide, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Each layer's features of the guide image (a path, or uint8 RGB), fitted to ``GUIDE_SIDE`` px: computed
        once per guide (path, size and modification time) and layers, then kept."""
        from ..images import fit, read_image
        from ..targets import find_guide

        if isinstance(guide, np.ndarray):
            key = ("array", guide.shape, hash(guide.tobytes()), tuple(layers))
        else:
            guide = find_guide(str(guide))
            st = guide.stat()
            key = (str(guide.resolve()), st.st_size, st.st_mtime_ns, tuple(layers))
        def build():
            img = guide if isinstance(guide, np.ndarray) else read_image(guide)
            names = tuple(dict.fromkeys(layers))
            return dict(zip(names, self.features(fit(img, GUIDE_SIDE), names)))

        return self._cached(self._guides, key, build)

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """The ImageNet top's kernel (2048, 1000) and bias (1000,) (downloaded into Keras' cache if needed)."""
        return model.top_weights(model.ensure_top(self.top_weights))

    def class_vector(self, dream_class) -> np.ndarray:
        """The class's column of the top's kernel, float32 (2048,): its direction in mixed10's features."""
        from ..targets import class_index

        return self.top()[0][:, class_index(dream_class)]

    def logits(self, image: np.ndarray) -> np.ndarray:
        """The ImageNet top's 1000 logits for one image (uint8 RGB or float32 in [-1, 1]), float32."""
        (act,) = self.features(image, (CLASS_LAYER,))
        kernel, bias = self.top()
        return act.mean(axis=(0, 1)) @ kernel + bias

    # -- the loop ----------------------------------------------------------------------------------------------
    def gradient(self, x: np.ndarray, params: DreamParams, rng: np.random.Generator,
                 objective: Objective | None = None) -> tuple[np.ndarray, float]:
        """One rolled, tiled gradient of the objective at ``x`` (float32 HxWx3 in [-1, 1])."""
        obj = objective or self.objective(params)
        shift = _draw_shift(rng, params.jitter)
        g, loss = tiled_gradient(roll(x, shift), obj.bind(self.step_fn(obj)), obj.weights, tile=params.tile_size,
                                 overlap=params.tile_overlap, batch=self.tile_batch)
        return roll(g, (-shift[0], -shift[1])), loss

    def objective_value(self, image: np.ndarray, params: DreamParams) -> float:
        """The layer objective (``params.layers`` only: no guide or class) of a uint8 image (or float image in
        [-1, 1]) at full size (at the network's minimum size if smaller, as a dream would see it), without roll."""
        x = to_unit(image) if image.dtype == np.uint8 else image.astype(np.float32)
        if _dream_shape(x.shape[:2]) != x.shape[:2]:  # too small for the deep layers' pooling
            x = resize(x, _dream_shape(x.shape[:2]))
        obj = Objective(params.layers)
        _, loss = tiled_gradient(x, self.step_fn(obj), obj.weights, tile=params.tile_size,
                                 overlap=params.tile_overlap, batch=self.tile_batch)
        return loss

    def dream_float(self, x: np.ndarray, params: DreamParams, *, rng: np.random.Generator | None = None,
                    callback: Callable[[StepInfo], None] | None = None, anchor: Anchor | None = None) -> np.ndarray:
        """Dream a float32 HxWx3 image in [-1, 1]; returns the same kind of array.

        With an :class:`Anchor`, every step is pulled toward the anchor where its weight is high (the temporal
        anchor of a video frame); the ascent runs on the host (the fused device octave has no anchor yet).
        """
        rng = rng if rng is not None else np.random.default_rng(params.seed)
        H, W = x.shape[:2]
        shape = _dream_shape((H, W))
        small = shape != (H, W)
        if small:  # the network needs >= 75 px: dream an upscaled copy, then scale back
            x = resize(x, shape)
        obj = self.objective(params)
        fused = self.octave_fn(obj, params) if anchor is None else None
        shapes = octave_shapes(*x.shape[:2], octaves=params.octaves, scale=params.octave_scale)
        if anchor is not None and anchor.octaves > 0:
            shapes = shapes[-anchor.octaves:]
        bases = [resize(x, s) for s in shapes]
        detail = np.zeros_like(bases[0])
        for i, base in enumerate(bases):
            detail = resize(detail, base.shape[:2])
            img = base + detail
            if fused is not None:
                img = self._fused_octave(fused, img, params, rng, obj, callback, i, len(bases))
                detail = img - base
                continue
            pull = _AnchorAt(anchor, base.shape[:2]) if anchor is not None else None
            for s in range(params.steps):
                g, loss = self.gradient(img, params, rng, obj)
                # normalised as in the original DeepDream: the mean |gradient| makes one step_size-sized move
                move = params.step_size / (float(np.mean(np.abs(g))) + 1e-8)
                if pull is None:
                    img += move * g
                else:
                    img += move * pull.step_scale * g
                    pull.apply(img)
                np.clip(img, -1.0, 1.0, out=img)
                if callback is not None:
                    callback(StepInfo(i, len(bases), s, params.steps, loss, base.shape[:2]))
            detail = img - base
        out = base + detail
        return resize(out, (H, W)) if small else out

    def _fused_octave(self, fused, img, params, rng, obj, callback, i, n_octaves) -> np.ndarray:
        """One octave on the device; the shifts come from ``rng`` in the host loop's order, so both agree."""
        shifts = np.array([_draw_shift(rng, params.jitter) for _ in range(params.steps)], np.int32).reshape(-1, 2)
        out, losses = fused(img, shifts, obj.weights, params.step_size)
        img = self._backend.to_host(out)
        if callback is not None:
            losses = np.asarray(losses)
            for s in range(params.steps):
                callback(StepInfo(i, n_octaves, s, params.steps, float(losses[s]), img.shape[:2]))
        return img

    def stage(self, *arrays: np.ndarray) -> None:
        """Start copying a coming frame's arrays (source, flows) to the device, where frames run there: called
        ahead (the render's decode thread), so the copy is off the dream's critical path. A no-op elsewhere."""
        if self.frame:
            self._backend.stage(*arrays)

    def dream_frame(self, src: np.ndarray, params: DreamParams, *, rng: np.random.Generator, video,
                    carry: tuple[np.ndarray, ...] | None = None, blend: float | None = None,
                    target: float | None = None, steps: int | None = None) -> tuple[np.ndarray, float] | None:
        """A whole video frame as one program on the device: ``(out uint8 (H, W, 3), gain)``, or None where the
        backend or the objective has none (the caller then takes the host path).

        What :meth:`dreamvid.coherence.Coherence.dream` does for a frame — plan from the previous frame, dream,
        govern — with the same results (within float rounding) and the same draws from ``rng``.

        Parameters
        ----------
        src : uint8 (H, W, 3), the source frame
        video : VideoParams: the coherence mode and its settings, the gain limits
        carry : (prev_src, prev_out, bwd, fwd) for a frame that carries the previous one, else None (fresh)
        blend : "blend" mode's blend for this frame (default ``video.blend``)
        target : the governor's target in grey levels (None or <= 0: off)
        steps : steps per octave instead of ``params.steps`` (0 compiles without dreaming)
        """
        obj = self.objective(params)
        runner = self.frame_fn(obj, params)
        if runner is None:
            return None
        H, W = src.shape[:2]
        dream = _dream_shape((H, W))
        shapes = octave_shapes(*dream, octaves=params.octaves, scale=params.octave_scale)
        mode = None
        b = video.blend if blend is None else float(blend)
        if carry is not None and video.coherence == "anchor":
            mode = "anchor"
            if video.carried_octaves > 0:
                shapes = shapes[-video.carried_octaves:]
        elif carry is not None and video.coherence == "blend" and b > 0:
            mode = "blend"
        n = params.steps if steps is None else int(steps)
        cap = max(8, 1 << max(0, params.steps - 1).bit_length())  # few programs when the music varies the steps
        shifts = np.zeros((len(shapes), cap, 2), np.int32)
        if n:
            for i in range(len(shapes)):
                shifts[i, :n] = [_draw_shift(rng, params.jitter) for _ in range(n)]
        lo, hi = video.gain_limits
        scalars = {"step_size": params.step_size, "target": target or 0.0, "lo": lo, "hi": hi,
                   "tol": video.consistency, "alpha": video.photometric, "strength": video.anchor,
                   "carried_step": video.carried_step, "blend": b}
        out, gain, _ = runner(src, dream=dream, shapes=shapes, mode=mode, warp=video.warp,
                              prev=carry if mode else None, shifts=shifts, n_steps=n, weights=obj.weights,
                              scalars=scalars)
        return out, gain

    def dream(self, image: np.ndarray, params: DreamParams, *, rng: np.random.Generator | None = None,
              callback: Callable[[StepInfo], None] | None = None, anchor: Anchor | None = None) -> np.ndarray:
        """Dream a uint8 RGB HxWx3 image; returns uint8 RGB of the same shape. Same seed, same output."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB HxWx3, got {image.dtype} {image.shape}")
        return from_unit(self.dream_float(to_unit(image), params, rng=rng, callback=callback, anchor=anchor))
