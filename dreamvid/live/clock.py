"""The time base of a live run: the song's playback clock, in seconds of the song; frame ``k`` is ``t × fps``."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["SongClock", "FrameClock"]


class SongClock:
    """The song's clock. It runs on the wall clock from :meth:`start` (as if the song started playing then) until
    the page reports its audio element's ``currentTime``; from then on it follows the page's playback (the audio
    clock drifts from the wall clock), slewed, never backwards.

    Parameters
    ----------
    fps : float, the film's frame rate
    duration : float or None, the song's length in seconds (the run ends there)
    """

    def __init__(self, fps: float, *, duration: float | None = None):
        self.fps = float(fps)
        self.duration = duration
        self._lock = threading.Lock()
        self._t0: float | None = None  # wall time at song time 0 (monotonic)
        self._last = 0.0
        self.synced = False  # the page's playback drives it

    def start(self) -> None:
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()

    def now(self) -> float:
        """Song seconds (0 before :meth:`start`); never decreases."""
        with self._lock:
            if self._t0 is None:
                return 0.0
            self._last = max(self._last, time.monotonic() - self._t0)
            return self._last

    def frame(self) -> int:
        return int(math.floor(self.now() * self.fps + 1e-9))

    def wall_of(self, t: float) -> float:
        """The monotonic wall time at which song time ``t`` is (was) due."""
        with self._lock:
            return (self._t0 if self._t0 is not None else time.monotonic()) + t

    def sync(self, t: float, *, playing: bool) -> None:
        """The page's audio is at ``t`` seconds now (``playing``: it is running)."""
        if not playing or not math.isfinite(t):
            return
        with self._lock:
            self.synced = True
            self._t0 = time.monotonic() - float(t)  # now() stays monotonic through _last

    def wait_frame(self, k: int, stop: threading.Event) -> bool:
        """Sleep until frame ``k`` is due; False if ``stop`` was set meanwhile."""
        while not stop.is_set():
            delay = self.wall_of(k / self.fps) - time.monotonic()
            if delay <= 0:
                return True
            stop.wait(min(delay, 0.05))
        return False

    def ended(self) -> bool:
        return self.duration is not None and self.now() >= self.duration


class FrameClock(SongClock):
    """A clock that moves one frame per frame dreamed: every frame of the film is dreamed, as a render does (the
    tests' exact comparison with the offline render, and a performance script played faster than real time)."""

    def __init__(self, fps: float, *, duration: float | None = None):
        super().__init__(fps, duration=duration)
        self._k = 0

    def start(self) -> None:
        pass

    def now(self) -> float:
        return self._k / self.fps

    def frame(self) -> int:
        return self._k

    def advance(self) -> None:
        self._k += 1

    def wall_of(self, t: float) -> float:
        return time.monotonic()

    def sync(self, t: float, *, playing: bool) -> None:
        pass
