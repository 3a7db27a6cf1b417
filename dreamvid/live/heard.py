"""``--audio-in``: what the sound card heard, the schedule it drives, and the capture. No sounddevice here.

The sound card's blocks go through :class:`Listener` (its own thread): ``audio.CausalAnalyzer`` turns them into
each film frame's features as soon as the signal reaches the frame's time (:class:`Heard` keeps the last ones),
the samples heard are the run's clock (``clock.AudioClock``: frame ``k`` is due once ``k / fps`` seconds of sound
have arrived, so its features are there), and the capture is written as a WAV.

:class:`CausalSchedule` is the film's schedule with the music known only up to now: frame ``k``'s parameters are
the last frame of the film's schedule (the preset's schedules and the live controls' keyframes, the config that
``pipeline.film_schedule`` builds from) built over the last frames heard, ``schedule.build_schedule(frames=...)``
with their features. That equals ``build_schedule`` over the whole causal history at frame ``k`` (tested): the
keyframes and the schedules that read a feature (``zoom-tunnel``'s ``zoom = "1.012 + 0.02*energy"``) are functions
of the frame's own time and features, so are the music's reactions, and the pulse, the one reaction with a memory,
has decayed below 1e-6 beyond the frames looked at.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import HEARD_NAMES, AudioFeatures, CausalAnalyzer, HeardFrame
from ..audiomap import validate_audio_table
from ..errors import ConfigError, DreamvidError, OutputError
from ..keyframes import FEATURES, parse

__all__ = ["Heard", "CausalSchedule", "Listener", "check_config", "span_of"]

_TAIL = 1e-6  # the pulse's decayed tail beyond the frames a causal frame looks at
_STALL = 2.0  # seconds without a block before a warning says so


def span_of(table, *, fps: float) -> int:
    """How many frames of features frame ``k``'s parameters look at: enough that the pulse (``pulse_decay``, 0.1 s by
    default, as ``build_schedule``'s) of an older frame has decayed below 1e-6."""
    decay = float(validate_audio_table(table).get("pulse_decay", 0.1))
    return 2 + math.ceil(math.log(1.0 / _TAIL) * fps * decay)


class Heard:
    """The features of the last ``capacity`` frames heard (a ring), written by the listener, read by the schedule.

    Parameters
    ----------
    fps : float, the film's frame rate; sr : int, the sound card's sample rate; capacity : frames kept
    """

    def __init__(self, *, fps: float, sr: int, capacity: int):
        self.fps, self.sr, self.capacity = float(fps), int(sr), int(capacity)
        self._rows = np.zeros((self.capacity, len(HEARD_NAMES)), np.float32)
        self.newest = -1  # the newest frame heard
        self._lock = threading.Lock()

    def put(self, frame: HeardFrame) -> None:
        with self._lock:
            self._rows[frame.k % self.capacity] = frame.values()
            self.newest = max(self.newest, frame.k)

    def latest(self) -> dict[str, float] | None:
        """The newest frame's features (for the page), or None before any."""
        with self._lock:
            if self.newest < 0:
                return None
            row = self._rows[self.newest % self.capacity]
            return {name: round(float(v), 3) for name, v in zip(HEARD_NAMES, row)}

    def window(self, k: int, n: int) -> AudioFeatures:
        """Frames ``k - n + 1 .. k`` as :class:`~dreamvid.audio.AudioFeatures` (frame ``k`` last): silence before the
        signal and beyond what the ring keeps; a frame not heard yet holds the newest (never ahead of the sound)."""
        ks = np.arange(k - n + 1, k + 1)
        with self._lock:
            newest = self.newest
            src = np.minimum(ks, newest)
            rows = self._rows[src % self.capacity]  # fancy indexing: a copy
        rows[(src < 0) | (src <= newest - self.capacity)] = 0.0
        cols = {name: rows[:, i] for i, name in enumerate(HEARD_NAMES)}
        return AudioFeatures(fps=self.fps, n_frames=n, duration=n / self.fps, sr=self.sr, tempo=0.0,
                             beat_frames=np.zeros(0, np.int64), **cols)


