"""The contract every backend fulfils.

A backend module exposes ``make_step(model, *, channels, matches=0, precision, jit) -> StepFn`` and
``make_forward(model, *, precision, jit) -> ForwardFn``.

``model``'s outputs are ``len(channels)`` layer terms' activations, then ``matches`` match terms' activations
(see :mod:`dreamvid.dream.objective`; a layer may appear more than once).

``StepFn(tiles, weights, targets=()) -> (grads, losses)``

tiles
    float32 array, shape (B, H, W, 3), values in [-1, 1]: a batch of image tiles.
weights
    float32 array, shape (L + M,): one weight per output of ``model``. Passed per call, so music can change
    the mix frame by frame without a recompile.
targets
    M float32 arrays, shape (K_m, C_m): each match term's target vectors (a guide's features, a class's
    direction). Passed per call: a new guide needs no recompile.
grads
    float32 array, shape (B, H, W, 3): d(sum of losses)/d(tiles).
losses
    float32 array, shape (B,): per tile, the sum over layer terms of ``weight * mean(activation[..., channels])``
    plus the sum over match terms of ``weight * mean_p max_k <activation[p], target[k]>``.

``ForwardFn(tiles) -> activations``: float32 arrays (B, h, w, C), one per output of ``model``.

A step function compiles once per input shape and is reused for every later call of that shape.

Optional, where a backend can keep the work on its device (JAX): ``make_octave`` (one octave's whole ascent) and
``make_frame`` (a whole video frame — coherence, every octave and step, the governor — as one compiled program, see
:mod:`dreamvid.backends.jax_frame`), with ``stage(*arrays)`` to start a coming frame's copies to the device. Any
compiled program takes the model's variables as arguments: no backend bakes the weights into a program.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class StepFn(Protocol):
    def __call__(self, tiles: np.ndarray, weights: np.ndarray, targets: tuple[np.ndarray, ...] = ()
                 ) -> tuple[np.ndarray, np.ndarray]: ...
