"""The render core: a film's frames through source → dream → measures → sink → publish, streaming and resumable.

Every front end composes these stages instead of copying them, so the same settings give the same frame k
everywhere:

* :class:`Film` — what a render of :class:`RenderOptions` makes: the clip's range, the size, and the schedule and
  song on the film's own clock (a chunk or a strip of frames k..k+n sees what the whole render sees there);
* the source (:mod:`dreamvid.sources`) — footage (decode, camera motion, scene cuts, the motion that carries the
  dream, resume skipping) or the zoom's feedback;
* the dream — :func:`dream_frame`: ``Coherence.dream`` with the frame's scheduled parameters and governor target;
* the measures (:class:`dreamvid.metrics.Measures`), behind the dream in their own thread;
* the sink (:class:`dreamvid.workdir.WorkFolder`): lock, resume, the durable PNG → segment → state order;
* publishing (:mod:`dreamvid.publish`): join, mux, and the durable move into place.

``render`` = footage → dream → measures → work folder → publish; a batch chunk is a render of a frame range
(``RenderOptions.frames``) whose sink holds its edge frames back, and batch joins the chunks with the same
publishing; ``zoom`` swaps the source; the UI's preview is :func:`first_frame` (frame k as a range starting at k
dreams it) and its strip a render of a range. Decoding and flow run ahead in a thread, measures and encoding
behind in two more, so the dreamer never waits on them; nothing is kept per frame except on disk, so memory does
not grow with the clip's length. A resumed render is identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics, publish, sources, video
from .coherence import Coherence
from .config import Config, parse_layers
from .errors import InputError, OutputError
from . import fsutil
from .fsutil import check_output
from .options import RenderOptions
from .threads import Ahead, Behind, Inline, close_quietly
from .workdir import STAGES, State, WorkFolder, peek_phase, report_path_for, trash_for, work_dir_for

__all__ = ["RenderOptions", "FrameEvent", "Film", "render", "check", "scene_cuts", "dream_frame", "first_frame",
           "film_schedule", "work_dir_for", "report_path_for", "STAGES"]

JOB_VERSION = 3  # what job.json/state.json hold; a work folder of another version is not resumed (3: pieces)


@dataclass(frozen=True)
class FrameEvent:
    """Passed to ``on_frame`` after each frame is finished (or skipped because a resume already had it)."""

    index: int
    total: int
    resumed: bool
    seconds: float
    intensity: float


# ---- the film ----------------------------------------------------------------------------------------------------
class Film:
    """What a render of ``opts`` makes, before any frame is dreamed: built by :meth:`of`.

    Attributes
    ----------
    opts, config : the render's options and dream settings
    info : the clip's ``VideoInfo`` (for the zoom, the image's)
    first : the clip frame that is the film's frame 0
    count : frames in the film (the range ``start``/``duration`` choose)
    size : (width, height) the film is dreamed at
    schedule : the film's per-frame parameters (``Schedule``), on the film's clock
    features : the song's analysis over the film (``Features``) or None
    offset, n : the frames this render dreams, ``[offset, offset + n)`` (a chunk or strip; else ``0, count``)
    """

    def __init__(self, opts: RenderOptions, config: Config, info, first: int, count: int, *, on_warning=None):
        self.opts, self.config, self.info, self.first, self.count = opts, config, info, first, count
        self.size = video.output_size(info.width, info.height, opts.max_side)
        self.schedule, self.features = film_schedule(opts, config, info.fps, count)
        self.offset, self.n = _range(opts, count)
        self.on_warning = on_warning

    @classmethod
    def of(cls, opts: RenderOptions, config: Config, *, on_warning=None) -> Film:
        """Check ``opts`` (:func:`check`) and build the film."""
        info, first, count = check(opts)
        return cls(opts, config, info, first, count, on_warning=on_warning)

    @property
    def fps(self) -> float:
        return self.info.fps

    def frames(self, *, skip_to: int = 0, stage=None, seconds=None, previous=None, start: int | None = None,
               count: int | None = None, motion: bool = True) -> Iterator[sources.SourceFrame]:
        """The source frames of the run (film frames ``start .. start + count``, default the render's range),
        frames below ``skip_to`` marked as skipped. ``previous()`` gives the last output (the zoom's feedback)."""
        start = self.offset if start is None else start
        count = self.n if count is None else count
        if self.opts.feedback:
            return sources.feedback(_fit(self.opts.input, self.size), start=start, count=count,
                                    schedule=self.schedule, motion=self.config.motion, previous=previous,
                                    skip_to=skip_to, seconds=seconds)
        return sources.footage(self.opts.input, self.info, first=self.first, start=start, count=count,
                               size=self.size, schedule=self.schedule, video_params=self.config.video,
                               skip_to=skip_to, motion=motion, stage=stage, seconds=seconds,
                               on_warning=self.on_warning)


def _fit(path: Path, size: tuple[int, int]) -> np.ndarray:
    import cv2

    from .images import read_image

    image = read_image(path)
    if image.shape[:2] != (size[1], size[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def _range(opts: RenderOptions, count: int) -> tuple[int, int]:
    """``(offset, n)``: the frames this render dreams within the film's ``count``."""
    if opts.frames is None:
        return 0, count
    off, n = (int(v) for v in opts.frames)
    lead, trail = (int(v) for v in opts.held)
    if off < 0 or n < 1 or off + n > count or lead < 0 or trail < 0 or lead + trail >= n:
        raise InputError(f"frames {off}..{off + n} (holding {lead} + {trail}) do not fit the {count} frames of "
                         f"{opts.input} in the chosen range")
    return off, n


def film_schedule(opts: RenderOptions, config: Config, fps: float, count: int):
    """The film's schedule and song features: ``(Schedule, Features or None)``, on the whole film's clock."""
    from .schedule import build_schedule

    features = None
    if opts.song is not None:
        from .audio import analyze
        from .schedule import analysis_options

        args = dict(fps=fps, n_frames=count, loop=opts.loop_song, **analysis_options(config.audio))
        key = json.dumps([_fingerprint(opts.song), args], sort_keys=True, default=str)
        with _ANALYSIS_LOCK:  # the UI's preview and render threads share it
            features = _ANALYSIS.pop(key, None)
            if features is None:  # the chunks of one song, one after another in a batch worker, analyse it once
                features = analyze(opts.song, **args)
            _ANALYSIS[key] = features  # the newest last
            while len(_ANALYSIS) > 2:  # bounded: two songs' or two ranges' features
                _ANALYSIS.pop(next(iter(_ANALYSIS)))
    table = config.audio if features is not None else {}
    sched = build_schedule(features, table, base=config.dream, blend=config.video.blend, n_frames=count,
                           react=opts.react, config=config, fps=fps)
    return sched, features


_ANALYSIS: dict[str, Any] = {}  # the last two song analyses of this process: key -> features
_ANALYSIS_LOCK = threading.Lock()


def _fingerprint(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}


# ---- checks before any work ----------------------------------------------------------------------------------
def check(opts: RenderOptions) -> tuple[video.VideoInfo, int, int]:
    """Everything a render checks before any work, in milliseconds and without a framework: the output and report
    (and whether another render is writing them, or an interrupted one waits for ``--resume``), the container, the
    song (through the mux's own decoding), the clip and the frame range. :func:`render` starts with it; the CLI
    calls it before it imports a framework, so a mistake is one line at once.

    Returns ``(info, first, count)``: the clip's probe and the film's frames.
    """
    output = Path(opts.output)
    report_path = report_path_for(output)
    work = work_dir_for(output)
    if opts.resume and not opts.overwrite and output.exists() and not work.exists():
        raise OutputError(f"{output} is already rendered (there is no interrupted render to resume): pass "
                         "--overwrite to render it again, or choose another -o path")
    # a render killed while publishing may have put its output in place already: the resume finishes the job
    placed = opts.resume and peek_phase(work) == "publish"
    check_output(output, overwrite=opts.overwrite or placed)
    check_output(report_path, overwrite=opts.overwrite or placed)
    video.check_container(output)
    if opts.song is not None:
        video.check_song(opts.song)
    if opts.feedback:
        from .zoom import still_info

        info = still_info(opts.input, fps=opts.fps, duration=opts.duration, song=opts.song)
        first, count = 0, info.frame_count
    else:
        info = video.probe(opts.input)
        first, count = video.frame_range(info, opts.start, opts.duration)
    _range(opts, count)
    WorkFolder(output, segment_frames=opts.segment_frames, count=count).check(resume=opts.resume,
                                                                               overwrite=opts.overwrite)
    return info, first, count


def scene_cuts(opts: RenderOptions, config: Config, *, on_warning=None) -> list[int]:
    """The film frames where a render of ``opts`` resets its feedback at a scene cut: the render's own source,
    zoom pulses and camera included, so a chunk that starts at one of them dreams what a one-process render does."""
    info = video.probe(opts.input)
    film = Film(opts, config, info, *video.frame_range(info, opts.start, opts.duration), on_warning=on_warning)
    frames = sources.footage(opts.input, film.info, first=film.first, start=0, count=film.count, size=film.size,
                             schedule=film.schedule, video_params=config.video, motion=False, on_warning=on_warning)
    return [f.k for f in frames if f.cut]


# ---- the dream of one frame -------------------------------------------------------------------------------------
def dream_frame(dreamer, coherence: Coherence, frame: sources.SourceFrame, prev_out: np.ndarray | None,
                params, *, callback=None, memo: dict | None = None) -> tuple[np.ndarray, Any]:
    """Dream source ``frame`` with the film's parameters for it (``params``: the schedule's ``FrameParams``),
    carrying ``prev_out`` (the output of the frame before) along the frame's motion: ``(out uint8, plan)``. Every
    front end dreams a frame through this (``callback`` and ``memo``: see ``Coherence.dream``)."""
    return coherence.dream(dreamer, frame.src, frame.prev, prev_out, params.dream, flows=frame.flows, cut=frame.cut,
                           target=params.target, blend=params.blend, callback=callback, memo=memo)


def first_frame(film: Film, dreamer, k: int, *, raw: np.ndarray | None = None, callback=None,
                memo: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``k`` as a render of the range that starts at ``k`` dreams it (a chunk's first frame, the UI's
    preview): ``(src, out)``, ``src`` as the camera sees it. ``raw`` is footage frame ``k`` at the film's size if
    the caller has it (the UI keeps its decoder open); ``callback`` and ``memo``: see ``Coherence.dream``."""
    if raw is None:
        frames = film.frames(start=k, count=1, motion=False)
        try:
            frame = next(iter(frames))
        finally:
            frames.close()
    else:
        frame = next(sources.track([raw], start=k, schedule=film.schedule, size=film.size,
                                   video_params=film.config.video, motion=False))
    out, _ = dream_frame(dreamer, Coherence(film.config.video), frame, None, film.schedule.frame(k),
                         callback=callback, memo=memo)
    return frame.src, out


# ---- the render -------------------------------------------------------------------------------------------------
def render(
    opts: RenderOptions,
    config: Config,
    dreamer,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_output: Callable[[int, np.ndarray], None] | None = None,
    on_publish: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Render ``opts.input`` into ``opts.output`` and return the report (also written beside the output).

    The work folder is locked while the render runs: a second render of the same output raises
    :class:`OutputError` instead of sharing it. A render interrupted at any instant, even by SIGKILL, continues
    with ``resume=True`` to the same video.

    ``on_output(k, frame)`` sees every finished frame (uint8 RGB; ``k`` counts from the range's first frame) in
    the encoder thread, before the state counts it, so what it writes durably is there for every frame a resume
    skips. ``on_publish(done, total)`` follows the last stage's one encode of the whole output (frames).
    """
    t_total = time.perf_counter()
    shutil.rmtree(trash_for(work_dir_for(opts.output)), ignore_errors=True)  # left by a render killed while removing
    film = Film.of(opts, config, on_warning=on_warning)
    work = WorkFolder(opts.output, segment_frames=opts.segment_frames, count=film.n, held=opts.held, fps=film.fps,
                      crf=opts.crf, preset=opts.x264_preset)
    with work:
        state = work.open(_job(film, dreamer), resume=opts.resume, overwrite=opts.overwrite)
        try:
            if on_start:
                on_start(state.done, film.n)
            if state.phase != "publish":
                measures = _measures(film, dreamer)
                measures.load_state_dict(state.measures)
                _run(film, dreamer, work, state, measures, on_frame=on_frame, on_output=on_output)
                _finish(film, dreamer, work, state, measures, t_total=t_total, on_warning=on_warning,
                        on_publish=on_publish)
            return _publish(work, opts)
        except BaseException:
            if not (work.path / "state.json").exists():  # not one frame finished: nothing to resume, nothing to keep
                work.remove()
            raise


def _job(film: Film, dreamer) -> dict:
    opts = film.opts
    return {
        "version": JOB_VERSION,
        "input": _fingerprint(opts.input),
        "song": _fingerprint(opts.song),
        "loop_song": opts.loop_song,
        "first": film.first,
        "count": film.n,
        "size": list(film.size),
        "fps": film.fps,
        "react": opts.react,
        "segment_frames": opts.segment_frames,
        "crf": opts.crf,
        "x264_preset": opts.x264_preset,
        **({"frames": list(opts.frames), "held": list(opts.held), "muted": opts.muted, "piece": opts.piece}
           if opts.frames is not None else {}),
        **({"feedback": True} if opts.feedback else {}),
        "config": film.config.to_dict(),
        "weights": dreamer.weights.key,
        "backend": dreamer.backend_name,
        "precision": dreamer.precision,
    }


def _measures(film: Film, dreamer) -> metrics.Measures:
    """The render's measures, with the gain objective's step function built here (they run in their own thread)."""
    from .dream import Objective

    gain_params = film.config.dream.replace(layers=parse_layers(metrics.GAIN_LAYERS))
    dreamer.step_fn(Objective(gain_params.layers))
    level = None
    if film.features is not None:
        level = np.asarray(film.features.level[film.offset:film.offset + film.n], np.float64)
    return metrics.Measures(objective=lambda img: dreamer.objective_value(img, gain_params), level=level)


def _run(film: Film, dreamer, work: WorkFolder, state: State, measures: metrics.Measures, *, on_frame,
         on_output) -> None:
    """Dream the run's frames from ``state.done`` on, each measured and kept as soon as it is dreamed."""
    cfg = film.config
    dreamer.warm_up(cfg.dream, (film.size[1], film.size[0]), video=cfg.video)
    coherence = Coherence(cfg.video)
    seconds = state.seconds
    last = [work.last_frame(state.done)]  # the previous output: the feedback of the next frame
    source = measure = encoder = None
    try:
        encoder, measure = Behind(), Behind(name="dreamvid-measure")
        for k in work.pending(state.done):  # the open segment's frames finished before an interruption
            encoder.submit(functools.partial(work.refeed, k))
        frames = film.frames(skip_to=film.offset + state.done, stage=getattr(dreamer, "stage", None),
                             seconds=seconds, previous=lambda: last[0])
        source = Inline(frames) if film.opts.feedback else Ahead(frames)
        wait = time.perf_counter()
        for frame in source:
            j = frame.k - film.offset  # the frame's index in the run
            if frame.skip:
                if on_frame:
                    on_frame(FrameEvent(j, film.n, True, 0.0, 0.0))
                wait = time.perf_counter()
                continue
            seconds["idle"] = seconds.get("idle", 0.0) + time.perf_counter() - wait
            t = time.perf_counter()
            out, plan = dream_frame(dreamer, coherence, frame, last[0], film.schedule.frame(frame.k))
            seconds["dream"] += time.perf_counter() - t
            intensity = metrics.mean_change(frame.src, out)
            state.done = j + 1
            snap = State(**vars(state))  # what state.json says once the frame is kept (the measures fill theirs in)
            snap.seconds = dict(seconds, encode=seconds["encode"] + encoder.busy,
                                measure=seconds.get("measure", 0.0) + measure.busy)
            measure.submit(functools.partial(_keep, work, measures, snap, j, frame, last[0], out, plan.mask,
                                             intensity, encoder, on_output))
            last[0] = out
            if on_frame:
                on_frame(FrameEvent(j, film.n, False, time.perf_counter() - t, intensity))
            wait = time.perf_counter()
        source.close()
        measure.close()
        encoder.submit(work.close_segment)
        encoder.close()
    except BaseException:
        _stop(source, measure, encoder, work)
        raise
    seconds["encode"] += encoder.busy
    seconds["measure"] = seconds.get("measure", 0.0) + measure.busy
    state.measures = measures.state_dict()
    if state.done == 0:
        raise InputError(f"{film.opts.input} gave no frames in the chosen range; check --start/--duration")


def _keep(work: WorkFolder, measures: metrics.Measures, snap: State, j: int, frame: sources.SourceFrame,
          prev_out, out, mask, intensity: float, encoder: Behind, on_output) -> None:
    """The measure thread's job for run frame ``j``: measure it, then hand it to the encoder with the state that
    counts it (one worker, in order: the PNG and the segment get the frame before ``state.json`` says it is done)."""
    measures.update(j, frame.src, out, prev_src=frame.prev, prev_out=prev_out, cut=frame.cut, flows=frame.flows,
                    mask=mask, intensity=intensity)
    snap.measures = measures.state_dict()
    encoder.submit(functools.partial(work.put, j, out, snap.snapshot(), on_output=on_output))


def _stop(source, measure: Behind | None, encoder: Behind | None, work: WorkFolder) -> None:
    """On any error: end the source's thread, let the measures and the encoder finish the frames already dreamed (a
    second Ctrl-C cuts that short) and end them, then kill the open segment's ffmpeg, which no thread uses any more."""
    with contextlib.ExitStack() as stack:  # every step runs even if one before it raises
        stack.callback(work.abort_segment)
        if encoder is not None:
            stack.callback(close_quietly, encoder)
        if measure is not None:
            stack.callback(close_quietly, measure)
        if source is not None:
            stack.callback(source.close)


def _finish(film: Film, dreamer, work: WorkFolder, state: State, measures: metrics.Measures, *, t_total: float,
            on_warning, on_publish) -> None:
    """Join the segments (one encode), mux the sound, write the report, and mark the work folder for publishing
    (durably)."""
    opts, seconds = film.opts, state.seconds
    final = work.final_path()
    pieces = [work.segment_path(i) for i in work.segments(state.done)]
    song = source = None
    if not opts.muted:
        song = opts.song
        source = None if opts.song or opts.feedback else opts.input
    audio_seconds = publish.join(pieces, work.path, final, crf=None if opts.piece else opts.crf,
                                 preset=opts.x264_preset, song=song, source=source,
                                 start=opts.start + film.offset / film.fps, song_start=film.offset / film.fps,
                                 loop_song=opts.loop_song, on_warning=on_warning, on_progress=on_publish,
                                 seconds=seconds, source_info=None if opts.feedback else film.info)
    idle, dream = seconds.get("idle", 0.0), seconds["dream"]
    report = {
        "input": str(opts.input),
        "output": str(opts.output),
        "song": str(opts.song) if opts.song else None,
        "frames": state.done,
        "fps": film.fps,
        "size": list(film.size),
        "start_frame": film.first,
        "audio_seconds": audio_seconds,
        "seconds": {k: round(v, 3) for k, v in seconds.items() if k != "idle"}
        | {"total_this_run": round(time.perf_counter() - t_total, 3)},
        "dream_seconds_per_frame": round(dream / max(1, state.done), 4),
        "accelerator_idle_fraction": round(idle / max(1e-9, idle + dream), 4),
        **measures.report(),
        "resumed_at_frames": state.resumed_at,
        "chunk": {"offset": film.offset, "count": film.n, "held": list(opts.held)} if opts.frames is not None
        else None,
        "weights": dreamer.weights.describe(),
        "backend": dreamer.backend_name,
        "precision": dreamer.precision,
        "react": opts.react,
        "config": film.config.to_dict(),
    }
    publish.write_report(work.path, report, final)
    state.phase = "publish"
    work.save_state(state)
    fsutil.checkpoint("publish")


def _publish(work: WorkFolder, opts: RenderOptions) -> dict[str, Any]:
    """Move the finished output and report into place, then remove the work folder; returns the report.
    Every step can be repeated, so a resume of a render killed half-way through publishing finishes it."""
    report_path = report_path_for(opts.output)
    moves = ((work.final_path(), Path(opts.output)), (work.path / "report.json", report_path))
    publish.check_moves(moves, overwrite=opts.overwrite, work=work.path)
    report = json.loads((moves[1][0] if moves[1][0].exists() else report_path).read_text())
    publish.place_all(moves, overwrite=opts.overwrite, work=work.path)
    if not opts.keep_work:
        work.remove()
    return report