class CausalSchedule:
    """The film's schedule with the music heard so far (``--audio-in``): what :class:`~dreamvid.live.control.
    Performance` builds for a config, in place of a song's ``Schedule``.

    Parameters
    ----------
    base : Schedule, the film's schedule without music (``pipeline.film_schedule`` with no song): the film's length,
        and the camera's motion until the frames are heard
    heard : Heard
    config : the film's config: its schedules (the preset's and the live controls') and its ``[audio]`` table
    react : the reaction's scale; fps : the film's frame rate
    """

    def __init__(self, base, heard: Heard, config, *, react: float, fps: float):
        self.base, self.heard, self.react, self.fps = base, heard, float(react), float(fps)
        self.config, self.table = config, validate_audio_table(config.audio)
        self.span = span_of(self.table, fps=fps)
        self.motion = np.array(base.motion)  # (n, 4): the camera's, filled in with what was heard as frames come
        self.zoom = np.ones(len(base), np.float64)  # the music's zoom pulse, filled in as frames are computed
        hearing = [key for key, text in config.schedules if key.startswith("motion.")
                   and parse(text, key=key).names & set(FEATURES)]
        self._moving = base.moving or bool(hearing)
        self._memo: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.base)

    @property
    def moving(self) -> bool:
        return self._moving

    def frame(self, k: int):
        """Frame ``k``'s ``FrameParams`` from the features heard up to frame ``k`` (computed once: the first call
        fixes it, so call it when the frame is captured): the film's schedule built over its last frames heard
        (``build_schedule(frames=...)``), whose last frame is ``k``."""
        from ..schedule import build_schedule

        with self._lock:
            got = self._memo.get(k)
        if got is not None:
            return got
        a = max(0, k - self.span + 1)
        built = build_schedule(self.heard.window(k, k - a + 1), self.table, base=self.config.dream,
                               blend=self.config.video.blend, n_frames=len(self.base), react=self.react,
                               config=self.config, fps=self.fps, frames=range(a, k + 1))
        fp = built.frame(-1)
        with self._lock:
            got = self._memo.setdefault(k, fp)
            self.zoom[k] = got.zoom
            self.motion[a:k + 1] = built.motion  # a frame's motion is a function of its own features
            while len(self._memo) > 256:
                self._memo.pop(next(iter(self._memo)))
        return got


def check_config(config) -> None:
    """What ``--audio-in`` cannot do, one line: a schedule that counts in beats without ``[motion] bpm`` (the sound
    card gives strong onsets, not a song's beat grid)."""
    texts = list(config.schedules) + [(f"dream.layers.{s.name}", s.schedule) for s in config.dream.layers
                                      if s.schedule is not None]
    for key, text in texts:
        curve = parse(text, key=key)
        if curve.uses_beats and config.motion.bpm <= 0:
            raise ConfigError(f"{key} counts in beats, but the sound card gives no beat grid: set [motion] bpm (beats "
                              "per minute), or give its times in seconds")


