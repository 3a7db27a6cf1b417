"""Shared fixtures: the offline weights file, one Dreamer per session, small natural images.

The model is the expensive part (seconds to build, about a second to trace each new tile shape), so every
test that dreams shares the session-scoped dreamers below, and uses tiny images, 1-2 octaves and 1-3 steps.
No test may trigger the ImageNet download: weights are always passed explicitly (a file or ``"random"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
WEIGHTS_NAME = "inception_v3_notop_q8.weights.h5"


def _find_weights() -> Path | None:
    """$DREAMVID_WEIGHTS if it names a file, else ``../shared/models/<file>`` beside the repo, else None."""
    env = os.environ.get("DREAMVID_WEIGHTS", "")
    candidates = [Path(env).expanduser()] if env and env not in ("random", "imagenet") else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "models" / WEIGHTS_NAME)
    for c in candidates:
        if c.is_file() and c.stat().st_size > 0:
            return c.resolve()
    return None


# Read once at import, before any test monkeypatches the environment.
WEIGHTS_FILE = _find_weights()
needs_weights = pytest.mark.skipif(WEIGHTS_FILE is None, reason=f"trained weights ({WEIGHTS_NAME}) not available")


def load_example(name: str = "chelsea.png", width: int | None = None) -> np.ndarray:
    """An image from ``examples/`` as uint8 RGB, scaled (area averaging) to ``width`` pixels wide."""
    bgr = cv2.imread(str(EXAMPLES / name), cv2.IMREAD_COLOR)
    assert bgr is not None, f"examples/{name} is missing"
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if width is not None:
        h = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
        rgb = cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def write_rgb(path: Path, img: np.ndarray) -> Path:
    """Write uint8 RGB with OpenCV (not dreamvid's writer, so tests do not depend on the code under test)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)), path
    return path


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"{path} is not a readable image"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def weights_path() -> Path:
    """The trained InceptionV3 no-top weights file; the test is skipped where it is absent."""
    if WEIGHTS_FILE is None:
        pytest.skip(f"trained weights ({WEIGHTS_NAME}) not available: set DREAMVID_WEIGHTS")
    return WEIGHTS_FILE


def _needs_keras() -> None:
    """Tests that dream need Keras and a backend; the pure tests also run without them (e.g. CI's oldest-OpenCV run)."""
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras is not installed: only the tests that do not dream run here")


@pytest.fixture(scope="session")
def dreamer(weights_path):
    """One Dreamer with the trained weights for the whole session (its compiled steps are reused)."""
    from dreamvid.dream import Dreamer

    _needs_keras()
    return Dreamer(weights=str(weights_path), seed=0)


@pytest.fixture(scope="session")
def random_dreamer():
    """One Dreamer with random weights (seed 0): needs no file, so these tests run everywhere.

    ``dreamvid ... --weights random`` resolves to the same weights source, so the CLI tests reuse its model.
    """
    from dreamvid.dream import Dreamer

    _needs_keras()
    return Dreamer(weights="random", seed=0)


@pytest.fixture(scope="session")
def natural_image() -> np.ndarray:
    """examples/chelsea.png at 128 px wide: uint8 RGB, shape (85, 128, 3), read-only."""
    img = load_example("chelsea.png", 128)
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def coffee_image() -> np.ndarray:
    """examples/coffee.png at 96 px wide: uint8 RGB, read-only."""
    img = load_example("coffee.png", 96)
    img.setflags(write=False)
    return img


@pytest.fixture
def image_file(tmp_path, natural_image):
    """Factory: write a small natural image (optionally resized to ``size=(w, h)``) and return its path."""

    def make(name: str = "in.png", *, size: tuple[int, int] | None = None, folder: Path | None = None) -> Path:
        img = natural_image if size is None else cv2.resize(natural_image, size, interpolation=cv2.INTER_AREA)
        return write_rgb((folder or tmp_path) / name, img)

    return make


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No weights, cache, preset or config location leaks in from the machine running the tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("DREAMVID_WEIGHTS", "DREAMVID_CACHE", "DREAMVID_PRESETS", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                "KERAS_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home
