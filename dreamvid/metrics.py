"""Measures of a render, accumulated frame by frame (pure, streaming, no file I/O).

* :class:`StabilityMeter` — how the output holds: the standard warping error of the output relative to the
  footage's (``temporal_stability``), the output's change on still pixels (``still_change``) and the warping error
  on moving ones (``moving_stability``), all with the measures' own flow on the source (:func:`measure_flows`).
* :class:`StrengthMeter` — dream strength: the mean absolute change the dream made, 0–255 scale.
* :class:`GainMeter` — dream gain: the network's objective on the output over the same on the source,
  averaged over the frames it sees (a smear or a blur keeps strength and stability but loses gain).
* :func:`pearson` — correlation, for music-sync measures (e.g. per-frame strength vs. loudness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .video.flow import consistency_mask, flow_pair, warp

__all__ = ["GAIN_EVERY", "GAIN_LAYERS", "GainMeter", "Measures", "PairMaps", "StabilityMeter", "StrengthMeter",
           "mean_change", "measure_flows", "pair_maps", "pearson"]

#: The objective of ``dream_gain``: the sum of these layers' mean activations (trained weights).
GAIN_LAYERS = "mixed3:1,mixed5:1"


def _absdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mean over channels of |a − b|, float32 (H, W)."""
    if a.dtype == b.dtype == np.uint8:  # exact in uint8; OpenCV's is vectorised
        d = cv2.absdiff(a, b).astype(np.float32)
    else:
        d = np.abs(a.astype(np.float32) - b.astype(np.float32))
    if d.ndim == 2:
        return d
    # the channel mean as one matrix-vector product: numpy's reduction over a last axis of 3 is slow
    c = d.shape[2]
    return (d.reshape(-1, c) @ np.full(c, 1.0 / c, np.float32)).reshape(d.shape[:2])


def _mean_where(values: np.ndarray, mask: np.ndarray) -> float:
    """The mean of float32 (H, W) ``values`` where the bool (H, W) ``mask`` is set (OpenCV's masked mean)."""
    return float(cv2.mean(values, mask=mask.view(np.uint8))[0])


#: a still pixel: the footage changes by less than this many grey levels (channels averaged) from one frame to the
#: next, and its flow is under :data:`STILL_FLOW` px
STILL_LEVELS = 2.0
STILL_FLOW = 1.0
#: a pair of frames with fewer consistent pixels than this share is skipped (a cut, a flash, a whip pan)
MIN_CONSISTENT = 0.05


