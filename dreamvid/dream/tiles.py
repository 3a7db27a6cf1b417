"""Tiled gradients with random roll, so any image size dreams in bounded memory without visible seams.

Every tile of an image has the same shape, so the backend compiles once per octave and tiles batch together.
Neighbouring tiles overlap by ``overlap`` pixels and are cross-faded there; the random roll moves the seams
every step, so no seam stays in one place long enough to show.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    H, W = img.shape[:2]
    ys, th = tile_starts(H, tile, overlap)
    xs, tw = tile_starts(W, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        g, losses = step(img[None], weights)
        return g[0], float(losses[0])
    wy = [_window(th, y, H, overlap) for y in ys]
    wx = [_window(tw, x, W, overlap) for x in xs]
    acc = np.zeros_like(img)
    wsum = np.zeros((H, W), np.float32)
    positions = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    loss_total = 0.0
    batch = max(1, int(batch))
    for b0 in range(0, len(positions), batch):
        chunk = positions[b0 : b0 + batch]
        tiles = np.stack([img[ys[iy] : ys[iy] + th, xs[ix] : xs[ix] + tw] for iy, ix in chunk])
        grads, losses = step(tiles, weights)
        loss_total += float(np.sum(losses))
        for (iy, ix), g in zip(chunk, grads):
            w2 = np.outer(wy[iy], wx[ix])
            y, x = ys[iy], xs[ix]
            acc[y : y + th, x : x + tw] += g * w2[..., None]
            wsum[y : y + th, x : x + tw] += w2
    return acc / wsum[..., None], loss_total / len(positions)
