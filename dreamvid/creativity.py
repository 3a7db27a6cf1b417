"""One lever, ``creativity`` in [0, 1], from faithful to the footage to strange. Pure: no framework, no I/O.

The lever sets four ``[dream]`` keys at once, each rising with it (so the dream's strength rises with it):

=========== ================================ ==================== ===================== ================
creativity  layers (depth)                   step_size            steps                 octaves
=========== ================================ ==================== ===================== ================
0           ``mixed3:1`` (strokes, swirls)   0.006                6                     2
0.5         ``mixed4:0.75,mixed5:0.25``      0.013                10                    4
1           ``mixed5:0.5,mixed6:0.5`` (eyes,  0.020                14                    5
            animal parts, objects)
=========== ================================ ==================== ===================== ================

In between, every value is interpolated linearly (steps and octaves rounded; the layer depth ``3 + 2.5c``
is split between the two nearest ``mixedN``). See :func:`lever`.

**Precedence.** The lever acts where it is set. Keys given in the same place as ``creativity`` or in a later
one (preset < ``--config`` file < flags) win over it; keys from an earlier place are overridden by it. So
``--creativity 0.9`` on the command line beats the preset's ``steps``, and ``--creativity 0.9 --steps 4``
keeps ``steps = 4``; a preset that sets both ``creativity`` and ``layers`` keeps its own layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

KEY = "creativity"
#: the keys the lever sets
KEYS = ("layers", "step_size", "steps", "octaves")
DEPTH = (3.0, 5.5)  # mixedN depth at creativity 0 and 1
STEP_SIZE = (0.006, 0.020)
STEPS = (6, 14)
OCTAVES = (2, 5)


def _lerp(ab: tuple[float, float], c: float) -> float:
    return ab[0] + (ab[1] - ab[0]) * c


def check(value: Any, where: str = "dream.creativity") -> float:
    """``value`` as a float in [0, 1], or a :class:`ConfigError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where} must be a number from 0 (faithful) to 1 (strange), got {value!r}")
    return float(value)


def lever(creativity: float) -> dict[str, Any]:
    """The ``[dream]`` keys that ``creativity`` (0..1) stands for, as a config table.

    >>> lever(0.0)
    {'layers': 'mixed3:1', 'step_size': 0.006, 'steps': 6, 'octaves': 2}
    """
    c = check(creativity)
    depth = _lerp(DEPTH, c)
    lo = int(math.floor(depth + 1e-9))
    frac = round(depth - lo, 2)
    if frac <= 0.0:
        layers = f"mixed{lo}:1"
    else:
        layers = f"mixed{lo}:{1 - frac:g},mixed{lo + 1}:{frac:g}"
    return {
        "layers": layers,
        "step_size": round(_lerp(STEP_SIZE, c), 4),
        "steps": int(math.floor(_lerp(STEPS, c) + 0.5)),
        "octaves": int(math.floor(_lerp(OCTAVES, c) + 0.5)),
    }


def apply(layers: Sequence[Mapping[str, Any] | None]) -> list[Mapping[str, Any] | None]:
    """Config layers (earliest first) with the lever's keys inserted just before the last layer that sets
    ``[dream] creativity``, so that layer and later ones win over the lever and earlier ones lose to it.

    A ``creativity`` of None (as ``Config.to_dict`` writes when no lever was used) counts as unset and is
    dropped. The inputs are not modified."""
    out: list[Mapping[str, Any] | None] = []
    where = None
    for layer in layers:
        dream = (layer or {}).get("dream") if isinstance(layer, Mapping) else None
        if isinstance(dream, Mapping) and KEY in dream:
            if dream[KEY] is None:
                layer = {**layer, "dream": {k: v for k, v in dream.items() if k != KEY}}
            else:
                where = len(out)
        out.append(layer)
    if where is None:
        return out
    value = check(out[where]["dream"][KEY])
    return [*out[:where], {"dream": lever(value)}, *out[where:]]
