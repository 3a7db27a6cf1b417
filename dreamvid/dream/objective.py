"""The objective: a weighted sum over layers of the mean activation, optionally over chosen channels.

Objectives compose like lucid's: ``0.5 * Objective.layer("mixed3") + Objective.layer("mixed5", channels=[10, 11])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import LayerSpec, parse_layers


@dataclass(frozen=True)
class Objective:
    terms: tuple[LayerSpec, ...]

    @classmethod
    def layer(cls, name: str, *, weight: float = 1.0, channels: Sequence[int] = ()) -> Objective:
        return cls(parse_layers([str(LayerSpec(name, weight, tuple(channels)))]))

    @classmethod
    def parse(cls, text) -> Objective:
        """From ``"mixed3:1,mixed5[3-9]:1.5"``, a ``{name: weight}`` table, or LayerSpecs."""
        return cls(parse_layers(text))

    def __add__(self, other: Objective) -> Objective:
        merged = {t.name: t for t in self.terms}
        for t in other.terms:
            if t.name in merged and merged[t.name].channels == t.channels:
                merged[t.name] = LayerSpec(t.name, merged[t.name].weight + t.weight, t.channels)
            else:
                merged[t.name] = t
        return Objective(tuple(merged.values()))

    def __mul__(self, k: float) -> Objective:
        return Objective(tuple(LayerSpec(t.name, t.weight * float(k), t.channels) for t in self.terms))

    __rmul__ = __mul__

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.terms)

    @property
    def channels(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.channels for t in self.terms)

    @property
    def weights(self) -> np.ndarray:
        """float32, shape (L,)."""
        return np.array([t.weight for t in self.terms], np.float32)

    @property
    def structure(self) -> tuple:
        """What a compiled step depends on (layers and channels), not the weights, which are call arguments."""
        return (self.names, self.channels)
