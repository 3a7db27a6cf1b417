"""Tests of `dreamvid render` and `dreamvid analyze` through typer's CliRunner: outputs, --react, clear errors.

Each successful `render` builds its own Dreamer (and traces its step anew), so there are only a few of them;
every error case fails before the model is used.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from dreamvid.cli import app
from dreamvid.video import count_frames, probe, stream_durations
from tests.render_fixtures import FPS, N, SECOND_AUDIO_TOL, media, read_report  # noqa: F401  (media is a fixture)
from tests.media import make_song
from tests.test_cli import assert_fails_fast, run_process

TINY_FLAGS = ["--octaves", "1", "--steps", "1", "--weights", "random", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def _render(runner, clip, out, *args):
    return runner.invoke(app, ["render", str(clip), "-o", str(out), *TINY_FLAGS, *args])


def _assert_clean_error(result, *needles):
    """Non-zero exit, one `error:` line saying what is wrong, no traceback."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    line = errors[0]
    assert len(line) > len("error: ") + 10
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# -- render -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def react_renders(runner, media, tmp_path_factory):
    """The same clip rendered with --react 0 (two different songs) and --react 2."""
    d = tmp_path_factory.mktemp("cli_react")
    outs = {}
    for name, song, react in (("off", "song", "0"), ("off_b", "song_b", "0"), ("on", "song", "2")):
        out = d / f"{name}.mp4"
        result = _render(runner, media["clip"], out, "--song", str(media[song]), "--react", react)
        assert result.exit_code == 0, result.output
        outs[name] = out
    return outs


def test_render_writes_the_video_with_the_song_and_a_report(react_renders, runner):
    out = react_renders["on"]
    assert count_frames(out) == N
    assert probe(out).fps == pytest.approx(FPS, rel=1e-6)
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(N / FPS, abs=0.01)
    assert "audio" in durations  # the song is in the file
    assert durations["audio"] == pytest.approx(N / FPS, abs=SECOND_AUDIO_TOL)  # the 2 s song, cut to the video
    report = read_report(out)
    assert report["frames"] == N
    assert report["audio_seconds"] == pytest.approx(N / FPS, abs=1e-3)  # cut at the sample where the video ends
    assert report["audio_seconds"] == pytest.approx(durations["audio"], abs=0.011)  # what ffmpeg decodes of it
    assert isinstance(report["audio_sync"], float)
    assert math.isfinite(report["audio_sync"]) and -1.0 <= report["audio_sync"] <= 1.0
    assert report["config"]["dream"]["octaves"] == 1 and report["config"]["dream"]["steps"] == 1
    assert report["weights"].startswith("random weights")


def test_react_zero_ignores_the_song_and_react_two_changes_the_dream(react_renders):
    off, off_b, on = (read_report(react_renders[k]) for k in ("off", "off_b", "on"))
    assert (off["react"], on["react"]) == (0.0, 2.0)
    assert off["dream_strength"] == off_b["dream_strength"]  # another song, the same dream
    assert on["dream_strength"] != off["dream_strength"]
    assert abs(on["dream_strength"] - off["dream_strength"]) > 0.03 * off["dream_strength"]


