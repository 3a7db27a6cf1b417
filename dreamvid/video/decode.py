"""Read videos: probe their properties and stream their frames as uint8 RGB arrays.

Decoding uses OpenCV (its bundled FFmpeg). Frames are yielded one at a time; nothing here holds a
whole clip in memory. Skipping to a start frame uses sequential ``grab()`` calls, which are slower
than seeking but exact on every container (seeking in long-GOP H.264 lands on the wrong frame).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, VideoError

__all__ = [
    "VideoInfo",
    "probe",
    "output_size",
    "frame_range",
    "iter_frames",
    "has_audio",
    "ffmpeg_exe",
    "ffmpeg_listing",
]

#: Consecutive decode failures after which a stream is treated as ended.
_MAX_BAD_FRAMES = 60


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with ``imageio-ffmpeg``."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video file.

    Attributes
    ----------
    path : Path
    fps : float
        Frames per second (e.g. ``29.97002997`` for 30000/1001).
    width, height : int
        Frame size in pixels.
    frame_count : int
        Number of frames (from the container, or counted by decoding when the container does not say).
    duration : float
        ``frame_count / fps`` in seconds.
    has_audio : bool
        Whether the file holds at least one audio stream.
    """

    path: Path
    fps: float
    width: int
    height: int
    frame_count: int
    duration: float
    has_audio: bool


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video {path} does not exist: check the path")
    if path.is_dir():
        raise VideoError(f"video {path} is a folder: give the path of a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"video {path} is empty (0 bytes): re-export or re-download it")
    return path


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(
            f"cannot open {path} as a video: the file is corrupt or not a video; "
            "try converting it to MP4 (H.264) with ffmpeg"
        )
    return cap


def ffmpeg_listing(path: str | os.PathLike) -> str:
    """The stderr of ``ffmpeg -i path``: the container and stream listing, or why it cannot be read."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    return proc.stderr.decode("utf-8", "replace")


def has_audio(path: str | os.PathLike) -> bool:
    """Return whether ``path`` holds an audio stream (parsed from ``ffmpeg -i``)."""
    return re.search(r"Stream #\d+:\d+.*?: Audio:", ffmpeg_listing(path)) is not None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open a video and read its frame rate, size, frame count and whether it has sound.

    Parameters
    ----------
    path : str or PathLike
        A video file that OpenCV's FFmpeg backend can read.

    Returns
    -------
    VideoInfo

    Raises
    ------
    VideoError
        If the file is missing, empty, corrupt, not a video, or has no decodable frame.
    """
    path = _check_file(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(
                f"{path} has no decodable video frames: the file is truncated or holds no video stream; re-export it"
            )
        if width <= 0 or height <= 0:
            height, width = frame.shape[:2]
        if count <= 0:  # the container does not say: count by decoding
            count = 1
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        raise VideoError(f"{path} has no valid frame rate ({fps!r}): re-export it with a fixed frame rate")
    return VideoInfo(
        path=path,
        fps=fps,
        width=width,
        height=height,
        frame_count=count,
        duration=count / fps,
        has_audio=has_audio(path),
    )


def output_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """Size of the rendered frames: same aspect, longest side at most ``max_side``, both sides even.

    H.264 in yuv420p needs even dimensions, so odd sides are rounded down. Frames are never upscaled.

    Parameters
    ----------
    width, height : int
        Source frame size in pixels.
    max_side : int or None
        Limit for the longest side; ``None`` keeps the source size (only rounding odd sides down).

    Returns
    -------
    (width, height) : tuple of int
        Both even and >= 2.
    """
    if width < 2 or height < 2:
        raise ConfigError(f"frame size {width}x{height} is too small: both sides must be at least 2 pixels")
    scale = 1.0
    if max_side is not None:
        if max_side < 2:
            raise ConfigError(f"max side {max_side} is too small: use at least 2 (e.g. 512)")
        scale = min(1.0, max_side / max(width, height))
    w = max(2, int(width * scale + 0.5) // 2 * 2)
    h = max(2, int(height * scale + 0.5) // 2 * 2)
    return w, h


def frame_range(info: VideoInfo, start: float = 0.0, duration: float | None = None) -> tuple[int, int]:
    """Translate a time window into frame indices.

    Parameters
    ----------
    info : VideoInfo
    start : float
        Start time in seconds, >= 0.
    duration : float or None
        Length in seconds (> 0); ``None`` runs to the end. A window past the end is shortened.

    Returns
    -------
    (first, count) : tuple of int
        ``first = round(start * fps)`` and the number of frames, >= 1.

    Raises
    ------
    ConfigError
        If ``start`` is negative or beyond the end, or ``duration`` is not positive.
    """
    if not math.isfinite(start) or start < 0:
        raise ConfigError(f"start {start} s is invalid: use a time >= 0 seconds")
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise ConfigError(f"duration {duration} s is invalid: use a positive number of seconds")
    first = int(round(start * info.fps))
    if first >= info.frame_count:
        raise ConfigError(
            f"start {start:g} s is beyond the end of {info.path.name} ({info.duration:.2f} s long): "
            "choose an earlier start"
        )
    available = info.frame_count - first
    if duration is None:
        return first, available
    return first, max(1, min(available, int(round(duration * info.fps))))


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"frame size {size!r} is invalid: give (width, height)") from None
    if w < 1 or h < 1:
        raise ConfigError(f"frame size {w}x{h} is invalid: both sides must be positive")
    return w, h


def _skipped_message(path: Path, skipped: list[int]) -> str:
    where = f"frame {skipped[0]}" if len(skipped) == 1 else f"frames {skipped[0]}-{skipped[-1]}"
    return f"{where} of {path.name} could not be decoded and {'was' if len(skipped) == 1 else 'were'} skipped"


def iter_frames(
    path: str | os.PathLike,
    *,
    first: int = 0,
    count: int | None = None,
    size: tuple[int, int] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of a video.

    Parameters
    ----------
    path : str or PathLike
    first : int
        Index of the first frame to yield; earlier frames are skipped with ``grab()`` (exact).
    count : int or None
        Stop after this many frames; ``None`` reads to the end of the stream.
    size : (width, height) or None
        Resize every frame to this size with ``INTER_AREA``; ``None`` keeps the source size.
    on_warning : callable or None
        Called with a one-line message for each run of frames that fail to decode mid-stream (they
        are skipped and decoding goes on), and when the stream ends before the frame count its
        header announces.

    Yields
    ------
    frame : ndarray, shape (H, W, 3), dtype uint8
        RGB frame.

    Raises
    ------
    VideoError
        If the file is missing, empty or cannot be opened.
    """
    path = _check_file(path)
    size = _check_size(size)
    if first < 0:
        raise ConfigError(f"first frame {first} is invalid: use an index >= 0")
    if count is not None and count <= 0:
        return
    cap = _open(path)
    try:
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for _ in range(first):
            if not cap.grab():
                return
        yielded = 0
        index = first  # index of the next frame to read
        skipped: list[int] = []  # failed frames not yet reported: reported once decoding goes on
        while count is None or yielded < count:
            ok, frame = cap.read()
            if not ok or frame is None:
                # End of stream, or a frame that failed to decode mid-stream?
                if expected <= 0 or index >= expected:
                    break
                skipped.append(index)
                index += 1
                if len(skipped) > _MAX_BAD_FRAMES:
                    break
                continue
            if skipped and on_warning is not None:
                on_warning(_skipped_message(path, skipped))
            skipped = []
            index += 1
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if size is not None and (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            yielded += 1
            yield frame
        if skipped and on_warning is not None:
            on_warning(
                f"{path.name} ended at frame {skipped[0]}, {expected - skipped[0]} frame(s) before the end "
                "its header announces (truncated or damaged file)"
            )
    finally:
        cap.release()
