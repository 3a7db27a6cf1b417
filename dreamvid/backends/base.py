"""The contract every backend fulfils.

A backend module exposes ``make_step(model, *, channels, precision, jit) -> StepFn``.

``StepFn(tiles, weights) -> (grads, losses)``

tiles
    float32 array, shape (B, H, W, 3), values in [-1, 1]: a batch of image tiles.
weights
    float32 array, shape (L,): one weight per layer of ``model``'s outputs. Passed per call, so music can
    change the layer mix frame by frame without a recompile.
grads
    float32 array, shape (B, H, W, 3): d(sum of losses)/d(tiles).
losses
    float32 array, shape (B,): per tile, sum over layers of ``weight * mean(activation[..., channels])``.

A step function compiles once per input shape and is reused for every later call of that shape.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class StepFn(Protocol):
    def __call__(self, tiles: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
