"""The dreaming engine: objective, octaves, tiles + roll, and the ascent loop (:class:`Dreamer`)."""

from .dreamer import Anchor, Dreamer, StepInfo, from_unit, to_unit
from .objective import Objective

__all__ = ["Anchor", "Dreamer", "Objective", "StepInfo", "from_unit", "to_unit"]
