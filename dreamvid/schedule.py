"""Per-frame dream parameters from audio features and a preset's ``[audio]`` table. Pure: no librosa, no I/O.

Every reaction maps a feature value ``x`` in [0, 1] linearly onto a ``[low, high]`` range given in the table
(``low`` at ``x = 0``, ``high`` at ``x = 1``; ``low > high`` inverts it), and ``react`` scales every reaction
around its neutral value (a multiplier of 1, or the base value)::

    value = neutral + react * (mapped - neutral)

so ``react = 0`` gives the base parameters on every frame, ``1`` the preset's amount and ``2`` double.
Pulses ride on the *rises* of a feature (by default the onset envelope): on the frame where a kick hits,
the pulse jumps by how much the feature rose, then decays with time constant ``pulse_decay``.

Keyframed schedules (``dreamvid.keyframes``) set the *base* of a parameter per frame; the music then acts on
that base as it acts on a constant one: a multiplier (``step``, ``steps``, ``jitter``, ``strength``, layer gains)
multiplies the keyframed value, and an absolute range (``octave_scale``, ``blend``) moves away from it by
``react``. Camera motion (``[motion]``: zoom, rotate, translate per frame) is carried as four curves beside
the music's zoom pulse.

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
from .config import LAYER_WEIGHT_RANGE, SCHEDULABLE, Config, DreamParams, LayerSpec
from .errors import ConfigError
from .keyframes import Timeline, parse

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
    target : float >= 0 or None
        The governor's target for this frame in grey levels: ``[video] strength`` (or its schedule) times
        ``strength``. Every front end dreams frame k to this target; None only for a schedule built without a
        config (no governor).
    motion : (zoom, rotate, translate_x, translate_y)
        The camera's motion on this frame (``[motion]``): scale, degrees counter-clockwise, fractions of the width
        and height. ``(1, 0, 0, 0)``: still.
    """

    dream: DreamParams
    blend: float
    zoom: float
    intensity: float
    strength: float = 1.0
    target: float | None = None
    motion: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)


