"""The one naming rule for what the page names: uploads, renders, saved presets.

A name is 1 to 64 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or a digit: safe in a path and on
a command line (nothing reads as an option), and what :meth:`~dreamvid.ui.jobs.JobRunner.resume` accepts.
:func:`render_name` builds names that obey it from any clip and preset name.
"""

from __future__ import annotations

import datetime as _dt
import re

__all__ = ["NAME_RE", "MAX_NAME", "clean", "render_name"]

MAX_NAME = 64
NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}")  # fullmatch


def clean(text: str, limit: int) -> str:
    """``text`` made to obey the rule in at most ``limit`` characters ("" if nothing of it is left)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).lstrip("_.-")[:limit]


def render_name(stem: str, preset: str, when: _dt.datetime | None = None) -> str:
    """``<stem>-<preset>-<YYYYmmdd-HHMMSS>``, shortened to obey the rule (the clip's name gives way first)."""
    stamp = (when or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    preset = clean(preset, 20) or "preset"
    stem = clean(stem, MAX_NAME - len(stamp) - len(preset) - 2) or "render"
    return f"{stem}-{preset}-{stamp}"
