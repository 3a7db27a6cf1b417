"""Safe output paths: never overwrite silently, always write atomically (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


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