class Schedule:
    """Per-frame parameters for a whole clip, or a range of its frames, as small arrays (built by
    :func:`build_schedule`; of a range, entry ``i`` is the range's ``i``-th frame).

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
        if c["octaves"][k] != b.octaves:
            changes["octaves"] = int(c["octaves"][k])
        weights = c["layer_weights"][k]
        if any(w != s.weight for w, s in zip(weights, b.layers, strict=True)):
            changes["layers"] = tuple(
                LayerSpec(s.name, float(w), s.channels) for w, s in zip(weights.tolist(), b.layers, strict=True)
            )
        dream = b.replace(**changes) if changes else b
        return FrameParams(
            dream=dream, blend=float(c["blend"][k]), zoom=float(c["zoom"][k]), intensity=float(c["intensity"][k]),
            strength=float(c["strength"][k]), target=float(c["target"][k]) if "target" in c else None,
            motion=(float(c["move_zoom"][k]), float(c["rotate"][k]), float(c["translate_x"][k]),
                    float(c["translate_y"][k])),
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
    def moving(self) -> bool:
        """Whether the camera moves on any frame (``[motion]``)."""
        c = self._c
        return bool(np.any(c["move_zoom"] != 1.0) or np.any(c["rotate"] != 0.0) or np.any(c["translate_x"] != 0.0)
                    or np.any(c["translate_y"] != 0.0))

    @property
    def motion(self) -> np.ndarray:
        """Camera motion per frame [shape=(n, 4), dtype=float64]: zoom (scale), rotate (degrees counter-clockwise),
        translate_x, translate_y (fractions of the frame's width and height)."""
        c = self._c
        return np.stack([c["move_zoom"], c["rotate"], c["translate_x"], c["translate_y"]], axis=1)

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
    config: Config | None = None,
    fps: float | None = None,
    frames: range | None = None,
) -> Schedule:
    """Map audio features through an ``[audio]`` table onto per-frame dream parameters.

    Parameters
    ----------
    features : AudioFeatures or None
        Analysis of the song with at least ``n_frames`` frames (extra frames are ignored); with ``frames``, of those
        frames (row ``i`` is film frame ``frames[i]``; its ``beat_frames`` are the film's). ``None``: no song.
    table : Mapping or None
        The preset's ``[audio]`` table (validated here).
    base : DreamParams
        The parameters every reaction is relative to.
    blend : float in [0, 1]
        The base share of the previous dream carried over (the video's ``blend``).
    n_frames : int >= 1
        Number of video frames of the film.
    react : float in [0, 10]
        Scale of every reaction around neutral: 0 = off, 1 = as in the preset, 2 = double.
    config : Config, optional
        Its schedule strings (``config.schedules``, layer weight schedules of ``base``), ``[motion]`` and
        ``[video] strength`` give the per-frame base values; without it every base is constant.
    fps : float, optional
        Frame rate of the schedule's time axis; default ``features.fps`` (25 without a song).
    frames : range, optional
        Build only these film frames (consecutive, within ``n_frames``; default all): entry ``i`` of the schedule
        is film frame ``frames[i]``, with the values the whole film's schedule has there, given the same features
        on those frames (the keyframes, ``t``, ``progress``, beats and ``%`` are the film's). Every reaction is a
        function of its frame's features but the pulse, which remembers the frames before it (decaying with
        ``pulse_decay``) and starts from silence at ``frames[0]``: start the range early enough for the frames
        read (14 × ``pulse_decay`` seconds earlier leaves less than 1e-6 of what came before).

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
    film = int(n_frames)
    frames = range(film) if frames is None else frames
    if not isinstance(frames, range) or frames.step != 1 or not 0 <= frames.start < frames.stop <= film:
        raise ValueError(f"frames must be a range of consecutive frames within the film's {film}, got {frames!r}")
    n = len(frames)
    react = _number("react", react, 0.0, 10.0)
    blend = _number("blend", blend, 0.0, 1.0)
    t = validate_audio_table(table, layers=base.layer_names)
    if features is not None and features.n_frames < n:
        raise ValueError(f"the audio features cover {features.n_frames} frames, fewer than the {n} asked for")
    curves = _base_curves(base, blend, frames, film, config=config, features=features, fps=fps)
    keyed = curves.pop("_keyed")
    reacting = any(bool(v) if k == "layers" else v != 0.0 for k, v in t.items() if k in _REACTING)
    if features is None or react == 0.0 or not reacting:
        if "target" in curves:
            curves["target"] = curves["target"] * curves["strength"]
        return Schedule(base=base, react=react, curves=curves)

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
        neutral = {"octave_scale": keyed["octave_scale"], "blend": keyed["blend"]}.get(key, 1.0)
        return neutral + react * (v - neutral)

    pulse = _pulse(feat(t.get("pulse", _FEATURE_KEYS["pulse"])), fps=features.fps, decay=t.get("pulse_decay", 0.1))

    step_mult = np.ones(n)
    if (m := mapped("step")) is not None:
        step_mult = m
    if t.get("pulse_step", 0.0):
        step_mult = step_mult * (1.0 + react * t["pulse_step"] * pulse)
    curves["step_size"] = keyed["step_size"] * np.maximum(step_mult, _MIN_STEP_MULT)

    if (m := mapped("steps")) is not None:
        curves["steps"] = np.maximum(1, np.round(keyed["steps"] * m)).astype(np.int64)

    jit_mult = np.ones(n)
    if (m := mapped("jitter")) is not None:
        jit_mult = np.maximum(m, 0.0)
    if t.get("pulse_jitter", 0.0):
        jit_mult = jit_mult * (1.0 + react * t["pulse_jitter"] * pulse)
    curves["jitter"] = np.maximum(0, np.round(keyed["jitter"] * jit_mult)).astype(np.int64)

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
    if "target" in curves:
        curves["target"] = curves["target"] * strength

    if "layers" in t:
        w = curves["layer_weights"]
        w0 = keyed["layer_weights"]
        for i, spec in enumerate(base.layers):
            entry = t["layers"].get(spec.name)
            if entry is None:
                continue
            lo, hi = entry["gain"]
            gain = 1.0 + react * (lo + (hi - lo) * feat(entry["by"]) - 1.0)
            w[:, i] = w0[:, i] * np.maximum(gain, 0.0)
        dead = ~np.any(w > 0, axis=1)  # every gain hit 0: only relative weights matter, so use the base's
        w[dead] = w0[dead]

    curves["intensity"] = react * drive
    curves["pulse"] = pulse
    return Schedule(base=base, react=react, curves=curves)


_INTS = ("steps", "jitter", "octaves")


def _base_curves(base: DreamParams, blend: float, frames: range, film: int, *, config: Config | None, features,
                 fps) -> dict:
    """The per-frame base values of the film's ``frames`` (of ``film``): the config's schedules evaluated on every
    frame, constants elsewhere.

    Also returns, under ``"_keyed"``, copies of the bases the music acts on.
    """
    n, n_layers = len(frames), len(base.layers)
    motion = config.motion if config is not None else None
    curves: dict[str, np.ndarray] = {
        "step_size": np.full(n, base.step_size, np.float64),
        "steps": np.full(n, base.steps, np.int64),
        "jitter": np.full(n, base.jitter, np.int64),
        "octaves": np.full(n, base.octaves, np.int64),
        "octave_scale": np.full(n, base.octave_scale, np.float64),
        "layer_weights": np.tile(np.asarray(base.layer_weights, np.float64), (n, 1)).reshape(n, n_layers),
        "blend": np.full(n, blend, np.float64),
        "zoom": np.ones(n, np.float64),
        "strength": np.ones(n, np.float64),
        "intensity": np.zeros(n, np.float64),
        "pulse": np.zeros(n, np.float64),
        "move_zoom": np.full(n, motion.zoom if motion else 1.0, np.float64),
        "rotate": np.full(n, motion.rotate if motion else 0.0, np.float64),
        "translate_x": np.full(n, motion.translate_x if motion else 0.0, np.float64),
        "translate_y": np.full(n, motion.translate_y if motion else 0.0, np.float64),
    }
    if config is not None:  # the governor's target before the music ([video] strength, or its schedule below)
        curves["target"] = np.full(n, float(config.video.strength), np.float64)
    schedules = dict(config.schedules) if config is not None else {}
    layer_schedules = [(i, s) for i, s in enumerate(base.layers) if s.schedule is not None]
    if schedules or layer_schedules:
        rate = fps if fps is not None else (features.fps if features is not None else 25.0)
        timeline = Timeline.of(film, rate, features, bpm=motion.bpm if motion else 0.0, frames=frames)
        for key, text in schedules.items():
            section, name = key.split(".")
            lo, hi = SCHEDULABLE[key]
            v = np.clip(parse(text, key=key).evaluate(timeline), lo, hi)
            if section == "motion":
                curves["move_zoom" if name == "zoom" else name] = v
            elif key == "video.strength":
                curves["target"] = v
            elif key == "video.blend":
                curves["blend"] = v
            elif name == "octave_scale":
                curves[name] = _quantise_octave(v, base.octave_scale)
            elif name in _INTS:
                curves[name] = np.round(v).astype(np.int64)
            else:
                curves[name] = v
        w = curves["layer_weights"]
        for i, spec in layer_schedules:
            w[:, i] = np.clip(parse(spec.schedule, key=f"dream.layers.{spec.name}").evaluate(timeline),
                              *LAYER_WEIGHT_RANGE)
        dead = ~np.any(w != 0, axis=1)
        if dead.any():
            k = frames.start + int(np.argmax(dead))
            raise ConfigError(f"every layer weight is 0 at t = {k / timeline.fps:.2f} s (frame {k}) in "
                              f"'{','.join(map(str, base.layers))}': keep at least one layer above 0 on every frame")
    curves["_keyed"] = {k: curves[k].copy() for k in ("step_size", "steps", "jitter", "octave_scale", "blend",
                                                      "layer_weights")}
    return curves


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


def for_song(config: Config, song, *, fps: float, react: float = 1.0) -> tuple[Schedule, AudioFeatures]:
    """Analyse ``song`` (a path or ``(y, sr)``) at ``fps`` and build ``config``'s schedule over its whole length,
    as a render of that length would (e.g. for ``dreamvid schedule``'s plot)."""
    from .audio import analyze

    features = analyze(song, fps=fps, **analysis_options(config.audio))
    sched = build_schedule(features, config.audio, base=config.dream, blend=config.video.blend,
                           n_frames=features.n_frames, react=react, config=config, fps=fps)
    return sched, features


def check_schedules(config: Config, *, song: bool) -> None:
    """What can be known of ``config``'s schedules before any work: a schedule that counts in beats needs a song or
    ``[motion] bpm``. (Values are evaluated, and checked to be finite, when the schedule is built.)"""
    if song or config.motion.bpm > 0:
        return
    texts = list(config.schedules) + [(f"dream.layers.{s.name}", s.schedule) for s in config.dream.layers
                                      if s.schedule is not None]
    for key, text in texts:
        if parse(text, key=key).uses_beats:
            raise ConfigError(f"{key} counts in beats, but there is no song: pass --song, or set [motion] bpm "
                              "(beats per minute)")
