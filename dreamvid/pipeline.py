"""The render loop: decode → (flow, warp, blend) → dream → encode, streaming, resumable, with a report.

One pass over a stream of frames; nothing is kept per frame except on disk in the work folder, so memory does
not grow with the clip's length. Decoding and optical flow (which needs only source frames) run ahead in a
thread, and encoding runs behind in another, so the dreamer — the expensive stage — never waits on them.

Work folder (``<output>.dreamvid-work/`` beside the output)::

    lock              held (flock) by the render using the folder; the OS drops it when that process dies
    job.json          what is being rendered (inputs, config, weights); a resume must match it
    state.json        last finished frame, stage timings and measure accumulators (rewritten atomically per frame)
    seg_000000.mp4    finished segments of ``segment_frames`` frames (H.264)
    frames/000123.png finished frames of the current segment, lossless; the last one seeds the next frame's flow
    video.mp4, final.mp4, report.json   the joined video, the muxed output and the report, before they are published

A resumed render re-encodes the pending PNGs into the open segment, decodes the source up to the next frame,
and carries on. Every frame replays the same seeded jitter sequence and the feedback image is the
lossless PNG, so a resumed render is identical to an uninterrupted one.

Every instant is resumable, a SIGKILL included, because each write is durable (fsync) before the one that relies
on it: a frame's PNG before the state that counts it; a closed segment before the state that counts its last
frame; that state before the segment's PNGs are deleted. The output and the report are built in the work folder,
then ``state.json`` says "publish", then they are renamed into place, and only then is the folder removed (renamed
away first, so a half-deleted folder is never mistaken for a render to resume). ``DREAMVID_TEST_KILL_AT=<stage>:<n>``
makes the process SIGKILL itself at one of these instants (see :func:`_checkpoint`); the tests use it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import metrics, video
from .coherence import Coherence
from .config import Config, parse_layers
from .dream import Dreamer, Objective
from .errors import InputError, OutputError
from .fsutil import atomic_write_bytes, check_output
from .images import read_image, write_image

try:
    import fcntl
except ImportError:  # not POSIX: the work folder is not locked
    fcntl = None

STAGES = ("decode", "flow", "dream", "encode", "mux")
GAIN_EVERY = 10  # dream_gain is measured on every 10th frame (two network passes each)


@dataclass(frozen=True)
class RenderOptions:
    """What to render and where; the dream settings live in :class:`~dreamvid.config.Config`."""

    input: Path
    output: Path
    song: Path | None = None
    loop_song: bool = False
    start: float = 0.0
    duration: float | None = None
    max_side: int | None = None
    react: float = 1.0
    overwrite: bool = False
    resume: bool = False
    segment_frames: int = 48
    crf: int = 18
    x264_preset: str = "medium"
    keep_work: bool = False
    # A chunk of a render (dreamvid.batch): frames ``[offset, offset + count)`` of the range that ``start`` and
    # ``duration`` choose, with the schedule of the whole range; the output is silent (the batch muxes the song
    # once). ``held`` = (lead, trail): that many frames at the chunk's start and end are dreamed (to warm the
    # feedback up, or for a cross-fade) and handed to ``on_output``, but not encoded.
    frames: tuple[int, int] | None = None
    held: tuple[int, int] = (0, 0)
    # ``dreamvid zoom``: ``input`` is an image and each frame dreams the previous output moved by the camera
    # (dreamvid.zoom.Feedback), at ``fps``, for ``duration`` seconds or the song's length
    feedback: bool = False
    fps: float = 25.0


@dataclass(frozen=True)
class FrameEvent:
    """Passed to ``on_frame`` after each frame is finished (or skipped because a resume already had it)."""

    index: int
    total: int
    resumed: bool
    seconds: float
    intensity: float


@dataclass
class _State:
    """What survives an interruption (besides the frames themselves)."""

    done: int = 0  # frames finished
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    stability: dict[str, float] = field(default_factory=dict)
    strength: dict[str, float] = field(default_factory=dict)
    gain: dict[str, float] = field(default_factory=dict)
    sync: list[float] = field(default_factory=lambda: [0.0] * 6)  # n, Σx, Σy, Σxx, Σyy, Σxy
    resumed_at: list[int] = field(default_factory=list)
    phase: str = "render"  # "publish" once the output and report are complete in the work folder


def work_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".dreamvid-work")


def report_path_for(output: Path) -> Path:
    return output.with_name(output.stem + ".report.json")


def _fingerprint(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime)}


def _job(opts: RenderOptions, config: Config, dreamer: Dreamer, info: video.VideoInfo, size, first, count) -> dict:
    return {
        "input": _fingerprint(opts.input),
        "song": _fingerprint(opts.song),
        "loop_song": opts.loop_song,
        "first": first,
        "count": count,
        "size": list(size),
        "fps": info.fps,
        "react": opts.react,
        "segment_frames": opts.segment_frames,
        "crf": opts.crf,
        "x264_preset": opts.x264_preset,
        **({"frames": list(opts.frames), "held": list(opts.held)} if opts.frames is not None else {}),
        **({"feedback": True} if opts.feedback else {}),
        "config": config.to_dict(),
        "weights": dreamer.weights.key,
        "backend": dreamer.backend_name,
        "precision": dreamer.precision,
    }


def _zoom(img: np.ndarray, amount: float) -> np.ndarray:
    """Zoom into the centre by ``1 + amount`` (a beat pulse), keeping the size."""
    if abs(amount) < 1e-4:
        return img
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.0 + amount)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def mover(schedule, size: tuple[int, int]) -> Callable[[int, np.ndarray], np.ndarray]:
    """``move(k, src)``: footage frame ``k`` as the camera sees it: moved by the ``[motion]`` of frames 1..k
    (accumulated: the camera travels), then by the music's zoom pulse. Call it with ``k`` rising."""
    if not schedule.moving:
        return lambda k, src: _zoom(src, float(schedule.zoom[k]) - 1.0)
    w, h = size
    cam = [np.eye(3), 0]  # the camera's move at frame cam[1]

    def move(k: int, src: np.ndarray) -> np.ndarray:
        while cam[1] < k:
            cam[1] += 1
            z, r, tx, ty = schedule.motion[cam[1]]
            cam[0] = video.compose(cam[0], video.motion_matrix((w, h), zoom=z, rotate=r, translate=(tx * w, ty * h)))
        pulse = video.motion_matrix((w, h), zoom=float(schedule.zoom[k]), center=(w / 2, h / 2))
        return video.warp_motion(src, video.compose(cam[0], pulse))

    return move


