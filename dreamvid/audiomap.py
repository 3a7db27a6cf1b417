"""The ``[audio]`` table of a preset: its keys, their ranges, and validation. Pure: no librosa, no numpy.

``config.resolve`` validates a preset's table here, and ``schedule.build_schedule`` maps the validated table onto
per-frame parameters; keeping the table's definition apart unties the two (config no longer imports schedule,
which imports config). See docs/presets.md for every key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .audio import FEATURE_NAMES
from .errors import ConfigError, suggest
from .layers import LAYER_NAMES

__all__ = ["AUDIO_KEYS", "OCTAVE_GRID", "analysis_options", "validate_audio_table"]

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
    "strength": "[low, high] multiplier of the dream's strength target ([video] strength) over the drive",
    "strength_by": "feature for `strength` (default: drive)",
    "pulse": "feature whose rises trigger pulses (default: onset)",
    "pulse_strength": "extra strength target at a pulse: strength x (1 + pulse_strength * pulse)",
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
    "strength": (0.0, 10.0, False),
    "layer_gain": (0.0, 10.0, False),
}
_SCALARS = {  # key: (lowest, highest, default)
    "attack": (0.0, 2.0, 0.01),
    "release": (0.0, 10.0, 0.25),
    "pulse_step": (0.0, 10.0, 0.0),
    "pulse_jitter": (0.0, 10.0, 0.0),
    "pulse_zoom": (-0.2, 0.2, 0.0),
    "pulse_strength": (0.0, 10.0, 0.0),
    "pulse_decay": (0.0, 5.0, 0.1),
}
_FEATURE_KEYS = {"drive": "rms", "pulse": "onset", **{f"{k}_by": None for k in _RANGES if k != "layer_gain"}}
# the keys that move a parameter (the others only configure them)
_REACTING = frozenset(("step", "steps", "jitter", "octave_scale", "blend", "zoom", "strength", "layers"))
_REACTING |= {"pulse_step", "pulse_jitter", "pulse_zoom", "pulse_strength"}
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
