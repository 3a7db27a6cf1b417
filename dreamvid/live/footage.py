"""``--record``'s footage: the source as the live film saw it, for the render that replays the performance.

``dreamvid render clip.mp4 --config perf.toml`` replays a performance on the clip itself, which it plays once, at
the clip's own rate. A camera's frames exist only live, and a clip that the film loops, or plays at another rate,
is not that film's footage. So where the render could not get the film's footage from the input, ``--record
perf.toml`` also writes ``perf.source.mp4``: one frame per film frame, at the film's frame rate and the source's own
size (a camera's or a clip's: the render may be larger than live), the frame that live prepared film frame ``k``
from (before the camera move: the render applies ``[motion]`` itself), the last captured frame repeated for the
frames the loop skipped (and the first one for the frames before it), and, when the run reaches the film's end,
the last one up to the end, so the replay is as long as the live film (the song's length, or ``--seconds``).

It is lossless (H.264 at crf 0, as a render's pieces): the render decodes the very frames that were written, and
live dreams each frame as that decoding gives it (:class:`~dreamvid.video.recorded.AsRecorded`), so the replay at
live's size computes the same pixels on every frame live dreamed (tested). Lossless camera footage is large
(measured in docs/live.md); the crf-18 alternative would be ten times smaller but the replay would dream from
slightly different pixels than live did.

Written as it comes, by a :class:`~dreamvid.threads.Behind` worker (the loop never waits on the encoder unless it
falls eight frames behind), into a work folder beside it, and published atomically at the end (``publish``); a
run that fails leaves nothing.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .. import publish, video
from ..errors import OutputError
from ..fsutil import check_output
from ..threads import Behind, close_quietly
from ..video.recorded import AsRecorded

__all__ = ["FOOTAGE_CRF", "Footage", "check_footage", "footage_path", "needs_footage"]

#: Lossless: the render decodes exactly what live dreamed from (see the module's notes).
FOOTAGE_CRF = 0


def footage_path(record: Path) -> Path:
    """Where ``--record PATH.toml`` keeps the footage: ``PATH.source.mp4``."""
    return Path(record).with_suffix(".source.mp4")


def needs_footage(source, *, fps: float, frames: int) -> bool:
    """Whether a render of the input could not replay a film of ``frames`` frames at ``fps`` from ``source``: a
    camera; a clip whose rate is not the film's, or that the film loops."""
    if source.kind == "camera":
        return True
    if source.kind != "clip":
        return False  # an image: the zoom renders from the image itself
    return abs(source.fps - fps) > 1e-9 * fps or source.frame_of(frames - 1) >= source.info.frame_count


def _work(path: Path) -> Path:
    return path.with_name(path.name + ".dreamvid-live")


def check_footage(path: Path, *, overwrite: bool) -> None:
    """Before the run: the footage can be written there (one line if not)."""
    check_output(path, overwrite=overwrite)
    if _work(path).exists():
        raise OutputError(f"{_work(path)} is in the way (left by a live run that was killed?): remove it")


class Footage:
    """The footage of a live run being recorded (see the module's notes).

    Parameters
    ----------
    path : where it goes (``footage_path(record)``)
    fps : the film's frame rate; size : (width, height), even: the source's own size
    film : (width, height): the film's size, at which live dreams
    overwrite : replace an existing file at ``path``
    """

    def __init__(self, path: Path, *, fps: float, size: tuple[int, int], film: tuple[int, int], overwrite: bool):
        self.path, self.size, self.film, self.overwrite = Path(path), size, film, overwrite
        check_footage(self.path, overwrite=overwrite)
        self.work = _work(self.path)
        self.work.mkdir(parents=True)
        self.writer = self.worker = self.as_recorded = None
        try:
            self.writer = video.FrameWriter(self.work / "source.mp4", fps=fps, size=size, crf=FOOTAGE_CRF,
                                            preset="ultrafast", overwrite=True)
            self.writer.__enter__()
            self.as_recorded = AsRecorded(size=size, out=film)
            self.worker = Behind(depth=8, name="dreamvid-live-footage")
        except BaseException:
            self._discard()
            raise
        self.next = 0  # the next film frame to write
        self.last: np.ndarray | None = None

    def keep(self, k: int, raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Keep film frame ``k`` (``raw``: uint8 RGB at the source's own size; ``k`` rises) and return it as the
        render will decode it, at ``size`` (the film's, or smaller where the pacer chose it)."""
        self.worker.submit(functools.partial(self._write, k, raw))
        film = self.as_recorded(raw)
        if size == self.film:
            return film
        return cv2.resize(film, size, interpolation=cv2.INTER_AREA)

    def _write(self, k: int, raw: np.ndarray) -> None:
        fill = raw if self.last is None else self.last
        while self.next < k:
            self.writer.write(fill)
            self.next += 1
        self.writer.write(raw)
        self.next, self.last = k + 1, raw

    def _pad(self, frames: int) -> None:
        while self.last is not None and self.next < frames:
            self.writer.write(self.last)
            self.next += 1

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self.next

    def finish(self, *, ok: bool, frames: int | None = None, on_warning: Callable[[str], None] | None = None
               ) -> Path | None:
        """End the recording: pad it to ``frames`` (the film's length, when the run reached its end), then publish
        it (``ok``) or remove it. Returns the path, or None (a failed run, or no frame)."""
        failure = None
        try:
            if ok and frames is not None:
                self.worker.submit(functools.partial(self._pad, frames))
            self.worker.close(drain=ok)
        except BaseException as e:  # the encoder's error, or a Ctrl-C while it drains
            failure, ok = e, False
        finally:
            self.as_recorded.close()
        try:
            self.writer.__exit__(None if ok else RuntimeError, None, None)
        except BaseException as e:
            failure, ok = failure or e, False
        if not ok or self.next == 0:
            shutil.rmtree(self.work, ignore_errors=True)
            if failure is not None:
                raise failure
            return None
        try:
            publish.place_all([(self.work / "source.mp4", self.path)], overwrite=self.overwrite, work=self.work)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        return self.path

    def _discard(self) -> None:
        if self.worker is not None:
            close_quietly(self.worker)
        if self.as_recorded is not None:
            self.as_recorded.close()
        if self.writer is not None:
            self.writer.__exit__(RuntimeError, None, None)
        shutil.rmtree(self.work, ignore_errors=True)