class _Inline:
    """An iterator consumed in the loop's own thread, with :class:`_Ahead`'s ``close`` (a feedback source needs
    the frame just dreamed, so it cannot run ahead)."""

    def __init__(self, it: Iterator):
        self._it = it

    def __iter__(self):
        return self._it

    def close(self):
        self._it.close()


def _join(thread: threading.Thread) -> None:
    """Wait for ``thread`` to end, even through Ctrl-C; a Ctrl-C that came meanwhile is raised afterwards."""
    interrupted = None
    while thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt as e:
            interrupted = e
    if interrupted is not None:
        raise interrupted


class _Ahead:
    """Runs an iterator in a thread, a few items ahead, re-raising its errors in the consumer.

    :meth:`close` stops the thread, closes the iterator (in that thread) and waits for it to end.
    """

    _END = object()

    def __init__(self, it: Iterator, depth: int = 4, name: str = "dreamvid-decode"):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(it,), name=name, daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it):
        try:
            for item in it:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer
            self._put(e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()  # a generator's finally (the decoder's release) runs now, not at garbage collection

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._stop.set()
        _join(self._t)
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()  # drop the frames read ahead


class _Behind:
    """A single worker thread that does writes in order behind the loop (bounded queue).

    :meth:`close` always returns with the thread ended: it runs the pending jobs first (a finished frame is kept)
    unless told not to, and a Ctrl-C while it waits skips the jobs not yet started instead of being swallowed.
    """

    def __init__(self, depth: int = 4, name: str = "dreamvid-encode"):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._err: BaseException | None = None
        self._skip = threading.Event()
        self.busy = 0.0
        self._t = threading.Thread(target=self._run, name=name, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._err is None and not self._skip.is_set():
                t = time.perf_counter()
                try:
                    job()
                except BaseException as e:
                    self._err = e
                self.busy += time.perf_counter() - t

    def submit(self, fn: Callable[[], None]):
        self.check()
        self._q.put(fn)

    def check(self):
        if self._err is not None:
            raise self._err

    def close(self, *, drain: bool = True) -> None:
        """Stop the worker (after the pending jobs if ``drain``) and wait for it; then raise its error, if any."""
        interrupted = None
        if not drain:
            self._skip.set()
        while self._t.is_alive():
            try:
                self._q.put(None, timeout=0.05)  # the worker keeps taking jobs, so this is never stuck
                break
            except queue.Full:
                continue
            except KeyboardInterrupt as e:
                interrupted = e
                self._skip.set()
        while self._t.is_alive():
            try:
                self._t.join()
            except KeyboardInterrupt as e:
                interrupted = e
                self._skip.set()  # a second Ctrl-C: finish only the job under way
        if interrupted is not None:
            raise interrupted
        self.check()


def render(
    opts: RenderOptions,
    config: Config,
    dreamer: Dreamer,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_output: Callable[[int, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Render ``opts.input`` into ``opts.output`` and return the report (also written beside the output).

    The work folder is locked while the render runs: a second render of the same output raises
    :class:`OutputError` instead of sharing it. A render interrupted at any instant, even by SIGKILL, continues
    with ``resume=True`` to the same video.

    ``on_output(k, frame)`` sees every finished frame (uint8 RGB) in the encoder thread, before the state counts
    it, so what it writes durably is there for every frame a resume skips.
    """
    t_total = time.perf_counter()
    output = Path(opts.output)
    report_path = report_path_for(output)
    work = work_dir_for(output)
    shutil.rmtree(_trash_for(work), ignore_errors=True)  # left by a render killed while removing its work folder
    info, first, count = check(opts)
    size = video.output_size(info.width, info.height, opts.max_side)
    schedule, features = _schedule(opts, config, info.fps, count)
    offset, count = _chunk(opts, count)

    job = _job(opts, config, dreamer, info, size, first, count)
    with _WorkLock(work, output):
        state = _open_work(work, job, opts)
        try:
            if on_start:
                on_start(state.done, count)
            if state.phase == "publish":
                return _publish(work, output, report_path, opts)
            return _render_locked(opts, config, dreamer, state, work=work, info=info, size=size, first=first,
                                  count=count, schedule=schedule, features=features, t_total=t_total,
                                  on_frame=on_frame, on_warning=on_warning, offset=offset, on_output=on_output)
        except BaseException:
            if not (work / "state.json").exists():  # not one frame finished: nothing to resume, nothing to keep
                _remove_work(work)
            raise


def _chunk(opts: RenderOptions, count: int) -> tuple[int, int]:
    """``(offset, count)`` of the frames this render dreams within the range of ``count`` frames."""
    if opts.frames is None:
        return 0, count
    off, n = (int(v) for v in opts.frames)
    lead, trail = (int(v) for v in opts.held)
    if off < 0 or n < 1 or off + n > count or lead < 0 or trail < 0 or lead + trail >= n:
        raise InputError(f"frames {off}..{off + n} (holding {lead} + {trail}) do not fit the {count} frames of "
                         f"{opts.input} in the chosen range")
    return off, n


def scene_cuts(opts: RenderOptions, config: Config, *, on_warning=None) -> list[int]:
    """The frames (0-based in the range) where a render of ``opts`` resets its feedback at a scene cut: the same
    frames, zoom pulses included, and the same test as the render loop's, so a chunk that starts at one of them
    dreams exactly what a one-process render does there."""
    info = video.probe(opts.input)
    first, count = video.frame_range(info, opts.start, opts.duration)
    size = video.output_size(info.width, info.height, opts.max_side)
    schedule, _ = _schedule(opts, config, info.fps, count)
    move = mover(schedule, size)
    cuts, prev = [], None
    for k, src in enumerate(video.iter_frames(opts.input, first=first, count=count, size=size, info=info,
                                              on_warning=on_warning)):
        src = move(k, src)
        if prev is not None and video.scene_cut_score(prev, src) > config.video.scene_cut:
            cuts.append(k)
        prev = src
    return cuts


def check(opts: RenderOptions) -> tuple[video.VideoInfo, int, int]:
    """Everything a render checks before any work, in milliseconds and without a framework: the output and report
    (and whether another render is writing them, or an interrupted one waits for ``--resume``), the container, the
    song (through the mux's own decoding), the clip and the frame range. :func:`render` starts with it; the CLI
    calls it before it imports a framework, so a mistake is one line at once.

    Returns ``(info, first, count)``: the clip's probe and the frame range to render.
    """
    output = Path(opts.output)
    report_path = report_path_for(output)
    work = work_dir_for(output)
    if opts.resume and not opts.overwrite and output.exists() and not work.exists():
        raise OutputError(f"{output} is already rendered (there is no interrupted render to resume): pass "
                          "--overwrite to render it again, or choose another -o path")
    # a render killed while publishing may have put its output in place already: the resume finishes the job
    placed = opts.resume and _peek_phase(work) == "publish"
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
    _check_work(work, opts)
    return info, first, count


def _check_work(work: Path, opts: RenderOptions) -> None:
    """Without keeping it: is another render writing ``work``, or does an interrupted one wait there?"""
    if not work.is_dir():
        return
    lock = work / _LOCK
    if fcntl is not None and lock.exists():
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # render() meets it again, with its own clear error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another render is writing {opts.output} (its work folder {work} is in use): wait "
                              "for it to finish, or choose another -o path") from None
        except OSError:
            pass
        finally:
            os.close(fd)  # releases the probe's lock
    if opts.resume or opts.overwrite:
        return
    try:
        done = int(json.loads((work / "state.json").read_text()).get("done", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return
    if done > 0 and (work / "job.json").exists():
        raise OutputError(f"an interrupted render of {opts.output} was found in {work}: pass --resume to continue "
                          "it, or --overwrite to start over")


def _render_locked(opts: RenderOptions, config: Config, dreamer: Dreamer, state: _State, *, work: Path,
                   info: video.VideoInfo, size: tuple[int, int], first: int, count: int, schedule, features,
                   t_total: float, on_frame, on_warning, offset: int = 0, on_output=None) -> dict[str, Any]:
    """The render proper, in the locked work folder, from ``state.done`` on."""
    output = Path(opts.output)
    report_path = report_path_for(output)

    dreamer.warm_up(config.dream, (size[1], size[0]), video=config.video)
    stab = metrics.StabilityMeter(tol=config.video.consistency)
    stab.__dict__.update(state.stability)
    strength = metrics.StrengthMeter()
    strength.__dict__.update(state.strength)
    gain_params = config.dream.replace(layers=parse_layers(metrics.GAIN_LAYERS))
    gain = metrics.GainMeter(lambda img: dreamer.objective_value(img, gain_params))
    gain.load(state.gain)
    dreamer.step_fn(Objective(gain_params.layers))  # built here: the measures run in their own thread
    coherence = Coherence(config.video)
    stage = getattr(dreamer, "stage", None)  # copies a frame and its flows to the device ahead (JAX frames)
    seconds = state.seconds
    vp = config.video
    flow_method = vp.flow if vp.flow != "none" else "dis"  # flow is still measured for the report

    def feedback():
        from .zoom import Feedback

        image = read_image(opts.input)
        if image.shape[:2] != (size[1], size[0]):
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        source = Feedback(image, schedule.motion, schedule.zoom, config.motion)
        for k in range(count):
            t = time.perf_counter()
            src = source.source(k + offset, prev_dream) if k >= state.done else None
            seconds["decode"] += time.perf_counter() - t
            yield k, src, None, None, None

    def sources():
        move = mover(schedule, size)
        prev = None
        t = time.perf_counter()
        for k, src in enumerate(video.iter_frames(opts.input, first=first + offset, count=count, size=size,
                                                  info=info, on_warning=on_warning)):
            # the schedule's zoom pulses the footage itself, so the flow (and the dream carried along it) sees it
            src = move(k + offset, src)
            seconds["decode"] += time.perf_counter() - t
            t = time.perf_counter()
            flows = cut = None
            if prev is not None and k >= state.done:
                cut = video.scene_cut_score(prev, src) > vp.scene_cut
                flows = video.flow_pair(src, prev, method=flow_method, max_side=vp.flow_max_side)
            if stage is not None and k >= state.done:
                stage(src, *(flows or ()))
            seconds["flow"] += time.perf_counter() - t
            yield k, src, prev, flows, cut
            prev = src
            t = time.perf_counter()

    seg_frames = opts.segment_frames
    frames_dir = work / "frames"
    segment: list = [None]  # the open FrameWriter; only the encoder thread touches it while that thread runs

    enc_lo, enc_hi = opts.held[0], count - opts.held[1]  # the frames encoded (a chunk holds some back)

    def write_frame(k: int, frame: np.ndarray):
        if not enc_lo <= k < enc_hi:
            if (k + 1) % seg_frames == 0:
                close_segment()
            return
        if segment[0] is None:
            segment[0] = video.FrameWriter(work / f"seg_{k // seg_frames:06d}.mp4", fps=info.fps, size=size,
                                           crf=opts.crf, preset=opts.x264_preset, overwrite=True)
        segment[0].write(frame)
        if (k + 1) % seg_frames == 0:
            close_segment()

    def close_segment():
        if segment[0] is None:
            return
        segment[0].close()
        path, segment[0] = segment[0].path, None
        _fsync(path)
        _fsync(work)
        _checkpoint("segment", int(path.stem[4:]))

    def finish_frame(k: int, frame: np.ndarray, snapshot: bytes):
        # each write is on disk before the next one relies on it: the PNG, then the segment, then the state that
        # counts the frame, and only then are the PNGs of a closed segment deleted
        png = frames_dir / f"{k:06d}.png"
        write_image(png, frame, overwrite=True, fast=True)  # uncompressed: ~10 ms at 1080p instead of ~85
        _fsync(png)
        _fsync(frames_dir)
        _checkpoint("png", k)
        if on_output is not None:
            on_output(k, frame)
        write_frame(k, frame)
        _save_state(work, snapshot)
        _checkpoint("state", k)
        if (k + 1) % seg_frames == 0:
            _prune_frames(frames_dir, keep_from=k)  # the newest stays: it seeds the next frame's feedback
            _checkpoint("pruned", k // seg_frames)

    def measure_frame(k: int, src, prev_src, prev_dream, dream, flows, cut: bool, mask, snap: _State):
        # the stability and gain measures, behind the dream and in order; then the frame goes to the encoder with
        # the state that counts it
        if prev_src is not None and flows is not None and not cut:
            mask = mask if mask is not None else video.consistency_mask(*flows, tol=vp.consistency)
            stab.update_with_flow(prev_src, src, prev_dream, dream, bwd=flows[0], mask=mask)
        if k % GAIN_EVERY == 0:
            gain.update(src, dream)
        snap.stability = dict(stab.__dict__)
        snap.gain = gain.state()
        snapshot = json.dumps(asdict(snap)).encode()
        # one worker, in order: the PNG and the segment get the frame before state.json says it is done
        encoder.submit(lambda: finish_frame(k, dream, snapshot))

    idle = 0.0
    ahead = encoder = measure = None
    try:
        encoder = _Behind()
        measure = _Behind(name="dreamvid-measure")
        # re-feed frames finished in the open segment before the interruption
        seg_start = (state.done // seg_frames) * seg_frames
        prev_dream = None
        for k in range(seg_start, state.done):
            frame = read_image(frames_dir / f"{k:06d}.png")
            encoder.submit(lambda k=k, f=frame: write_frame(k, f))
            prev_dream = frame
        if state.done and prev_dream is None:
            prev_dream = read_image(frames_dir / f"{state.done - 1:06d}.png")

        ahead = _Inline(feedback()) if opts.feedback else _Ahead(sources())
        wait = time.perf_counter()
        for k, src, prev_src, flows, cut in ahead:
            if k < state.done:
                if on_frame:
                    on_frame(FrameEvent(k, count, True, 0.0, 0.0))
                wait = time.perf_counter()
                continue
            idle += time.perf_counter() - wait
            t = t_frame = time.perf_counter()
            fp = schedule.frame(k + offset)
            dream, plan = coherence.dream(dreamer, src, prev_src, prev_dream, fp.dream, flows=flows, cut=bool(cut),
                                          target=vp.strength * fp.strength if fp.target is None else fp.target,
                                          blend=fp.blend)
            seconds["dream"] += time.perf_counter() - t

            intensity = strength.update(src, dream)
            if features is not None:
                _sync_add(state.sync, float(features.level[k + offset]), intensity)  # the song's own RMS, unsmoothed

            state.done = k + 1
            state.strength = dict(strength.__dict__)
            state.seconds = dict(seconds, encode=seconds["encode"] + encoder.busy,
                                 measure=seconds.get("measure", 0.0) + measure.busy)
            snap = _State(**asdict(state))  # a copy: the measures fill in theirs for this frame
            measure.submit(functools.partial(measure_frame, k, src, prev_src, prev_dream, dream, flows, bool(cut),
                                             plan.mask, snap))
            prev_dream = dream
            if on_frame:
                on_frame(FrameEvent(k, count, False, time.perf_counter() - t_frame, intensity))
            wait = time.perf_counter()
        ahead.close()
        measure.close()
        encoder.submit(close_segment)
        encoder.close()
        seconds["encode"] += encoder.busy
        seconds["measure"] = seconds.get("measure", 0.0) + measure.busy
        state.stability, state.gain = dict(stab.__dict__), gain.state()
    except BaseException:
        _stop(ahead, encoder, segment, measure=measure)
        raise
    if state.done == 0:
        raise InputError(f"{opts.input} gave no frames in the chosen range; check --start/--duration")

    t = time.perf_counter()
    segs = [work / f"seg_{i:06d}.mp4" for i in _segments(opts.held, state.done, seg_frames)]
    silent = work / "video.mp4"
    _checkpoint("concat", watch=work)
    video.concat(segs, silent, overwrite=True)
    final = _final_path(work, output)
    _checkpoint("mux", watch=work)
    chunk = opts.frames is not None  # silent: the batch muxes the song once, into the joined chunks
    audio_seconds = video.mux(silent, final, song=None if chunk else opts.song,
                              source=None if opts.song or chunk or opts.feedback else opts.input, start=opts.start,
                              loop_song=opts.loop_song, overwrite=True, on_warning=on_warning)
    seconds["mux"] += time.perf_counter() - t

    report = {
        "input": str(opts.input),
        "output": str(output),
        "song": str(opts.song) if opts.song else None,
        "frames": state.done,
        "fps": info.fps,
        "size": list(size),
        "start_frame": first,
        "audio_seconds": audio_seconds,
        "seconds": {k: round(v, 3) for k, v in seconds.items()} | {"total_this_run": round(time.perf_counter() - t_total, 3)},
        "dream_seconds_per_frame": round(seconds["dream"] / max(1, state.done), 4),
        "accelerator_idle_fraction": round(idle / max(1e-9, idle + seconds["dream"]), 4),
        "temporal_stability": _num(stab.value),
        "dream_strength": _num(strength.value),
        "dream_gain": _num(gain.value),
        "audio_sync": _num(_sync_value(state.sync)) if features is not None else None,
        "resumed_at_frames": state.resumed_at,
        "chunk": {"offset": offset, "count": count, "held": list(opts.held)} if chunk else None,
        "weights": dreamer.weights.describe(),
        "backend": dreamer.backend_name,
        "precision": dreamer.precision,
        "react": opts.react,
        "config": config.to_dict(),
    }
    # the output and the report are complete in the work folder, then the state says so, then they are published
    atomic_write_bytes(work / "report.json", json.dumps(report, indent=2).encode(), overwrite=True)
    _fsync(final)
    _fsync(work / "report.json")
    state.phase = "publish"
    _save_state(work, json.dumps(asdict(state)).encode())
    _checkpoint("publish")
    _publish(work, output, report_path, opts)
    return report


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _sync_add(acc: list[float], x: float, y: float) -> None:
    acc[0] += 1
    acc[1] += x
    acc[2] += y
    acc[3] += x * x
    acc[4] += y * y
    acc[5] += x * y


def _sync_value(acc: list[float]) -> float:
    """Pearson correlation from running sums (constant memory)."""
    n, sx, sy, sxx, syy, sxy = acc
    if n < 2:
        return math.nan
    vx, vy = n * sxx - sx * sx, n * syy - sy * sy
    if vx <= 1e-12 or vy <= 1e-12:
        return 0.0
    return (n * sxy - sx * sy) / math.sqrt(vx * vy)


def _schedule(opts: RenderOptions, config: Config, fps: float, count: int):
    from .schedule import build_schedule

    features = None
    if opts.song is not None:
        from .audio import analyze

        from .schedule import analysis_options

        args = dict(fps=fps, n_frames=count, loop=opts.loop_song, **analysis_options(config.audio))
        key = json.dumps([_fingerprint(opts.song), args], sort_keys=True, default=str)
        if _ANALYSIS[0] != key:  # the chunks of one song, one after another in a batch worker, analyse it once
            _ANALYSIS[:] = [key, analyze(opts.song, **args)]
        features = _ANALYSIS[1]
    table = config.audio if features is not None else {}
    sched = build_schedule(features, table, base=config.dream, blend=config.video.blend, n_frames=count,
                           react=opts.react, config=config, fps=fps)
    return sched, features


_ANALYSIS: list = [None, None]  # the last song analysis of this process: (key, features)


def _open_work(work: Path, job: dict, opts: RenderOptions) -> _State:
    """In the locked work folder: load the interrupted render to resume, or start afresh."""
    job_file, state_file = work / "job.json", work / "state.json"
    job = json.loads(json.dumps(job))  # as it reads back from job.json (tuples become lists)
    if job_file.exists():
        try:
            old = json.loads(job_file.read_text())
            state = _State(**json.loads(state_file.read_text())) if state_file.exists() else _State()
        except (OSError, ValueError, TypeError):
            raise OutputError(f"the work folder {work} is damaged: render again with --overwrite instead of "
                              "--resume to start over") from None
        if state.done > 0:  # work that would be lost
            if not opts.resume:
                if not opts.overwrite:
                    raise OutputError(f"an interrupted render of {opts.output} was found in {work}: pass --resume "
                                      "to continue it, or --overwrite to start over")
            elif old != job:
                diff = sorted(k for k in job if old.get(k) != job.get(k))
                raise OutputError(f"cannot resume: {', '.join(diff)} changed since the interrupted render; use "
                                  "the same settings, or --overwrite to start over")
            else:
                _check_resumable(work, state, opts.segment_frames, final=_final_path(work, Path(opts.output)),
                                 held=opts.held, count=job["count"])
                if state.phase != "publish":
                    _tidy(work, state, opts.segment_frames)
                    state.resumed_at.append(state.done)
                return state
    for p in work.iterdir():  # a fresh start; the lock file stays (this render holds it)
        if p.name != _LOCK:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    (work / "frames").mkdir()
    _durable_write(job_file, json.dumps(job, indent=2).encode())
    return _State()


def _segments(held, done: int, seg_frames: int) -> range:
    """The indices of the segments that hold the encoded frames among the first ``done`` (see ``held``)."""
    lead, trail = held
    return range(lead // seg_frames, -(-(done - trail) // seg_frames))


def _check_resumable(work: Path, state: _State, seg_frames: int, *, final: Path, held=(0, 0),
                     count: int = 0) -> None:
    """Raise OutputError, before any work, if a file the resume needs is missing."""
    if state.phase == "publish":
        return  # _publish checks what is left to move
    closed = state.done // seg_frames
    encoded = _segments(held, count, seg_frames) if any(held) else range(closed)
    need = [work / f"seg_{i:06d}.mp4" for i in range(encoded.start, min(closed, encoded.stop))]
    need += [work / "frames" / f"{k:06d}.png" for k in range(max(0, min(closed * seg_frames, state.done - 1)),
                                                             state.done)]
    missing = [p for p in need if not p.is_file()]
    if missing:
        raise OutputError(f"the work folder {work} is damaged ({missing[0].relative_to(work)} is missing): render "
                          "again with --overwrite instead of --resume to start over")


def _tidy(work: Path, state: _State, seg_frames: int) -> None:
    """Remove what a killed render left half-done: temporary files, and PNGs the resume does not need."""
    frames = work / "frames"
    for folder in (work, frames):
        for p in folder.glob(".*"):
            if p.is_file():
                p.unlink()
    _prune_frames(frames, keep_from=min((state.done // seg_frames) * seg_frames, state.done - 1),
                  keep_to=state.done - 1)


def _prune_frames(frames: Path, *, keep_from: int, keep_to: int | None = None) -> None:
    """Delete the PNGs of frames before ``keep_from`` (and after ``keep_to``)."""
    for p in frames.glob("*.png"):
        if p.stem.isdigit() and (int(p.stem) < keep_from or (keep_to is not None and int(p.stem) > keep_to)):
            p.unlink()


def _publish(work: Path, output: Path, report_path: Path, opts: RenderOptions) -> dict[str, Any]:
    """Move the finished output and report into place, then remove the work folder; returns the report.

    Every step can be repeated, so a resume of a render killed half-way through publishing finishes it.
    """
    moves = ((_final_path(work, output), output), (work / "report.json", report_path))
    for src, dst in moves:
        if not src.exists() and not dst.exists():
            raise OutputError(f"the work folder {work} is damaged ({src.name} is missing): render again with "
                              "--overwrite instead of --resume to start over")
        if src.exists() and dst.exists() and not opts.overwrite:
            raise OutputError(f"{dst} already exists: pass --overwrite to replace it, or choose another -o path")
    report = json.loads((moves[1][0] if moves[1][0].exists() else report_path).read_text())
    for i, (src, dst) in enumerate(moves):
        if src.exists():
            os.replace(src, dst)
            _fsync(dst.parent)
        _checkpoint("placed", i)
    if not opts.keep_work:
        _remove_work(work)
    return report


def _remove_work(work: Path) -> None:
    """Delete the work folder; it is renamed away first, so a half-deleted folder never looks like a render."""
    trash = _trash_for(work)
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(work, trash)
    _checkpoint("trashed")
    shutil.rmtree(trash, ignore_errors=True)


def _final_path(work: Path, output: Path) -> Path:
    return work / ("final" + output.suffix)


def _trash_for(work: Path) -> Path:
    return work.with_name(work.name + ".trash")


def _peek_phase(work: Path) -> str | None:
    """The phase of a render in ``work``, read without the lock (only to tell whether its output may be in place)."""
    try:
        return json.loads((work / "state.json").read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        return None


_LOCK = "lock"


class _WorkLock:
    """An exclusive ``flock`` on ``<work>/lock`` while a render uses the folder (the folder is created if needed).

    The OS drops the lock when the process ends, however it ends, so a killed render never blocks its resume.
    """

    def __init__(self, work: Path, output: Path):
        self.work, self.output = work, output
        self._fd: int | None = None

    def __enter__(self) -> _WorkLock:
        for _ in range(10):
            try:
                self.work.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.work / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # the folder was just removed by a render that finished
            except OSError as e:
                raise OutputError(f"cannot create the work folder {self.work}: {e.strerror}; choose a writable "
                                  "-o path") from None
            if fcntl is None:
                self._fd = fd
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if isinstance(e, BlockingIOError):
                    raise OutputError(f"another render is writing {self.output} (its work folder {self.work} is in "
                                      "use): wait for it to finish, or choose another -o path") from None
                raise OutputError(f"cannot lock the work folder {self.work}: {e.strerror}; choose an -o path on a "
                                  "local disk") from None
            try:  # the folder may have been moved away (a render finishing) between the open and the lock
                same = os.path.samestat(os.fstat(fd), os.stat(self.work / _LOCK))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return self
            os.close(fd)
        raise OutputError(f"cannot lock the work folder {self.work}: it keeps disappearing; try again")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _stop(ahead: _Ahead | None, encoder: _Behind | None, segment: list, *, measure: _Behind | None = None) -> None:
    """On any error: end the decode thread, let the measures and the encoder finish the frames already dreamed (a
    second Ctrl-C cuts that short) and end them, then kill the open segment's ffmpeg, which no thread uses any more."""
    with contextlib.ExitStack() as stack:  # every step runs even if one before it raises
        stack.callback(lambda: segment[0].abort() if segment[0] is not None else None)
        if encoder is not None:
            stack.callback(_close_quietly, encoder)
        if measure is not None:
            stack.callback(_close_quietly, measure)
        if ahead is not None:
            stack.callback(ahead.close)


def _close_quietly(encoder: _Behind) -> None:
    try:
        encoder.close()
    except Exception:  # the error being raised already says what went wrong; a Ctrl-C still goes through
        pass


def _save_state(work: Path, snapshot: bytes) -> None:
    _durable_write(work / "state.json", snapshot)


def _durable_write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, on disk (fsync) before this returns. One writer: the work folder is locked."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checkpoint(stage: str, n: int = 0, *, watch: Path | None = None) -> None:
    """An instant between two durable writes, named for the tests.

    ``DREAMVID_TEST_KILL_AT=<stage>:<n>`` makes the process SIGKILL itself here; ``during-<stage>:<n>`` does it as
    soon as the step that follows creates a file in ``watch`` (mid-concat, mid-mux). Stages, in order: ``png:<k>``,
    ``segment:<s>``, ``state:<k>``, ``pruned:<s>``, ``concat:0``, ``mux:0``, ``publish:0``, ``placed:0`` (output),
    ``placed:1`` (report), ``trashed:0``.
    """
    at = os.environ.get("DREAMVID_TEST_KILL_AT")
    if not at:
        return
    if at == f"{stage}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)
    if watch is not None and at == f"during-{stage}:{n}":
        before = set(os.listdir(watch))

        def kill_on_new_file():
            while not set(os.listdir(watch)) - before:
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=kill_on_new_file, name="dreamvid-test-kill", daemon=True).start()
