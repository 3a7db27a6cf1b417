"""The command line, in-process with typer's CliRunner: happy paths, and one clear line for every bad input.

Dreams use ``--weights random`` (no file needed; the session's random model is reused), one octave and one step.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dreamvid import __version__, presets
from dreamvid.cli import app
from dreamvid.config import LAYER_CHANNELS, LAYER_NAMES, resolve
from tests.conftest import read_rgb, write_rgb

FAST = ["--weights", "random", "-p", "thumbnail", "--layers", "mixed3:1", "--octaves", "1", "--steps", "1", "-q"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _isolated(clean_env):
    """Every CLI test runs without the machine's weights, cache or user presets."""


def invoke(runner: CliRunner, *args):
    return runner.invoke(app, [str(a) for a in args])


def leftovers(folder: Path) -> list[Path]:
    """Temporary files an interrupted or failed write would leave behind."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def assert_one_line_error(result, code: int | None = None, match: str | None = None) -> str:
    """Non-zero exit, no traceback, exactly one ``error:`` line (matching ``match``); return that line."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert not [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("error:", "weights:"))], \
        f"stray lines besides the error: {result.stderr!r}"
    if match is not None:
        assert re.search(match, errors[0]), errors[0]
    return errors[0]


# ---- dream: happy paths ---------------------------------------------------------------------------------------

def test_dream_one_image_writes_the_image_and_a_sidecar(runner, image_file, natural_image, tmp_path):
    src = image_file("cat.png")
    cfg = tmp_path / "mine.toml"
    cfg.write_text("[dream]\nsteps = 3\nstep_size = 0.05\njitter = 4\n")
    out = tmp_path / "out" / "cat-dream.jpg"  # the folder does not exist yet
    result = invoke(runner, "dream", src, "-o", out, "--config", cfg, *FAST)
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout.splitlines()
    assert "Traceback" not in result.output

    img = read_rgb(out)
    assert img.shape == natural_image.shape
    assert np.abs(img.astype(int) - natural_image).mean() > 4, "the image was dreamed (JPEG alone changes it by ~2)"

    record = json.loads((out.parent / "cat-dream.jpg.dreamvid.json").read_text())
    assert record["input"] == str(src)
    assert record["size"] == [natural_image.shape[1], natural_image.shape[0]]
    assert "random" in record["weights"] and record["backend"] == "tensorflow"
    dream = record["config"]["dream"]
    thumbnail = presets.load("thumbnail")["dream"]
    assert dream["steps"] == 1 and dream["octaves"] == 1 and dream["layers"] == "mixed3:1"  # flags win
    assert dream["step_size"] == 0.05 and dream["jitter"] == 4  # the --config file beats the preset
    assert dream["octave_scale"] == thumbnail["octave_scale"]  # the preset beats the defaults
    assert record["config"]["preset"] == "thumbnail"
    assert resolve(record["config"]).to_dict() == record["config"], "the sidecar reproduces the run"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cat-dream.jpg", "cat-dream.jpg.dreamvid.json"]


def test_dream_many_images_into_a_folder(runner, image_file, tmp_path):
    a = image_file("a.png", size=(96, 80))
    b = image_file("b.jpg", size=(96, 80), folder=tmp_path / "other")
    out = tmp_path / "dreams"
    result = invoke(runner, "dream", a, b, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(out / "a.png"), str(out / "b.jpg")]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.png.dreamvid.json", "b.jpg", "b.jpg.dreamvid.json"]
    assert read_rgb(out / "a.png").shape == (80, 96, 3)
    assert read_rgb(out / "b.jpg").shape == (80, 96, 3)


def test_dream_into_an_existing_folder_keeps_the_name(runner, image_file, tmp_path):
    src = image_file("one.png", size=(96, 80))
    folder = tmp_path / "existing"
    folder.mkdir()
    result = invoke(runner, "dream", src, "-o", folder, *FAST)
    assert result.exit_code == 0, result.output
    assert (folder / "one.png").is_file()


