"""A live run: source → dream → page (and ``--out``, a virtual camera), held at a frame rate, controlled live.

The render core's stages, with the source and the sink swapped (docs/architecture.md): the source is a camera, a
looped clip or the infinite zoom (:mod:`.source`), prepared in its own thread; each frame is dreamed with
``pipeline.dream_frame`` and the film's schedule for it (:class:`.control.Performance`, the same
``pipeline.film_schedule`` a render uses); the sinks are the page (:mod:`.page`), ``--out`` (``video.FrameWriter``
in a ``threads.Behind`` worker, then ``publish``) and a virtual camera. :class:`Pacer` closes the loop on the
frame rate by choosing each frame's size, steps and carried octaves.

The sound is a song file (``--song``: its offline features, its playback on the page as the clock) or the sound
card (``--audio-in``: :mod:`.heard`'s causal features and schedule, the samples heard as the clock, the capture
written beside ``--record``'s preset so the render can replay it). Where the render could not take the film's
footage from the input (a camera; a clip the film loops or plays at another rate), ``--record`` keeps it too
(:mod:`.footage`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import metrics, pipeline, presets, publish, video
from ..access import check_access
from ..audio import CausalAnalyzer
from ..audiomap import analysis_options
from ..coherence import Coherence
from ..config import resolve
from ..errors import ConfigError, DreamvidError, OutputError
from ..fsutil import check_output
from ..options import RenderOptions, check_option
from ..threads import Behind, close_quietly
from .clock import AudioClock, FrameClock, SongClock
from .control import Performance
from .footage import Footage, check_footage, footage_path, needs_footage
from .heard import CausalSchedule, Heard, Listener, check_config, span_of
from .page import Page
from .remote import OscServer, Remote, check_osc, need, open_midi
from .source import Still, open_source, Prepared, Preparer

__all__ = ["LiveOptions", "LiveFrame", "Quality", "Pacer", "Session"]


@dataclass(frozen=True)
class LiveOptions:
    """What to play live. Checked when made (:class:`ConfigError`); :meth:`Session.open` checks the rest.

    Attributes
    ----------
    source : a camera index (``"0"``), a clip (looped) or an image (the infinite zoom)
    song : the song: its features drive the schedule and its playback on the page is the clock
    audio_in : the sound card instead (``"default"``, a device number or part of its name): its causal features
        drive the schedule and its samples are the clock; ``record`` also writes the capture (a WAV beside it)
    preset : preset name or path (default: lysergic, zoom-tunnel for an image)
    size : the long side of the dream in pixels (the pacer may go down to half of it)
    fps : the frame rate held (default: the clip's or camera's, 25 for an image)
    host, port : where the page is served; port 0: any free one
    auth : ``USER:PASS``, the page's login (HTTP Basic); a host that is not a loopback address needs it
    osc : a UDP port for OSC, or None; midi : a MIDI input port name, "" for the first one, or None
    record : write the performance here (a preset of keyframe schedules), and beside it what the render replays
        it with: the footage of a camera or of a clip the film loops (``PATH.source.mp4``), the sound card's capture
        (``PATH.wav``); out : write what was shown here (.mp4)
    seconds : stop after this many seconds of the song's clock (default: at the song's end, or on Ctrl-C)
    adapt : let the pacer choose size, steps and carried octaves to hold ``fps`` (False: the schedule's, at ``size``)
    react : the music's reaction, as in render; overwrite : replace existing outputs
    virtual_camera : also send the frames to a virtual camera (pyvirtualcam)
    page : serve the page (False: headless, e.g. to only record or write ``out``)
    """

    source: str
    song: Path | None = None
    audio_in: str | None = None
    preset: str | None = None
    size: int = 256
    fps: float | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    auth: str | None = None
    osc: int | None = None
    midi: str | None = None
    record: Path | None = None
    out: Path | None = None
    seconds: float | None = None
    adapt: bool = True
    react: float = 1.0
    overwrite: bool = False
    virtual_camera: bool = False
    page: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 64 <= self.size <= 4096:
            raise ConfigError(f"--size must be a whole number of pixels from 64 to 4096, got {self.size!r}")
        if self.fps is not None:
            check_option("fps", self.fps)
        if self.seconds is not None and not (isinstance(self.seconds, (int, float)) and self.seconds > 0):
            raise ConfigError(f"--seconds must be above 0, got {self.seconds!r}")
        check_option("react", self.react)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be from 1 to 65535 (0: any free one), got {self.port}")
        if self.osc is not None:
            check_osc(self.osc)
        if self.song is not None and self.audio_in is not None:
            raise ConfigError("--song and --audio-in are two sounds: play a song file or listen to the sound card, "
                              "not both")
        check_access(host=self.host, auth=self.auth)


@dataclass(frozen=True)
class Quality:
    """What the pacer chose for a frame: its size (w, h), steps per octave, octaves of a fresh frame and the
    carried octaves (finest octaves dreamed on a carried frame)."""

    size: tuple[int, int]
    steps: int
    octaves: int
    carried: int

    def as_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "steps": self.steps, "octaves": self.octaves, "carried": self.carried}


@dataclass(frozen=True)
class LiveFrame:
    """Passed to ``on_frame`` for each frame shown.

    Attributes
    ----------
    k : the film frame (song time × fps); t : its song time in seconds
    params : the schedule's ``FrameParams`` for it (before the pacer's quality choice)
    quality : the pacer's choice; change : its mean ``|out - src|`` (grey levels)
    dream_seconds : the loop's time on it; latency : capture-to-sink seconds; skipped : frames not dreamed before it
    out : the frame (uint8 RGB; the caller must not keep it beyond the call unless it copies it)
    """

    k: int
    t: float
    params: Any
    quality: Quality
    change: float
    dream_seconds: float
    latency: float
    skipped: int
    out: np.ndarray


class Pacer:
    """Holds a frame rate by choosing each frame's size, steps and carried octaves (a closed loop).

    The work of a choice is ``Σ octave areas × steps`` (a carried frame dreams its finest ``carried`` octaves);
    the seconds per unit of work are learnt from every frame (an exponential average); each frame takes the best
    choice whose predicted time fits the budget (``0.9 / fps``): the largest size first, then the most steps,
    then the most octaves. The size changes only after the same size was chosen three frames in a row.
    """

    def __init__(self, *, fps: float, full: tuple[int, int], dream, video_params, adapt: bool = True):
        self.budget = 0.9 / fps
        self.adapt = adapt
        self.dream, self.video = dream, video_params
        w, h = full
        sizes = [full]
        for f in (0.75, 0.5):
            s = video.output_size(w, h, max(16, int(round(max(w, h) * f))))
            if min(s) >= 64 and s not in sizes:
                sizes.append(s)
        steps = sorted({dream.steps, max(1, math.ceil(dream.steps / 2)), max(1, dream.steps // 4), 1}, reverse=True)
        carried = sorted({video_params.carried_octaves or dream.octaves, 1}, reverse=True)
        self.choices = [Quality(s, n, dream.octaves, c) for s in sizes for n in steps for c in carried]
        self.top = Quality(full, dream.steps, dream.octaves, video_params.carried_octaves)
        self.rate: float | None = None  # seconds per unit of work
        self.current = self.choices[-1] if adapt else self.top  # start cheap: the first frames teach the rate
        self._pending = (None, 0)

    @staticmethod
    def work(q: Quality, *, carried: bool = True, dream=None) -> float:
        from ..dream.dreamer import _dream_shape
        from ..dream.octaves import octave_shapes

        h, w = _dream_shape((q.size[1], q.size[0]))
        scale = dream.octave_scale if dream is not None else 1.4
        shapes = octave_shapes(h, w, octaves=q.octaves, scale=scale)
        if carried and q.carried > 0:
            shapes = shapes[-q.carried:]
        return float(sum(a * b for a, b in shapes)) * q.steps

    def update(self, q: Quality, seconds: float) -> None:
        """Learn from a frame of choice ``q`` that took ``seconds``."""
        r = seconds / max(1.0, self.work(q, dream=self.dream))
        self.rate = r if self.rate is None else 0.7 * self.rate + 0.3 * r

    def choose(self) -> Quality:
        """The choice for the next frame."""
        if not self.adapt or self.rate is None:
            return self.current
        fits = [q for q in self.choices if self.rate * self.work(q, dream=self.dream) <= self.budget]
        best = fits[0] if fits else self.choices[-1]
        if best.size != self.current.size:  # hysteresis on size: a resize costs a resample and, once, a compile
            pending, n = self._pending
            n = n + 1 if pending == best.size else 1
            self._pending = (best.size, n)
            if n < 3:
                same = [q for q in (fits or self.choices[-1:]) if q.size == self.current.size]
                best = same[0] if same else min((q for q in self.choices if q.size == self.current.size),
                                                key=lambda q: self.work(q, dream=self.dream))
        else:
            self._pending = (None, 0)
        self.current = best
        return best


def _even(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return img if (img.shape[1], img.shape[0]) == size else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


class _Out:
    """``--out``: what was shown, at the film's frame rate (a frame stands until the next one), then the song muxed
    in and the file published (``publish``), as a render publishes."""

    def __init__(self, path: Path, *, fps: float, size: tuple[int, int], song: Path | None, overwrite: bool):
        self.path, self.fps, self.size, self.song, self.overwrite = Path(path), fps, size, song, overwrite
        self.work = self.path.with_name(self.path.name + ".dreamvid-live")
        if self.work.exists():
            raise OutputError(f"{self.work} is in the way (left by a live run that was killed?): remove it")
        self.work.mkdir(parents=True)
        self.writer = video.FrameWriter(self.work / "live.mp4", fps=fps, size=size, crf=18, preset="veryfast",
                                        overwrite=True)
        self.writer.__enter__()
        self.encoder = Behind(depth=8, name="dreamvid-live-out")
        self.next = 0  # the next film frame to write
        self.last: np.ndarray | None = None

    def put(self, k: int, out: np.ndarray) -> None:
        self.encoder.submit(functools.partial(self._write, k, out))

    def _write(self, k: int, out: np.ndarray) -> None:
        frame = _even(out, self.size)
        while self.last is not None and self.next < k:
            self.writer.write(self.last)
            self.next += 1
        if self.last is None:
            self.next = k
        self.writer.write(frame)
        self.next, self.last = k + 1, frame

    def finish(self, *, ok: bool, on_warning) -> Path | None:
        try:
            self.encoder.close(drain=ok)
        finally:
            self.writer.__exit__(None if ok else RuntimeError, None, None)
        if not ok or self.writer.frames_written == 0:
            shutil.rmtree(self.work, ignore_errors=True)
            return None
        final = self.work / "final.mp4"
        publish.join([self.work / "live.mp4"], self.work, final, crf=None, song=self.song, on_warning=on_warning)
        publish.place_all([(final, self.path)], overwrite=self.overwrite, work=self.work)
        shutil.rmtree(self.work, ignore_errors=True)
        return self.path


class _VirtualCamera:
    def __init__(self, size: tuple[int, int], fps: float):
        need("pyvirtualcam", "--virtual-camera")
        import pyvirtualcam

        try:
            self.cam = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps)
        except Exception as e:  # no v4l2loopback / OBS virtual camera installed
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"--virtual-camera: no virtual camera device could be opened ({line[:160]}): "
                              "install v4l2loopback (Linux) or OBS's virtual camera") from None
        self.size = size
        self.worker = Behind(depth=2, name="dreamvid-vcam")

    def put(self, out: np.ndarray) -> None:
        self.worker.submit(lambda: self.cam.send(_even(out, self.size)))

    def close(self) -> None:
        close_quietly(self.worker)
        self.cam.close()


class Session:
    """A live run, opened (:meth:`open`: every check, every port bound, before any framework is imported) and then
    run (:meth:`run`) with a Dreamer."""

    def __init__(self, opts: LiveOptions, *, on_warning: Callable[[str], None] | None = None):
        self.opts = opts
        self.on_warning = on_warning or (lambda line: None)
        self.source = None
        self.page = self.osc = self.midi = None
        self.remote = None
        self.sound = self.heard = self.analyzer = None  # --audio-in
        self.wav: Path | None = None  # --audio-in with --record: the capture, beside the preset
        self.footage: Path | None = None  # --record of a camera (or a looped clip): the footage, beside the preset

    @classmethod
    def open(cls, opts: LiveOptions, *, on_warning=None, clock: SongClock | None = None, sound=None,
             source=None) -> Session:
        """Open the source, check the song, the preset and the outputs, open the sound card, bind the page's and
        OSC's ports and open MIDI: each mistake is one line (a ``DreamvidError``) and nothing is left open.
        ``sound`` replaces the sound card of ``--audio-in`` (anything with ``sr``, ``channels``, ``name``,
        ``start(feed)`` and ``close()``: tests play a file through it); ``source`` replaces the source that
        ``opts.source`` names (an opened ``source.Camera``, ``Clip`` or ``Still``: tests play a clip through OpenCV as
        a camera); the session closes it."""
        self = cls(opts, on_warning=on_warning)
        self.source = source
        try:
            self._open(clock, sound)
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, clock, sound) -> None:
        opts = self.opts
        if opts.record is not None and opts.audio_in is not None:
            self.wav = Path(opts.record).with_suffix(".wav")
        for path in (opts.record, opts.out, self.wav):
            if path is not None:
                check_output(path, overwrite=opts.overwrite)
        if opts.out is not None:
            video.check_container(opts.out)
        if opts.record is not None and Path(opts.record).suffix.lower() != ".toml":
            raise ConfigError(f"--record writes a preset: give a path ending in .toml, not {Path(opts.record).name}")
        if opts.record is not None:
            need("tomli_w", "--record")
        if opts.song is not None:
            video.check_song(opts.song)
        name = opts.preset or ("zoom-tunnel" if _is_image(opts.source) else presets.DEFAULT)
        self.preset_name, self.preset_layer = name, presets.load(name)
        base = resolve(self.preset_layer, preset=name) if opts.audio_in is not None else None
        if base is not None:
            check_config(base)
        if self.source is None:
            self.source = open_source(opts.source)
        self.fps = float(opts.fps or (self.source.fps if self.source.kind != "image" else 25.0))
        check_option("fps", round(self.fps, 6))
        duration = None
        if opts.song is not None:
            duration = video.stream_durations(opts.song).get("audio")
        if opts.seconds is not None:
            duration = opts.seconds if duration is None else min(duration, opts.seconds)
        self.duration = duration
        if hasattr(self.source, "film_fps"):
            self.source.film_fps = self.fps
        if opts.record is not None and needs_footage(self.source, fps=self.fps, frames=self._frames(self.fps)):
            self.fps = float(video.fps_fraction(self.fps))  # the footage's own rate: the render's film is live's
            self.footage = footage_path(opts.record)
            check_footage(self.footage, overwrite=opts.overwrite)
            if hasattr(self.source, "film_fps"):
                self.source.film_fps = self.fps
        kept = self.source.native if self.footage is not None else (self.source.width, self.source.height)
        self.size = video.output_size(*kept, opts.size)
        if opts.audio_in is not None:  # the sound card: its samples are the clock, its causal features the music
            if sound is None:
                from .soundcard import SoundCard

                sound = SoundCard(opts.audio_in)
            self.sound = sound
            table = base.audio  # the knobs cannot move [audio]: fixed for the run
            self.heard = Heard(fps=self.fps, sr=sound.sr, capacity=span_of(table, fps=self.fps) + 64)
            self.analyzer = CausalAnalyzer(sr=sound.sr, fps=self.fps, **analysis_options(table))
            clock = AudioClock(self.fps, sr=sound.sr, duration=duration)
        self.clock = clock or SongClock(self.fps, duration=duration)
        self.clock.duration = duration
        self.n = self._frames(self.fps)
        self.ropts = RenderOptions(input=Path(opts.source), output=Path(opts.out or "live.mp4"), song=opts.song,
                                   react=opts.react, fps=self.fps)
        self.perf = Performance(preset=name, preset_layer=self.preset_layer, fps=self.fps, build=self._schedule_of,
                                on_warning=self.on_warning)
        self.remote = Remote(self.perf, on_warning=self.on_warning)
        if opts.page:
            self.page = Page(opts.host, opts.port, song=opts.song, on_control=self.remote.slider,
                             on_pulse=self.remote.pulse, on_clock=lambda t, p: self.clock.sync(t, playing=p),
                             state=self.state, login=check_access(host=opts.host, auth=opts.auth))
        if opts.osc is not None:
            self.osc = OscServer(self.remote, opts.host, opts.osc)
        if opts.midi is not None:
            self.midi = open_midi(self.remote, opts.midi)
        self._state: dict[str, Any] = {}

    def _frames(self, fps: float) -> int:
        """The film's frames: the song's length or ``--seconds`` (an hour without either)."""
        return max(1, math.ceil((self.duration if self.duration is not None else 3600.0) * fps - 1e-6))

    def _schedule_of(self, config):
        schedule = pipeline.film_schedule(self.ropts, config, self.fps, self.n)[0]
        if self.heard is None:
            return schedule
        return CausalSchedule(schedule, self.heard, config, react=self.opts.react, fps=self.fps)

    def replay(self, footage: Path | None | bool = True) -> str:
        """The command that renders the recorded performance offline as live played it (at live's size; any
        ``--max-side`` renders the same piece larger): on the footage kept (``footage``: its path, True: where it is
        being written, None: none), the clip or the image."""
        opts, q = self.opts, shlex.quote
        footage = self.footage if footage is True else footage
        tail = (f" -o OUT.mp4{f' --song {q(str(self.song))}' if self.song else ''} --preset {q(self.preset_name)}"
                f" --config {q(str(opts.record or 'PERF.toml'))} --max-side {opts.size}")
        if footage:
            return f"dreamvid render {q(str(footage))}{tail}"
        if self.source.kind == "image":
            return f"dreamvid zoom {q(opts.source)}{tail} --fps {self.fps:g}"
        if self.source.kind != "clip":
            return f"dreamvid render CLIP{tail}"
        if self.source.info.frame_count > self.n:  # the film is the clip's first n frames
            tail += f" --duration {f'{self.n / self.fps:.4f}'.rstrip('0').rstrip('.')}"
        return f"dreamvid render {q(opts.source)}{tail}"

    @property
    def song(self) -> Path | None:
        """The sound the recording replays with: the song, or the sound card's capture."""
        return self.opts.song if self.opts.song is not None else self.wav

    @property
    def config(self):
        return self.perf.config

    def state(self) -> dict[str, Any]:
        """What the page shows: the controls, the clock, the pacer's choice, the dream's rate."""
        heard = {"sound": self.sound.name, **(self.heard.latest() or {})} if self.sound is not None else None
        return dict(self._state, controls=self.perf.controls(), t=self.clock.now(), fps=self.fps,
                    adapt=self.opts.adapt, recording=self.opts.record is not None, heard=heard)

    # -- the run ---------------------------------------------------------------------------------------------
    def run(self, dreamer, *, on_ready: Callable[[str | None], None] | None = None,
            on_frame: Callable[[LiveFrame], None] | None = None) -> dict[str, Any]:
        """Play until the song ends, ``seconds`` pass, or Ctrl-C; returns a summary (frames, fps, latency, what was
        written). ``on_ready`` gets the page's URL once the first frame can be dreamed."""
        opts, cfg = self.opts, self.perf.config
        pacer = Pacer(fps=self.fps, full=self.size, dream=cfg.dream, video_params=cfg.video, adapt=opts.adapt)
        for size in sorted({q.size for q in pacer.choices} if opts.adapt else {self.size}):
            dreamer.warm_up(cfg.dream, (size[1], size[0]), video=cfg.video)
        stop = threading.Event()
        out = vcam = footage = prep = None
        summary: dict[str, Any] = {"frames": 0, "skipped": 0}
        latencies: list[float] = []
        ok = ended = False
        saved = [0]
        listener, failure = None, None
        t_start = time.monotonic()
        try:
            if opts.out is not None:
                out = _Out(opts.out, fps=self.fps, size=self.size, song=opts.song, overwrite=opts.overwrite)
            if opts.virtual_camera:
                vcam = _VirtualCamera(self.size, self.fps)
            if self.footage is not None:
                footage = Footage(self.footage, fps=self.fps, size=self.source.native, film=self.size,
                                  overwrite=opts.overwrite)
            prep = Preparer(self.source, self.clock, self.perf, cfg.video, last_frame=self.n - 1, stop=stop,
                            footage=footage)
            if self.page is not None:
                self.page.start()
            if self.osc is not None:
                self.osc.start()
            if on_ready:
                on_ready(self.page.url if self.page is not None else None)
            if self.sound is not None:  # the capture goes beside the recording, or into --out's work folder
                wav = self.wav or (out.work / "heard.wav" if out is not None else None)
                listener = Listener(self.sound, analyzer=self.analyzer, heard=self.heard, clock=self.clock, wav=wav,
                                    overwrite=opts.overwrite or self.wav is None, on_warning=self.on_warning)
                listener.start()
            self.clock.start()
            coherences: dict[int, Coherence] = {}
            prev_out, prev_k = None, None
            q = pacer.choose()
            prep.ask(0, q.size)
            busy = 0.0
            while True:
                p = prep.take()
                if p is None:  # the film's end: the song's, or --seconds
                    ended = True
                    break
                t0 = time.perf_counter()
                frame, k = p.frame, p.frame.k
                q = q if q.size == (frame.src.shape[1], frame.src.shape[0]) else dataclasses.replace(
                    q, size=(frame.src.shape[1], frame.src.shape[0]))
                q_next = pacer.choose()
                prep.ask(k + 1, q_next.size, at=time.monotonic() + max(0.0, busy - prep.seconds - 0.005))
                src, out_img, params = self._dream(dreamer, frame, prev_out, p, q, cfg, coherences)
                change = metrics.mean_change(src, out_img)
                if self.page is not None:
                    self.page.show(k, out_img, p.captured)
                if out is not None:
                    out.put(k, out_img)
                if vcam is not None:
                    vcam.put(out_img)
                busy = time.perf_counter() - t0
                latency = max(0.0, time.monotonic() - p.captured)
                latencies.append(latency)
                if len(latencies) > 2000:
                    del latencies[:1000]
                pacer.update(q, busy)
                skipped = 0 if prev_k is None else k - prev_k - 1
                summary["frames"] += 1
                summary["skipped"] += skipped
                elapsed = max(1e-9, time.monotonic() - t_start)
                self._state = {"frame": k, "quality": q.as_dict(), "dream_fps": summary["frames"] / elapsed,
                               "latency_ms": round(1000 * float(np.median(latencies[-50:])), 1)}
                if on_frame:
                    on_frame(LiveFrame(k, k / self.fps, params, q, change, busy, latency, skipped, out_img))
                if isinstance(self.clock, FrameClock):
                    self.clock.advance()
                if opts.record is not None and self.perf.changes != saved[0] and time.monotonic() - saved[-1] > 2:
                    saved[:] = [self.perf.changes, time.monotonic()]
                    self.perf.write(opts.record, song=self.song, source=opts.source, replay=self.replay(),
                                    overwrite=True)
                prev_out, prev_k, q = out_img, k, q_next
            ok = True
        except KeyboardInterrupt:  # the end of a performance: what was played is written
            ok = True
            summary["interrupted"] = True
        finally:
            stop.set()
            if prep is not None:
                prep.close()
            captured = None
            if listener is not None:
                try:
                    captured = listener.close(ok=ok)
                except DreamvidError as e:
                    failure, ok = e, False
                summary["heard"] = {"sound": self.sound.name, "sr": self.sound.sr, "seconds":
                                    round(listener.stats["samples"] / self.sound.sr, 3),
                                    "dropped": listener.stats["dropped"],
                                    "overflows": int(getattr(self.sound, "overflows", 0)),
                                    "capture": str(captured) if captured is not None and self.wav else None}
            if vcam is not None:
                vcam.close()
            if self.page is not None:
                summary["page"] = dict(self.page.stats)
            self.close()
            if out is not None and captured is not None:
                out.song = captured  # --out carries the sound heard
            try:
                written = out.finish(ok=ok, on_warning=self.on_warning) if out is not None else None
            finally:  # the footage is as long as the film when the run reached the film's end
                kept = footage.finish(ok=ok, frames=self.n if ended else None) if footage is not None else None
        if failure is not None:
            raise failure
        if opts.record is not None:
            self.perf.write(opts.record, song=self.song, source=opts.source, replay=self.replay(kept),
                            overwrite=True)
            summary.update(footage=str(kept) if kept else None, replay=self.replay(kept))
        elapsed = max(1e-9, time.monotonic() - t_start)
        lat = np.asarray(latencies, np.float64)
        summary.update(fps=round(summary["frames"] / elapsed, 3), seconds=round(elapsed, 3),
                       latency_ms={"median": round(1000 * float(np.median(lat)), 1) if lat.size else None,
                                   "p90": round(1000 * float(np.percentile(lat, 90)), 1) if lat.size else None},
                       moves=self.perf.changes, record=str(opts.record) if opts.record else None,
                       out=str(written) if written else None, quality=pacer.current.as_dict())
        return summary

    def _dream(self, dreamer, frame, prev_out, p: Prepared, q: Quality, cfg, coherences):
        """Dream one prepared frame with the schedule's parameters for it, at the pacer's quality."""
        params = p.schedule.frame(frame.k)
        if isinstance(self.source, Still):  # the zoom: the previous output moved and held
            if prev_out is not None:
                prev_out = _even(prev_out, q.size)
            src = self.source.feedback(p.schedule, cfg.motion, q.size).source(frame.k, prev_out)
            frame = dataclasses.replace(frame, src=src)
            prev_out = None
        elif prev_out is not None and frame.prev is not None:
            prev_out = _even(prev_out, q.size)
        fp = params
        if self.opts.adapt:
            dream = params.dream.replace(steps=max(1, min(params.dream.steps, round(params.dream.steps * q.steps
                                                                                    / max(1, cfg.dream.steps)))))
            fp = dataclasses.replace(params, dream=dream)
        coherence = coherences.get(q.carried)
        if coherence is None:
            coherence = coherences[q.carried] = Coherence(dataclasses.replace(cfg.video, carried_octaves=q.carried))
        out, _ = pipeline.dream_frame(dreamer, coherence, frame, prev_out, fp)
        return frame.src, out, params

    def close(self) -> None:
        for part in (self.osc, self.page):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.osc = self.page = None
        if self.midi is not None:
            with contextlib.suppress(Exception):
                self.midi.close()
            self.midi = None
        if self.sound is not None:
            with contextlib.suppress(Exception):
                self.sound.close()
        if self.source is not None:
            self.source.close()


def _is_image(text: str) -> bool:
    from .source import IMAGE_SUFFIXES

    return not text.isdigit() and Path(text).suffix.lower() in IMAGE_SUFFIXES
