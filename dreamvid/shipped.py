"""Where the files that ship inside dreamvid live. The lowest layer: it imports nothing from dreamvid, so the
modules that need these files (:mod:`dreamvid.presets`, :mod:`dreamvid.targets`) do not import each other."""

from __future__ import annotations

from pathlib import Path


def builtin_dir() -> Path:
    """The built-in presets folder (with their guide images): the repository's top-level ``presets/``, which the
    wheel carries as ``dreamvid/presets_data/``."""
    here = Path(__file__).resolve().parent
    packaged = here / "presets_data"
    return packaged if packaged.is_dir() else here.parent / "presets"
