"""Tiled gradients with random roll, so any image size dreams in bounded memory without visible seams.

Every tile of an image has the same shape, so the backend compiles once per octave and tiles batch together.
Neighbouring tiles overlap by ``overlap`` pixels and are cross-faded there; the random roll moves the seams
every step, so no seam stays in one place long enough to show.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def tile_starts(n: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Start offsets of equal tiles that cover an axis of length ``n``, and their common length.

    Uses the fewest tiles of at most ``tile`` pixels that overlap by at least ``overlap``; the tiles are then
    made as small as that allows, so no pixel is computed more often than the overlap needs.
    """
    if n <= tile:
        return [0], n
    stride = max(1, tile - overlap)
    k = math.ceil((n - overlap) / stride)
    length = min(tile, max(math.ceil((n + (k - 1) * overlap) / k), 96))  # never under the network's minimum
    return [int(round(i * (n - length) / (k - 1))) for i in range(k)], length


def _window(length: int, start: int, n: int, ramp: int) -> np.ndarray:
    """1-D blend weight of one tile: 1 inside, ramping down towards edges shared with a neighbour."""
    w = np.ones(length, np.float32)
    if ramp <= 0:
        return w
    i = np.arange(length, dtype=np.float32) + 0.5
    if start > 0:
        w = np.minimum(w, i / ramp)
    if start + length < n:
        w = np.minimum(w, (length - i) / ramp)
    return w


@dataclass(frozen=True)
class TilePlan:
    """Where the equal tiles of an H×W image go, and how their gradients are cross-faded back together.

    Shared by the numpy loop below and by backends that run the whole ascent on the device.
    """

    H: int
    W: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    th: int
    tw: int
    overlap: int

    @property
    def single(self) -> bool:
        return len(self.ys) == 1 and len(self.xs) == 1

    @property
    def positions(self) -> list[tuple[int, int]]:
        """Top-left corners, row by row."""
        return [(y, x) for y in self.ys for x in self.xs]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    def chunks(self, batch: int) -> list[list[tuple[int, int]]]:
        """The positions in groups of at most ``batch`` (one network call each)."""
        pos, b = self.positions, max(1, int(batch))
        return [pos[i : i + b] for i in range(0, len(pos), b)]

    def window(self, y: int, x: int) -> np.ndarray:
        """float32 (th, tw): the blend weight of the tile at (y, x)."""
        return np.outer(_window(self.th, y, self.H, self.overlap), _window(self.tw, x, self.W, self.overlap))

    @functools.cached_property
    def inverse_weight_sum(self) -> np.ndarray:
        """float32 (H, W): 1 / the sum of every tile's window at each pixel (each pixel is covered)."""
        wsum = np.zeros((self.H, self.W), np.float32)
        for y, x in self.positions:
            wsum[y : y + self.th, x : x + self.tw] += self.window(y, x)
        return (1.0 / wsum).astype(np.float32)


@functools.lru_cache(maxsize=64)
def tile_plan(H: int, W: int, *, tile: int = 512, overlap: int = 64) -> TilePlan:
    ys, th = tile_starts(H, tile, overlap)
    xs, tw = tile_starts(W, tile, overlap)
    return TilePlan(H, W, tuple(ys), tuple(xs), th, tw, overlap)


def roll(img: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    return np.roll(img, shift, axis=(0, 1))


def tiled_gradient(
    img: np.ndarray,
    step: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    weights: np.ndarray,
    *,
    tile: int = 512,
    overlap: int = 64,
    batch: int = 4,
) -> tuple[np.ndarray, float]:
    """Gradient of the objective for a whole image, computed over equal tiles.

    Parameters
    ----------
    img : float32, shape (H, W, 3), in [-1, 1]
    step : backend step function ``(tiles (B,h,w,3), weights (L,)) -> (grads, losses (B,))``
    weights : float32, shape (L,)

    Returns
    -------
    grad : float32, shape (H, W, 3)
    loss : float, the tiles' mean loss
    """
    plan = tile_plan(*img.shape[:2], tile=tile, overlap=overlap)
    if plan.single:
        g, losses = step(img[None], weights)
        return g[0], float(losses[0])
    acc = np.zeros_like(img)
    loss_total = 0.0
    for chunk in plan.chunks(batch):
        tiles = np.stack([img[y : y + plan.th, x : x + plan.tw] for y, x in chunk])
        grads, losses = step(tiles, weights)
        loss_total += float(np.sum(losses))
        for (y, x), g in zip(chunk, grads):
            acc[y : y + plan.th, x : x + plan.tw] += g * plan.window(y, x)[..., None]
    return acc * plan.inverse_weight_sum[..., None], loss_total / plan.count
