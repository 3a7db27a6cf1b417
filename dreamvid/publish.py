"""Publishing: join a render's pieces into one encode, mux the sound once, and move the results into place durably.

The last stage of the render core, shared by ``dreamvid render`` / ``zoom`` (the pieces are a render's segments)
and ``dreamvid batch`` (the pieces are a job's chunks and join windows). Both build the output and the report in
their work folder, mark the folder as publishing (durably), and only then :func:`place` them, so a process killed
at any instant finishes the job when it runs again, and an output is never half-written or silently replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import video
from .errors import OutputError
from . import fsutil
from .fsutil import atomic_write_bytes, fsync, place

__all__ = ["join", "write_report", "check_moves", "place_all"]


def join(pieces: Sequence[Path], work: Path, final: Path, *, crf: int | None, preset: str = "medium",
         song: Path | None = None, source: Path | None = None, start: float = 0.0, song_start: float = 0.0,
         loop_song: bool = False, on_warning: Callable[[str], None] | None = None,
         on_progress: Callable[[int, int], None] | None = None, seconds: dict[str, float] | None = None,
         source_info=None) -> float | None:
    """Join ``pieces`` into ``work/video.mp4``, then mux the sound into ``final``: the ``song`` from ``song_start``
    seconds, or the clip ``source``'s own sound from ``start`` seconds, or none. Returns the seconds of sound muxed
    (``video.mux``).

    The pieces (``video.FrameWriter(..., piece=True)``: finer than the output) are encoded once more, as one x264
    stream at ``crf`` and ``preset``, so no join between them shows (``video.concat``); ``crf`` None copies them
    (a batch chunk, itself a piece of the job's output). ``on_progress(done, total)`` follows that encode;
    ``seconds`` gets ``"join"`` and ``"mux"`` added."""
    seconds = seconds if seconds is not None else {}
    t = time.perf_counter()
    silent = work / "video.mp4"
    fsutil.checkpoint("concat", watch=work)
    video.concat(list(pieces), silent, overwrite=True, crf=crf, preset=preset, on_progress=on_progress)
    seconds["join"] = seconds.get("join", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    fsutil.checkpoint("mux", watch=work)
    got = video.mux(silent, final, song=song, source=source, start=start, song_start=song_start,
                    loop_song=loop_song, overwrite=True, on_warning=on_warning, source_info=source_info)
    seconds["mux"] = seconds.get("mux", 0.0) + time.perf_counter() - t
    return got


def write_report(work: Path, report: dict, final: Path) -> Path:
    """``work/report.json``, then both it and ``final`` flushed to the disk: ready to be marked for publishing."""
    path = work / "report.json"
    atomic_write_bytes(path, json.dumps(report, indent=2).encode(), overwrite=True)
    fsync(final)
    fsync(path)
    return path


def check_moves(moves: Sequence[tuple[Path, Path]], *, overwrite: bool, work: Path) -> None:
    """Before any move: every source is there (or already moved), and nothing of someone else's is in the way."""
    for src, dst in moves:
        if not src.exists() and not dst.exists():
            raise OutputError(f"the work folder {work} is damaged ({src.name} is missing): render again with "
                              "--overwrite instead of --resume to start over")
        if src.exists() and dst.exists() and not overwrite:
            raise OutputError(f"{dst} already exists: pass --overwrite to replace it, or choose another -o path")


def place_all(moves: Sequence[tuple[Path, Path]], *, overwrite: bool, work: Path) -> None:
    """Move each finished file into place (:func:`dreamvid.fsutil.place`: atomic, durable, across file systems).
    Every step can be repeated, so a run killed half-way through publishing finishes it when run again."""
    check_moves(moves, overwrite=overwrite, work=work)
    for i, (src, dst) in enumerate(moves):
        if src.exists():
            place(src, dst)
        fsutil.checkpoint("placed", i)
