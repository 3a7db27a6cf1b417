"""Gradient-step backends, one small file per framework, looked up by name.

The contract (see :mod:`dreamvid.backends.base`): ``load(name).make_step(model, layers, channels, ...)``
returns a callable ``step(tiles, weights) -> (grads, losses)`` over numpy float32 arrays.
Only this package and :mod:`dreamvid.model` import keras or a framework, and they do it lazily.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import sys
import threading

from ..errors import ConfigError, suggest
from ..native import quiet_stderr

BACKENDS = ("tensorflow", "jax", "torch")
_ALIASES = {"tf": "tensorflow", "pytorch": "torch"}


def resolve_name(name: str | None = None) -> str:
    """The backend to use: ``name``, else ``$DREAMVID_BACKEND``, else ``$KERAS_BACKEND``, else tensorflow."""
    raw = name or os.environ.get("DREAMVID_BACKEND") or os.environ.get("KERAS_BACKEND") or "tensorflow"
    canon = _ALIASES.get(raw.lower(), raw.lower())
    if canon not in BACKENDS:
        raise ConfigError(f"unknown backend '{raw}'{suggest(canon, BACKENDS)}; choose tensorflow, jax or torch")
    return canon


def activate(name: str | None = None) -> str:
    """Set ``KERAS_BACKEND`` for ``name`` before keras is imported; return the canonical name.

    Keras fixes its backend at import, so asking for another one after that is an error, not a silent switch.
    """
    canon = resolve_name(name)
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if current != canon:
            raise ConfigError(
                f"keras is already running on '{current}' in this process, so backend '{canon}' cannot be used; "
                f"start a new process with DREAMVID_BACKEND={canon}"
            )
        return canon
    os.environ["KERAS_BACKEND"] = canon
    return canon


_EXTRAS = {"tensorflow": "tensorflow", "jax": "dreamvid[jax]", "torch": "dreamvid[torch]"}


def check(name: str | None = None) -> str:
    """The canonical backend name, after checking (without importing anything) that it and its framework are
    installed. Raises :class:`ConfigError` at once, so a missing framework is reported before any work."""
    canon = resolve_name(name)
    if importlib.util.find_spec(f"{__name__}.{canon}_backend") is None:
        raise ConfigError(f"backend '{canon}' is not available in this version of dreamvid yet; use --backend tensorflow")
    for module in dict.fromkeys((canon, "keras")):
        if module not in sys.modules and importlib.util.find_spec(module) is None:
            raise ConfigError(f"backend '{canon}' is not installed ({module} missing): pip install \"{_EXTRAS[canon]}\"")
    return canon


# Importing TensorFlow imports Keras, and Keras and tf.lite import whatever optional integrations they find
# installed: scikit-learn wrappers, matplotlib plotting, SciPy, JAX. dreamvid's TensorFlow backend uses none of
# them, and on two cores they are about 1.5 s of every process's start. Each of those imports is guarded
# (``except ImportError``), so they are hidden while TensorFlow imports. Modules already imported are not
# touched, and the hidden ones import normally afterwards (librosa, matplotlib in dreamvid.plot).
_HIDDEN_DURING_IMPORT = {"tensorflow": ("sklearn", "matplotlib", "scipy", "jax")}


class _Hide(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by dreamvid while TensorFlow imports)",
                                      name=fullname)
        return None


@contextlib.contextmanager
def _without_unused_imports(canon: str):
    names = [n for n in _HIDDEN_DURING_IMPORT.get(canon, ()) if n not in sys.modules]
    # sys.meta_path is the whole process's: hide modules only from the main thread (another thread's imports meanwhile
    # would be refused them)
    if not names or os.environ.get("DREAMVID_IMPORT_ALL") or threading.current_thread() is not threading.main_thread():
        yield
        return
    finder = _Hide(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def load(name: str | None = None):
    """Import and return the backend module for ``name`` (after :func:`activate`)."""
    canon = check(name)
    canon = activate(canon)
    try:
        with quiet_stderr(), _without_unused_imports(canon):
            return importlib.import_module(f"{__name__}.{canon}_backend")
    except ImportError as e:
        if (e.name or "").partition(".")[0] in _HIDDEN_DURING_IMPORT.get(canon, ()):
            raise ConfigError(f"{canon} needs {e.name} at import in this version: run again with DREAMVID_IMPORT_ALL=1 "
                              "(and report it)") from None
        raise ConfigError(f"backend '{canon}' is not installed ({e.name} missing): pip install \"{_EXTRAS[canon]}\"") from None
