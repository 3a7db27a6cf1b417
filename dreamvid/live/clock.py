"""The time base of a live run, in seconds; frame ``k`` is ``t × fps``: the song's playback clock (``--song``), the
sound card's (``--audio-in``: the samples heard), or one frame per frame dreamed (tests)."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["SongClock", "FrameClock", "AudioClock"]


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


class AudioClock(SongClock):
    """The sound card's clock (``--audio-in``): the time is the samples heard over the sample rate, advanced by the
    listener after it has analysed them, so frame ``k`` is due only once its features are known. It moves in
    blocks (512 samples: 11.6 ms at 44.1 kHz) and never runs ahead of the sound; the capture's sample ``s`` is at
    ``s / sr`` seconds on it, so the recorded performance's keyframes line up with the captured WAV.

    Parameters
    ----------
    fps : float, the film's frame rate; sr : int, the sound card's sample rate
    duration : float or None, the run ends there (``--seconds``)
    """

    def __init__(self, fps: float, *, sr: int, duration: float | None = None):
        super().__init__(fps, duration=duration)
        self.sr = int(sr)
        self._samples = 0
        self._at: float | None = None  # monotonic time of the last block
        self._stopped = False
        self._moved = threading.Condition()

    def start(self) -> None:
        pass  # the sound card starts it

    def heard(self, samples: int) -> None:
        """The listener has analysed ``samples`` samples (from the start of the run)."""
        with self._moved:
            self._samples = max(self._samples, int(samples))
            self._at = time.monotonic()
            self._moved.notify_all()

    def stop(self) -> None:
        """The sound stopped for good (an error): the run ends."""
        with self._moved:
            self._stopped = True
            self._moved.notify_all()

    def now(self) -> float:
        return self._samples / self.sr

    def wall_of(self, t: float) -> float:
        with self._moved:
            at = self._at if self._at is not None else time.monotonic()
            return at + (t - self._samples / self.sr)

    def sync(self, t: float, *, playing: bool) -> None:
        pass  # the page plays nothing: the sound card is the clock

    def wait_frame(self, k: int, stop: threading.Event) -> bool:
        due = math.ceil(k * self.sr / self.fps - 1e-9)  # the samples frame k is computed from (CausalAnalyzer's)
        with self._moved:
            while self._samples < due and not stop.is_set() and not self._stopped:
                self._moved.wait(0.05)
        return not stop.is_set() and not self._stopped

    def ended(self) -> bool:
        return self._stopped or super().ended()
