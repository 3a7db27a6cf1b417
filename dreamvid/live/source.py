"""What a live frame dreams from: a camera, a looped clip, or an image (the infinite zoom), prepared off the loop.

The loop dreams the frames it has time for, so the frame indices it takes have gaps. :class:`Preparer` runs in
its own thread: when the loop asks for the next frame it waits until that frame is due on the song's clock
(never earlier than the loop will want it), captures it, moves it by the film's camera and measures its motion
from the last frame the loop dreamed, and hands it over with the schedule to dream it with. When ``--record``
keeps the footage (:mod:`.footage`), each frame is captured at the source's own size, kept, and dreamed as the
recording will decode.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import sources, video
from ..errors import InputError
from ..images import read_image

__all__ = ["Camera", "Clip", "Still", "open_source", "Preparer", "Prepared"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _resize(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``img`` at ``size``; None: at its own size, cropped to even sides (what H.264 can keep)."""
    if size is None:
        h, w = img.shape[:2]
        return img if not (w % 2 or h % 2) else np.ascontiguousarray(img[:h - h % 2, :w - w % 2])
    if img.shape[1] == size[0] and img.shape[0] == size[1]:
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _native(width: int, height: int) -> tuple[int, int]:
    return width - width % 2, height - height % 2


class Camera:
    """A camera through OpenCV (``cv2.VideoCapture(index)``), read continuously in its own thread (so its buffer
    never holds stale frames); :meth:`raw` gives the newest frame and when it was read. (OpenCV opens a video file
    or a stream's URL the same way: the tests play a clip as a camera.)"""

    kind = "camera"

    def __init__(self, index: int | str):
        self.index = index
        cap = cv2.VideoCapture(index)
        ok, frame = (cap.read() if cap.isOpened() else (False, None))
        if not ok or frame is None:
            cap.release()
            raise InputError(f"camera {index} cannot be opened (no such device, or it is busy): give another "
                             "camera index, a clip or an image")
        self.width, self.height = frame.shape[1], frame.shape[0]
        self.native = _native(self.width, self.height)  # what --record keeps
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
        self._cap = cap
        self._latest = (frame, time.monotonic())
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="dreamvid-camera", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self._latest = (frame, time.monotonic())
            else:
                time.sleep(0.01)

    def raw(self, k: int, size: tuple[int, int] | None, due: float) -> tuple[np.ndarray, float]:
        """The newest frame at ``size`` (None: the camera's own, even) and when it was read."""
        frame, at = self._latest
        return _resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), size), at

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=2)
        self._cap.release()


class Clip:
    """A clip played in a loop at its own rate: live frame ``k`` (song time ``k / fps``) shows clip frame
    ``floor(k × clip_fps / fps) mod n``. Decoded in order (frames between two dreamed ones are decoded and
    dropped), from the start again when it wraps."""

    kind = "clip"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.info = video.probe(self.path)
        self.width, self.height, self.fps = self.info.width, self.info.height, self.info.fps
        self.native = _native(self.width, self.height)  # what --record keeps
        self.film_fps = self.fps  # the live run's frame rate (the session sets it)
        self._it = None
        self._i = -1
        self._frame = None
        self._size = None

    def frame_of(self, k: int) -> int:
        """The clip frame that film frame ``k`` shows (unwrapped: at or past ``frame_count``, the clip has looped)."""
        return int(math.floor(k * self.info.fps / self.film_fps + 1e-9))

    def raw(self, k: int, size: tuple[int, int] | None, due: float) -> tuple[np.ndarray, float]:
        """Film frame ``k``'s clip frame at ``size`` (None: the clip's own, even) and when it is due."""
        n = self.info.frame_count
        j = self.frame_of(k) % n
        if self._it is None or j < self._i or size != self._size:
            self.close()
            self._it, self._i, self._size = video.iter_frames(self.path, size=size, info=self.info), -1, size
        while self._i < j:
            try:
                self._frame = next(self._it)
            except StopIteration:  # fewer frames than probed: wrap here
                self.close()
                self._it, self._i = video.iter_frames(self.path, size=size, info=self.info), -1
                j = 0
                continue
            self._i += 1
        return _resize(self._frame, size), due

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None


