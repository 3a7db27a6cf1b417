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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import FEATURE_NAMES, AudioFeatures
from .config import LAYER_NAMES, DreamParams, LayerSpec
from .errors import ConfigError, suggest

__all__ = [
    "AUDIO_KEYS",
    "OCTAVE_GRID",
    "FrameParams",
    "Schedule",
    "analysis_options",
    "build_schedule",
    "validate_audio_table",
]

#: Every key of the ``[audio]`` table, with a one-line meaning (docs/presets.md has the details).
AUDIO_KEYS: dict[str, str] = {
    "attack": "seconds for a feature envelope to rise (analysis)",
    "release": "seconds for a feature envelope to fall (analysis)",
    "drive": "feature that is the intensity: the default input of every range below",
    "step": "[low, high] step-size multiplier over the drive 0 -> 1",
    "step_by": "feature for `step` (default: drive)",
    "steps": "[low, high] multiplier of the number of gradient steps",
    "steps_by": "feature for `steps` (default: drive)",
    "jitter": "[low, high] multiplier of the jitter (roll) in pixels",
    "jitter_by": "feature for `jitter` (default: drive)",
    "octave_scale": "[low, high] octave scale (absolute, quantised to 0.05 steps)",
    "octave_scale_by": "feature for `octave_scale` (default: drive)",
    "blend": "[low, high] share of the previous dream carried over (absolute, 0..1)",
    "blend_by": "feature for `blend` (default: drive)",
    "zoom": "[low, high] zoom factor per frame (absolute, 1 = none)",
    "zoom_by": "feature for `zoom` (default: drive)",
    "pulse": "feature whose rises trigger pulses (default: onset)",
    "pulse_step": "extra step size at a pulse: step x (1 + pulse_step * pulse)",
    "pulse_jitter": "extra jitter at a pulse: jitter x (1 + pulse_jitter * pulse)",
    "pulse_zoom": "extra zoom at a pulse: zoom + pulse_zoom * pulse",
    "pulse_decay": "seconds for a pulse to fall to 1/e",
    "layer_gain": "[low, high] default gain range of the entries of [audio.layers]",
    "layers": "table: layer = feature, or layer = { by = feature, gain = [low, high] }",
}

#: Per-frame octave scales lie on a grid of this pitch through the base scale, so that the engine meets
#: only a few octave shapes (it compiles one program per shape).
OCTAVE_GRID = 0.05

_RANGES = {  # key: (lowest, highest, neutral is the base value (absolute) rather than a multiplier of 1)
    "step": (0.01, 10.0, False),
    "steps": (0.1, 10.0, False),
    "jitter": (0.0, 10.0, False),
    "octave_scale": (1.05, 3.0, True),
    "blend": (0.0, 1.0, True),
    "zoom": (0.8, 1.25, True),
    "layer_gain": (0.0, 10.0, False),
}
_SCALARS = {  # key: (lowest, highest, default)
    "attack": (0.0, 2.0, 0.01),
    "release": (0.0, 10.0, 0.25),
    "pulse_step": (0.0, 10.0, 0.0),
    "pulse_jitter": (0.0, 10.0, 0.0),
    "pulse_zoom": (-0.2, 0.2, 0.0),
    "pulse_decay": (0.0, 5.0, 0.1),
}
_FEATURE_KEYS = {"drive": "rms", "pulse": "onset", **{f"{k}_by": None for k in _RANGES if k != "layer_gain"}}
# the keys that move a parameter (the others only configure them)
_REACTING = frozenset(("step", "steps", "jitter", "octave_scale", "blend", "zoom", "layers"))
_REACTING |= {"pulse_step", "pulse_jitter", "pulse_zoom"}
_DEFAULT_LAYER_GAIN = (0.5, 2.0)
_LAYER_KEYS = ("by", "gain")
_MIN_STEP_MULT = 0.02  # step size never falls below 2% of the base
_OCTAVE_LIMITS = (1.05, 3.0)
_ZOOM_LIMITS = (0.5, 2.0)
_DOC = "see docs/presets.md"


# ---------------------------------------------------------------------------------------------------------------
# validation


