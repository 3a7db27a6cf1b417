"""Find built-in presets (shipped inside the wheel) and user presets.

Built-in presets live in the repository's top-level ``presets/`` folder, which the wheel carries as
``dreamvid/presets_data/``. User presets are ``*.toml`` files in ``$DREAMVID_PRESETS`` or
``~/.config/dreamvid/presets/``; a user preset with a built-in's name shadows it. ``--preset`` also takes a path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import load_toml
from .errors import ConfigError, suggest
from .shipped import builtin_dir

__all__ = ["DEFAULT", "available", "builtin_dir", "describe", "find", "load", "user_dirs"]

DEFAULT = "lysergic"


def user_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("DREAMVID_PRESETS"):
        dirs.append(Path(os.environ["DREAMVID_PRESETS"]).expanduser())
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    dirs.append(base / "dreamvid" / "presets")
    return dirs


def available() -> dict[str, Path]:
    """name -> path of every preset, built-in first, then user presets (which win on a name clash)."""
    found: dict[str, Path] = {}
    for folder in [builtin_dir(), *reversed(user_dirs())]:
        if folder.is_dir():
            for p in sorted(folder.glob("*.toml")):
                found[p.stem] = p
    return found


def find(name: str) -> Path:
    if name.endswith(".toml") or os.sep in name:
        path = Path(name).expanduser()
        if not path.exists():
            raise ConfigError(f"preset file {path} does not exist")
        return path
    presets = available()
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'{suggest(name, presets)}; `dreamvid presets` lists them")
    return presets[name]


def load(name: str) -> dict[str, Any]:
    return load_toml(find(name), what=f"preset '{name}'")


def describe(name: str) -> str:
    return str(load(name).get("description", "")).strip()
