"""Saved presets: the page's settings as a TOML file that ``dreamvid render --preset PATH`` reads unchanged.

Written with ``tomli-w`` (the standard library reads TOML but does not write it), read back and compared before
the file is written, atomically, never over another one unless asked.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import presets as _presets
from ..config import Config, resolve, tomllib
from ..errors import ConfigError, OutputError
from ..fsutil import atomic_write_bytes
from .names import MAX_NAME, NAME_RE

__all__ = ["PresetStore", "preset_text"]


def _no_none(table: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` without its None values, at any depth (TOML has no null)."""
    return {k: _no_none(v) if isinstance(v, Mapping) else v for k, v in table.items() if v is not None}


def preset_text(table: Mapping[str, Any], *, header: str = "") -> str:
    """A config dict (``Config.to_dict()`` form) as TOML text, ``header`` as a comment line above it."""
    import tomli_w

    try:
        text = tomli_w.dumps(_no_none(table))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot write these settings as a preset: {e}") from None
    return (f"# {header}\n" if header else "") + text


class PresetStore:
    """The presets saved on the page, in ``folder`` (``<workdir>/presets``)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def choices(self, current: str) -> list[tuple[str, str]]:
        """(label, value) for the preset menu: built-in and user presets, then those saved here, and ``current``."""
        out = [(n, n) for n in _presets.available()]
        out += [(f"{p.stem} (saved here)", str(p)) for p in sorted(self.folder.glob("*.toml"))]
        if current not in {v for _, v in out}:
            out.append((Path(current).stem, current))
        return out

    def save(self, name: str, config: Config, *, description: str = "", overwrite: bool = False) -> Path:
        """Write ``config`` as ``<folder>/<name>.toml``, checked by reading it back first."""
        name = (name or "").strip()
        if name.lower().endswith(".toml"):
            name = name[:-5]
        if not NAME_RE.fullmatch(name):
            raise ConfigError(f"name the preset with letters, digits, '-', '_' or '.', starting with a letter or a "
                              f"digit, at most {MAX_NAME} long, e.g. my-dream")
        table = config.to_dict()
        table.pop("preset", None)
        table["description"] = description.strip() or f"Saved from dreamvid ui (from the preset {config.preset})."
        text = preset_text(table, header=f"Saved by dreamvid ui on {_dt.date.today().isoformat()}.")
        again = resolve(tomllib.loads(text))

        def canon(t):
            return json.dumps({**t, "preset": None}, sort_keys=True, default=str)

        if canon(again.to_dict()) != canon(table):
            raise ConfigError("these settings do not survive a round trip through TOML; please report it")
        path = self.folder / f"{name}.toml"
        if path.exists() and not overwrite:
            raise OutputError(f"a preset named {name} exists in {self.folder}: tick overwrite, or choose another name")
        atomic_write_bytes(path, text.encode(), overwrite=overwrite)
        return path
