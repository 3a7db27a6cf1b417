"""One exception tree for everything dreamvid reports to a user.

Every error carries a one-line message that says what is wrong and how to fix it. The CLI prints
``error: <message>`` and exits non-zero; library code never prints and never calls ``exit()``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DreamvidError(Exception):
    """Base class. ``str(err)`` is a single line fit to show a user."""

    exit_code = 1


class ConfigError(DreamvidError):
    """A preset, config file, flag or parameter value is invalid."""

    exit_code = 2


class InputError(DreamvidError):
    """An input file is missing, empty, corrupt or of the wrong kind."""


class VideoError(InputError):
    """A video cannot be opened or decoded."""


class AudioError(InputError):
    """A song cannot be opened or decoded."""


class OutputError(DreamvidError):
    """An output path exists (without ``--overwrite``) or cannot be written."""


class WeightsError(DreamvidError):
    """Model weights cannot be found, downloaded or loaded."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
