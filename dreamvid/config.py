"""Frozen configuration dataclasses, TOML loading, and the preset < --config < flags merge.

A *config dict* is the nested plain-dict form of a TOML file::

    [dream]   layers, octaves, octave_scale, steps, step_size, jitter, tile_size, tile_overlap, seed,
              creativity (a lever over layers/step_size/steps/octaves: dreamvid.creativity),
              guide, guide_weight, dream_class, class_weight (dreamvid.dream.objective)
    [video]   flow, warp, blend, consistency, scene_cut, flow_max_side, motion_window
    [motion]  zoom, rotate, translate_x, translate_y (per frame), bpm, hold, sharpen
    [audio]   see ``dreamvid.schedule`` and docs/presets.md

A key of :data:`SCHEDULABLE` (and a layer's weight) may be a schedule string instead of a number: keyframes
(``"0:0.01, 8b:0.03"``) or an expression (``"0.02 + 0.01*onset"``), parsed by ``dreamvid.keyframes``. The
dataclass field then holds a representative number (the first keyframe's value) and ``Config.schedules`` the
string, which ``schedule.build_schedule`` evaluates on every frame.

``resolve()`` merges dicts (later wins), checks every key and value, and returns a frozen :class:`Config`.
Nothing here mutates its inputs, and checking reads no file: a guide image is looked up where it is used
(``targets.find_guide``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audiomap import validate_audio_table
from .errors import ConfigError, suggest
from .layers import LAYER_CHANNELS, LAYER_NAMES
from .targets import check_class, check_guide

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



@dataclass(frozen=True)
class LayerSpec:
    """One term of the objective: ``weight * mean(activation[..., channels])``."""

    name: str
    weight: float = 1.0
    channels: tuple[int, ...] = ()  # empty: all channels
    schedule: str | None = None  # the weight as a schedule string (``weight`` is then its first value)

    def __str__(self) -> str:
        ch = f"[{','.join(map(str, self.channels))}]" if self.channels else ""
        if self.schedule is not None:
            return f"{self.name}{ch}:{{{self.schedule}}}"
        return f"{self.name}{ch}:{self.weight:g}"


@dataclass(frozen=True)
class DreamParams:
    """Everything one call of the dreamer needs. Video modulates these per frame with ``replace``."""

    layers: tuple[LayerSpec, ...] = (LayerSpec("mixed3", 1.0), LayerSpec("mixed5", 1.5))
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 0.015
    jitter: int = 32
    tile_size: int = 512
    tile_overlap: int = 64
    seed: int = 0
    creativity: float | None = None  # the lever that set layers/step_size/steps/octaves (dreamvid.creativity)
    guide: str = ""  # a guide image: dream toward its features (dreamvid.dream.objective)
    guide_weight: float = 1.0  # the guide's share of the objective, 0..1
    dream_class: str | int = ""  # an ImageNet class (name or index) whose logit is raised
    class_weight: float = 0.5  # the class's share of the objective, 0..1

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.layers)

    @property
    def layer_weights(self) -> tuple[float, ...]:
        return tuple(spec.weight for spec in self.layers)

    def replace(self, **changes: Any) -> DreamParams:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class VideoParams:
    """Temporal coherence settings for ``dreamvid render`` (see ``dreamvid.coherence``)."""

    flow: str = "dis"  # dis | farneback | none
    coherence: str = "anchor"  # anchor (held inside the ascent) | blend (DeepDreamAnim's feedback) | none
    warp: str = "delta"  # delta (DeepDreamAnim) | frame
    blend: float = 0.6  # "blend" mode: how much of the warped previous dream carries over, 0..1
    anchor: float = 0.5  # "anchor" mode: λ, the pull toward the carried dream at every step
    carried_step: float = 1.0  # "anchor" mode: share of each step a carried pixel that moved >= 1 px takes
    carried_octaves: int = 2  # "anchor" mode: finest octaves dreamed on a carried frame (0: all)
    photometric: float = 50.0  # α of the soft photometric mask exp(-α|I_t - warp(I_t-1)|²) (0: off)
    strength: float = 0.0  # the governor's base target, mean |out - src| in grey levels (0: off)
    gain_limits: tuple[float, float] = (0.5, 2.0)  # the governor scales a frame's dream by at most these
    consistency: float = 1.0  # forward-backward check tolerance in px (Ruder et al. use 0.01*|w|^2 + 0.5)
    scene_cut: float = 0.35  # mean abs difference of grey thumbnails (0..1) above which feedback resets
    flow_max_side: int = 960  # flow is measured on frames scaled down to this long side (0: full size)
    motion_window: int = 6  # frames the carried motion is measured over (video.MotionTracker; 0: raw one-frame flow)


@dataclass(frozen=True)
class MotionParams:
    """Camera motion per frame (each key may be a schedule) and the infinite zoom's statistics hold.

    ``render`` moves the footage and the carried dream together along the accumulated motion; ``dreamvid zoom``
    moves the previous output by each frame's motion before dreaming it again. See docs/presets.md.
    """

    zoom: float = 1.0  # scale per frame around the centre (1.01: 1 % closer every frame)
    rotate: float = 0.0  # degrees per frame, counter-clockwise
    translate_x: float = 0.0  # fraction of the frame width per frame (0.01: the picture moves 1 % right)
    translate_y: float = 0.0  # fraction of the frame height per frame (positive: down)
    bpm: float = 0.0  # tempo for beat keyframes/expressions when there is no song (0: none)
    hold: float = 0.25  # zoom: share of the look (CIELAB colour, fine detail) pulled back to the image's per frame
    sharpen: float = 0.15  # zoom: the most unsharp-mask amount per frame the hold may apply

    @property
    def moving(self) -> bool:
        return (self.zoom, self.rotate, self.translate_x, self.translate_y) != (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Config:
    """The resolved, validated configuration of one run."""

    dream: DreamParams = field(default_factory=DreamParams)
    video: VideoParams = field(default_factory=VideoParams)
    audio: Mapping[str, Any] = field(default_factory=dict)  # validated by dreamvid.schedule
    preset: str | None = None
    description: str = ""
    motion: MotionParams = field(default_factory=MotionParams)
    #: ``(("dream.step_size", "0:0.01, 8b:0.03"), ...)``: the keys given as schedules, sorted by key
    schedules: tuple[tuple[str, str], ...] = ()
    live: Mapping[str, Any] = field(default_factory=dict)  # ``dreamvid live``'s controls (validate_live_table)

    def __hash__(self) -> int:  # the audio table is a dict: hash the plain form
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, fit for TOML/JSON, that ``resolve`` turns back into the same Config."""
        d = dataclasses.asdict(self.dream)
        d["layers"] = format_layers(self.dream.layers)
        out = {
            "preset": self.preset,
            "description": self.description,
            "dream": d,
            "video": _plain(dataclasses.asdict(self.video)),
            "motion": dataclasses.asdict(self.motion),
            "audio": _plain(self.audio),
        }
        for key, text in self.schedules:  # a scheduled key round-trips as its string
            section, name = key.split(".")
            out[section][name] = text
        if self.live:
            out["live"] = _plain(self.live)
        return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------------------------
