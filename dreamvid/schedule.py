"""Per-frame dream parameters from audio features and a preset's ``[audio]`` table. Pure: no librosa, no I/O.

Every reaction maps a feature value ``x`` in [0, 1] linearly onto a ``[low, high]`` range given in the table
(``low`` at ``x = 0``, ``high`` at ``x = 1``; ``low > high`` inverts it), and ``react`` scales every reaction
around its neutral value (a multiplier of 1, or the base value)::

    value = neutral + react * (mapped - neutral)

so ``react = 0`` gives the base parameters on every frame, ``1`` the preset's amount and ``2`` double.
Pulses ride on the *rises* of a feature (by default the onset envelope): on the frame where a kick hits,
the pulse jumps by how much the feature rose, then decays with time constant ``pulse_decay``.

See docs/presets.md for every key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import AudioFeatures
from .audiomap import (
    _FEATURE_KEYS,
    _OCTAVE_LIMITS,
    _REACTING,
    _ZOOM_LIMITS,
    AUDIO_KEYS,
    OCTAVE_GRID,
    _MIN_STEP_MULT,
    _number,
    analysis_options,
    validate_audio_table,
)
from .config import DreamParams, LayerSpec
from .errors import ConfigError

__all__ = [
    "AUDIO_KEYS",
    "OCTAVE_GRID",
    "FrameParams",
    "Schedule",
    "analysis_options",
    "build_schedule",
    "validate_audio_table",
]

# ---------------------------------------------------------------------------------------------------------------
# the schedule


@dataclass(frozen=True)
class FrameParams:
    """What the render loop needs for one frame.

    Attributes
    ----------
    dream : DreamParams
        Parameters of the dreamer for this frame.
    blend : float in [0, 1]
        Share of the warped previous dream carried into this frame.
    zoom : float > 0
        Zoom of the frame, footage and carried dream together (1 = none, > 1 = zoom in).
    intensity : float >= 0
        How hard the music drives this frame: the drive feature (0..1) times ``react``; 0 without reaction.
    strength : float >= 0
        Multiplier of the governor's strength target ([video] strength) on this frame; 1 without reaction.
    """

    dream: DreamParams
    blend: float
    zoom: float
    intensity: float
    strength: float = 1.0


class Schedule:
    """Per-frame parameters for a whole clip, as small arrays (built by :func:`build_schedule`).

    ``len(schedule)`` is the number of frames, ``schedule.frame(k)`` a :class:`FrameParams`; iterating yields
    every frame's. The per-frame curves are exposed read-only: ``step_size``, ``steps``, ``jitter``,
    ``octave_scale``, ``blend``, ``zoom``, ``layer_weights`` (n_frames × n_layers), ``intensity`` and
    ``pulse``.
    """

    def __init__(self, *, base: DreamParams, react: float, curves: Mapping[str, np.ndarray]) -> None:
        self.base = base
        self.react = float(react)
        self._c = {}
        for name, arr in curves.items():
            arr = np.ascontiguousarray(arr)
            arr.setflags(write=False)
            self._c[name] = arr
        self._n = len(self._c["blend"])

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[FrameParams]:
        return (self.frame(k) for k in range(self._n))

    def __repr__(self) -> str:
        return f"Schedule(n_frames={self._n}, react={self.react:g})"

    def frame(self, k: int) -> FrameParams:
        """Parameters of frame ``k`` (0-based; negative counts from the end)."""
        if not -self._n <= k < self._n:
            raise IndexError(f"frame {k} is outside the schedule's {self._n} frames")
        k = k % self._n
        c = self._c
        changes: dict[str, Any] = {}
        b = self.base
        if c["step_size"][k] != b.step_size:
            changes["step_size"] = float(c["step_size"][k])
        if c["steps"][k] != b.steps:
            changes["steps"] = int(c["steps"][k])
        if c["jitter"][k] != b.jitter:
            changes["jitter"] = int(c["jitter"][k])
        if c["octave_scale"][k] != b.octave_scale:
            changes["octave_scale"] = float(c["octave_scale"][k])
        weights = c["layer_weights"][k]
        if any(w != s.weight for w, s in zip(weights, b.layers, strict=True)):
            changes["layers"] = tuple(
                LayerSpec(s.name, float(w), s.channels) for w, s in zip(weights.tolist(), b.layers, strict=True)
            )
        dream = b.replace(**changes) if changes else b
        return FrameParams(
            dream=dream, blend=float(c["blend"][k]), zoom=float(c["zoom"][k]), intensity=float(c["intensity"][k]),
            strength=float(c["strength"][k]),
        )

    def curves(self) -> dict[str, np.ndarray]:
        """All per-frame curves by name (read-only arrays), e.g. for a report or a plot."""
        return dict(self._c)

    @property
    def step_size(self) -> np.ndarray:
        """Step size per frame [shape=(n,), dtype=float64, > 0]."""
        return self._c["step_size"]

    @property
    def steps(self) -> np.ndarray:
        """Gradient steps per octave per frame [shape=(n,), dtype=int64, >= 1]."""
        return self._c["steps"]

    @property
    def jitter(self) -> np.ndarray:
        """Jitter in pixels per frame [shape=(n,), dtype=int64, >= 0]."""
        return self._c["jitter"]

    @property
    def octave_scale(self) -> np.ndarray:
        """Octave scale per frame [shape=(n,), dtype=float64], on the 0.05 grid through the base scale."""
        return self._c["octave_scale"]

    @property
    def layer_weights(self) -> np.ndarray:
        """Weight of each of ``base.layers`` per frame [shape=(n, n_layers), dtype=float64, >= 0]."""
        return self._c["layer_weights"]

    @property
    def blend(self) -> np.ndarray:
        """Share of the previous dream carried over per frame [shape=(n,), dtype=float64, in [0, 1]]."""
        return self._c["blend"]

    @property
    def zoom(self) -> np.ndarray:
        """Zoom per frame [shape=(n,), dtype=float64, 1 = none]."""
        return self._c["zoom"]

    @property
    def intensity(self) -> np.ndarray:
        """Drive feature times ``react`` per frame [shape=(n,), dtype=float64, in [0, react]]."""
        return self._c["intensity"]

    @property
    def strength(self) -> np.ndarray:
        """Multiplier of the strength target per frame [shape=(n,), dtype=float64, >= 0, 1 = the base]."""
        return self._c["strength"]

    @property
    def pulse(self) -> np.ndarray:
        """Pulse envelope per frame [shape=(n,), dtype=float64, in [0, 1]] (before ``react``)."""
        return self._c["pulse"]


def build_schedule(
    features: AudioFeatures | None,
    table: Mapping[str, Any] | None,
    *,
    base: DreamParams,
    blend: float,
    n_frames: int,
    react: float = 1.0,
) -> Schedule:
    """Map audio features through an ``[audio]`` table onto per-frame dream parameters.

    Parameters
    ----------
    features : AudioFeatures or None
        Analysis of the song with at least ``n_frames`` frames (extra frames are ignored). ``None``: no song.
    table : Mapping or None
        The preset's ``[audio]`` table (validated here).
    base : DreamParams
        The parameters every reaction is relative to.
    blend : float in [0, 1]
        The base share of the previous dream carried over (the video's ``blend``).
    n_frames : int >= 1
        Number of video frames.
    react : float in [0, 10]
        Scale of every reaction around neutral: 0 = off, 1 = as in the preset, 2 = double.

    Returns
    -------
    Schedule
        With ``features`` None, an empty table or ``react = 0``, every frame is exactly ``base``, ``blend``,
        zoom 1 and intensity 0. Otherwise ``steps >= 1``, ``step_size > 0``, ``jitter >= 0``, layer weights
        ``>= 0`` with at least one above 0, ``blend`` in [0, 1], and ``octave_scale`` on the 0.05 grid
        through ``base.octave_scale``.

    Raises
    ------
    ConfigError
        The table is invalid, or ``react`` / ``blend`` is out of range.
    ValueError
        ``features`` covers fewer than ``n_frames`` frames.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ConfigError(f"n_frames must be a whole number >= 1, got {n_frames!r}")
    n = int(n_frames)
    react = _number("react", react, 0.0, 10.0)
    blend = _number("blend", blend, 0.0, 1.0)
    t = validate_audio_table(table, layers=base.layer_names)
    n_layers = len(base.layers)
    curves = {
        "step_size": np.full(n, base.step_size, np.float64),
        "steps": np.full(n, base.steps, np.int64),
        "jitter": np.full(n, base.jitter, np.int64),
        "octave_scale": np.full(n, base.octave_scale, np.float64),
        "layer_weights": np.tile(np.asarray(base.layer_weights, np.float64), (n, 1)).reshape(n, n_layers),
        "blend": np.full(n, blend, np.float64),
        "zoom": np.ones(n, np.float64),
        "strength": np.ones(n, np.float64),
        "intensity": np.zeros(n, np.float64),
        "pulse": np.zeros(n, np.float64),
    }
    reacting = any(bool(v) if k == "layers" else v != 0.0 for k, v in t.items() if k in _REACTING)
    if features is None or react == 0.0 or not reacting:
        return Schedule(base=base, react=react, curves=curves)
    if features.n_frames < n:
        raise ValueError(f"the audio features cover {features.n_frames} frames, fewer than the {n} asked for")

    def feat(name: str) -> np.ndarray:
        return np.asarray(features.feature(name)[:n], dtype=np.float64)

    drive_name = t.get("drive", _FEATURE_KEYS["drive"])
    drive = feat(drive_name)

    def mapped(key: str) -> np.ndarray | None:
        """The range ``key`` over its feature, moved toward neutral by react (None if the key is absent)."""
        if key not in t:
            return None
        lo, hi = t[key]
        x = feat(t[f"{key}_by"]) if f"{key}_by" in t else drive
        v = lo + (hi - lo) * x
        neutral = {"octave_scale": base.octave_scale, "blend": blend}.get(key, 1.0)
        return neutral + react * (v - neutral)

    pulse = _pulse(feat(t.get("pulse", _FEATURE_KEYS["pulse"])), fps=features.fps, decay=t.get("pulse_decay", 0.1))

    step_mult = np.ones(n)
    if (m := mapped("step")) is not None:
        step_mult = m
    if t.get("pulse_step", 0.0):
        step_mult = step_mult * (1.0 + react * t["pulse_step"] * pulse)
    curves["step_size"] = base.step_size * np.maximum(step_mult, _MIN_STEP_MULT)

    if (m := mapped("steps")) is not None:
        curves["steps"] = np.maximum(1, np.round(base.steps * m)).astype(np.int64)

    jit_mult = np.ones(n)
    if (m := mapped("jitter")) is not None:
        jit_mult = np.maximum(m, 0.0)
    if t.get("pulse_jitter", 0.0):
        jit_mult = jit_mult * (1.0 + react * t["pulse_jitter"] * pulse)
    curves["jitter"] = np.maximum(0, np.round(base.jitter * jit_mult)).astype(np.int64)

    if (m := mapped("octave_scale")) is not None:
        curves["octave_scale"] = _quantise_octave(m, base.octave_scale)

    if (m := mapped("blend")) is not None:
        curves["blend"] = np.clip(m, 0.0, 1.0)

    zoom = np.ones(n)
    if (m := mapped("zoom")) is not None:
        zoom = m
    if t.get("pulse_zoom", 0.0):
        zoom = zoom + react * t["pulse_zoom"] * pulse
    curves["zoom"] = np.clip(zoom, *_ZOOM_LIMITS)

    strength = np.ones(n)
    if (m := mapped("strength")) is not None:
        strength = np.maximum(m, 0.0)
    if t.get("pulse_strength", 0.0):
        strength = strength * (1.0 + react * t["pulse_strength"] * pulse)
    curves["strength"] = strength

    if "layers" in t:
        w = curves["layer_weights"]
        for i, spec in enumerate(base.layers):
            entry = t["layers"].get(spec.name)
            if entry is None:
                continue
            lo, hi = entry["gain"]
            gain = 1.0 + react * (lo + (hi - lo) * feat(entry["by"]) - 1.0)
            w[:, i] = spec.weight * np.maximum(gain, 0.0)
        dead = ~np.any(w > 0, axis=1)  # every gain hit 0: only relative weights matter, so use the base's
        w[dead] = np.asarray(base.layer_weights, np.float64)

    curves["intensity"] = react * drive
    curves["pulse"] = pulse
    return Schedule(base=base, react=react, curves=curves)


def _pulse(x: np.ndarray, *, fps: float, decay: float) -> np.ndarray:
    """Envelope of the rises of ``x``: jumps by ``max(0, x[k] - x[k-1])`` and decays with time constant ``decay``.

    Returns float64 in [0, 1] (for ``x`` in [0, 1]).
    """
    rise = np.maximum(0.0, np.diff(x, prepend=0.0))
    d = math.exp(-1.0 / (fps * decay)) if decay > 0 else 0.0
    out = np.empty_like(rise)
    p = 0.0
    for k, r in enumerate(rise.tolist()):
        p = max(r, p * d)
        out[k] = p
    return out


def _quantise_octave(v: np.ndarray, base: float) -> np.ndarray:
    """Snap octave scales onto the grid ``base + i * OCTAVE_GRID`` within the allowed limits."""
    i = np.round((v - base) / OCTAVE_GRID)
    lo_i = math.ceil((_OCTAVE_LIMITS[0] - base) / OCTAVE_GRID - 1e-9)
    hi_i = math.floor((_OCTAVE_LIMITS[1] - base) / OCTAVE_GRID + 1e-9)
    i = np.clip(i, lo_i, hi_i)
    return np.where(i == 0, base, np.round(base + i * OCTAVE_GRID, 6))