class Still:
    """An image: the infinite zoom (each frame the previous output moved and held, ``zoom.Feedback``)."""

    kind = "image"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.image = read_image(self.path)
        self.height, self.width = self.image.shape[:2]
        self.fps = 25.0
        self._feedback = None

    def raw(self, k: int, size: tuple[int, int], due: float) -> tuple[np.ndarray, float]:
        return _resize(self.image, size), due

    def feedback(self, schedule, motion, size: tuple[int, int]):
        """The zoom's source for ``schedule`` at ``size`` (kept while neither changes)."""
        from ..zoom import Feedback

        key = (id(schedule), size)
        if self._feedback is None or self._feedback[0] != key:
            self._feedback = (key, Feedback(_resize(self.image, size), schedule.motion, schedule.zoom, motion))
        return self._feedback[1]

    def close(self) -> None:
        pass


def open_source(text: str):
    """A camera index (``0``, ``1``, …), a clip or an image: opened now, or one clear line (:class:`InputError`)."""
    if text.isdigit():
        return Camera(int(text))
    path = Path(text)
    if not path.exists():
        raise InputError(f"{text} is neither a camera index (0, 1, ...) nor an existing clip or image")
    if path.is_dir():
        raise InputError(f"{text} is a folder: give a camera index (0, 1, ...), a clip or an image")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return Still(path)
    return Clip(path)


@dataclass
class Prepared:
    """A frame ready for the loop: the source frame, the schedule to dream it with, and when it was captured
    (monotonic seconds)."""

    frame: sources.SourceFrame
    schedule: object
    captured: float


class Preparer:
    """Prepares the loop's next frame in its own thread (capture, camera, flow), as late as it can.

    ``ask(k_min, size, at)``: prepare the first frame ``>= k_min`` that is due, not before monotonic time ``at``
    (when the loop expects to want it, less the preparation's own time); ``take()`` waits for it (None: the run
    is over). ``perf.begin(k)`` is called here, so the camera and the dream of frame k use the same schedule.
    ``footage`` (:class:`.footage.Footage`, or None): each frame is captured at the source's own size, kept, and
    dreamed as the recording decodes.
    """

    def __init__(self, source, clock, perf, video_params, *, last_frame: int | None, stop: threading.Event,
                 footage=None):
        self.source, self.clock, self.perf, self.stop = source, clock, perf, stop
        self.footage = footage
        self.last_frame = last_frame
        self.track = sources.Track(video_params) if not isinstance(source, Still) else None
        self.seconds = 0.0  # the last preparation's time
        self._ask = threading.Condition()
        self._request = None
        self._ready: Prepared | None | BaseException = None
        self._done = threading.Event()
        self._t = threading.Thread(target=self._run, name="dreamvid-capture", daemon=True)
        self._t.start()

    def ask(self, k_min: int, size: tuple[int, int], at: float = 0.0) -> None:
        with self._ask:
            self._done.clear()
            self._request = (k_min, size, at)
            self._ask.notify()

    def take(self) -> Prepared | None:
        while not self._done.wait(0.05):
            if self.stop.is_set():
                return None
        got = self._ready
        if isinstance(got, BaseException):
            raise got
        return got

    def _run(self) -> None:
        while not self.stop.is_set():
            with self._ask:
                while self._request is None and not self.stop.is_set():
                    self._ask.wait(0.05)
                if self._request is None:
                    return
                (k_min, size, at), self._request = self._request, None
            try:
                self._ready = self._prepare(k_min, size, at)
            except BaseException as e:  # handed to the loop
                self._ready = e
            self._done.set()

    def _prepare(self, k_min: int, size: tuple[int, int], at: float) -> Prepared | None:
        while time.monotonic() < at and not self.stop.is_set():
            self.stop.wait(min(0.02, max(0.0, at - time.monotonic())))
        k = max(k_min, self.clock.frame())
        if not self.clock.wait_frame(k, self.stop):
            return None
        k = max(k, self.clock.frame())  # waiting may have taken us past it
        if (self.last_frame is not None and k > self.last_frame) or self.clock.ended():
            return None
        t = time.perf_counter()
        schedule = self.perf.begin(k)
        schedule.frame(k)  # its parameters are fixed now: with --audio-in, from what was heard up to frame k
        due = self.clock.wall_of(k / self.clock.fps)
        if self.footage is None:
            raw, captured = self.source.raw(k, size, due)
        else:  # the frame as the source gives it is kept; the dream sees what the render of it will decode
            raw, captured = self.source.raw(k, None, due)
            raw = self.footage.keep(k, raw, size)
        if self.track is None:
            frame = sources.SourceFrame(k, raw)  # the zoom's source needs the frame just dreamed: the loop makes it
        else:
            frame = self.track(k, raw, schedule, size)
        self.seconds = time.perf_counter() - t
        return Prepared(frame, schedule, captured)

    def close(self) -> None:
        self.stop.set()
        with self._ask:
            self._ask.notify()
        self._t.join(timeout=5)
