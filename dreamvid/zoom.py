"""The infinite zoom (``dreamvid zoom``): each frame is the previous dream moved a little, then dreamed again.

It is a render (:func:`dreamvid.pipeline.render`, with its work folder, resume, progress and report) whose frame
source is not footage but :class:`Feedback`: frame 0 is the image; frame ``k`` is output ``k - 1`` moved by the
frame's camera motion (``[motion]`` zoom, rotate, translate, and the music's zoom pulse) and *held*:

* its per-channel mean and standard deviation are pulled a share ``hold`` of the way back to the source
  image's (a dream fed back on itself otherwise drifts to grey mush or to saturated colour within a few hundred
  frames), and
* an unsharp mask of amount ``sharpen`` gives back the detail that resampling blurs away every frame.

The governor (``[video] strength``) keeps the dream's change per frame at its target. Pure numpy/OpenCV.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .config import MotionParams
from .errors import ConfigError
from .video.flow import compose, motion_matrix, warp_motion

__all__ = ["Feedback", "hold_statistics", "still_info"]


def hold_statistics(img: np.ndarray, mean: np.ndarray, std: np.ndarray, *, hold: float,
                    sharpen: float = 0.0) -> np.ndarray:
    """Pull ``img``'s per-channel mean and std a share ``hold`` toward ``mean``/``std``, then unsharp-mask it.

    Parameters
    ----------
    img : uint8 (H, W, 3)
    mean, std : float (3,), the statistics to hold (e.g. the source image's)
    hold : 0..1 (0: leave the statistics alone, 1: match them exactly)
    sharpen : >= 0, unsharp-mask amount (Gaussian sigma 1 px)

    Returns
    -------
    uint8 (H, W, 3)
    """
    x = img.astype(np.float32)
    if hold > 0:
        m = x.reshape(-1, 3).mean(axis=0)
        s = x.reshape(-1, 3).std(axis=0)
        tm = m + hold * (np.asarray(mean, np.float32) - m)
        ts = s + hold * (np.asarray(std, np.float32) - s)
        x = (x - m) * (ts / np.maximum(s, 1.0)) + tm
    if sharpen > 0:
        x = x + np.float32(sharpen) * (x - cv2.GaussianBlur(x, (0, 0), 1.0))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class Feedback:
    """The frame source of the infinite zoom.

    Parameters
    ----------
    image : uint8 (H, W, 3), the start image at the render's size
    motion : (n, 4) float, per frame (zoom, rotate degrees, translate_x, translate_y fractions) — ``Schedule.motion``
    pulse : (n,) float, the music's zoom per frame (1: none) — ``Schedule.zoom``
    params : MotionParams, for ``hold`` and ``sharpen``
    """

    def __init__(self, image: np.ndarray, motion: np.ndarray, pulse: np.ndarray, params: MotionParams):
        self.image = image
        self.motion = np.asarray(motion, np.float64)
        self.pulse = np.asarray(pulse, np.float64)
        self.params = params
        flat = image.reshape(-1, 3).astype(np.float64)
        self.mean, self.std = flat.mean(axis=0), flat.std(axis=0)

    def move(self, k: int) -> np.ndarray:
        """The 3×3 move from frame ``k - 1`` to frame ``k``."""
        h, w = self.image.shape[:2]
        z, r, tx, ty = self.motion[k]
        return compose(motion_matrix((w, h), zoom=z * self.pulse[k], rotate=r, translate=(tx * w, ty * h)))

    def source(self, k: int, prev_out: np.ndarray | None) -> np.ndarray:
        """What frame ``k`` dreams from: the image (frame 0), else ``prev_out`` moved and held."""
        if k == 0 or prev_out is None:
            return self.image
        moved = warp_motion(prev_out, self.move(k), cubic=True)
        p = self.params
        return hold_statistics(moved, self.mean, self.std, hold=p.hold, sharpen=p.sharpen)


def still_info(path: Path, *, fps: float, duration: float | None, song: Path | None):
    """A :class:`~dreamvid.video.VideoInfo` for the infinite zoom of the image at ``path``: its size, ``fps``,
    and as many frames as ``duration`` seconds, or the song's length, or the shorter of the two."""
    from . import video
    from .images import read_image

    if not (isinstance(fps, (int, float)) and 1.0 <= fps <= 240.0):
        raise ConfigError(f"--fps must be from 1 to 240, got {fps}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ConfigError(f"--seconds must be above 0, got {duration}")
    img = read_image(path)
    seconds = duration
    if song is not None:
        song_seconds = video.stream_durations(song).get("audio")
        if song_seconds:
            seconds = song_seconds if duration is None else min(duration, song_seconds)
    if seconds is None:
        raise ConfigError("the zoom needs a length: pass --seconds N, or --song to last as long as the song")
    n = max(1, math.ceil(seconds * fps - 1e-6))
    h, w = img.shape[:2]
    return video.VideoInfo(path=Path(path), fps=float(fps), width=w, height=h, frame_count=n, duration=n / fps,
                           has_audio=False)