# layers

_LAYER_RE = re.compile(r"^\s*(?P<name>[A-Za-z0-9_]+)\s*(?:\[(?P<ch>[0-9,\-\s]*)\])?\s*"
                       r"(?::\s*(?:(?P<w>[-+0-9.eE]+)|\{(?P<s>[^{}]*)\}))?\s*$")


def _parse_channels(text: str, where: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "-" in part:
            a, b = part.split("-", 1)
            if not (a.strip().isdigit() and b.strip().isdigit()) or int(a) > int(b):
                raise ConfigError(f"bad channel range '{part}' in {where}: write it as 12-40")
            out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ConfigError(f"bad channel '{part}' in {where}: channels are integers, e.g. mixed4[12,40-45]:1")
    return tuple(out)


def parse_layers(value: Any) -> tuple[LayerSpec, ...]:
    """Parse ``"mixed3:1,mixed5[10-20]:1.5"``, a list of such strings, or a ``{name: weight}`` table."""
    if isinstance(value, LayerSpec):
        return (value,)
    if isinstance(value, Mapping):
        items = [f"{k}:{{{v}}}" if isinstance(v, str) else f"{k}:{v}" for k, v in value.items()]
    elif isinstance(value, str):
        items = re.split(r",(?![^\[]*\])(?![^{]*\})", value)  # commas outside brackets and braces
    elif isinstance(value, (list, tuple)):
        items = [str(v) if not isinstance(v, LayerSpec) else str(v) for v in value]
    else:
        raise ConfigError(f"layers must be a string like 'mixed3:1,mixed5:1.5', got {value!r}")
    specs: list[LayerSpec] = []
    for item in items:
        if not item.strip():
            continue
        m = _LAYER_RE.match(item)
        if not m:
            raise ConfigError(f"cannot read layer '{item.strip()}': write layers as 'mixed3:1,mixed5[10-20]:1.5'")
        name = m["name"]
        if name not in LAYER_NAMES:
            raise ConfigError(
                f"unknown layer '{name}'{suggest(name, LAYER_NAMES)}; choose from mixed0..mixed10 (see `dreamvid layers`)"
            )
        schedule = None
        if m["s"] is not None:  # a weight schedule: mixed3:{0:1, 60:0}
            schedule = m["s"].strip()
            curve = _curve(f"dream.layers.{name}", schedule)
            weight = float(curve.static())
        else:
            try:
                weight = float(m["w"]) if m["w"] is not None else 1.0
            except ValueError:
                raise ConfigError(f"bad weight '{m['w']}' for layer {name}: use a number, e.g. {name}:1.5") from None
        channels = _parse_channels(m["ch"], f"layer {name}") if m["ch"] is not None else ()
        if channels and max(channels) >= LAYER_CHANNELS[name]:
            raise ConfigError(f"channel {max(channels)} is out of range for {name}, which has channels "
                              f"0..{LAYER_CHANNELS[name] - 1}")
        if any(s.name == name for s in specs):
            raise ConfigError(f"layer '{name}' is given twice; give each layer once")
        specs.append(LayerSpec(name, weight, channels, schedule))
    if not specs:
        raise ConfigError("no layers given: name at least one, e.g. --layers mixed3:1")
    if all(s.weight == 0 and s.schedule is None for s in specs):
        raise ConfigError("all layer weights are 0: give at least one layer a non-zero weight")
    return tuple(specs)


def format_layers(specs: tuple[LayerSpec, ...]) -> str:
    return ",".join(str(s) for s in specs)


# ---------------------------------------------------------------------------------------------------------------
# loading, merging, validating

SECTIONS = ("dream", "video", "motion", "audio")
TOP_KEYS = ("description", "preset", *SECTIONS, "live")  # "preset": provenance written by Config.to_dict

# key -> (type, check, what the check means)
_RULES: dict[str, dict[str, tuple[type, Any, str]]] = {
    "dream": {
        "layers": (object, None, ""),
        "octaves": (int, lambda v: 1 <= v <= 12, "an integer from 1 to 12"),
        "octave_scale": (float, lambda v: 1.05 <= v <= 3.0, "a number from 1.05 to 3.0"),
        "steps": (int, lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"),
        "step_size": (float, lambda v: 0.0 < v <= 1.0, "a number above 0 and at most 1"),
        "jitter": (int, lambda v: 0 <= v <= 512, "an integer from 0 to 512 (pixels)"),
        "tile_size": (int, lambda v: 96 <= v <= 4096, "an integer from 96 to 4096 (pixels)"),
        "tile_overlap": (int, lambda v: 0 <= v <= 512, "an integer from 0 to 512 (pixels)"),
        "seed": (int, lambda v: v >= 0, "an integer >= 0"),
        "creativity": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 (faithful) to 1 (strange)"),
        "guide": (object, check_guide, "a path to an image file ('' for none)"),
        "guide_weight": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1 (the guide's share)"),
        "dream_class": (object, check_class, "an ImageNet class name or index 0..999 ('' for none)"),
        "class_weight": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1 (the class's share)"),
    },
    "video": {
        "flow": (str, lambda v: v in ("dis", "farneback", "none"), "one of dis, farneback, none"),
        "coherence": (str, lambda v: v in ("anchor", "blend", "none"), "one of anchor, blend, none"),
        "warp": (str, lambda v: v in ("delta", "frame"), "one of delta, frame"),
        "blend": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1"),
        "anchor": (float, lambda v: 0.0 <= v <= 100.0, "a number from 0 to 100"),
        "carried_step": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1"),
        "carried_octaves": (int, lambda v: 0 <= v <= 12, "an integer from 0 (all) to 12"),
        "photometric": (float, lambda v: 0.0 <= v <= 1000.0, "a number from 0 (off) to 1000"),
        "strength": (float, lambda v: 0.0 <= v <= 128.0, "a number of grey levels from 0 (off) to 128"),
        "gain_limits": (tuple, lambda v: 0.0 < v[0] <= 1.0 <= v[1] <= 10.0,
                        "[low, high] with 0 < low <= 1 <= high <= 10, e.g. [0.5, 2.0]"),
        "consistency": (float, lambda v: 0.0 < v <= 50.0, "a number above 0 and at most 50"),
        "scene_cut": (float, lambda v: 0.0 < v <= 1.0, "a number above 0 and at most 1"),
        "flow_max_side": (int, lambda v: v == 0 or 64 <= v <= 8192, "0 (full size) or an integer from 64 to 8192"),
        "motion_window": (int, lambda v: 0 <= v <= 16, "an integer from 0 (the raw one-frame flow) to 16 frames"),
    },
    "motion": {
        "zoom": (float, lambda v: 0.5 <= v <= 2.0, "a scale per frame from 0.5 to 2 (1: none)"),
        "rotate": (float, lambda v: -45.0 <= v <= 45.0, "degrees per frame from -45 to 45"),
        "translate_x": (float, lambda v: -0.5 <= v <= 0.5, "a fraction of the frame width per frame, -0.5 to 0.5"),
        "translate_y": (float, lambda v: -0.5 <= v <= 0.5, "a fraction of the frame height per frame, -0.5 to 0.5"),
        "bpm": (float, lambda v: v == 0 or 20.0 <= v <= 400.0, "0 (none) or beats per minute from 20 to 400"),
        "hold": (float, lambda v: 0.0 <= v <= 1.0, "a number from 0 (off) to 1"),
        "sharpen": (float, lambda v: 0.0 <= v <= 2.0, "a number from 0 (off) to 2"),
    },
}

#: The keys that may be a schedule string, with the range every frame's value is clipped to.
SCHEDULABLE: dict[str, tuple[float, float]] = {
    "dream.step_size": (1e-4, 1.0),
    "dream.steps": (1, 1000),
    "dream.jitter": (0, 512),
    "dream.octaves": (1, 12),
    "dream.octave_scale": (1.05, 3.0),
    "video.blend": (0.0, 1.0),
    "video.strength": (0.0, 128.0),
    "motion.zoom": (0.5, 2.0),
    "motion.rotate": (-45.0, 45.0),
    "motion.translate_x": (-0.5, 0.5),
    "motion.translate_y": (-0.5, 0.5),
}
#: The range a scheduled layer weight is clipped to.
LAYER_WEIGHT_RANGE = (-10.0, 10.0)


def _curve(key: str, text: str):
    """Parse a schedule string for ``key`` (ConfigError with the position); its keyframe values must be in range."""
    from .keyframes import parse

    curve = parse(text, key=key)
    lo, hi = SCHEDULABLE.get(key, LAYER_WEIGHT_RANGE)
    for v in curve.values:
        if not lo <= v <= hi:
            raise ConfigError(f"{key}: keyframe value {v:g} in {text!r} is out of range: use values from {lo:g} "
                              f"to {hi:g}")
    return curve


def load_toml(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """Read a TOML file into a dict, with one clear line for a missing or malformed file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from None


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge config dicts; later layers win. Returns a new dict and leaves the inputs untouched."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            elif isinstance(value, Mapping):
                out[key] = merge(value)
            else:
                out[key] = value
    return out


def _coerce(section: str, key: str, value: Any) -> Any:
    typ, check, meaning = _RULES[section][key]
    if key == "layers":
        return parse_layers(value)
    where = f"{section}.{key}"
    if isinstance(value, str) and typ in (int, float):
        if where not in SCHEDULABLE:
            raise ConfigError(f"{where} must be {meaning}, got {value!r} ({where} cannot be a schedule; these can: "
                              f"{', '.join(SCHEDULABLE)} and layer weights)")
        try:
            curve = _curve(where, value)
        except ConfigError as e:  # "dream.steps must be ... or a schedule; at position 1 of 'ten': unknown name"
            raise ConfigError(f"{where} must be {meaning} or a schedule; {str(e).removeprefix(where + ': ')}") from None
        return _Scheduled(value, _static(typ, curve.static(), SCHEDULABLE[where]))
    if typ is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where} must be {meaning}, got {value!r}")
        value = int(value)
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be {meaning}, got {value!r}")
        value = float(value)
    elif typ is tuple:
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"{where} must be {meaning}, got {value!r}")
        value = (float(value[0]), float(value[1]))
    elif typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be {meaning}, got {value!r}")
        value = value.lower()
    if check is not None and not check(value):
        raise ConfigError(f"{where} must be {meaning}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Scheduled:
    """A key given as a schedule: its text, and the number its dataclass field holds."""

    text: str
    value: Any


def _static(typ: type, v: float, limits: tuple[float, float]) -> Any:
    v = min(max(v, limits[0]), limits[1])
    return int(round(v)) if typ is int else float(v)


def resolve(*layers: Mapping[str, Any] | None, preset: str | None = None) -> Config:
    """Merge ``layers`` (preset < config file < flags), validate every key and value, return a frozen Config."""
    from .creativity import apply as apply_creativity

    merged = merge(*apply_creativity(layers))  # the lever's keys, just before the layer that set it
    for key in merged:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown config section '{key}'{suggest(key, TOP_KEYS)}; sections are {', '.join(SECTIONS)}")
    kwargs: dict[str, dict[str, Any]] = {}
    schedules: list[tuple[str, str]] = []
    for section in ("dream", "video", "motion"):
        table = merged.get(section) or {}
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{section}] must be a table of keys")
        vals = {}
        for key, value in table.items():
            if key not in _RULES[section]:
                raise ConfigError(
                    f"unknown key '{section}.{key}'{suggest(key, _RULES[section])}; see docs/presets.md for the keys"
                )
            vals[key] = _coerce(section, key, value)
            if isinstance(vals[key], _Scheduled):
                schedules.append((f"{section}.{key}", vals[key].text))
                vals[key] = vals[key].value
        kwargs[section] = vals
    dream = DreamParams(**kwargs["dream"])
    if dream.tile_overlap * 2 >= dream.tile_size:
        raise ConfigError(f"dream.tile_overlap ({dream.tile_overlap}) must be under half of dream.tile_size ({dream.tile_size})")
    audio = merged.get("audio") or {}
    if not isinstance(audio, Mapping):
        raise ConfigError("[audio] must be a table of keys")
    if audio:
        audio = validate_audio_table(audio, layers=dream.layer_names)
    live = validate_live_table(merged.get("live"), layers=dream.layer_names)
    recorded = merged.get("preset")  # the name a to_dict() dict records; it does not load that preset
    if recorded is not None and not isinstance(recorded, str):
        raise ConfigError(f"preset must be a preset name, got {recorded!r}")
    return Config(
        dream=dream,
        video=VideoParams(**kwargs["video"]),
        audio=audio,
        preset=preset if preset is not None else recorded,
        description=str(merged.get("description", "")),
        motion=MotionParams(**kwargs["motion"]),
        schedules=tuple(sorted(schedules)),
        live=live,
    )


# ---------------------------------------------------------------------------------------------------------------
# [live]: the controls of ``dreamvid live`` (docs/live.md)

_LIVE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def live_key_range(key: Any, layers: tuple[str, ...]) -> tuple[float, float]:
    """The range of a key a live control may drive: one of :data:`SCHEDULABLE`, or ``dream.layers.<layer>`` (a
    layer of ``layers``); :class:`ConfigError` otherwise."""
    if isinstance(key, str) and key in SCHEDULABLE:
        return SCHEDULABLE[key]
    if isinstance(key, str) and key.startswith("dream.layers.") and key[len("dream.layers."):] in layers:
        return LAYER_WEIGHT_RANGE
    choices = (*SCHEDULABLE, *(f"dream.layers.{n}" for n in layers))
    raise ConfigError(f"live control key {key!r} cannot be driven{suggest(str(key), choices)}; use one of "
                      f"{', '.join(choices)}")


def _live_number(where: str, value: Any, lo: float, hi: float, *, whole: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    if not ok or (whole and not float(value).is_integer()):
        raise ConfigError(f"{where} must be {'a whole number' if whole else 'a number'} from {lo:g} to {hi:g}, "
                          f"got {value!r}")
    return int(value) if whole else float(value)


def validate_live_table(table: Any, *, layers: tuple[str, ...]) -> dict[str, Any]:
    """Check a ``[live]`` table and return it normalised::

        [live.controls]          # a slider on the page, a MIDI CC, an OSC address each
        strength = { key = "video.strength", range = [4, 40], cc = 1 }
        [live.pulse]             # a trigger: the key jumps to peak x its value, then returns over decay s
        key = "video.strength"
        peak = 2.0
        decay = 0.4
        cc = 64                  # optional; note = 36 fires it with a MIDI note too

    ``cc`` 0..127 and ``channel`` 1..16 (default: any) are optional; no two controls share a CC.
    """
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise ConfigError("[live] must be a table with 'controls' and 'pulse' (see docs/live.md)")
    for k in table:
        if k not in ("controls", "pulse"):
            raise ConfigError(f"unknown key 'live.{k}'{suggest(k, ('controls', 'pulse'))}; [live] has controls, pulse")
    out: dict[str, Any] = {"controls": {}}
    ccs: dict[tuple[int, int], str] = {}

    def midi(where: str, entry: Mapping[str, Any], into: dict[str, Any]) -> None:
        for name, hi in (("cc", 127), ("note", 127), ("channel", 16)):
            if name in entry:
                into[name] = _live_number(f"{where}.{name}", entry[name], 0 if name != "channel" else 1, hi,
                                          whole=True)
        if "cc" in into:
            slot = (into["cc"], into.get("channel", 0))
            if slot in ccs or any(c == into["cc"] and (ch == 0 or slot[1] == 0) for c, ch in ccs):
                raise ConfigError(f"{where}.cc {into['cc']} is already used by live.{ccs.get(slot, 'another control')}")
            ccs[slot] = where.removeprefix("live.")

    controls = table.get("controls", {})
    if not isinstance(controls, Mapping):
        raise ConfigError("live.controls must be a table of controls, e.g. strength = { key = \"video.strength\", "
                          "range = [4, 40] }")
    for name, entry in controls.items():
        where = f"live.controls.{name}"
        if not _LIVE_NAME.match(str(name)):
            raise ConfigError(f"{where}: a control's name is a letter then up to 31 letters, digits, - or _")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table like {{ key = \"video.strength\", range = [4, 40] }}")
        for k in entry:
            if k not in ("key", "range", "cc", "channel"):
                raise ConfigError(f"unknown key '{where}.{k}'{suggest(k, ('key', 'range', 'cc', 'channel'))}")
        if "key" not in entry or "range" not in entry:
            raise ConfigError(f"{where} needs a key and a range, e.g. {{ key = \"video.strength\", range = [4, 40] }}")
        lo, hi = live_key_range(entry["key"], layers)
        rng = entry["range"]
        if not isinstance(rng, (list, tuple)) or len(rng) != 2:
            raise ConfigError(f"{where}.range must be [low, high], got {rng!r}")
        a, b = (_live_number(f"{where}.range", v, lo, hi) for v in rng)
        if a == b:
            raise ConfigError(f"{where}.range must span something, got [{a:g}, {b:g}]")
        out["controls"][str(name)] = {"key": entry["key"], "range": [a, b]}
        midi(where, entry, out["controls"][str(name)])
    pulse = table.get("pulse")
    if pulse is not None:
        if not isinstance(pulse, Mapping) or "key" not in pulse:
            raise ConfigError("live.pulse must be a table with a key, e.g. { key = \"video.strength\", peak = 2 }")
        for k in pulse:
            if k not in ("key", "peak", "decay", "cc", "note", "channel"):
                raise ConfigError(f"unknown key 'live.pulse.{k}'"
                                  f"{suggest(k, ('key', 'peak', 'decay', 'cc', 'note', 'channel'))}")
        live_key_range(pulse["key"], layers)
        out["pulse"] = {"key": pulse["key"], "peak": _live_number("live.pulse.peak", pulse.get("peak", 2.0), 0.0, 10.0),
                        "decay": _live_number("live.pulse.decay", pulse.get("decay", 0.4), 0.04, 10.0)}
        midi("live.pulse", pulse, out["pulse"])
    return out
