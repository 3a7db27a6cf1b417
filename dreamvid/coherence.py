"""Temporal coherence: what each frame of a render starts from, what holds it in place, and how strong it is.

One small interface between the flow (``video.flow``) and the dream (``dream.Dreamer``)::

    coh = Coherence(config.video)
    plan = coh.plan(src, prev_src, prev_out, flows=flows, cut=cut)     # init, anchor, weight for frame t
    raw = dreamer.dream_float(plan.init, params, rng=rng, anchor=plan.anchor)
    out = coh.finish(src, raw, target=strength)                        # the governor; remembers the frame

Three modes (``[video] coherence``):

``"anchor"`` (default)
    The previous output, carried along the flow (its *delta* over the footage in ``warp = "delta"``, the whole
    frame in ``"frame"``), is the frame's anchor ω, weighted per pixel by ``c`` = forward–backward consistency ×
    a soft photometric mask ``exp(−α‖I_t − warp(I_{t−1})‖²)`` (Lai et al. 2018, α = 50 on [0, 1] colours). The
    ascent starts from ``(1 − c)·src + c·ω`` and every step is pulled back toward ω (Ruder et al.'s short-term
    temporal loss, as a proximal step), so carried pixels stay where the footage moves them while disoccluded,
    inconsistent or relit pixels dream fresh from the footage: no smear, no ghosts.
``"blend"``
    The classic feedback of DeepDreamAnim: the warped previous dream is blended into the start image, then a
    fresh ascent runs. Kept for comparison; it flickers on real motion.
``"none"``
    Each frame is dreamed on its own.

The governor (``[video] strength`` > 0, grey levels) closes the loop on intensity: each frame's dream, measured
as the mean ``|out − src|``, is scaled to that frame's target (the base strength × the music's multiplier from
the schedule), within ``gain_limits``. A carried dream therefore never accumulates until it buries the footage,
and the music sets how strong the dream is on every frame, even where the dream has inertia.

Pure numpy/OpenCV. Everything a frame needs comes from the previous source and output frames, which the render keeps
on disk (lossless), so a resumed render gives the same frames as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from .config import VideoParams
from .dream import Anchor, to_unit
from .video.flow import coherent_init, consistency_mask, warp

__all__ = ["COHERENCE_MODES", "Coherence", "FramePlan", "photometric_mask"]

COHERENCE_MODES = ("anchor", "blend", "none")


@dataclass(frozen=True)
class FramePlan:
    """How to dream one frame.

    Attributes
    ----------
    init : float32 (H, W, 3) in [-1, 1], where the ascent starts (None where the frame was planned on the device)
    anchor : Anchor or None, what holds it (None: a fresh frame, a mode without an anchor, or planned on the device)
    mask : float32 (H, W) in [0, 1] or None, the forward–backward consistency mask of the flow (None without one);
        the anchor's weight also includes the photometric mask
    carried : bool, whether anything of the previous frame was carried
    """

    init: np.ndarray | None
    anchor: Anchor | None
    mask: np.ndarray | None
    carried: bool


def photometric_mask(src: np.ndarray, warped_prev_src: np.ndarray, *, alpha: float) -> np.ndarray:
    """``exp(−α‖I_t − warp(I_{t−1})‖²)`` per pixel, colours on [0, 1]: low where lighting changed or flow failed.

    Parameters
    ----------
    src, warped_prev_src : uint8 (H, W, 3)
    alpha : float >= 0 (0: all ones)

    Returns
    -------
    float32 (H, W) in (0, 1]
    """
    if alpha <= 0:
        return np.ones(src.shape[:2], np.float32)
    d = cv2.absdiff(src, warped_prev_src).astype(np.float32) * np.float32(1.0 / 255.0)
    d2 = cv2.transform(cv2.multiply(d, d), np.ones((1, 3), np.float32))  # Σ over channels, as one OpenCV op
    return cv2.exp(d2 * np.float32(-alpha)).reshape(src.shape[:2])


def _inside(flow: np.ndarray) -> np.ndarray:
    """float32 (H, W): 1 where ``x + flow[x]`` lies inside the frame, else 0."""
    h, w = flow.shape[:2]
    gx = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    gy = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    return ((gx >= 0) & (gx <= w - 1) & (gy >= 0) & (gy <= h - 1)).astype(np.float32)


class Coherence:
    """Plans each frame from the previous output and governs its strength. One per render.

    Parameters
    ----------
    video : VideoParams
        ``coherence``, ``warp``, ``blend``, ``consistency``, ``anchor``, ``carried_step``, ``carried_octaves``,
        ``photometric``, ``strength`` and ``gain_limits`` are used.
    """

    def __init__(self, video: VideoParams):
        self.v = video
        self.gain = 1.0  # the governor's gain on the last frame (for inspection; nothing depends on it)

    # -- before the dream ------------------------------------------------------------------------------------
    def plan(self, src: np.ndarray, prev_src: np.ndarray | None, prev_out: np.ndarray | None, *,
             flows: tuple[np.ndarray, np.ndarray] | None, cut: bool = False, blend: float | None = None) -> FramePlan:
        """The start image and anchor of frame ``t``.

        Parameters
        ----------
        src : uint8 (H, W, 3), source frame t
        prev_src, prev_out : uint8 (H, W, 3) or None, source and output frame t−1 (None: the first frame)
        flows : (bwd, fwd) float32 (H, W, 2) between ``src`` and ``prev_src`` (conventions of ``video.flow_pair``):
            the motion that carries the dream, from the render's ``video.MotionTracker`` (zero where the footage
            stands still, so a still pixel keeps its dream exactly: no resampling, a full anchor, no step)
        cut : a scene cut between t−1 and t: start fresh
        blend : the schedule's blend for this frame (``"blend"`` mode); default ``video.blend``
        """
        v = self.v
        fresh = FramePlan(to_unit(src), None, None, False)
        if prev_src is None or prev_out is None or flows is None or cut or v.coherence == "none":
            return fresh
        bwd, fwd = flows
        mask = consistency_mask(bwd, fwd, tol=v.consistency)
        if v.coherence == "blend":
            b = v.blend if blend is None else blend
            if b <= 0:
                return FramePlan(to_unit(src), None, mask, False)
            init, _ = coherent_init(src, prev_src, prev_out, mode=v.warp, blend=b, tol=v.consistency, flows=flows)
            return FramePlan(to_unit(init), None, mask, True)
        # anchor mode
        weight = mask * _inside(bwd)  # pixels whose flow leads out of the frame were not in it: they dream fresh
        if v.photometric > 0:
            weight = weight * photometric_mask(src, warp(prev_src, bwd), alpha=v.photometric)
        src_u = to_unit(src)
        if v.warp == "delta":
            delta = cv2.subtract(prev_out, prev_src, dtype=cv2.CV_32F) * np.float32(1.0 / 127.5)
            omega = src_u + warp(delta, bwd, cubic=True)
        else:
            omega = to_unit(warp(prev_out, bwd, cubic=True))
        np.clip(omega, -1.0, 1.0, out=omega)
        c = weight[..., None]
        init = src_u + c * (omega - src_u)
        # carried pixels take carried_step of each step where they moved a pixel or more (a warp there blurred the
        # dream, and the ascent brings its detail back), less where they moved less, none where the footage stood
        # still: a still shot stays still. Fresh pixels take whole steps.
        moved = np.minimum(cv2.magnitude(bwd[..., 0], bwd[..., 1]), 1.0)
        step = 1.0 - weight * (1.0 - np.float32(v.carried_step) * moved)
        anchor = Anchor(omega, weight, step, strength=v.anchor, octaves=v.carried_octaves)
        return FramePlan(init, anchor, mask, True)

    # -- the whole frame ---------------------------------------------------------------------------------------
    def dream(self, dreamer, src: np.ndarray, prev_src: np.ndarray | None, prev_out: np.ndarray | None, params, *,
              flows: tuple[np.ndarray, np.ndarray] | None, cut: bool = False, target: float | None = None,
              blend: float | None = None, rng: np.random.Generator | None = None, callback=None,
              memo: dict | None = None) -> tuple[np.ndarray, FramePlan]:
        """Plan, dream and govern frame ``t``: ``(out uint8 (H, W, 3), plan)``. What every front end calls
        (through ``pipeline.dream_frame``).

        ``params`` is the frame's :class:`~dreamvid.config.DreamParams`; ``rng`` defaults to one seeded with
        ``params.seed`` (the same jitter sequence on every frame, so a carried dream regrows the same detail).
        ``callback`` sees every step (``Dreamer.dream_float``; it may raise to cancel). ``memo``, a dict the caller
        keeps, remembers the last fresh frame's dream before the governor: dreaming the same fresh frame with the
        same parameters again only re-governs it (the UI's preview, when only the strength moved).

        Where the dreamer runs whole frames on the device (``Dreamer.dream_frame``: JAX, layer terms) the plan, the
        dream and the governor run there as one program, with the same results; the plan returned then holds only
        ``carried`` (its arrays stay on the device).
        """
        rng = rng if rng is not None else np.random.default_rng(params.seed)
        device = getattr(dreamer, "dream_frame", None)
        if device is not None and memo is None and callback is None:
            v = self.v
            carry = not (prev_src is None or prev_out is None or flows is None or cut or v.coherence == "none")
            carry = carry and not (v.coherence == "blend" and (v.blend if blend is None else blend) <= 0)
            got = device(src, params, rng=rng, video=v, carry=(prev_src, prev_out, *flows) if carry else None,
                         blend=blend, target=target)
            if got is not None:
                out, self.gain = got
                return out, FramePlan(None, None, None, carry)
        plan = self.plan(src, prev_src, prev_out, flows=flows, cut=cut, blend=blend)
        key = None
        if memo is not None and not plan.carried:
            key = (hashlib.blake2b(src.tobytes(), digest_size=16).hexdigest(), src.shape, repr(params))
        if key is not None and memo.get("key") == key:
            raw = memo["raw"]
        else:
            raw = dreamer.dream_float(plan.init, params, rng=rng, anchor=plan.anchor, callback=callback)
            if key is not None:
                memo.update(key=key, raw=raw)
        return self.finish(src, raw, target=target), plan

    # -- after the dream -------------------------------------------------------------------------------------
    def finish(self, src: np.ndarray, dreamed: np.ndarray, *, target: float | None = None) -> np.ndarray:
        """The output frame: the dream's delta over ``src`` scaled so its mean |delta| meets ``target``.

        Parameters
        ----------
        src : uint8 (H, W, 3)
        dreamed : float32 (H, W, 3) in [-1, 1], the ascent's result
        target : grey levels (0–255 scale); None or <= 0 leaves the dream as it is

        Returns
        -------
        uint8 (H, W, 3)
        """
        src_f = src.astype(np.float32)
        delta = (dreamed + 1.0) * np.float32(127.5) - src_f
        if target is None or target <= 0:
            self.gain = 1.0
        else:
            measured = float(np.mean(np.abs(delta)))
            lo, hi = self.v.gain_limits
            self.gain = float(np.clip(target / max(measured, 1e-3), lo, hi))
            delta *= np.float32(self.gain)
        return np.clip(np.rint(src_f + delta), 0, 255).astype(np.uint8)
