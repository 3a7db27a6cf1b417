"""What a dream can be directed toward: an ImageNet class (by name, synonym or index) or a guide image. Pure and
cheap: no framework, no image decoding (the CLI decodes the guide before importing a framework), and checking a
config's names reads no file of the user's (a guide is looked up where it is used: :func:`find_guide`).

Two tables ship in ``dreamvid/data/``, in the class-index order of the ImageNet-1k classifier that
``keras.applications.InceptionV3(include_top=True)`` is:

- ``imagenet_classes.txt``: one short, distinct, human-readable name per class (``tabby cat``), the labels that
  gradio ships (``gradio/media_assets/data/imagenet_labels.json``, Apache-2.0). dreamvid shows these.
- ``imagenet_lemmas.txt``: every WordNet synonym of each class's synset (``tabby, tabby cat``; Keras'
  ``decode_predictions`` prints the first one, with ``_`` for spaces). Its header says where it comes from.

A class is named by its index, its name or any of its synonyms, in any case, with ``_`` or spaces. A class's own
name always names it (``harp`` is the harp, though the harmonica's synonyms include it); a synonym that two
classes share and that is neither's own name (``crane``, ``maillot``) is ambiguous, and the error names both.
"""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .shipped import builtin_dir

N_CLASSES = 1000


def _table(name: str) -> list[str]:
    """The lines of ``dreamvid/data/<name>``, without comments and blank lines; one per class."""
    text = resources.files("dreamvid").joinpath("data", name).read_text(encoding="utf8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == N_CLASSES, (name, len(lines))
    return lines


@functools.cache
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names dreamvid shows, index order (``class_names()[281] == "tabby cat"``)."""
    return tuple(_table("imagenet_classes.txt"))


@functools.cache
def class_lemmas() -> tuple[tuple[str, ...], ...]:
    """Each class's WordNet synonyms, index order (``class_lemmas()[281] == ("tabby", "tabby cat")``)."""
    return tuple(tuple(w.strip() for w in line.split("\t", 1)[1].split(",")) for line in _table("imagenet_lemmas.txt"))


def _key(name: str) -> str:
    """How names compare: case, ``_`` for a space (Keras' ``tiger_cat``) and runs of spaces do not matter."""
    return " ".join(name.replace("_", " ").lower().split())


@functools.cache
def _named() -> dict[str, tuple[int, ...]]:
    """Name key -> the classes it names: every class that has it as a synonym, or only the class whose own name
    it is."""
    found: dict[str, dict[int, None]] = {}
    for i, lemmas in enumerate(class_lemmas()):
        for lemma in lemmas:
            found.setdefault(_key(lemma), {})[i] = None
    for i, name in enumerate(class_names()):
        found[_key(name)] = {i: None}
    return {key: tuple(classes) for key, classes in found.items()}


def _suggestions(key: str) -> list[str]:
    """Up to five class names near ``key``: names holding it as a word ('cat' -> 'tabby cat'), then the classes
    of the names and synonyms closest to it (difflib)."""
    names = class_names()
    words = [n for n in names if key and key in _key(n).replace("-", " ").split()]
    close = difflib.get_close_matches(key, list(_named()), n=4, cutoff=0.6)
    return list(dict.fromkeys([*words, *(names[i] for c in close for i in _named()[c])]))[:5]


def class_index(value: Any) -> int:
    """The class index of ``value``: an index 0..999 (int or digits), or a class's name or synonym.

    Raises
    ------
    ConfigError
        An index out of range; an unknown name (with the closest names); a synonym of two classes (naming both).
    """
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
        raise ConfigError(f"dream.dream_class must be an ImageNet class name or index 0..999, got {value!r:.80}")
    key = _key(value)
    classes = _named().get(key, ())
    if len(classes) == 1:
        return classes[0]
    if classes:
        choices = " or ".join(f"{i} '{class_names()[i]}'" for i in classes)
        raise ConfigError(f"ImageNet class '{value.strip()}' is ambiguous: it is {choices}; give that name or the index")
    near = _suggestions(key)
    hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
    raise ConfigError(f"unknown ImageNet class '{value.strip()[:80]}'{hint}; give a class name or an index 0..999")


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
    works in any folder. Missing, empty or a folder: :class:`InputError`. Called where a guide is used (the CLI
    before any framework import, the dreamer), not when a config is checked."""
    path = Path(value).expanduser()
    if not path.exists() and not path.is_absolute():
        shipped = builtin_dir() / path
        if shipped.exists():
            path = shipped
    if not path.exists():
        raise InputError(f"guide image {value} does not exist; check the path")
    if path.is_dir() or path.stat().st_size == 0:
        raise InputError(f"guide image {value} is a folder or empty; give an image file")
    return path


def check_guide(value: Any) -> bool:
    """``dream.guide``: '' (none) or a path; the file itself is looked at where it is used (:func:`find_guide`)."""
    if not isinstance(value, str):
        raise ConfigError(f"dream.guide must be a path to an image file, got {value!r:.80}")
    return True
