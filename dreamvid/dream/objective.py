"""The objective: layer terms, guide terms and class terms, composed like lucid's objectives.

Objectives add and scale::

    0.5 * Objective.layer("mixed3") + Objective.layer("mixed5", channels=[10, 11])
    0.7 * Objective.parse("mixed3:1,mixed5:1.5") + 0.3 * Objective.guide("mixed5", guide_features)
    0.5 * Objective.layer("mixed4") + 0.5 * Objective.direction("mixed10", top_kernel[:, 281])  # a class

There are two kinds of term, and a backend knows only these two:

**Layer term** (a :class:`~dreamvid.config.LayerSpec`): ``weight * mean(activation[..., channels])``, the classic
DeepDream objective.

**Match term** (:class:`Match`): ``weight * mean over positions p of max over k of <activation[p], target[k]>``,
with ``target`` a (K, C) array that comes with every call. It is google/deepdream's guided objective
(``objective_guide``: for each position, the dot product with the best-matching guide feature, whose gradient is
that guide feature), kept whole rather than simplified to the guide's mean feature: a guide of flowers then
grows petals where the dream already leans toward petals and leaves where it leans toward leaves, instead of
one average "flower colour" everywhere. With K = 1 it is a direction in feature space; a class term is the
direction of that class's row of the ImageNet top (the logit is ``mean_p <mixed10[p], kernel[:, c]> + bias[c]``:
global average pooling followed by a dense layer is linear), so the class needs no network of its own.

A guide's features are centred across channels when the term is made (:func:`centre`): the layer term already
pulls every channel alike, so the guide term keeps only what sets the guide apart. Targets are scaled when a term
is made (:meth:`Objective.guide`, :meth:`Objective.direction`) so that one unit of weight moves the image about as
much as one unit of a layer term: a layer term's gradient with respect to the
activation has norm ``1/sqrt(C)`` per position, so each target is divided by a single scalar that gives its
vectors a mean norm of ``GAUGE/sqrt(C)``. One scalar per guide keeps deepdream's choice of best match (raw dot
products, not cosines).

What a compiled step depends on is :attr:`Objective.structure` (the layers, channels, and which layers have match
terms); the weights and targets are call arguments, so music can change the mix and a new guide image needs no
recompile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..config import DreamParams, LayerSpec, parse_layers
from ..errors import InputError

#: match terms' targets are scaled to a mean norm of GAUGE/sqrt(C): measured on photos so that a guide or class
#: term of weight w moves the image about as much as a layer term of weight w (see docs/creative.md)
GAUGE = {"guide": 0.6, "class": 6.0}
CLASS_LAYER = "mixed10"  # the ImageNet top sits on mixed10's global average pool


@dataclass(frozen=True, eq=False)
class Match:
    """``weight * mean_p max_k <activation(layer)[p], target[k]>``.

    Attributes
    ----------
    layer : the layer name (mixed0..mixed10)
    weight : float
    target : float32 (K, C), read-only; C is the layer's channels
    kind : ``"guide"`` or ``"class"`` (for reports; the backend treats both alike)
    """

    layer: str
    weight: float
    target: np.ndarray = field(repr=False)
    kind: str = "guide"

    def scaled(self, k: float) -> Match:
        return Match(self.layer, self.weight * float(k), self.target, self.kind)


def centre(features: np.ndarray) -> np.ndarray:
    """Each row less its mean over channels: float32 (K, C), every row orthogonal to the all-ones direction.

    A layer term's gradient with respect to its activation is the same at every channel (``1/C`` per position),
    and a guide's features (ReLU outputs, all >= 0) lean strongly that way: their cosine with the all-ones
    direction is 0.4-0.5 at mixed3-5. Uncentred, about half of a guide term's pull is the plain dream's own pull,
    and the image gradient of a pure guide dream has cosine ~0.69 with the unguided one's; centred, ~0.5, and
    the guide's share of the objective decides what is left (docs/creative.md).
    """
    f = np.asarray(features, np.float32)
    return f - f.mean(axis=-1, keepdims=True)


def _scale_target(target: np.ndarray, gauge: float) -> np.ndarray:
    t = np.asarray(target, np.float32)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[0] < 1:
        raise ValueError(f"a match target is (K, C) or (C,), got shape {t.shape}")
    mean_norm = float(np.mean(np.linalg.norm(t, axis=1)))
    if not mean_norm > 0:
        raise InputError("the guide (or class) gives no features to match at that layer: a blank guide image? "
                         "give an image with some structure, or another layer")
    t = np.ascontiguousarray(t * np.float32(gauge / (mean_norm * np.sqrt(t.shape[1]))))
    t.setflags(write=False)
    return t


@dataclass(frozen=True)
class Objective:
    terms: tuple[LayerSpec, ...]
    matches: tuple[Match, ...] = ()

    # -- making terms -----------------------------------------------------------------------------------------
    @classmethod
    def layer(cls, name: str, *, weight: float = 1.0, channels: Sequence[int] = ()) -> Objective:
        return cls(parse_layers([str(LayerSpec(name, weight, tuple(channels)))]))

    @classmethod
    def parse(cls, text) -> Objective:
        """From ``"mixed3:1,mixed5[3-9]:1.5"``, a ``{name: weight}`` table, or LayerSpecs."""
        return cls(parse_layers(text))

    @classmethod
    def guide(cls, layer: str, features: np.ndarray, *, weight: float = 1.0) -> Objective:
        """Match ``layer``'s features to a guide's: ``features`` is the guide's activation, (h, w, C) or (K, C).

        Each guide feature is centred across its channels before it is scaled (:func:`centre`): the part of it
        that is "more of every channel" is the layer term's own direction, and is left to the layer term, so the
        guide term pulls only toward what sets the guide apart."""
        parse_layers(layer)  # a clear error for an unknown layer
        f = np.asarray(features, np.float32)
        f = centre(f.reshape(-1, f.shape[-1]))
        return cls((), (Match(layer, float(weight), _scale_target(f, GAUGE["guide"]), "guide"),))

    @classmethod
    def direction(cls, layer: str, vector: np.ndarray, *, weight: float = 1.0, kind: str = "class") -> Objective:
        """Raise ``mean_p <activation(layer)[p], vector>``: with ``layer = "mixed10"`` and ``vector`` a column of
        the ImageNet top's kernel, that class's logit (less its bias)."""
        parse_layers(layer)
        return cls((), (Match(layer, float(weight), _scale_target(vector, GAUGE["class"]), kind),))

    @classmethod
    def from_params(cls, params: DreamParams, *, guide: Mapping[str, np.ndarray] | None = None,
                    class_vector: np.ndarray | None = None) -> Objective:
        """The objective a :class:`~dreamvid.config.DreamParams` asks for.

        ``layers`` alone is the classic objective. With ``guide`` (each layer's guide features, as
        :meth:`Dreamer.guide_features` gives them) the layers' objective becomes
        ``(1 - guide_weight) * layers + guide_weight * guide``, where the guide term matches each of the same
        layers with that layer's weight (so the share is what it says). With ``class_vector`` (the class's column
        of the top kernel, (2048,)) the result is ``(1 - class_weight) * that + class_weight * class``. A share of
        0 leaves its term out: the objective, its compiled step and the dream are then exactly those without it.
        """
        obj = cls(params.layers)
        gw = float(params.guide_weight)
        if guide and gw > 0:  # guide_weight 0 is the unguided objective itself (the same compiled step)
            g = cls(())
            for s in params.layers:  # each layer's guide term weighs what its layer term weighs
                g = g + cls.guide(s.name, guide[s.name], weight=s.weight)
            obj = (1.0 - gw) * obj + gw * g
        cw = float(params.class_weight)
        if class_vector is not None and cw > 0:
            obj = (1.0 - cw) * obj + cw * cls.direction(CLASS_LAYER, class_vector)
        return obj

    # -- composing ---------------------------------------------------------------------------------------------
    def __add__(self, other: Objective) -> Objective:
        merged = {t.name: t for t in self.terms}
        for t in other.terms:
            if t.name in merged and merged[t.name].channels == t.channels:
                merged[t.name] = LayerSpec(t.name, merged[t.name].weight + t.weight, t.channels)
            else:
                merged[t.name] = t
        return Objective(tuple(merged.values()), self.matches + other.matches)

    def __mul__(self, k: float) -> Objective:
        return Objective(tuple(LayerSpec(t.name, t.weight * float(k), t.channels) for t in self.terms),
                         tuple(m.scaled(k) for m in self.matches))

    __rmul__ = __mul__

    # -- what a backend sees -----------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The layer terms' layers."""
        return tuple(t.name for t in self.terms)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's outputs: one per layer term, then one per match term (a layer may appear twice)."""
        return self.names + tuple(m.layer for m in self.matches)

    @property
    def channels(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.channels for t in self.terms)

    @property
    def weights(self) -> np.ndarray:
        """float32, shape (L + M,): the layer terms' weights, then the match terms'."""
        return np.array([t.weight for t in self.terms] + [m.weight for m in self.matches], np.float32)

    @property
    def targets(self) -> tuple[np.ndarray, ...]:
        """The match terms' targets, float32 (K, C) each."""
        return tuple(m.target for m in self.matches)

    @property
    def structure(self) -> tuple:
        """What a compiled step depends on (layers, channels, the match terms' layers), not the weights or the
        targets, which are call arguments."""
        return (self.names, self.channels, tuple(m.layer for m in self.matches))

    def bind(self, step):
        """``step`` (a backend step function) as ``(tiles, weights) -> (grads, losses)`` with this objective's
        targets bound, for :func:`~dreamvid.dream.tiles.tiled_gradient`."""
        if not self.matches:
            return step
        targets = self.targets
        return lambda tiles, weights: step(tiles, weights, targets)
