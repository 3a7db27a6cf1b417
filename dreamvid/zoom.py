"""The infinite zoom (``dreamvid zoom``): each frame is the previous dream moved a little, then dreamed again.

It is a render (:func:`dreamvid.pipeline.render`, with its work folder, resume, progress and report) whose frame
source is not footage but :class:`Feedback`: frame 0 is the image; frame ``k`` is output ``k - 1`` moved by the
frame's camera motion (``[motion]`` zoom, rotate, translate, and the music's zoom pulse) and *held*:

its look (:class:`Look`: CIELAB colour statistics and the level of fine detail) is pulled a share ``hold`` of the
way back to the source image's, sharpening by at most ``sharpen`` per frame (:func:`hold_statistics`). A dream fed
back on itself otherwise drifts to grey mush, or to saturated colour and ever finer stripes, within a few hundred
frames.

The governor (``[video] strength``) keeps the dream's change per frame at its target. Pure numpy/OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .config import MotionParams
from .errors import ConfigError
from .video.flow import compose, motion_matrix, warp_motion

__all__ = ["Feedback", "Look", "hold_statistics", "still_info"]


@dataclass(frozen=True)
class Look:
    """What the infinite zoom holds on to: an image's colour statistics and its level of fine detail.

    Attributes
    ----------
    mean, std : float (3,), per channel of CIELAB (L, a, b): brightness, and the colourfulness that RGB statistics
        miss (RGB channels can each keep their spread while drifting apart into saturated colour)
    detail : float, mean |L - blur(L)| (Gaussian sigma 1 px): the level of fine detail
    """

    mean: np.ndarray
    std: np.ndarray
    detail: float

    @classmethod
    def of(cls, img: np.ndarray) -> Look:
        lab = _lab(img)
        flat = lab.reshape(-1, 3)
        return cls(flat.mean(axis=0), flat.std(axis=0), _detail(lab[..., 0]))


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def _detail(lightness: np.ndarray) -> float:
    return float(np.abs(lightness - cv2.GaussianBlur(lightness, (0, 0), 1.0)).mean())


def hold_statistics(img: np.ndarray, look: Look, *, hold: float, sharpen: float = 0.0) -> np.ndarray:
    """Pull ``img``'s look a share ``hold`` of the way back to ``look``.

    Colour: each CIELAB channel's mean and std move a share ``hold`` toward ``look``'s. Detail: the fine detail
    (:attr:`Look.detail`) moves the same share toward ``look``'s in ratio, by an unsharp mask when the frame has
    less (the moves' resampling blurs a little every frame) and a slight blur when it has more (a dream fed back on
    itself otherwise grows ever finer, ever more saturated stripes); the sharpening per frame is at most
    ``sharpen``. A fixed sharpening, which this replaced, compounded: it sharpened the dream's own detail too.

    Parameters
    ----------
    img : uint8 (H, W, 3) RGB
    look : Look, e.g. the source image's (:meth:`Look.of`)
    hold : 0..1 (0: leave the image alone, 1: match the look exactly in one frame)
    sharpen : >= 0, the most unsharp-mask amount in one frame

    Returns
    -------
    uint8 (H, W, 3)
    """
    if hold <= 0:
        return img
    lab = _lab(img)
    detail = _detail(lab[..., 0])
    if detail > 1e-6 and look.detail > 0:
        # unsharp amount a: fine detail scales by about (1 + a); a share `hold` of the way in ratio
        amount = float(np.clip((look.detail / detail) ** hold - 1.0, -0.5, sharpen))
        lab = lab + np.float32(amount) * (lab - cv2.GaussianBlur(lab, (0, 0), 1.0))
    flat = lab.reshape(-1, 3)
    m, s = flat.mean(axis=0), flat.std(axis=0)
    tm = m + hold * (np.asarray(look.mean, np.float32) - m)
    ts = s + hold * (np.asarray(look.std, np.float32) - s)
    lab = (lab - m) * (ts / np.maximum(s, 0.5)).astype(np.float32) + tm.astype(np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


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
        self.look = Look.of(image)

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
        return hold_statistics(moved, self.look, hold=p.hold, sharpen=p.sharpen)


def still_info(path: Path, *, fps: float, duration: float | None, song: Path | None):
    """A :class:`~dreamvid.video.VideoInfo` for the infinite zoom of the image at ``path``: its size, ``fps``,
    and as many frames as ``duration`` seconds, or the song's length, or the shorter of the two (``fps`` and
    ``duration`` are checked by :class:`~dreamvid.options.RenderOptions`)."""
    from . import video
    from .images import read_image

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