def test_existing_output_is_refused_and_left_untouched(runner, media, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    os.utime(out, (1_000_000_000, 1_000_000_000))
    result = _render(runner, media["clip"], out)
    _assert_clean_error(result, "--overwrite")
    assert out.read_bytes() == b"precious" and out.stat().st_mtime == 1_000_000_000
    assert not out.with_name("out.report.json").exists()


def _random_bytes(path, n=4096):
    path.write_bytes(np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty"])
def test_unreadable_video_is_a_clear_error(runner, tmp_path, case):
    clip = tmp_path / "clip.mp4"
    if case == "corrupt":
        _random_bytes(clip)
    elif case == "empty":
        clip.touch()
    needle = {"missing": "does not exist", "corrupt": "clip.mp4", "empty": "empty"}[case]
    out = tmp_path / "out.mp4"
    _assert_clean_error(_render(runner, clip, out), needle)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["clip.mp4"] if case != "missing" else [])


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_unreadable_song_is_a_clear_error(runner, media, tmp_path, case):
    song = tmp_path / "song.wav"
    if case == "corrupt":
        _random_bytes(song)
    out = tmp_path / "out.mp4"
    line = _assert_clean_error(_render(runner, media["clip"], out, "--song", str(song)), "song")
    assert "song.wav" in line
    assert not out.exists()


# -- analyze ----------------------------------------------------------------------------------------------------
def test_analyze_writes_a_png_and_will_not_overwrite_it(runner, tmp_path):
    song = make_song(tmp_path / "song.wav", 2.0, kind="beats")
    plot = tmp_path / "plot.png"
    result = runner.invoke(app, ["analyze", str(song), "-o", str(plot)])
    assert result.exit_code == 0, result.output
    data = plot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000

    again = runner.invoke(app, ["analyze", str(song), "-o", str(plot)])
    _assert_clean_error(again, "--overwrite")
    assert plot.read_bytes() == data

    forced = runner.invoke(app, ["analyze", str(song), "-o", str(plot), "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_analyze_missing_song_is_a_clear_error(runner, tmp_path):
    plot = tmp_path / "plot.png"
    _assert_clean_error(runner.invoke(app, ["analyze", str(tmp_path / "nope.wav"), "-o", str(plot)]), "nope.wav")
    assert not plot.exists()


# -- fail fast: render refuses a bad command line before importing a framework ----------------------------------
def _render_fail_cases(media, tmp_path):
    clip = media["clip"]
    corrupt = _random_bytes(tmp_path / "corrupt.mp4")
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "existing.mp4").write_bytes(b"precious")
    bad_song = _random_bytes(tmp_path / "noise.wav")
    out = tmp_path / "out.mp4"
    return {
        "missing clip": (["render", tmp_path / "nope.mp4", "-o", out], r"nope\.mp4 does not exist"),
        "corrupt clip": (["render", corrupt, "-o", out], r"corrupt\.mp4"),
        "empty clip": (["render", tmp_path / "empty.mp4", "-o", out], r"empty\.mp4 is empty"),
        "existing output": (["render", clip, "-o", tmp_path / "existing.mp4"], r"existing\.mp4 already exists"),
        "webm output": (["render", clip, "-o", tmp_path / "out.webm"], r"out\.webm cannot be written"),
        "no extension": (["render", clip, "-o", tmp_path / "out"], r"has no file extension"),
        "missing song": (["render", clip, "-o", out, "--song", tmp_path / "nope.wav"], r"nope\.wav"),
        "corrupt song": (["render", clip, "-o", out, "--song", bad_song], r"noise\.wav"),
        "start past the end": (["render", clip, "-o", out, "--start", "60"], r"start"),
        "unknown layer": (["render", clip, "-o", out, "--layers", "mixed3,mixed77"], r"unknown layer 'mixed77'"),
        "unknown preset": (["render", clip, "-o", out, "-p", "nightmar"], r"unknown preset 'nightmar'"),
        "bad crf": (["render", clip, "-o", out, "--crf", "99"], r"--crf must be from 0 to 51"),
        "bad x264 preset": (["render", clip, "-o", out, "--x264-preset", "fastest"],
                            r"--x264-preset 'fastest' is unknown \(did you mean 'faster'\?\)"),
    }


@pytest.mark.parametrize("case", ["missing clip", "corrupt clip", "empty clip", "existing output", "webm output",
                                  "no extension", "missing song", "corrupt song", "start past the end",
                                  "unknown layer", "unknown preset", "bad crf", "bad x264 preset"])
def test_a_bad_render_fails_fast_with_one_line_and_no_framework(media, tmp_path, case):
    args, match = _render_fail_cases(media, tmp_path)[case]
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert_fails_fast(*run_process(*args, "--weights", "random", cwd=tmp_path), match)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before, "no file may be written"


def test_an_interrupted_or_running_render_of_the_output_fails_fast(media, tmp_path):
    """The work folder's state is checked before the framework is imported too: an interrupted render waiting for
    --resume, and another render holding the folder's lock, are one line each, at once."""
    import fcntl

    from dreamvid.pipeline import work_dir_for

    out = tmp_path / "out.mp4"
    work = work_dir_for(out)
    work.mkdir()
    (work / "job.json").write_text("{}")
    (work / "state.json").write_text('{"done": 5}')
    assert_fails_fast(*run_process("render", media["clip"], "-o", out, "--weights", "random", cwd=tmp_path),
                      r"interrupted render .* --resume")
    fd = os.open(work / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running render holds it
        assert_fails_fast(*run_process("render", media["clip"], "-o", out, "--resume", "--weights", "random",
                                       cwd=tmp_path), r"another render is writing")
    finally:
        os.close(fd)


# -- user text is printed verbatim ------------------------------------------------------------------------------
def test_render_reports_a_bracketed_output_path_verbatim(runner, media, tmp_path):
    out = tmp_path / "br[x]" / "a[/]b.mp4"
    result = _render(runner, media["clip"], out)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith(f"{out}  ({N} frames"), result.stdout
    assert read_report(out)["output"] == str(out)
