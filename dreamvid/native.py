"""Native libraries' own stderr chatter, hidden where dreamvid has already said what matters in one line."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["quiet_stderr"]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide what C/C++ libraries write straight to fd 2 (TensorFlow's start-up, ALSA's "cannot open /dev/snd/seq"),
    which no Python setting silences. ``DREAMVID_DEBUG=1`` shows it.

    fd 2 is the whole process's: only the main thread swaps it, when no other thread can be writing (from another
    thread, e.g. ``dreamvid ui``'s model loader, it would swallow the other threads' output, such as the URL line)."""
    if os.environ.get("DREAMVID_DEBUG") or threading.current_thread() is not threading.main_thread():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
