"""The render loop: decode → (flow, warp, blend) → dream → encode, streaming, resumable, with a report.

One pass over a stream of frames; nothing is kept per frame except on disk in the work folder, so memory does
not grow with the clip's length. Decoding and optical flow (which needs only source frames) run ahead in a
thread, and encoding runs behind in another, so the dreamer — the expensive stage — never waits on them.

Work folder (``<output>.dreamvid-work/`` beside the output)::

    job.json          what is being rendered (inputs, config, weights); a resume must match it
    state.json        last finished frame, stage timings and measure accumulators (rewritten atomically per frame)
    seg_000000.mp4    finished segments of ``segment_frames`` frames (H.264)
    frames/000123.png finished frames of the current segment, lossless; the last one seeds the next frame's flow

A resumed render re-encodes the pending PNGs into the open segment, decodes the source up to the next frame,
and carries on. Every frame replays the same seeded jitter sequence and the feedback image is the
lossless PNG, so a resumed render is identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import shutil
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
from .dream import Dreamer
from .errors import InputError, OutputError
from .fsutil import atomic_write_bytes, check_output
from .images import read_image, write_image

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


class _Ahead:
    """Runs an iterator in a thread, a few items ahead, re-raising its errors in the consumer."""

    _END = object()

    def __init__(self, it: Iterator, depth: int = 4):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(it,), daemon=True)
        self._t.start()

    def _run(self, it):
        try:
            for item in it:
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(self._END)
        except BaseException as e:  # handed to the consumer
            self._q.put(e)

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


class _Behind:
    """A single worker thread that does writes in order behind the loop (bounded queue)."""

    def __init__(self, depth: int = 4):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._err: BaseException | None = None
        self.busy = 0.0
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._err is None:
                t = time.perf_counter()
                try:
                    job()
                except BaseException as e:
                    self._err = e
                self.busy += time.perf_counter() - t
            self._q.task_done()

    def submit(self, fn: Callable[[], None]):
        self.check()
        self._q.put(fn)

    def check(self):
        if self._err is not None:
            raise self._err

    def drain(self):
        self._q.join()
        self.check()

    def close(self):
        self._q.put(None)
        self._t.join()


def render(
    opts: RenderOptions,
    config: Config,
    dreamer: Dreamer,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Render ``opts.input`` into ``opts.output`` and return the report (also written beside the output)."""
    t_total = time.perf_counter()
    output = Path(opts.output)
    check_output(output, overwrite=opts.overwrite)
    report_path = report_path_for(output)
    check_output(report_path, overwrite=opts.overwrite)
    video.check_container(output)  # before any work: a wrong -o or an unreadable song fails at once
    if opts.song is not None:
        video.check_song(opts.song)
    info = video.probe(opts.input)
    first, count = video.frame_range(info, opts.start, opts.duration)
    size = video.output_size(info.width, info.height, opts.max_side)
    schedule, features = _schedule(opts, config, info.fps, count)

    work = work_dir_for(output)
    job = _job(opts, config, dreamer, info, size, first, count)
    state = _open_work(work, job, opts)
    if on_start:
        on_start(state.done, count)

    dreamer.warm_up(config.dream, (size[1], size[0]))
    stab = metrics.StabilityMeter(tol=config.video.consistency)
    stab.__dict__.update(state.stability)
    strength = metrics.StrengthMeter()
    strength.__dict__.update(state.strength)
    gain_params = config.dream.replace(layers=parse_layers(metrics.GAIN_LAYERS))
    gain = metrics.GainMeter(lambda img: dreamer.objective_value(img, gain_params))
    gain.load(state.gain)
    coherence = Coherence(config.video)
    seconds = state.seconds
    vp = config.video
    flow_method = vp.flow if vp.flow != "none" else "dis"  # flow is still measured for the report

    def sources():
        prev = None
        t = time.perf_counter()
        for k, src in enumerate(video.iter_frames(opts.input, first=first, count=count, size=size,
                                                  on_warning=on_warning)):
            # the schedule's zoom pulses the footage itself, so the flow (and the dream carried along it) sees it
            src = _zoom(src, float(schedule.zoom[k]) - 1.0)
            seconds["decode"] += time.perf_counter() - t
            t = time.perf_counter()
            flows = cut = None
            if prev is not None and k >= state.done:
                cut = video.scene_cut_score(prev, src) > vp.scene_cut
                flows = video.flow_pair(src, prev, method=flow_method, max_side=vp.flow_max_side)
            seconds["flow"] += time.perf_counter() - t
            yield k, src, prev, flows, cut
            prev = src
            t = time.perf_counter()

    encoder = _Behind()
    segment: list = [None]  # the open FrameWriter

    def open_segment(seg: int):
        segment[0] = video.FrameWriter(work / f"seg_{seg:06d}.mp4", fps=info.fps, size=size, crf=opts.crf,
                                       preset=opts.x264_preset, overwrite=True)

    def write_frame(k: int, frame: np.ndarray, png: bool):
        if segment[0] is None:
            open_segment(k // opts.segment_frames)
        if png:
            write_image(work / "frames" / f"{k:06d}.png", frame, overwrite=True)
        segment[0].write(frame)
        if (k + 1) % opts.segment_frames == 0:
            segment[0].close()
            segment[0] = None
            # the segment is safe on disk: its PNGs are no longer needed, except the newest (feedback seed)
            for p in sorted((work / "frames").glob("*.png"))[:-1]:
                p.unlink()

    # re-feed frames finished in the open segment before the interruption
    seg_start = (state.done // opts.segment_frames) * opts.segment_frames
    prev_dream = None
    for k in range(seg_start, state.done):
        frame = read_image(work / "frames" / f"{k:06d}.png")
        encoder.submit(lambda k=k, f=frame: write_frame(k, f, png=False))
        prev_dream = frame
    if state.done and prev_dream is None:
        prev_dream = read_image(work / "frames" / f"{state.done - 1:06d}.png")

    ahead = _Ahead(sources())
    idle = 0.0
    try:
        wait = time.perf_counter()
        for k, src, prev_src, flows, cut in ahead:
            if k < state.done:
                if on_frame:
                    on_frame(FrameEvent(k, count, True, 0.0, 0.0))
                wait = time.perf_counter()
                continue
            idle += time.perf_counter() - wait
            t = t_frame = time.perf_counter()
            fp = schedule.frame(k)
            dream, plan = coherence.dream(dreamer, src, prev_src, prev_dream, fp.dream, flows=flows, cut=bool(cut),
                                          target=vp.strength * fp.strength, blend=fp.blend)
            seconds["dream"] += time.perf_counter() - t

            if prev_src is not None and flows is not None and not cut:
                mask = plan.mask if plan.mask is not None else video.consistency_mask(*flows, tol=vp.consistency)
                stab.update_with_flow(prev_src, src, prev_dream, dream, bwd=flows[0], mask=mask)
            if k % GAIN_EVERY == 0:
                gain.update(src, dream)
            intensity = strength.update(src, dream)
            if features is not None:
                _sync_add(state.sync, float(features.level[k]), intensity)  # the song's own RMS, unsmoothed

            state.done = k + 1
            state.stability = dict(stab.__dict__)
            state.strength = dict(strength.__dict__)
            state.gain = gain.state()
            state.seconds = dict(seconds, encode=seconds["encode"] + encoder.busy)
            snapshot = json.dumps(asdict(state)).encode()
            # one worker, in order: the PNG and the segment get the frame before state.json says it is done
            encoder.submit(lambda k=k, f=dream, s=snapshot: (write_frame(k, f, png=True), _save_state(work, s)))
            prev_dream = dream
            if on_frame:
                on_frame(FrameEvent(k, count, False, time.perf_counter() - t_frame, intensity))
            wait = time.perf_counter()
        encoder.drain()
        seconds["encode"] += encoder.busy
        if segment[0] is not None:
            segment[0].close()
            segment[0] = None
    except BaseException:
        ahead.close()
        with contextlib.suppress(BaseException):
            encoder.drain()
        if segment[0] is not None:
            segment[0].abort()
        encoder.close()
        raise
    ahead.close()
    encoder.close()
    if state.done == 0:
        raise InputError(f"{opts.input} gave no frames in the chosen range; check --start/--duration")

    t = time.perf_counter()
    segs = sorted(work.glob("seg_*.mp4"))
    silent = work / "video.mp4"
    if silent.exists():
        silent.unlink()
    video.concat(segs, silent, overwrite=True)
    audio_seconds = video.mux(silent, output, song=opts.song, source=None if opts.song else opts.input,
                              start=opts.start, loop_song=opts.loop_song, overwrite=opts.overwrite,
                              on_warning=on_warning)
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
        "weights": dreamer.weights.describe(),
        "backend": dreamer.backend_name,
        "precision": dreamer.precision,
        "react": opts.react,
        "config": config.to_dict(),
    }
    atomic_write_bytes(report_path, json.dumps(report, indent=2).encode(), overwrite=True)
    if not opts.keep_work:
        shutil.rmtree(work, ignore_errors=True)
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

        features = analyze(opts.song, fps=fps, n_frames=count, loop=opts.loop_song,
                           **analysis_options(config.audio))
    table = config.audio if features is not None else {}
    sched = build_schedule(features, table, base=config.dream, blend=config.video.blend, n_frames=count,
                           react=opts.react)
    return sched, features


def _open_work(work: Path, job: dict, opts: RenderOptions) -> _State:
    job_file = work / "job.json"
    if work.exists() and not opts.resume:
        if not opts.overwrite:
            raise OutputError(f"an interrupted render of {opts.output} was found in {work}: pass --resume to "
                              "continue it, or --overwrite to start over")
        shutil.rmtree(work)
    state = _State()
    if work.exists() and opts.resume:
        try:
            old = json.loads(job_file.read_text())
            saved = json.loads((work / "state.json").read_text()) if (work / "state.json").exists() else {}
        except (OSError, ValueError):
            raise OutputError(f"the work folder {work} is damaged; delete it and render again") from None
        if old != job:
            diff = sorted(k for k in job if old.get(k) != job.get(k))
            raise OutputError(f"cannot resume: {', '.join(diff)} changed since the interrupted render; use the same "
                              f"settings, or --overwrite to start over")
        state = _State(**saved) if saved else _State()
        state.resumed_at.append(state.done)
        return state
    (work / "frames").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(job_file, json.dumps(job, indent=2).encode(), overwrite=True)
    return state


def _save_state(work: Path, snapshot: bytes) -> None:
    atomic_write_bytes(work / "state.json", snapshot, overwrite=True)


