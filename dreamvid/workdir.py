"""The work folder: where a render keeps what survives an interruption, and the render core's sink.

``<output>.dreamvid-work/`` beside the output::

    lock              held (flock) by the render using the folder; the OS drops it when that process dies
    job.json          what is being rendered (inputs, config, weights); a resume must match it
    state.json        last finished frame, stage timings and measure accumulators (rewritten atomically per frame)
    seg_000000.mp4    finished segments of ``segment_frames`` frames (H.264)
    frames/000123.png finished frames of the open segment, lossless; the last one seeds the next frame's feedback
    video.mp4, final.mp4, report.json   the joined video, the muxed output and the report, before they are published

Every instant is resumable, a SIGKILL included, because each write is durable (fsync) before the one that relies
on it: a frame's PNG before the state that counts it; a closed segment before the state that counts its last
frame; that state before the segment's PNGs are deleted. ``DREAMVID_TEST_KILL_AT=<stage>:<n>`` makes the process
SIGKILL itself at one of these instants (:func:`dreamvid.fsutil.checkpoint`); the tests use it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import video
from .errors import OutputError
from . import fsutil
from .fsutil import durable_write, fsync, io_error
from .images import read_image, write_image

try:
    import fcntl
except ImportError:  # not POSIX: the work folder is not locked
    fcntl = None

__all__ = ["STAGES", "State", "WorkFolder", "work_dir_for", "report_path_for", "peek_phase"]

STAGES = ("decode", "flow", "dream", "encode", "join", "mux")
LOCK = "lock"


def work_dir_for(output: Path) -> Path:
    return Path(output).with_name(Path(output).name + ".dreamvid-work")


def report_path_for(output: Path) -> Path:
    return Path(output).with_name(Path(output).stem + ".report.json")


@dataclass
class State:
    """What survives an interruption (besides the frames themselves): ``state.json``."""

    done: int = 0  # frames finished (of the run's frames, counted from its first)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    measures: dict[str, Any] = field(default_factory=dict)  # metrics.Measures.state_dict()
    resumed_at: list[int] = field(default_factory=list)
    phase: str = "render"  # "publish" once the output and report are complete in the work folder

    def snapshot(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def peek_phase(work: Path) -> str | None:
    """The phase of a render in ``work``, read without the lock (only to tell whether its output may be in place)."""
    try:
        return json.loads((work / "state.json").read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        return None


def trash_for(work: Path) -> Path:
    return work.with_name(work.name + ".trash")


def remove_tree(work: Path) -> None:
    """Delete a work folder; it is renamed away first, so a half-deleted folder never looks like a render."""
    trash = trash_for(work)
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(work, trash)
    fsutil.checkpoint("trashed")
    shutil.rmtree(trash, ignore_errors=True)


class WorkFolder:
    """The work folder of one render: its lock, its resume check, and the frames' durable path to the segments.

    Parameters
    ----------
    output : the render's output path (the folder is ``work_dir_for(output)``)
    segment_frames : frames per encoded segment
    count : frames in the run
    held : (lead, trail): that many frames at the run's start and end are dreamed but not encoded (a batch chunk's
        warm-up and join window)
    fps, crf, preset : how the segments are encoded (``video.FrameWriter``)
    """

    def __init__(self, output: Path, *, segment_frames: int, count: int, held: tuple[int, int] = (0, 0),
                 fps: float = 25.0, crf: int = 18, preset: str = "medium"):
        self.output = Path(output)
        self._enc = (fps, crf, preset)
        self.path = work_dir_for(self.output)
        self.seg_frames = int(segment_frames)
        self.count = int(count)
        self.held = (int(held[0]), int(held[1]))
        self.frames = self.path / "frames"
        self._fd: int | None = None
        self._segment: video.FrameWriter | None = None  # the open segment; only the encoder thread touches it

    # -- the lock -------------------------------------------------------------------------------------------------
    def __enter__(self) -> WorkFolder:
        """Take an exclusive ``flock`` on ``<work>/lock`` (the folder is created if needed). The OS drops the lock
        when the process ends, however it ends, so a killed render never blocks its resume."""
        for _ in range(10):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # the folder was just removed by a render that finished
            except OSError as e:
                raise OutputError(f"cannot create the work folder {self.path}: {e.strerror}; choose a writable "
                                  "-o path") from None
            if fcntl is None:
                self._fd = fd
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if isinstance(e, BlockingIOError):
                    raise self._busy() from None
                raise OutputError(f"cannot lock the work folder {self.path}: {e.strerror}; choose an -o path on a "
                                  "local disk") from None
            try:  # the folder may have been moved away (a render finishing) between the open and the lock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path / LOCK))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return self
            os.close(fd)
        raise OutputError(f"cannot lock the work folder {self.path}: it keeps disappearing; try again")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def _busy(self) -> OutputError:
        return OutputError(f"another render is writing {self.output} (its work folder {self.path} is in use): wait "
                           "for it to finish, or choose another -o path")

    def check(self, *, resume: bool, overwrite: bool) -> None:
        """Without keeping it: is another render writing here, or does an interrupted one wait for ``--resume``?"""
        if not self.path.is_dir():
            return
        lock = self.path / LOCK
        if fcntl is not None and lock.exists():
            try:
                fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return  # the render meets it again, with its own clear error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._busy() from None
            except OSError:
                pass
            finally:
                os.close(fd)  # releases the probe's lock
        if resume or overwrite:
            return
        try:
            done = int(json.loads((self.path / "state.json").read_text()).get("done", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return
        if done > 0 and (self.path / "job.json").exists():
            raise self._waiting()

    def _waiting(self) -> OutputError:
        return OutputError(f"an interrupted render of {self.output} was found in {self.path}: pass --resume to "
                           "continue it, or --overwrite to start over")

    # -- opening: resume or start afresh ----------------------------------------------------------------------
    def open(self, job: dict, *, resume: bool, overwrite: bool) -> State:
        """In the locked folder: load the interrupted render to resume, or start afresh."""
        job_file, state_file = self.path / "job.json", self.path / "state.json"
        job = json.loads(json.dumps(job))  # as it reads back from job.json (tuples become lists)
        if job_file.exists():
            try:
                old = json.loads(job_file.read_text())
                state = State(**json.loads(state_file.read_text())) if state_file.exists() else State()
            except (OSError, ValueError, TypeError):
                raise self._damaged() from None
            if state.done > 0:  # work that would be lost
                if not resume:
                    if not overwrite:
                        raise self._waiting()
                elif old != job:
                    if not overwrite:  # with both: resume what can be resumed, start over what cannot
                        diff = sorted(k for k in job if old.get(k) != job.get(k))
                        raise OutputError(f"cannot resume: {', '.join(diff)} changed since the interrupted render; "
                                          "use the same settings, or --overwrite to start over")
                else:
                    if state.phase != "publish":
                        self._check_resumable(state)
                        self._tidy(state)
                        state.resumed_at.append(state.done)
                    return state
        for p in self.path.iterdir():  # a fresh start; the lock file stays (this render holds it)
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        self.frames.mkdir()
        durable_write(job_file, json.dumps(job, indent=2).encode())
        return State()

    def _damaged(self, what: str | None = None) -> OutputError:
        why = f" ({what} is missing)" if what else ""
        return OutputError(f"the work folder {self.path} is damaged{why}: render again with --overwrite instead of "
                           "--resume to start over")

    def segments(self, done: int) -> range:
        """The indices of the segments that hold the encoded frames among the first ``done``."""
        lead, trail = self.held
        return range(lead // self.seg_frames, -(-(done - trail) // self.seg_frames))

    def segment_path(self, i: int) -> Path:
        return self.path / f"seg_{i:06d}.mp4"

    def png(self, k: int) -> Path:
        return self.frames / f"{k:06d}.png"

    def _check_resumable(self, state: State) -> None:
        """Raise OutputError, before any work, if a file the resume needs is missing."""
        closed = state.done // self.seg_frames
        encoded = self.segments(self.count) if any(self.held) else range(closed)
        need = [self.segment_path(i) for i in range(encoded.start, min(closed, encoded.stop))]
        need += [self.png(k) for k in range(max(0, min(closed * self.seg_frames, state.done - 1)), state.done)]
        missing = [p for p in need if not p.is_file()]
        if missing:
            raise self._damaged(str(missing[0].relative_to(self.path)))

    def _tidy(self, state: State) -> None:
        """Remove what a killed render left half-done: temporary files, and PNGs the resume does not need."""
        for folder in (self.path, self.frames):
            for p in folder.glob(".*"):
                if p.is_file():
                    p.unlink()
        self._prune(keep_from=min((state.done // self.seg_frames) * self.seg_frames, state.done - 1),
                    keep_to=state.done - 1)

    def _prune(self, *, keep_from: int, keep_to: int | None = None) -> None:
        """Delete the PNGs of frames before ``keep_from`` (and after ``keep_to``)."""
        for p in self.frames.glob("*.png"):
            if p.stem.isdigit() and (int(p.stem) < keep_from or (keep_to is not None and int(p.stem) > keep_to)):
                p.unlink()

    # -- the sink (the encoder thread) ----------------------------------------------------------------------------
    def pending(self, done: int) -> list[int]:
        """The finished frames of the open segment: a resume feeds them to the encoder again (:meth:`refeed`)."""
        return list(range((done // self.seg_frames) * self.seg_frames, done))

    def last_frame(self, done: int) -> np.ndarray | None:
        """The last finished frame (lossless), which seeds a resumed render's feedback; None before any."""
        return read_image(self.png(done - 1)) if done else None

    def refeed(self, k: int) -> None:
        """Encode finished frame ``k`` again from its PNG (a resume re-opens the open segment)."""
        self._encode(k, read_image(self.png(k)))

    def put(self, k: int, frame: np.ndarray, state: bytes, *, on_output: Callable | None = None) -> None:
        """Keep finished frame ``k`` for good: its PNG, then its segment, then ``state`` (the snapshot that counts
        it), each on disk before the next relies on it; then the PNGs of a segment it closed are pruned.
        ``on_output(k, frame)`` runs after the PNG, before the state counts the frame."""
        png = self.png(k)
        with io_error(png):
            write_image(png, frame, overwrite=True, fast=True)  # uncompressed: ~10 ms at 1080p instead of ~85
            fsync(png)
            fsync(self.frames)
        fsutil.checkpoint("png", k)
        if on_output is not None:
            on_output(k, frame)
        self._encode(k, frame)
        durable_write(self.path / "state.json", state)
        fsutil.checkpoint("state", k)
        if (k + 1) % self.seg_frames == 0:
            self._prune(keep_from=k)  # the newest stays: it seeds the next frame's feedback
            fsutil.checkpoint("pruned", k // self.seg_frames)

    def _encode(self, k: int, frame: np.ndarray) -> None:
        lead, trail = self.held
        if lead <= k < self.count - trail:
            if self._segment is None:
                fps, crf, preset = self._enc
                # a piece, finer than the output: publishing encodes all of them once (no join shows)
                self._segment = video.FrameWriter(self.segment_path(k // self.seg_frames), fps=fps,
                                                  size=(frame.shape[1], frame.shape[0]), crf=crf, preset=preset,
                                                  piece=True, overwrite=True)
            self._segment.write(frame)
        if (k + 1) % self.seg_frames == 0:
            self.close_segment()

    def close_segment(self) -> None:
        """Finish the open segment, durably (the encoder thread; also the last job of a run)."""
        if self._segment is None:
            return
        with io_error(self._segment.path):
            self._segment.close()
            path, self._segment = self._segment.path, None
            fsync(path)
            fsync(self.path)
        fsutil.checkpoint("segment", int(path.stem[4:]))

    def abort_segment(self) -> None:
        """Kill the open segment's ffmpeg (after an error, once no thread uses it)."""
        if self._segment is not None:
            self._segment.abort()
            self._segment = None

    def save_state(self, state: State) -> None:
        durable_write(self.path / "state.json", state.snapshot())

    def final_path(self) -> Path:
        return self.path / ("final" + self.output.suffix)

    def remove(self) -> None:
        remove_tree(self.path)
