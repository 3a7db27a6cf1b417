"""Still-image reading and writing (uint8 RGB), with clear errors and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, OutputError
from .fsutil import atomic_output

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB HxWx3. Missing, empty, corrupt or non-image files raise InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give image files (e.g. {path}/*.jpg)")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); give a valid image file")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path} is not a readable image (corrupt, or not an image); give a JPEG, PNG, BMP, WebP or TIFF")
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF
        img = (img / (np.iinfo(img.dtype).max / 255.0)).astype(np.uint8) if img.dtype.kind == "u" else np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def fit(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """Scale down (never up) so the longest side is at most ``max_side``."""
    if not max_side or max(img.shape[:2]) <= max_side:
        return img
    f = max_side / max(img.shape[:2])
    w, h = max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def write_image(path: str | os.PathLike, img: np.ndarray, *, overwrite: bool = False, quality: int = 95) -> Path:
    """Write uint8 RGB atomically; the format follows the suffix."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise OutputError(f"cannot tell the image format of {path}: end the name in .jpg, .png, .webp, .bmp or .tif")
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix.lower(), bgr, params)
    if not ok:
        raise OutputError(f"could not encode {path}")
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            tmp.write_bytes(buf.tobytes())
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror}; choose a writable -o path") from None
    return path