def validate_audio_table(table: Mapping[str, Any] | None, *, layers: Iterable[str] | None = None) -> dict[str, Any]:
    """Check an ``[audio]`` table and return a normalised copy.

    Parameters
    ----------
    table : Mapping or None
        The table as read from TOML. ``None`` or ``{}`` means no reaction to the music.
    layers : iterable of str, optional
        The dream's layer names; when given, ``[audio.layers]`` entries for other layers are dropped (they have
        nothing to drive, e.g. after ``--layers`` overrides the preset's). Unknown layer names are errors.

    Returns
    -------
    dict
        The same keys, with numbers as floats, ranges as ``[low, high]`` lists of floats and each
        ``[audio.layers]`` entry as ``{"by": feature, "gain": [low, high]}``. The input is not modified.

    Raises
    ------
    ConfigError
        On an unknown key (with a suggestion), a value of the wrong type or out of range, or an unknown
        feature or layer name.
    """
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"[audio] must be a table of keys, got {type(table).__name__}; {_DOC}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in AUDIO_KEYS:
            raise ConfigError(f"unknown [audio] key '{key}'{suggest(str(key), AUDIO_KEYS)}; {_DOC} for the keys")
        if key in _SCALARS:
            lo, hi, _ = _SCALARS[key]
            out[key] = _number(f"audio.{key}", value, lo, hi)
        elif key in _RANGES:
            lo, hi, _ = _RANGES[key]
            out[key] = _pair(f"audio.{key}", value, lo, hi)
        elif key in _FEATURE_KEYS:
            out[key] = _feature(f"audio.{key}", value)
        else:  # layers
            out[key] = _layers(value, table.get("layer_gain"), layers)
    return out


def analysis_options(table: Mapping[str, Any] | None) -> dict[str, float]:
    """The keyword arguments of :func:`dreamvid.audio.analyze` that the table sets: ``attack``, ``release``."""
    table = validate_audio_table(table)
    return {k: float(table.get(k, _SCALARS[k][2])) for k in ("attack", "release")}


def _number(where: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number between {lo:g} and {hi:g}, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ConfigError(f"{where} = {value!r} is out of range: use a number between {lo:g} and {hi:g}")
    return v


def _pair(where: str, value: Any, lo: float, hi: float) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(
            f"{where} must be a [low, high] pair of numbers between {lo:g} and {hi:g} "
            f"(the values at feature 0 and 1), got {value!r}"
        )
    return [_number(where, v, lo, hi) for v in value]


def _feature(where: str, value: Any) -> str:
    if not isinstance(value, str) or value not in FEATURE_NAMES:
        hint = suggest(value, FEATURE_NAMES) if isinstance(value, str) else ""
        raise ConfigError(f"{where} = {value!r} is not an audio feature{hint}; choose from {', '.join(FEATURE_NAMES)}")
    return value


def _layers(value: Any, gain: Any, names: Iterable[str] | None) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f'audio.layers must be a table like [audio.layers] mixed3 = "low", got {value!r}')
    lo, hi, _ = _RANGES["layer_gain"]
    default_gain = _pair("audio.layer_gain", gain, lo, hi) if gain is not None else list(_DEFAULT_LAYER_GAIN)
    used = tuple(names) if names is not None else LAYER_NAMES
    out: dict[str, dict[str, Any]] = {}
    for layer, spec in value.items():
        where = f"audio.layers.{layer}"
        if layer not in LAYER_NAMES:
            raise ConfigError(f"unknown layer '{layer}' in [audio.layers]{suggest(str(layer), LAYER_NAMES)}; "
                              "choose from mixed0..mixed10")  # fmt: skip
        if isinstance(spec, str):
            out[layer] = {"by": _feature(where, spec), "gain": list(default_gain)}
        elif isinstance(spec, Mapping):
            for k in spec:
                if k not in _LAYER_KEYS:
                    raise ConfigError(f"unknown key '{k}' in {where}{suggest(str(k), _LAYER_KEYS)}; use by and gain")
            if "by" not in spec:
                raise ConfigError(f'{where} needs a feature: {layer} = {{ by = "low", gain = [0.5, 2.0] }}')
            out[layer] = {
                "by": _feature(f"{where}.by", spec["by"]),
                "gain": _pair(f"{where}.gain", spec["gain"], lo, hi) if "gain" in spec else list(default_gain),
            }
        else:
            raise ConfigError(f'{where} must be a feature name like "low" or a table {{ by = "low", gain = [0.5, 2] }}')
    # a mapping for a layer the objective does not use (e.g. after --layers) has nothing to drive: it is dropped
    return {k: v for k, v in out.items() if k in used}


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
        Zoom applied to the previous dream before it is carried over (1 = none, > 1 = zoom in).
    intensity : float >= 0
        How hard the music drives this frame: the drive feature (0..1) times ``react``; 0 without reaction.
    """

    dream: DreamParams
    blend: float
    zoom: float
    intensity: float


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
            dream=dream, blend=float(c["blend"][k]), zoom=float(c["zoom"][k]), intensity=float(c["intensity"][k])
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
