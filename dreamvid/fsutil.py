"""Safe output paths: never overwrite silently, always write atomically (temp file + rename)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DreamvidError, OutputError


def check_output(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Raise :class:`OutputError` if ``path`` exists (without ``overwrite``) or its folder is not writable."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists: pass --overwrite to replace it, or choose another -o path")
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name for the output")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create folder {parent}: {e.strerror}; choose a writable -o path") from None
    if not parent.is_dir():
        raise OutputError(f"cannot write to {parent}: it is a file, not a folder; choose another -o path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {parent}: permission denied; choose a writable -o path")
    return path


def check_input(path: str | os.PathLike, *, what: str, error: type[DreamvidError], give: str) -> Path:
    """The one check of an input file, before it is read: it exists, is not a folder and is not empty; otherwise
    ``error`` with one line naming ``what`` it is and, for a folder or an empty file, what to ``give`` instead."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} {path} does not exist: check the path")
    if path.is_dir():
        raise error(f"{what} {path} is a folder: give {give}")
    if path.stat().st_size == 0:
        raise error(f"{what} {path} is empty (0 bytes): give {give}")
    return path


def _new_temp(folder: Path, *, prefix: str, suffix: str) -> Path:
    """Create an empty file with a fresh name in ``folder``, with the mode a normal write gives (0666 less the umask).

    ``tempfile.mkstemp`` creates 0600 files, and the rename keeps that mode: outputs would be private.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = Path(folder) / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(name, flags, 0o666)  # the kernel applies the umask, as for open(name, "w")
        except FileExistsError:
            continue
        os.close(fd)
        return name
    raise FileExistsError(f"no free temporary name in {folder}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    The temporary name keeps the suffix, so tools that infer the format from it (ffmpeg, OpenCV) work.
    """
    path = check_output(path, overwrite=overwrite)
    try:
        tmp = _new_temp(path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    except OSError as e:  # e.g. a read-only file system, which os.access does not see
        raise OutputError(f"cannot write to {path.parent}: {e.strerror}; choose a writable -o path") from None
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise OutputError(f"writing {path} produced no data")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


# ---- durable writes (the work folders of renders and batch jobs) ------------------------------------------------
def fsync(path: str | os.PathLike) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` atomically, on disk (fsync) before this returns. For one writer (a locked work folder)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with io_error(path):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync(path.parent)


def place(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move a finished file into place, atomically and durably, also onto another file system.

    Within one file system this is a rename. Across file systems (``EXDEV``), ``src`` is copied to a temporary
    file beside ``dst``, flushed, renamed over ``dst``, and only then removed: repeated after an interruption, it
    finishes the move. The file keeps normal permissions.
    """
    src, dst = Path(src), Path(dst)
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise OutputError(f"cannot move {src.name} to {dst}: {e.strerror}; choose a writable output path") \
                from None
        with io_error(dst):
            tmp = _new_temp(dst.parent, prefix=f".{dst.stem}.", suffix=f".tmp{dst.suffix}")
            try:
                shutil.copyfile(src, tmp)
                fsync(tmp)
                os.replace(tmp, dst)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            fsync(dst.parent)
            src.unlink()
        return
    fsync(dst.parent)


@contextlib.contextmanager
def io_error(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` (a full disk, a read-only or vanished folder) into one line."""
    try:
        yield
    except OSError as e:
        if isinstance(e, (BrokenPipeError, ConnectionError)):
            raise
        hint = ("free some space, then run the same command again (with --resume for a render)"
                if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the folder, then run the same command again")
        raise OutputError(f"cannot write {path}: {e.strerror or e}; {hint}") from None


def checkpoint(stage: str, n: int = 0, *, watch: Path | None = None) -> None:
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
