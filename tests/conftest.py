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


# ---------------------------------------------------------------------------------------------------------------
# What a run must cover: $DREAMVID_REQUIRE (.ci/run sets "jax torch ui browser ray live", `make test` "jax")
#
# A test of an optional part is skipped where that part is not installed, which is right on a user's machine and
# wrong in CI: a CI run that skipped the JAX, UI, browser, Ray or torch tests would stay green without them. So a
# run can name the parts it must cover. It then stops at once, before any test, when one of them cannot run here;
# and it fails at the end when a test marked ``@needs(part)`` for one of them was skipped all the same (a browser
# that does not start, say), or when a whole test file was skipped at collection.

#: The optional parts a run can be required to cover, and what each one is.
PARTS = {
    "jax": "the JAX backend (pip install \"dreamvid[jax]\")",
    "torch": "the PyTorch backend (pip install \"dreamvid[torch]\", or a CPU build of torch)",
    "ray": "dreamvid batch --ray (pip install \"dreamvid[ray]\")",
    "ui": "dreamvid ui (pip install \"dreamvid[ui]\")",
    "browser": "the test of dreamvid ui in a real browser (pip install selenium; apt-get install chromium "
               "chromium-driver)",
    "live": "dreamvid live's remote control (pip install \"dreamvid[live]\": python-osc, mido); its MIDI and sound-card "
            "tests still skip where no port or device can be opened",
}
_REQUIRE_VAR = "DREAMVID_REQUIRE"


def needs(*parts: str):
    """Mark a test as one that covers ``parts`` (names of :data:`PARTS`): while ``$DREAMVID_REQUIRE`` names one of
    them, the test being skipped, for whatever reason, fails the run."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part {unknown[0]!r}: the parts are {', '.join(PARTS)}")
    return pytest.mark.needs(*parts)


def required_parts() -> list[str]:
    """The parts ``$DREAMVID_REQUIRE`` names (space- or comma-separated), in :data:`PARTS` order."""
    named = os.environ.get(_REQUIRE_VAR, "").replace(",", " ").split()
    unknown = [p for p in named if p not in PARTS]
    if unknown:
        raise pytest.UsageError(f"{_REQUIRE_VAR} names {unknown[0]!r}, which is not a part: the parts are "
                                f"{', '.join(PARTS)}")
    return [p for p in PARTS if p in named]


def chromium_path() -> str | None:
    """The headless browser the UI's browser test drives (Debian's chromium), or None."""
    import shutil

    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def chromedriver_path() -> str | None:
    """Selenium's driver for it, or None."""
    import shutil

    return shutil.which("chromedriver")


def part_missing(part: str) -> str | None:
    """Why ``part`` cannot run here (a package or a program is missing), or None. Looks, imports nothing."""
    import importlib.util

    packages = {"jax": ("jax",), "torch": ("torch",), "ray": ("ray",), "ui": ("gradio",),
                "browser": ("gradio", "selenium"), "live": ("pythonosc", "mido")}[part]
    for package in packages:
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed"
    if part == "browser":
        if chromium_path() is None:
            return "no chromium (or chromium-browser, google-chrome) on PATH"
        if chromedriver_path() is None:
            return "no chromedriver on PATH"
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*parts): the optional parts of dreamvid the test covers ("
                            f"{', '.join(PARTS)}); skipped while ${_REQUIRE_VAR} names one of them, it fails the run")
    required = required_parts()
    if not required:
        return
    missing = [f"{p} ({why})" for p in required if (why := part_missing(p)) is not None]
    if missing:
        raise pytest.UsageError(
            f"{_REQUIRE_VAR}={' '.join(required)} asks this run to cover parts that cannot run here: "
            f"{'; '.join(missing)}. Install them (see .ci/run), or leave them out of {_REQUIRE_VAR} on purpose")
    config.pluginmanager.register(_Required(required), "dreamvid-required-parts")


def _reason(report) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


class _Required:
    """Fails the run when a test of a required part, or a whole test file, was skipped (see :func:`needs`)."""

    def __init__(self, parts: list[str]):
        self.parts = parts
        self.skipped: list[str] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        if report.skipped:
            covered = {p for mark in item.iter_markers("needs") for p in mark.args}
            wanted = [p for p in self.parts if p in covered]
            if wanted:
                self.skipped.append(f"{item.nodeid} ({', '.join(wanted)}): {_reason(report)}")

    def pytest_collectreport(self, report):
        if report.skipped:
            self.skipped.append(f"{report.nodeid} (the whole file): {_reason(report)}")

    def pytest_terminal_summary(self, terminalreporter):
        if self.skipped:
            terminalreporter.section(f"skipped, though {_REQUIRE_VAR}={' '.join(self.parts)} requires them",
                                     red=True, bold=True)
            for line in self.skipped:
                terminalreporter.line(line, red=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def stop_server(proc, log) -> None:
    """End a page's server started by a test (``dreamvid ui`` / ``live``) and close its log: SIGTERM (SIGINT is
    ignored by a process started in the background), then SIGKILL after 20 s."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