class Listener:
    """The sound card's side of a run, in its own thread: each block → the frames it completes (features into
    :class:`Heard`), the capture (a WAV, written as it comes and put in place at the end), then the clock.

    Parameters
    ----------
    sound : the input: ``sr``, ``channels``, ``name``, ``start(feed)`` (``feed(block)`` is then called with each
        block, float32 of shape (n, channels), from the sound's own thread) and ``close()``
        (:class:`~dreamvid.live.soundcard.SoundCard`, or a test's file player)
    analyzer : audio.CausalAnalyzer; heard : Heard; clock : clock.AudioClock
    wav : where the capture goes (None: nowhere); overwrite : replace an existing one
    on_warning : one line
    """

    def __init__(self, sound, *, analyzer: CausalAnalyzer, heard: Heard, clock, wav: Path | None = None,
                 overwrite: bool = False, on_warning: Callable[[str], None] | None = None):
        self.sound, self.analyzer, self.heard, self.clock = sound, analyzer, heard, clock
        self.wav, self.overwrite = (Path(wav) if wav is not None else None), overwrite
        self.on_warning = on_warning or (lambda line: None)
        self._q: queue.Queue = queue.Queue(maxsize=max(16, int(4 * sound.sr / 512)))  # ~4 s of blocks
        self._stop = threading.Event()
        self._t: threading.Thread | None = None
        self._file = None
        self._placing = None
        self.error: BaseException | None = None
        self.stats: dict[str, Any] = {"blocks": 0, "dropped": 0, "samples": 0}

    def start(self) -> None:
        """Open the capture, start the thread, then the sound."""
        if self.wav is not None:
            import soundfile as sf

            from ..fsutil import atomic_output

            self._placing = atomic_output(self.wav, overwrite=self.overwrite)
            tmp = self._placing.__enter__()
            self._file = sf.SoundFile(str(tmp), "w", samplerate=self.sound.sr, channels=self.sound.channels,
                                      subtype="PCM_16", format="WAV")
        self._t = threading.Thread(target=self._run, name="dreamvid-audio-in", daemon=True)
        self._t.start()
        self.sound.start(self.feed)

    def feed(self, block: np.ndarray) -> None:
        """A block from the sound's thread (copied: the caller may reuse its buffer)."""
        try:
            self._q.put_nowait(np.array(block, np.float32, copy=True))
        except queue.Full:
            self.stats["dropped"] += 1

    def _run(self) -> None:
        last, warned = time.monotonic(), False
        while not (self._stop.is_set() and self._q.empty()):
            try:
                block = self._q.get(timeout=0.1)
            except queue.Empty:
                if not warned and not self._stop.is_set() and time.monotonic() - last > _STALL:
                    warned = True
                    self.on_warning(f"the sound card ({self.sound.name}) has sent nothing for {_STALL:g} s: the run "
                                    "waits for it (unplugged? muted?)")
                continue
            last, warned = time.monotonic(), False
            try:
                block = block.reshape(len(block), -1)
                end = self.clock.duration
                if end is not None:  # the capture is as long as the run (--seconds)
                    block = block[:max(0, math.ceil(end * self.sound.sr) - self.analyzer.heard)]
                    if not len(block):
                        continue
                for frame in self.analyzer.push(block):
                    self.heard.put(frame)
                if self._file is not None:
                    self._file.write(block)
                self.stats["blocks"] += 1
                self.stats["samples"] = self.analyzer.heard
                self.clock.heard(self.analyzer.heard)  # after the features: a frame is due once they are in
            except BaseException as e:  # a full disk, ...: the run ends, close() says why
                self.error = e
                self.clock.stop()
                return

    def close(self, *, ok: bool) -> Path | None:
        """Stop the sound and the thread (what was heard is analysed and written), then put the capture in place
        (``ok``) or remove it. Returns the capture's path, or None. Raises the thread's error as one line."""
        with contextlib.suppress(Exception):
            self.sound.close()
        self._stop.set()
        if self._t is not None:
            self._t.join(timeout=10)
        ok = ok and self.error is None
        placed = None
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            failure = None if ok else RuntimeError("the live run failed")
            try:
                self._placing.__exit__(type(failure) if failure else None, failure, None)
                placed = self.wav if ok else None
            except DreamvidError:
                raise
            except OSError as e:
                raise OutputError(f"cannot write the capture {self.wav}: {e.strerror or e}") from None
            finally:
                self._file = self._placing = None
        if self.error is not None:
            e, self.error = self.error, None
            if isinstance(e, DreamvidError):
                raise e
            raise OutputError(f"the sound card's capture stopped: {str(e).strip() or type(e).__name__}") from None
        return placed
