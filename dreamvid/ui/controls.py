"""The page's settings: one table drives the sliders, the config the page makes and the presets it saves. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..layers import LAYER_NAMES

__all__ = ["Control", "controls", "settings_of", "changes"]


@dataclass(frozen=True)
class Control:
    """One setting on the page: ``section.key`` of the config (``section`` None: a render option)."""

    key: str
    section: str | None
    label: str
    lo: float = 0.0
    hi: float = 1.0
    step: float = 1.0
    info: str = ""
    choices: tuple[str, ...] = ()  # a dropdown instead of a slider


def controls() -> list[Control]:
    """The page's settings, in order."""
    out = [
        Control("creativity", "dream", "creativity", 0.0, 1.0, 0.05,
                "one lever, faithful (0) to strange (1): sets layers, step size, steps and octaves"),
        Control("strength", "video", "strength (grey levels)", 0.0, 64.0, 0.5,
                "the governor's target: mean |dream - footage|; 0 = ungoverned"),
        Control("step_size", "dream", "step size", 0.001, 0.1, 0.001, "how far each gradient step moves"),
        Control("octaves", "dream", "octaves", 1, 8, 1, "scales dreamed, coarse to fine"),
        Control("octave_scale", "dream", "octave scale", 1.1, 2.0, 0.05, "size ratio between octaves"),
        Control("steps", "dream", "steps per octave", 1, 40, 1),
        Control("jitter", "dream", "jitter (px)", 0, 96, 1),
        Control("seed", "dream", "seed", 0, 9999, 1),
        Control("coherence", "video", "coherence", choices=("anchor", "blend", "none"),
                info="anchor: the carried dream is held in the ascent; blend: feedback; none: per frame"),
        Control("anchor", "video", "anchor", 0.0, 3.0, 0.05,
                "pull toward the carried dream (coherence = anchor; seen in the strip)"),
        Control("blend", "video", "blend", 0.0, 1.0, 0.05,
                "share of the previous dream carried (coherence = blend; seen in the strip)"),
    ]
    out += [Control(f"layer:{n}", "layers", n, 0.0, 3.0, 0.05) for n in LAYER_NAMES]
    out.append(Control("react", None, "music reaction", 0.0, 2.0, 0.05,
                       "0 off, 1 the preset's amount, 2 double (--react)"))
    return out


def settings_of(config: Config, *, react: float = 1.0) -> dict[str, Any]:
    """The page's values for ``config`` (a scheduled key shows its static value)."""
    out: dict[str, Any] = {}
    for c in controls():
        if c.section == "layers":
            name = c.key.split(":", 1)[1]
            out[c.key] = next((float(s.weight) for s in config.dream.layers if s.name == name), 0.0)
        elif c.section is None:
            out[c.key] = float(react)
        else:
            v = getattr(getattr(config, c.section), c.key, None)
            if c.choices:
                out[c.key] = v if v in c.choices else c.choices[0]
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[c.key] = v
            else:
                out[c.key] = 0.0 if c.key == "creativity" else None
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def changes(base: Config, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config layer that turns ``base`` (a preset) into the page's ``settings``: only the keys that differ,
    so what the page does not touch (a schedule, the [audio] table) stays the preset's."""
    ref = settings_of(base)
    layer: dict[str, dict[str, Any]] = {}
    weights_changed = False
    for c in controls():
        if c.section is None or c.key not in settings or settings[c.key] is None:
            continue
        if c.section == "layers":
            weights_changed |= not _same(settings[c.key], ref[c.key])
            continue
        if _same(settings[c.key], ref[c.key]):
            continue
        v = settings[c.key]
        if not c.choices:
            v = round(v) if c.step >= 1 else float(v)
        layer.setdefault(c.section, {})[c.key] = v
    if weights_changed:
        channels = {s.name: s.channels for s in base.dream.layers}
        terms = []
        for n in LAYER_NAMES:
            w = float(settings.get(f"layer:{n}") or 0.0)
            if w > 0:
                ch = channels.get(n, ())
                terms.append(f"{n}[{','.join(map(str, ch))}]:{w:g}" if ch else f"{n}:{w:g}")
        if not terms:
            raise ConfigError("every layer weight is 0: give at least one layer a weight above 0")
        layer.setdefault("dream", {})["layers"] = ",".join(terms)
    return layer
