"""$DREAMVID_REQUIRE (tests/conftest.py): a run that must cover an optional part fails without it.

Each case runs pytest in a new process on a small test file, with this suite's conftest, as ``make test`` and
.ci/run do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PARTS, part_missing

HERE = Path(__file__).resolve().parent

TESTS = '''
import pytest
from conftest import needs

@needs("{part}")
def test_covered_but_skipped():
    pytest.skip("as if {part} could not start here")

@needs("{part}")
def test_covered_and_run():
    pass

def test_skipped_for_another_reason():
    pytest.skip("root can write to read-only folders")
'''


@pytest.fixture
def part() -> str:
    """An optional part that is installed here (a run cannot require one that is not)."""
    found = next((p for p in PARTS if part_missing(p) is None), None)
    if found is None:
        pytest.skip("none of the optional parts is installed here")
    return found


def _pytest(folder: Path, require: str | None, *, path: str | None = None) -> subprocess.CompletedProcess:
    shutil.copy(HERE / "conftest.py", folder / "conftest.py")
    env = {k: v for k, v in os.environ.items() if k != "DREAMVID_REQUIRE"}
    if require is not None:
        env["DREAMVID_REQUIRE"] = require
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_skipped_test_of_a_required_part_or_a_test_file_skipped_whole_fails_the_run(tmp_path, part):
    (tmp_path / "test_parts.py").write_text(TESTS.format(part=part))
    (tmp_path / "test_whole.py").write_text('import pytest\npytest.skip("gradio is missing", allow_module_level=True)\n')
    free = _pytest(tmp_path, None)
    assert free.returncode == 0, free.stdout[-2000:]  # nothing required: skips are skips
    strict = _pytest(tmp_path, f"{part}")
    assert strict.returncode == 1, strict.stdout[-2000:]
    assert f"skipped, though DREAMVID_REQUIRE={part} requires them" in strict.stdout
    listed = strict.stdout.split("requires them", 1)[1]
    assert f"test_covered_but_skipped ({part}): as if {part} could not start here" in listed
    assert "test_whole.py (the whole file): gradio is missing" in listed
    assert "test_skipped_for_another_reason" not in listed and "test_covered_and_run" not in listed


def test_a_required_part_that_cannot_run_here_stops_the_run_at_once(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    no_programs = _pytest(tmp_path, "browser", path=str(tmp_path))  # no chromium, no chromedriver on this PATH
    assert no_programs.returncode == 4, no_programs.stdout + no_programs.stderr
    assert "DREAMVID_REQUIRE=browser asks this run to cover parts that cannot run here: browser (" in no_programs.stderr
    assert "passed" not in no_programs.stdout
    typo = _pytest(tmp_path, "jax,tourch")
    assert typo.returncode == 4 and "DREAMVID_REQUIRE names 'tourch', which is not a part" in typo.stderr
