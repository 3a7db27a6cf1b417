"""What a lossless recording of frames decodes to, one frame at a time, without writing it.

H.264 stores ``yuv420p``: a frame that :class:`~dreamvid.video.encode.FrameWriter` writes losslessly (crf 0) comes
back from :func:`~dreamvid.video.decode.iter_frames` as the same YUV planes turned back into RGB (and scaled) by
the decoder's filter, not as the RGB that was written (the chroma is subsampled and the matrix rounds).
:class:`AsRecorded` gives that picture at once, through one ffmpeg process that runs the writer's conversion and
the decoder's scaling back to back, so ``dreamvid live`` dreams exactly what a render of its recorded footage will
decode: bit for bit, tested against ``FrameWriter(crf=0)`` then ``iter_frames`` (``tests/test_live.py``).
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import tempfile
import threading

import numpy as np

from ..errors import VideoError
from .decode import SCALE_FLAGS, ffmpeg_exe
from .encode import _BT709, _last_line

__all__ = ["AsRecorded"]

#: The decoder's scaling (``decode._filters``): the flags it scales and converts a frame to RGB with.



class AsRecorded:
    """Frames as a lossless recording of them decodes: ``FrameWriter(crf=0)`` then ``iter_frames(size=out)``.

    ``as_recorded(frame)`` takes a uint8 RGB frame of ``size`` and returns the uint8 RGB frame of ``out`` that the
    decoder gives for it. One ffmpeg process converts every frame, as soon as it is written (no frame is held back),
    in about a millisecond at 640×480 and 7 at 1080p; use it from one thread, and :meth:`close` it (or use it as a
    context manager).

    Parameters
    ----------
    size : (width, height), even: the frames written
    out : (width, height), even: the frames decoded (the render's size)
    """

    def __init__(self, *, size: tuple[int, int], out: tuple[int, int]):
        self.size, self.out = (int(size[0]), int(size[1])), (int(out[0]), int(out[1]))
        to_yuv = _BT709[_BT709.index("-vf") + 1]
        chain = f"{to_yuv},scale={self.out[0]}:{self.out[1]}:{SCALE_FLAGS},format=rgb24"
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "0",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.size[0]}x{self.size[1]}", "-framerate", "25",
            "-i", "pipe:0", "-vf", chain,
            # passthrough and one encoder thread: each frame comes out as soon as it went in (a constant frame rate
            # or a threaded encoder would hold it until the next one)
            "-fps_mode", "passthrough", "-threads", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                          start_new_session=True)  # Ctrl-C reaches Python, which stops it
        except OSError as e:
            self._log.close()
            raise VideoError(f"cannot start ffmpeg to convert the frames: {e}") from None
        self._frames: queue.Queue = queue.Queue()  # one frame out per frame in
        self._reader = threading.Thread(target=self._read, name="dreamvid-as-recorded", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        w, h = self.out
        while True:
            frame = np.empty((h, w, 3), np.uint8)
            view, got = memoryview(frame).cast("B"), 0
            while got < len(view):
                n = self._proc.stdout.readinto(view[got:])
                if not n:
                    self._frames.put(None)
                    return
                got += n
            self._frames.put(frame)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"a frame of {self.size[0]}x{self.size[1]} uint8 RGB was expected, got {frame.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
            self._proc.stdin.flush()
            got = self._frames.get(timeout=30)
        except (OSError, ValueError, queue.Empty):
            got = None
        if got is None:
            raise VideoError(f"ffmpeg stopped converting the frames: {self._message() or 'no reason given'}")
        return got

    def _message(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            return _last_line(self._log.read().decode("utf-8", "replace"))
        return ""

    def close(self) -> None:
        proc = self._proc
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            proc.stdout.close()
        self._log.close()

    def __enter__(self) -> AsRecorded:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
