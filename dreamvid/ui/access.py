"""Who may reach the page, and what it may hand out. Checked before anything is started; each refusal is one line.

* **The working folder is the app's own.** The server hands out files from it (:func:`served`), so it must not be
  a folder that holds anything else: ``/``, the home folder (or a folder above it), or any folder with entries
  that ``dreamvid ui`` does not make (``.git``, ``pyproject.toml``, a user's files ...) is refused. A new or empty
  folder, or one this app made, is taken.
* **Only what the page shows is served**: the checked uploads (``inputs/``), the renders (``renders/``), the strip
  (``strips/``) and the song's plot; never the saved presets, ``ui.log`` or anything else in the folder.
* **A page others can reach has a login.** ``--share`` (a public link) and a ``--host`` that is not a loopback
  address need ``--auth USER:PASS`` (gradio's own login): :func:`dreamvid.access.check_access`, the rule ``dreamvid
  live`` follows too.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
from pathlib import Path

from ..access import check_access  # the rule both front ends share (dreamvid/access.py)
from ..errors import ConfigError, DreamvidError, OutputError

__all__ = ["MissingDependency", "check_available", "check_workdir", "check_access", "check_port", "served", "OWN",
           "PLOT"]

#: what ``dreamvid ui`` makes in its working folder
OWN = ("inputs", "renders", "strips", "presets", "cache", "ui.log")
PLOT = Path("cache") / "analysis.png"  # the song's analysis, as the page shows it
_PROJECT = (".git", ".hg", ".svn", "pyproject.toml", "setup.py", "package.json", "Makefile", "Cargo.toml", "go.mod")


class MissingDependency(DreamvidError):
    """An optional package a command needs is not installed."""


def check_available() -> None:
    """Raise :class:`MissingDependency` (one line) unless gradio can be imported; imports nothing."""
    if importlib.util.find_spec("gradio") is None:
        raise MissingDependency('the web UI needs gradio, which is not installed: pip install "dreamvid[ui]"')


def check_workdir(workdir: str | os.PathLike) -> Path:
    """The working folder, resolved; :class:`ConfigError` if it is not one the app may keep (and serve) files in.
    Creates nothing."""
    path = Path(workdir).expanduser().resolve()
    home = Path.home().resolve()
    shared = {Path(path.anchor): "the root folder", home: "your home folder"}
    shared.update({p: "a folder above your home folder" for p in home.parents if p not in shared})
    if path in shared:
        raise ConfigError(f"--workdir {workdir} is {shared[path]}: the page serves files from its working folder; "
                          f"give it a folder of its own, e.g. --workdir {home / 'dreamvid-ui'}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file; give a folder")
    try:
        foreign = sorted(p.name for p in path.iterdir() if p.name not in OWN) if path.is_dir() else []
    except OSError as e:
        raise ConfigError(f"--workdir {workdir} cannot be read ({e.strerror}); give another folder") from None
    if foreign:
        marker = next((m for m in _PROJECT if m in foreign), None)
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        what = f"a project folder (it holds {marker})" if marker else f"a folder of other files (it holds " \
            f"{foreign[0]}{more})"
        raise ConfigError(f"--workdir {workdir} is {what}: the page serves files from its working folder; give a new "
                          "or empty folder, or one dreamvid ui made")
    return path


def served(workdir: Path) -> list[str]:
    """The paths the server may hand out: what the page shows (see the module notes)."""
    return [str(workdir / "inputs"), str(workdir / "renders"), str(workdir / "strips"), str(workdir / PLOT)]


def check_port(host: str, port: int) -> None:
    """One clear line, before anything starts, when ``host:port`` cannot be served (taken, or no such address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            why = "the port is in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise OutputError(f"cannot listen on {host}:{port}: {why}; choose another --port or --host") from None