def measure_flows(cur: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The measures' own flow between two source frames: OpenCV DIS (medium preset) at the frames' size,
    ``(bwd, fwd)`` as :func:`~dreamvid.video.flow.flow_pair`. Whatever carried the dream, the measures use this."""
    return flow_pair(cur, prev, method="dis", max_side=0)


@dataclass(frozen=True)
class PairMaps:
    """The per-pixel maps of one pair of consecutive frames (all float32 or bool (H, W)).

    Attributes
    ----------
    consistent : bool, the forward–backward check of Lai et al. (2018) passes
    still : bool, the footage changed by under ``STILL_LEVELS`` grey levels and its flow is under ``STILL_FLOW`` px
    moving : bool, consistent and its flow is ``STILL_FLOW`` px or more
    out_error, src_error : |frame − warp(previous frame, bwd)|, channels averaged (bilinear warp), output and source
    out_change, src_change : |frame − previous frame|, channels averaged, output and source
    speed : |bwd| in px
    """

    consistent: np.ndarray
    still: np.ndarray
    moving: np.ndarray
    out_error: np.ndarray
    src_error: np.ndarray
    out_change: np.ndarray
    src_change: np.ndarray
    speed: np.ndarray


def pair_maps(prev_src: np.ndarray, src: np.ndarray, prev_out: np.ndarray, out: np.ndarray, *,
              flows: tuple[np.ndarray, np.ndarray] | None = None) -> PairMaps:
    """The per-pixel measures of one pair (uint8 RGB (H, W, 3), all the same size): see :class:`PairMaps`.

    ``flows`` is :func:`measure_flows` ``(src, prev_src)`` if the caller has it (computed if None).
    """
    bwd, fwd = flows if flows is not None else measure_flows(src, prev_src)
    # |f + b(warped)|² < 0.01 (|f|² + |b(warped)|²) + 0.5, nothing else (no motion boundaries, erosion or feathering)
    consistent = consistency_mask(bwd, fwd, tol=1.0, motion_boundaries=False, erode=0, soften=0) > 0.5
    speed = cv2.magnitude(bwd[..., 0], bwd[..., 1])
    src_change = _absdiff(src, prev_src)
    fast = speed >= STILL_FLOW
    return PairMaps(consistent=consistent, still=(src_change < STILL_LEVELS) & ~fast, moving=consistent & fast,
                    out_error=_absdiff(out, warp(prev_out, bwd)), src_error=_absdiff(src, warp(prev_src, bwd)),
                    out_change=_absdiff(out, prev_out), src_change=src_change, speed=speed)


class StabilityMeter:
    """How the output holds from frame to frame, measured against the footage with the measures' own flow.

    Three measures, from every pair of consecutive frames (:func:`pair_maps`; DIS flow on the *source* at its
    size, never the flow that carried the dream, so a render cannot score well by following its own flow's errors):

    * :attr:`value` (``temporal_stability``): the warping error of Lai et al. (2018): the previous frame warped
      onto the current one along the backward flow (bilinear), the mean absolute difference (channels averaged)
      over the pixels that pass the forward–backward check; pairs with under 5 % such pixels are skipped (cuts);
      the mean over pairs for the output divided by the same for the source (1.0: as stable as the footage);
    * :attr:`still_change` (``still_change``): the output's mean raw change a frame, in grey levels, on still
      pixels (the footage changes by under 2 grey levels and the flow is under 1 px); :attr:`still_change_source`
      is the footage's own there;
    * :attr:`moving_value` (``moving_stability``): the warping-error ratio, output over source, on the consistent
      pixels whose flow is 1 px or more (pooled over all pairs).

    Attributes
    ----------
    frames : int, pairs counted in :attr:`value`
    """

    def __init__(self) -> None:
        self.frames = 0
        self.skipped = 0
        self._out = 0.0  # Σ over pairs of each pair's mean error over its consistent pixels
        self._src = 0.0
        self._still = [0.0, 0.0, 0.0]  # pixels, Σ output change, Σ footage change
        self._moving = [0.0, 0.0, 0.0]  # pixels, Σ output error, Σ footage error

    def update(self, src_prev: np.ndarray, src_cur: np.ndarray, out_prev: np.ndarray, out_cur: np.ndarray, *,
               flows: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add one pair of consecutive frames (uint8 RGB (H, W, 3), all the same size). ``flows``:
        :func:`measure_flows` ``(src_cur, src_prev)`` if already computed."""
        self.add(pair_maps(src_prev, src_cur, out_prev, out_cur, flows=flows))

    def add(self, m: PairMaps) -> None:
        """Add one pair's maps."""
        n = int(np.count_nonzero(m.consistent))
        if n >= MIN_CONSISTENT * m.consistent.size:
            self._out += _mean_where(m.out_error, m.consistent)
            self._src += _mean_where(m.src_error, m.consistent)
            self.frames += 1
        else:
            self.skipped += 1
        for acc, mask, out, src in ((self._still, m.still, m.out_change, m.src_change),
                                    (self._moving, m.moving, m.out_error, m.src_error)):
            k = int(np.count_nonzero(mask))
            if k:
                acc[0] += k
                acc[1] += _mean_where(out, mask) * k
                acc[2] += _mean_where(src, mask) * k

    @property
    def output_error(self) -> float:
        """The output's mean warping error over the pairs, 0–255 scale (nan before any pair)."""
        return self._out / self.frames if self.frames else math.nan

    @property
    def source_error(self) -> float:
        """The footage's mean warping error over the pairs, 0–255 scale (nan before any pair)."""
        return self._src / self.frames if self.frames else math.nan

    @property
    def value(self) -> float:
        """``temporal_stability``: output error / source error (nan before any pair, or for a frozen source)."""
        return self._out / self._src if self.frames and self._src > 0 else math.nan

    @property
    def still_change(self) -> float:
        """``still_change``: the output's mean change a frame on still pixels, grey levels (nan: none seen)."""
        return self._still[1] / self._still[0] if self._still[0] else math.nan

    @property
    def still_change_source(self) -> float:
        """The footage's own mean change a frame on those pixels (its noise), grey levels."""
        return self._still[2] / self._still[0] if self._still[0] else math.nan

    @property
    def moving_value(self) -> float:
        """``moving_stability``: the warping-error ratio on moving consistent pixels (nan: none seen)."""
        return self._moving[1] / self._moving[2] if self._moving[0] and self._moving[2] > 0 else math.nan

    def state(self) -> dict:
        """The accumulators, as plain JSON-able values."""
        return {"frames": self.frames, "skipped": self.skipped, "out": self._out, "src": self._src,
                "still": list(self._still), "moving": list(self._moving)}

    def load(self, state: dict) -> None:
        """Continue from a :meth:`state`."""
        self.frames = int(state.get("frames", 0))
        self.skipped = int(state.get("skipped", 0))
        self._out = float(state.get("out", 0.0))
        self._src = float(state.get("src", 0.0))
        self._still = [float(v) for v in state.get("still", [0.0] * 3)]
        self._moving = [float(v) for v in state.get("moving", [0.0] * 3)]


class StrengthMeter:
    """Running mean of ``|out − src|`` over all pixels and channels, 0–255 scale (``dream_strength``).

    Attributes
    ----------
    frames : int
    last : float
        The mean of the most recent frame (nan before any update), handy for per-frame curves.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.last = math.nan
        self._sum = 0.0
        self._n = 0

    def update(self, src: np.ndarray, out: np.ndarray) -> float:
        """Add one frame pair (uint8 RGB, same shape) and return that frame's mean difference."""
        return self.add(mean_change(src, out), out.size)

    def add(self, mean: float, size: int) -> float:
        """Add one frame's mean change (:func:`mean_change`) over ``size`` values; returns it."""
        self._sum += mean * size
        self._n += size
        self.frames += 1
        self.last = mean
        return mean

    @property
    def value(self) -> float:
        """Mean over every frame so far (nan before any update)."""
        return self._sum / self._n if self._n else math.nan


def mean_change(src: np.ndarray, out: np.ndarray) -> float:
    """The mean ``|out − src|`` over all pixels and channels, 0–255 scale: a frame's dream strength."""
    if src.shape != out.shape:
        raise ValueError(f"frames differ in shape: {src.shape} vs {out.shape}")
    if src.dtype == out.dtype == np.uint8:  # exact, and about 10x faster at 1080p (it runs on the dream's thread)
        s = float(sum(cv2.sumElems(cv2.absdiff(out, src))))
    else:
        s = float(np.abs(out.astype(np.int16) - src.astype(np.int16)).sum(dtype=np.int64))
    return s / out.size


class GainMeter:
    """Running mean of ``objective(out) / objective(src)`` (``dream_gain``).

    Parameters
    ----------
    objective : callable
        uint8 RGB (H, W, 3) -> float: the objective of :data:`GAIN_LAYERS` (e.g. ``Dreamer.objective_value``).
        The meter itself runs no network, so it stays pure.

    Attributes
    ----------
    frames : int
    last : float, the ratio of the most recent frame (nan before any update)
    """

    def __init__(self, objective) -> None:
        self.objective = objective
        self.frames = 0
        self.last = math.nan
        self._sum = 0.0

    def update(self, src: np.ndarray, out: np.ndarray) -> float:
        base = float(self.objective(src))
        ratio = float(self.objective(out)) / base if abs(base) > 1e-9 else math.nan
        if math.isfinite(ratio):
            self._sum += ratio
            self.frames += 1
        self.last = ratio
        return ratio

    def state(self) -> dict[str, float]:
        return {"frames": self.frames, "sum": self._sum}

    def load(self, state: dict[str, float]) -> None:
        self.frames = int(state.get("frames", 0))
        self._sum = float(state.get("sum", 0.0))

    @property
    def value(self) -> float:
        """Mean ratio over the frames measured (nan before any)."""
        return self._sum / self.frames if self.frames else math.nan


def pearson(a, b) -> float:
    """Pearson correlation of two equally long sequences, ignoring pairs where either is nan/inf.

    Returns
    -------
    float
        In [-1, 1]; 0.0 when fewer than two valid pairs remain or either sequence is constant.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"sequences differ in length: {x.size} vs {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or x.min() == x.max() or y.min() == y.max():
        return 0.0
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if den == 0.0:
        return 0.0
    return float(np.clip((x * y).sum() / den, -1.0, 1.0))


GAIN_EVERY = 10  # dream_gain is measured on every 10th frame (two network passes each)


#: the stability measures take the pair (k − 1, k) of every frame k up to this many pixels, and of every
#: ``ceil(pixels / STABILITY_PIXELS)``-th frame above (a 1080p pair costs ~1.7 s of CPU on 2 cores: docs/measures.md)
STABILITY_PIXELS = 1_000_000


class Measures:
    """Every measure of a render, streaming: one object per render (or chunk), fed each finished frame in order.

    ``update`` runs behind the dream (the render's measure thread); ``state_dict`` / ``load_state_dict`` carry the
    accumulators through an interruption, so a resumed render reports what an uninterrupted one does; ``report``
    gives the report's keys.

    Parameters
    ----------
    objective : callable or None
        uint8 RGB (H, W, 3) -> float, the objective of :data:`GAIN_LAYERS` (``dream_gain``); None: not measured.
    level : float array (n,) or None
        The song's loudness per frame of the film (``audio_sync`` correlates it with each frame's strength);
        None: no song.
    gain_every : int
        ``dream_gain`` is measured on frames ``k`` with ``k % gain_every == 0``.
    stability_every : int or None
        The stability measures take the pair ending at frame ``k`` where ``k % stability_every == 0``; None: every
        frame up to :data:`STABILITY_PIXELS` pixels, fewer above.
    """

    def __init__(self, *, objective=None, level=None, gain_every: int = GAIN_EVERY,
                 stability_every: int | None = None) -> None:
        self.level = level
        self.gain_every = int(gain_every)
        self.stability_every = stability_every
        self.stability = StabilityMeter()
        self.strength = StrengthMeter()
        self.gain = GainMeter(objective) if objective is not None else None
        self._sync = [0.0] * 6  # n, Σx, Σy, Σxx, Σyy, Σxy

    def update(self, k: int, src: np.ndarray, out: np.ndarray, *, prev_src: np.ndarray | None,
               prev_out: np.ndarray | None, cut: bool = False, flows=None, mask: np.ndarray | None = None,
               intensity: float | None = None) -> float:
        """Add film frame ``k`` (source and output, uint8 RGB) and return its strength (mean ``|out − src|``).

        ``prev_src`` / ``prev_out`` are the frame before (None at the first frame of a run); ``cut`` says a shot
        starts at ``k``; ``intensity`` is the frame's :func:`mean_change` if already known. The stability measures
        use their own flow (:func:`measure_flows`), not the one that carried the dream: ``flows`` (what the render's
        motion tracker returned) is used only for the raw DIS estimate it may hold (``flows.measured``, the same
        :func:`measure_flows` of these frames, computed once for both); ``mask`` is not used.
        """
        intensity = self.strength.update(src, out) if intensity is None else self.strength.add(intensity, out.size)
        if self.level is not None:
            _sync_add(self._sync, float(self.level[k]), intensity)  # the song's own RMS, unsmoothed
        every = self.stability_every or max(1, math.ceil(src.shape[0] * src.shape[1] / STABILITY_PIXELS))
        if prev_src is not None and prev_out is not None and not cut and k % every == 0:
            measured = getattr(flows, "measured", None)
            self.stability.update(prev_src, src, prev_out, out, flows=measured)
        if self.gain is not None and k % self.gain_every == 0:
            self.gain.update(src, out)
        return intensity

    def state_dict(self) -> dict:
        """The accumulators, as plain JSON-able values (a few numbers: state.json holds them every frame)."""
        return {"stability": self.stability.state(), "strength": dict(vars(self.strength)),
                "gain": self.gain.state() if self.gain is not None else {}, "sync": list(self._sync)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.stability.load(state.get("stability") or {})
        for key, value in (state.get("strength") or {}).items():
            if key in vars(self.strength):
                setattr(self.strength, key, value)
        if self.gain is not None:
            self.gain.load(state.get("gain") or {})
        self._sync = [float(v) for v in state.get("sync", self._sync)]

    def report(self) -> dict:
        """``temporal_stability``, ``still_change``, ``still_change_source``, ``moving_stability``,
        ``dream_strength``, ``dream_gain`` and ``audio_sync`` (None where not measured)."""
        st = self.stability
        return {"temporal_stability": _num(st.value), "still_change": _num(st.still_change),
                "still_change_source": _num(st.still_change_source), "moving_stability": _num(st.moving_value),
                "dream_strength": _num(self.strength.value),
                "dream_gain": _num(self.gain.value) if self.gain is not None else None,
                "audio_sync": _num(_sync_value(self._sync)) if self.level is not None else None}


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _sync_add(acc: list[float], x: float, y: float) -> None:
    acc[0] += 1
    acc[1] += x
    acc[2] += y
    acc[3] += x * x
    acc[4] += y * y
    acc[5] += x * y


def _sync_value(acc: list[float]) -> float:
    """Pearson correlation from running sums (constant memory)."""
    n, sx, sy, sxx, syy, sxy = acc
    if n < 2:
        return math.nan
    vx, vy = n * sxx - sx * sx, n * syy - sy * sy
    if vx <= 1e-12 or vy <= 1e-12:
        return 0.0
    return (n * sxy - sx * sy) / math.sqrt(vx * vy)
