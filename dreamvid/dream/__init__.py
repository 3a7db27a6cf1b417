"""The dreaming engine: objective, octaves, tiles + roll, and the ascent loop (:class:`Dreamer`)."""

from .dreamer import Dreamer, StepInfo, from_unit, to_unit
from .objective import Objective

__all__ = ["Dreamer", "Objective", "StepInfo", "from_unit", "to_unit"]