def test_dream_max_side_scales_down(runner, image_file, tmp_path):
    src = image_file("big.png", size=(200, 150))
    out = tmp_path / "small.png"
    result = invoke(runner, "dream", src, "-o", out, "--max-side", 96, *FAST)
    assert result.exit_code == 0, result.output
    assert read_rgb(out).shape == (72, 96, 3)
    assert json.loads(out.with_name("small.png.dreamvid.json").read_text())["size"] == [96, 72]


def test_overwrite_is_needed_to_replace_an_output(runner, image_file, tmp_path):
    src = image_file("in.png", size=(96, 80))
    out = tmp_path / "out.png"
    write_rgb(out, np.zeros((10, 10, 3), np.uint8))
    before = out.read_bytes()

    result = invoke(runner, "dream", src, "-o", out, *FAST)
    assert_one_line_error(result, 1, r"already exists: pass --overwrite")
    assert out.read_bytes() == before, "the existing file must be untouched"
    assert not out.with_name("out.png.dreamvid.json").exists()
    assert leftovers(tmp_path) == []

    result = invoke(runner, "dream", src, "-o", out, "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert read_rgb(out).shape == (80, 96, 3)
    assert leftovers(tmp_path) == []


def test_layers_flag_overrides_the_default_preset(runner, image_file, tmp_path):
    src = image_file("in.png", size=(96, 80))
    out = tmp_path / "out.png"
    result = invoke(runner, "dream", src, "-o", out, "--weights", "random", "--layers", "mixed4:1", "--octaves", 1,
                    "--steps", 1, "-q")
    assert result.exit_code == 0, result.output
    config = json.loads(out.with_name("out.png.dreamvid.json").read_text())["config"]
    default = presets.load(presets.DEFAULT)["dream"]
    assert config["preset"] == presets.DEFAULT
    assert config["dream"]["layers"] == "mixed4:1", "the dream used the flag's layers, not the preset's"
    assert default["layers"] != "mixed4:1"
    assert config["dream"]["octave_scale"] == default["octave_scale"], "the rest of the preset still applies"
    assert resolve(config).dream.layer_names == ("mixed4",)


# ---- dream: bad input, one line each, nothing written -------------------------------------------------------

def _bad_inputs(tmp_path: Path, image_file) -> dict[str, tuple[list, int, str]]:
    good = image_file("good.png", size=(96, 80))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    a_file = tmp_path / "somefile.txt"
    a_file.write_text("x")
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("dream = 5\n")
    out = tmp_path / "out" / "o.png"
    folder = tmp_path / "afolder"
    folder.mkdir()
    return {
        "missing input": ([tmp_path / "nope.png", "-o", out], 1, r"nope\.png does not exist"),
        "corrupt input": ([corrupt, "-o", out], 1, r"corrupt\.jpg is not a readable image"),
        "not an image": ([text, "-o", out], 1, r"notes\.txt is not a readable image"),
        "zero-size input": ([empty, "-o", out], 1, r"empty\.png is empty \(0 bytes\)"),
        "input is a folder": ([folder, "-o", out], 1, r"afolder is a folder"),
        "one of many corrupt": ([good, corrupt, "-o", tmp_path / "out"], 1, r"corrupt\.jpg is not a readable"),
        "parent is a file": ([good, "-o", a_file / "o.png"], 1, r"somefile\.txt.*not a folder"),
        "no image suffix": ([good, "-o", tmp_path / "out" / "o.xyz"], 1, r"cannot tell the image format"),
        "output is input": ([good, "-o", good, "--overwrite"], 1, r"is the input itself"),
        "steps 0": ([good, "-o", out, "--steps", 0], 2, r"dream\.steps must be an integer from 1 to 1000, got 0"),
        "octave scale 0.5": ([good, "-o", out, "--octave-scale", 0.5], 2, r"dream\.octave_scale must be .* got 0\.5"),
        "unknown layer": ([good, "-o", out, "--layers", "mixed99"], 2, r"unknown layer 'mixed99' \(did you mean 'mixed9'\?\)"),
        "channel out of range": ([good, "-o", out, "--layers", "mixed3[5000]:1"], 2, r"channel 5000 is out of range"),
        "tile too small": ([good, "-o", out, "--tile-size", 32], 2, r"dream\.tile_size must be"),
        "max side too small": ([good, "-o", out, "--max-side", 4], 2, r"--max-side must be at least 16"),
        "unknown preset": ([good, "-o", out, "-p", "lysergc"], 2, r"unknown preset 'lysergc' \(did you mean 'lysergic'\?\)"),
        "missing config": ([good, "-o", out, "--config", tmp_path / "nope.toml"], 2, r"nope\.toml does not exist"),
        "config not a table": ([good, "-o", out, "--config", bad_cfg], 2, r"\[dream\] must be a table"),
        "unknown backend": ([good, "-o", out, "--backend", "tensorfow"], 2, r"unknown backend 'tensorfow' \(did you mean 'tensorflow'\?\)"),
        "missing weights": ([good, "-o", out, "--weights", tmp_path / "w.h5"], 1, r"w\.h5 .*does not exist"),
    }


CASES = ["missing input", "corrupt input", "not an image", "zero-size input", "input is a folder",
         "one of many corrupt", "parent is a file", "no image suffix", "output is input", "steps 0",
         "octave scale 0.5", "unknown layer", "channel out of range", "tile too small", "max side too small",
         "unknown preset", "missing config", "config not a table", "unknown backend", "missing weights"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_error_line_and_writes_nothing(runner, image_file, tmp_path, case):
    args, code, match = _bad_inputs(tmp_path, image_file)[case]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = invoke(runner, "dream", *args, "--weights", "random", "-q") if "--weights" not in args else \
        invoke(runner, "dream", *args, "-q")
    assert_one_line_error(result, code, match)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, f"files were written or changed: {set(after) ^ set(before)}"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_output_folder(runner, image_file, tmp_path):
    src = image_file("in.png", size=(96, 80))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke(runner, "dream", src, "-o", locked / "o.png", *FAST)
        assert_one_line_error(result, 1, r"cannot write to .*locked")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# ---- the other commands -----------------------------------------------------------------------------------------

def test_presets_lists_the_builtins(runner):
    result = invoke(runner, "presets")
    assert result.exit_code == 0, result.output
    for name in ("lysergic", "subtle", "nightmare", "thumbnail"):
        assert re.search(rf"^\s*{name}\b", result.stdout, re.M), f"{name} not listed:\n{result.stdout}"


def test_presets_shows_one_preset_as_pipeable_toml(runner):
    result = invoke(runner, "presets", "lysergic")
    assert result.exit_code == 0, result.output
    text = presets.find("lysergic").read_text()
    assert result.stdout.rstrip() == text.rstrip()  # verbatim: no wrapping, no markup eaten
    assert tomllib.loads(result.stdout) == presets.load("lysergic")


def test_presets_unknown_name(runner):
    assert_one_line_error(invoke(runner, "presets", "nightmar"), 2, r"did you mean 'nightmare'\?")


def test_layers_lists_every_layer_with_its_shape(runner):
    result = invoke(runner, "layers", "--size", 128)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name in LAYER_NAMES:
        row = [line for line in lines if re.match(rf"\s*{name}\s", line)]
        assert len(row) == 1, f"{name} missing:\n{result.stdout}"
        assert re.search(rf"\(None, \d+, \d+, {LAYER_CHANNELS[name]}\)", row[0]), row[0]
    assert_one_line_error(invoke(runner, "layers", "--size", 50), 2, r"--size must be at least 75")


def test_weights_shows_the_source(runner, tmp_path):
    result = invoke(runner, "weights", "--weights", "random")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "random weights (seed 0), from --weights — for smoke runs only"
    result = invoke(runner, "weights")  # nothing configured: the ImageNet default, not downloaded here
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ImageNet weights via Keras, not downloaded yet")
    assert_one_line_error(invoke(runner, "weights", "--weights", tmp_path / "nope.h5"), 1, r"nope\.h5 .*does not exist")


def test_version_and_help(runner):
    result = invoke(runner, "version")
    assert result.exit_code == 0 and result.stdout.strip() == __version__
    result = invoke(runner, "dream", "--help")
    assert result.exit_code == 0
    assert "--overwrite" in result.stdout and "--max-side" in result.stdout


# ---- fail fast: a bad command line is refused in about a second, before any framework is imported -------------

# Slow imports that a refused command must not pay for (TensorFlow alone takes 3-6 s on a 2-core machine). How
# fast the refusal is lives in the import list, not in a wall-clock bound: timings belong in benchmarks/.
FRAMEWORKS = ("tensorflow", "keras", "jax", "torch", "gradio", "ray")
# Runs the real entry point (dreamvid.cli:main) and, at exit, writes which frameworks the process imported.
_PROBE = f"""
import atexit, os, sys
def _imported():
    with open(os.environ["DREAMVID_TEST_IMPORTED"], "w") as f:
        f.write(",".join(m for m in {FRAMEWORKS!r} if m in sys.modules))
atexit.register(_imported)
sys.argv = ["dreamvid", *sys.argv[1:]]
from dreamvid.cli import main
main()
"""


def run_process(*args, cwd: Path) -> tuple[subprocess.CompletedProcess, float, list[str]]:
    """Run ``dreamvid ARGS`` as a new process; return it, its wall time and the frameworks it imported."""
    marker = cwd / ".imported"
    env = {**os.environ, "DREAMVID_TEST_IMPORTED": str(marker), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    elapsed = time.perf_counter() - t
    imported = [m for m in marker.read_text().split(",") if m] if marker.exists() else ["(no report)"]
    marker.unlink(missing_ok=True)
    return proc, elapsed, imported


def assert_fails_fast(proc, elapsed, imported, match: str) -> str:
    """Non-zero exit, one line in all (stdout and stderr together) that matches ``match``, quickly, no framework."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0, lines
    assert len(lines) == 1, f"expected only the error line, got {lines}"
    assert lines[0].startswith("error: ") and re.search(match, lines[0]), lines[0]
    assert imported == [], f"imported {imported} before refusing the command"
    return lines[0]


def _fast_fail_cases(tmp_path: Path, image_file) -> dict[str, tuple[list, str]]:
    good = image_file("good.png", size=(96, 80))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.png").write_bytes(b"")
    existing = write_rgb(tmp_path / "existing.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "notweights.h5").write_text("these are not weights\n")
    out = tmp_path / "out.png"
    return {
        "missing input": (["dream", tmp_path / "missing.png", "-o", out], r"missing\.png does not exist"),
        "corrupt input": (["dream", corrupt, "-o", out], r"corrupt\.jpg is not a readable image"),
        "empty input": (["dream", tmp_path / "empty.png", "-o", out], r"empty\.png is empty"),
        "one of many corrupt": (["dream", good, corrupt, "-o", tmp_path / "outs"], r"corrupt\.jpg is not a readable"),
        "unknown layer": (["dream", good, "-o", out, "--layers", "mixed3:1,mixed55:1"], r"unknown layer 'mixed55'"),
        "unknown preset": (["dream", good, "-o", out, "-p", "lysergc"], r"unknown preset 'lysergc'"),
        "existing output": (["dream", good, "-o", existing], r"existing\.png already exists: pass --overwrite"),
        "bad option value": (["dream", good, "-o", out, "--steps", "many"], r"Invalid value for '--steps'"),
        "missing option": (["dream", good], r"Missing option '--output'"),
        "unknown option": (["dream", good, "-o", out, "--octaves-scale", "2"], r"No such option: --octaves-scale"),
        "steps out of range": (["dream", good, "-o", out, "--steps", "0"], r"dream\.steps must be"),
        "unknown precision": (["dream", good, "-o", out, "--precision", "fp16"], r"unknown precision 'fp16'"),
        "unknown backend": (["dream", good, "-o", out, "--backend", "tensorfow"], r"unknown backend 'tensorfow'"),
        "weights not HDF5": (["dream", good, "-o", out, "--weights", tmp_path / "notweights.h5"],
                             r"cannot load .*notweights\.h5 into InceptionV3 \(not an HDF5 file\)"),
        "missing weights": (["dream", good, "-o", out, "--weights", tmp_path / "nope.h5"], r"nope\.h5 .*does not exist"),
        "analyze missing song": (["analyze", tmp_path / "nope.wav", "-o", tmp_path / "plot.png"], r"nope\.wav"),
        "import weights not HDF5": (["weights", "--import", tmp_path / "notweights.h5"], r"not an HDF5 file"),
        "layers size": (["layers", "--size", "20"], r"--size must be at least 75"),
    }


@pytest.mark.parametrize("case", ["missing input", "corrupt input", "empty input", "one of many corrupt",
                                  "unknown layer", "unknown preset", "existing output", "bad option value",
                                  "missing option", "unknown option", "steps out of range", "unknown precision",
                                  "unknown backend", "weights not HDF5", "missing weights", "analyze missing song",
                                  "import weights not HDF5", "layers size"])
def test_a_bad_command_fails_fast_with_one_line_and_no_framework(image_file, tmp_path, case):
    args, match = _fast_fail_cases(tmp_path, image_file)[case]
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert_fails_fast(*run_process(*args, cwd=tmp_path), match)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before, "no file may be written"


def test_layers_needs_no_framework(tmp_path):
    proc, elapsed, imported = run_process("layers", "--size", 299, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert imported == []
    assert re.search(r"^\s*mixed10\s+\(None, 8, 8, 2048\)", proc.stdout, re.M), proc.stdout


def test_bare_command_shows_the_help(tmp_path):
    proc, _, imported = run_process(cwd=tmp_path)
    assert proc.returncode == 0 and "Usage" in proc.stdout + proc.stderr and "render" in proc.stdout + proc.stderr
    assert imported == []


# ---- user text is printed as it is, never as rich markup ------------------------------------------------------

def test_paths_with_brackets_are_printed_verbatim(runner, image_file, tmp_path):
    src = image_file("[red]cat[/].png", size=(96, 80), folder=tmp_path / "br[x]")
    out = tmp_path / "br[x]" / "a[/]b[bold].png"
    result = invoke(runner, "dream", src, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(out)]
    record = json.loads(out.with_name(out.name + ".dreamvid.json").read_text())
    assert record["input"] == str(src)

    again = invoke(runner, "dream", src, "-o", out, *FAST)  # the error names the path as it is too
    line = assert_one_line_error(again, 1)
    assert str(out) in line


def test_warnings_are_printed_verbatim(capsys):
    from dreamvid import cli

    cli.warn("frame 3 [/] damaged ([h264 @ 0x55d] error) in br[x]/clip[/b].mp4")
    assert capsys.readouterr().err == "warning: frame 3 [/] damaged ([h264 @ 0x55d] error) in br[x]/clip[/b].mp4\n"


def test_preset_descriptions_are_printed_verbatim(runner, tmp_path, monkeypatch):
    user = tmp_path / "user_presets"
    user.mkdir()
    (user / "mine.toml").write_text('description = "[b]bold[/b] claims [/] and [x]"\n[dream]\nsteps = 2\n')
    monkeypatch.setenv("DREAMVID_PRESETS", str(user))
    result = invoke(runner, "presets")
    assert result.exit_code == 0, result.output
    row = [line for line in result.stdout.splitlines() if line.strip().startswith("mine")]
    assert len(row) == 1 and "[b]bold[/b] claims [/] and [x]" in row[0], result.stdout


def test_a_dream_as_a_process_writes_everything_before_it_exits(image_file, tmp_path):
    """The process skips the interpreter's teardown once TensorFlow is loaded: nothing printed or written is lost."""
    src = image_file("in.png", size=(96, 80))
    out = tmp_path / "out.png"
    proc, _, _ = run_process("dream", src, "-o", out, *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(out)]  # stdout is a pipe (block-buffered), and was flushed
    assert proc.stderr.startswith("weights: random weights")
    assert read_rgb(out).shape == (80, 96, 3)
    assert json.loads(out.with_name("out.png.dreamvid.json").read_text())["config"]["dream"]["steps"] == 1
