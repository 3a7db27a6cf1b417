"""A bad schedule in a config file is one line, from each front end that reads one, before any framework import.

The expressions are the ones that used to end in a ``RecursionError`` traceback (issue 18): a power tower, and
very deep or very long text. ``render`` and ``dream`` run as new processes (``tests.test_cli.run_process``),
which also records the frameworks imported; ``batch`` reads the same schedule in a job file.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dreamvid.cli import app
from tests.media import make_clip
from tests.test_cli import assert_fails_fast, run_process

DEEP = r"nested too deeply: more than 60 levels of parentheses, function calls, signs or powers"
CASES = {
    "power tower": ("2^" * 1999 + "2", rf"motion\.zoom must be .* or a schedule; at position 122 of \.\.\.'\^2\^2.*{DEEP}"),
    "deep signs": ("-" * 3999 + "1", rf"at position 61 of .*{DEEP}"),
    "deep calls": ("sin(" * 700 + "t" + ")" * 700, rf"at position 244 of .*{DEEP}"),
    "too long": ("1+" * 2500 + "1", (r"motion\.zoom must be .* or a schedule; the expression is 5001 characters long; "
                                     r"keep it under 4000")),
    "garbage at the end": ("1+" * 1999 + "1)", r"at position 4000 of \.\.\.'\+1\+1.*1\)': unexpected '\)'"),
}


def _config(tmp_path, expression: str):
    path = tmp_path / "bad.toml"
    path.write_text(f'[motion]\nzoom = "{expression}"\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", n=4, size=(32, 24), fps=8.0)


@pytest.mark.parametrize("case", list(CASES))
def test_render_with_a_preset_and_a_bad_expression_in_its_config_file_is_one_line(clip, tmp_path, case):
    expression, match = CASES[case]
    line = assert_fails_fast(*run_process("render", clip, "--preset", "odyssey", "--config", _config(tmp_path, expression),
                                          "-o", tmp_path / "out.mp4", "--weights", "random", cwd=tmp_path), match)
    assert len(line) < 500, line  # an excerpt of the text around the position, not all of it
    assert not (tmp_path / "out.mp4").exists()


def test_dream_with_a_bad_expression_in_its_config_file_is_one_line(image_file, tmp_path):
    expression, match = CASES["power tower"]
    assert_fails_fast(*run_process("dream", image_file("in.png", size=(32, 24)), "-p", "thumbnail", "--config",
                                   _config(tmp_path, expression), "-o", tmp_path / "out.png", "--weights", "random",
                                   cwd=tmp_path), match)


@pytest.mark.parametrize("case", ["power tower", "deep calls"])
def test_a_batch_job_with_a_bad_expression_is_one_line(clip, tmp_path, case):
    expression, _ = CASES[case]
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[job]]\ninput = "{clip}"\noutput = "out.mp4"\n\n[job.dream]\nstep_size = "{expression}"\n',
                    encoding="utf-8")
    result = CliRunner().invoke(app, ["batch", str(jobs)])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "dream.step_size must be" in lines[0] and DEEP in lines[0], lines[0]
