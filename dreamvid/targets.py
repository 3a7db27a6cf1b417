"""What a dream can be directed toward: an ImageNet class (by name or index) or a guide image. Pure and cheap:
no framework, no image decoding (the CLI decodes the guide before importing a framework).

The 1000 class names (``dreamvid/data/imagenet_classes.txt``, index order of the ImageNet-1k classifier that
``keras.applications.InceptionV3(include_top=True)`` is) are the short human-readable labels that gradio ships
(``gradio/media_assets/data/imagenet_labels.json``, Apache-2.0), one per line: the standard ImageNet class index,
with each WordNet synset reduced to one distinct name.
"""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError

N_CLASSES = 1000


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, index order."""
    text = resources.files("dreamvid").joinpath("data/imagenet_classes.txt").read_text(encoding="utf8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == N_CLASSES, len(names)
    return names


def _suggestions(name: str) -> list[str]:
    names = class_names()
    low = name.strip().lower()
    words = [n for n in names if low and low in n.lower().replace("-", " ").split()]  # 'cat' -> 'tabby cat', ...
    close = difflib.get_close_matches(low, [n.lower() for n in names], n=4, cutoff=0.6)
    lower = {n.lower(): n for n in names}
    out = list(dict.fromkeys([*words, *(lower[c] for c in close)]))
    return out[:5]


def class_index(value: Any) -> int:
    """The class index of ``value``: an index 0..999 (int or digits), or a class name (case-insensitive).

    An unknown name is a :class:`ConfigError` with the closest names (difflib, and names containing the word)."""
    if isinstance(value, bool):
        raise ConfigError(f"dream.dream_class must be an ImageNet class name or index 0..999, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if not 0 <= value < N_CLASSES:
            raise ConfigError(f"ImageNet class index {value} is out of range: use 0..999 or a class name")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"dream.dream_class must be an ImageNet class name or index 0..999, got {value!r}")
    lower = [n.lower() for n in class_names()]
    key = " ".join(value.strip().lower().split())
    if key in lower:
        return lower.index(key)
    near = _suggestions(key)
    hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
    raise ConfigError(f"unknown ImageNet class '{value.strip()}'{hint}; give a class name or an index 0..999")


def class_label(value: Any) -> str:
    """``"281 tabby cat"`` for any form :func:`class_index` takes."""
    i = class_index(value)
    return f"{i} {class_names()[i]}"


def check_class(value: Any) -> bool:
    """``dream.dream_class``: '' (none), or a valid class. Raises :class:`ConfigError` with suggestions."""
    if value == "":
        return True
    class_index(value)
    return True


def find_guide(value: str) -> Path:
    """The guide image ``value`` names: a path (``~`` expanded), or else, for a relative path, one among the
    built-in presets' guides (``presets/guides/``, shipped inside the wheel), so ``guide = "guides/tabby.jpg"``
    works in any folder. Missing, empty or a folder: :class:`InputError`."""
    path = Path(value).expanduser()
    if not path.exists() and not path.is_absolute():
        from .presets import builtin_dir

        shipped = builtin_dir() / path
        if shipped.exists():
            path = shipped
    if not path.exists():
        raise InputError(f"guide image {value} does not exist; check the path")
    if path.is_dir() or path.stat().st_size == 0:
        raise InputError(f"guide image {value} is a folder or empty; give an image file")
    return path


def check_guide(value: Any) -> bool:
    """``dream.guide``: '' (none), or an existing, non-empty file (decoded later, before any framework import)."""
    if not isinstance(value, str):
        raise ConfigError(f"dream.guide must be a path to an image file, got {value!r}")
    if value:
        find_guide(value)
    return True
