"""Octave pyramids and resizing."""

from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE = 75  # InceptionV3's smallest valid input


def octave_shapes(height: int, width: int, *, octaves: int, scale: float, min_side: int = MIN_SIDE) -> list[tuple[int, int]]:
    """(h, w) of each octave, smallest first and ``(height, width)`` last.

    Octave ``i`` (counting down from the full size) is the full size divided by ``scale**i``. Octaves whose
    short side would fall below ``min_side`` are dropped, so small images get fewer octaves.
    """
    shapes = []
    for i in range(max(1, octaves) - 1, -1, -1):
        f = float(scale) ** i
        h, w = int(round(height / f)), int(round(width / f))
        if i > 0 and min(h, w) < min_side:
            continue
        shapes.append((h, w))
    return shapes


def resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC array to ``shape`` = (h, w): area averaging to shrink, bilinear to grow."""
    h, w = shape
    if img.shape[:2] == (h, w):
        return img
    interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)
