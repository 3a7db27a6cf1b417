"""The page's inputs: a clip, a song, or a still image, uploaded and checked like the CLI's inputs.

Each upload is checked (type, size, then ``video.probe``, ``video.check_song`` or ``images.read_image``) and
copied into the working folder's ``inputs/`` under a name that obeys :mod:`.names`, never over another file.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ..errors import DreamvidError, InputError
from .names import clean

__all__ = ["Inputs", "VIDEO_SUFFIXES", "SONG_SUFFIXES", "DEFAULT_UPLOAD_MB"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv")
SONG_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus")
DEFAULT_UPLOAD_MB = 2048


class Inputs:
    """The loaded inputs: a clip (with its ``VideoInfo``) or a still image, and a song.

    Parameters
    ----------
    folder : where checked uploads are kept (``<workdir>/inputs``)
    max_upload_bytes : the largest upload accepted
    """

    def __init__(self, folder: Path, *, max_upload_bytes: int):
        self.folder, self.max_upload_bytes = folder, max_upload_bytes
        self._lock = threading.Lock()
        self.clip: Path | None = None
        self.info = None  # the clip's VideoInfo
        self.song: Path | None = None
        self.still: Path | None = None
        self.still_img: np.ndarray | None = None
        self.notes: dict[str, str] = {}  # kind -> what the page says about the loaded input

    @property
    def key(self) -> str:
        """The loaded picture source ("" without one): a preview is of this."""
        src = self.still or self.clip
        return "" if src is None else str(src)

    @property
    def frames(self) -> int:
        return self.info.frame_count if self.info is not None else 1

    def summary(self) -> str:
        """The loaded inputs, one line."""
        return " · ".join(self.notes[k] for k in ("clip", "still", "song") if k in self.notes) or "no input loaded"

    def take(self, path: str | os.PathLike, kinds: tuple[str, ...], what: str) -> Path:
        """Check an uploaded file's type and size and copy it into the folder (a fresh name, never over another)."""
        src = Path(path)
        if not src.is_file():
            raise InputError(f"the uploaded {what} is missing; upload it again")
        suffix = src.suffix.lower()
        if suffix not in kinds:
            raise InputError(f"{src.name} is not a {what} this app takes: use one of {', '.join(kinds)}")
        size = src.stat().st_size
        if size == 0:
            raise InputError(f"{src.name} is empty (0 bytes); upload a valid {what}")
        if size > self.max_upload_bytes:
            raise InputError(f"{src.name} is {size / 2**20:.0f} MB, over this app's limit of "
                             f"{self.max_upload_bytes / 2**20:.0f} MB (--max-upload-mb)")
        stem = clean(src.stem, 56) or clean(what, 56)
        dest, n = self.folder / f"{stem}{suffix}", 1
        while dest.exists():
            if _same_file(src, dest):
                return dest
            n += 1
            dest = self.folder / f"{stem}-{n}{suffix}"
        tmp = self.folder / f".{dest.name}.part"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return dest

    def _checked(self, path, kinds, what, check):
        dest = self.take(path, kinds, what)
        try:
            return dest, check(dest)
        except DreamvidError:
            dest.unlink(missing_ok=True)
            raise

    def load_clip(self, path: str | os.PathLike) -> str:
        """Take an uploaded clip (``video.probe``); it replaces a still. Returns what the page says about it."""
        from .. import video

        dest, info = self._checked(path, VIDEO_SUFFIXES, "video clip", video.probe)
        with self._lock:
            self.clip, self.info, self.still, self.still_img = dest, info, None, None
            self.notes.pop("still", None)
            self.notes["clip"] = (f"clip {dest.name}: {info.width}×{info.height}, {info.fps:g} fps, "
                                  f"{info.frame_count} frames, {info.duration:.2f} s")
            return self.notes["clip"]

    def load_song(self, path: str | os.PathLike) -> str:
        """Take an uploaded song, checked with the mux's own decoding (``video.check_song``)."""
        from .. import video

        dest, _ = self._checked(path, SONG_SUFFIXES, "song", video.check_song)
        with self._lock:
            self.song = dest
            self.notes["song"] = f"song {dest.name}"
            return self.notes["song"]

    def load_still(self, path: str | os.PathLike) -> str:
        """Take an uploaded still image (``images.read_image``); it replaces a clip."""
        from ..images import IMAGE_SUFFIXES, read_image

        dest, img = self._checked(path, IMAGE_SUFFIXES, "image", read_image)
        with self._lock:
            self.still, self.still_img, self.clip, self.info = dest, img, None, None
            self.notes.pop("clip", None)
            self.notes["still"] = f"image {dest.name}: {img.shape[1]}×{img.shape[0]}"
            return self.notes["still"]

    def clear(self, what: str) -> None:
        """Unload the ``clip``, ``song`` or ``still`` (its file stays in the folder)."""
        with self._lock:
            if what == "clip":
                self.clip = self.info = None
            elif what == "song":
                self.song = None
            elif what == "still":
                self.still = self.still_img = None
            self.notes.pop(what, None)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False
