"""The infinite zoom (dreamvid.zoom + pipeline's feedback source) and the `zoom` / `schedule` commands."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dreamvid.cli import app
from dreamvid.config import MotionParams, resolve
from dreamvid.errors import OutputError
from dreamvid.pipeline import report_path_for, work_dir_for
from dreamvid.video import count_frames, motion_matrix, probe, stream_durations
from dreamvid.zoom import Feedback, Look, hold_statistics
from tests.conftest import load_example, write_rgb
from tests.media import make_song
from tests.render_fixtures import decode_all, rdreamer, render_to  # noqa: F401  (rdreamer is a fixture)

TINY = ["--octaves", "1", "--steps", "1", "--weights", "random", "--quiet"]


def _stats(img: np.ndarray) -> tuple[float, float, float, float]:
    """mean, std, mean HSV saturation, variance of the Laplacian of the grey image (detail)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    lap = cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    return float(img.mean()), float(img.std()), float(hsv[..., 1].mean()), float(lap)


# ---- the pieces ------------------------------------------------------------------------------------------------


def test_hold_pulls_the_look_back_in_colour_and_in_detail():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(180, 10, (48, 48, 3)), 0, 255).astype(np.uint8)  # bright, flat: drifted
    target = load_example("chelsea.png", 48)[:48, :48]
    look = Look.of(target)
    assert np.array_equal(hold_statistics(img, look, hold=0.0, sharpen=0.5), img)
    full = hold_statistics(img, look, hold=1.0)
    got = Look.of(full)
    assert np.allclose(got.mean, look.mean, atol=1.5) and np.allclose(got.std, look.std, atol=1.5)
    part = Look.of(hold_statistics(img, look, hold=0.25))
    m0 = Look.of(img).mean
    assert np.allclose(part.mean, m0 + 0.25 * (look.mean - m0), atol=1.0)  # a quarter of the way
    # detail: a blurred frame is sharpened toward the look's detail, by at most `sharpen`
    photo = load_example("chelsea.png", 64)
    blurred = cv2.GaussianBlur(photo, (0, 0), 1.5)
    sharp = hold_statistics(blurred, Look.of(photo), hold=0.5, sharpen=0.5)
    assert _stats(sharp)[3] > 1.3 * _stats(blurred)[3]
    capped = hold_statistics(blurred, Look.of(photo), hold=0.5, sharpen=0.05)
    assert _stats(capped)[3] < _stats(sharp)[3]
    # and a frame with more fine detail than the look is softened, not sharpened further (a fixed unsharp mask
    # compounded over the frames into ever finer saturated stripes)
    busy = np.clip(photo.astype(np.float64) + rng.normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
    calmer = hold_statistics(busy, Look.of(photo), hold=0.25, sharpen=0.15)
    assert _stats(calmer)[3] < 0.9 * _stats(busy)[3]


def test_hold_keeps_colourfulness_that_rgb_statistics_miss():
    # Each RGB channel keeps its mean and spread while the channels drift apart: the picture grows garish but
    # RGB-channel statistics cannot see it. The hold works on CIELAB, whose a/b spread is the colourfulness.
    photo = load_example("chelsea.png", 64)
    grey = photo.mean(axis=2, keepdims=True)
    garish = np.clip(grey + 2.5 * (photo - grey), 0, 255).astype(np.uint8)
    held = hold_statistics(garish, Look.of(photo), hold=0.5)
    assert _stats(held)[2] < 0.85 * _stats(garish)[2]


def test_each_frame_is_the_previous_output_moved_by_the_frames_motion():
    img = load_example("chelsea.png", 64)
    h, w = img.shape[:2]
    motion = np.array([[1.0, 0.0, 0.0, 0.0], [1.1, 5.0, 0.05, 0.0]])
    fb = Feedback(img, motion, np.array([1.0, 1.02]), MotionParams(hold=0.0, sharpen=0.0))
    assert fb.source(0, None) is img
    want = motion_matrix((w, h), zoom=1.1 * 1.02, rotate=5.0, translate=(0.05 * w, 0.0))
    assert np.allclose(fb.move(1), want)
    prev = np.roll(img, 7, axis=1)
    out = fb.source(1, prev)
    expect = cv2.warpAffine(prev, want[:2], (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    assert np.array_equal(out, expect)


# ---- a long run holds its statistics ---------------------------------------------------------------------------


def _long_run(tmp_path, dreamer, *, hold: float, sharpen: float, name: str) -> list[tuple]:
    src = write_rgb(tmp_path / "src.png", load_example("chelsea.png", 96))  # 96 x 64
    cfg = resolve({"dream": {"layers": "mixed3:1", "octaves": 1, "steps": 1, "step_size": 0.02, "jitter": 4},
                   "video": {"strength": 6.0},
                   "motion": {"zoom": 1.03, "rotate": 1.0, "hold": hold, "sharpen": sharpen}})
    out = tmp_path / f"{name}.mp4"
    report = render_to(out, src, cfg, dreamer, feedback=True, fps=25.0, duration=12.0, crf=0, segment_frames=100)
    assert report["frames"] == 300
    return [_stats(f) for f in decode_all(out)]


def test_a_long_zoom_neither_fades_to_grey_nor_saturates(tmp_path, dreamer):
    """300 frames, 3 % closer and 1 degree round every frame: the statistics stay near the image's."""
    m0, s0, sat0, _ = _stats(load_example("chelsea.png", 96))
    held = _long_run(tmp_path, dreamer, hold=0.25, sharpen=0.15, name="held")
    lap_first = held[0][3]
    for k, (m, s, sat, lap) in enumerate(held):
        assert abs(m - m0) < 12, (k, m, m0)  # no drift of brightness
        assert 0.75 * s0 < s < 1.35 * s0, (k, s, s0)  # no grey mush, no blow-out
        assert 0.75 * sat0 < sat < 1.35 * sat0, (k, sat, sat0)  # no washing out, no saturation
        if k >= 30:
            assert lap > 0.6 * lap_first, (k, lap, lap_first)  # the detail does not collapse
            assert lap < 2.0 * lap_first, (k, lap, lap_first)  # nor grows into ever finer stripes
    # the hold is what does it: the same run without it drifts much further from the image
    free = _long_run(tmp_path, dreamer, hold=0.0, sharpen=0.0, name="free")
    drift_held = max(abs(m - m0) for m, *_ in held)
    drift_free = max(abs(m - m0) for m, *_ in free)
    assert drift_free > 2 * drift_held and drift_free > 12, (drift_free, drift_held)


# ---- resume ------------------------------------------------------------------------------------------------------


def test_an_interrupted_zoom_resumes_to_the_same_video(tmp_path, rdreamer, image_file):
    src = image_file("img.png", size=(64, 48))
    cfg = resolve({"dream": {"octaves": 1, "steps": 1, "layers": "mixed3:1"}, "motion": {"zoom": 1.05, "rotate": 2}})
    opts = dict(feedback=True, fps=10.0, duration=1.2, segment_frames=4)
    ref = tmp_path / "ref.mp4"
    render_to(ref, src, cfg, rdreamer, **opts)

    def stop(ev):
        if ev.index == 6:
            raise KeyboardInterrupt

    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        render_to(out, src, cfg, rdreamer, on_frame=stop, **opts)
    assert work_dir_for(out).is_dir() and not out.exists()
    with pytest.raises(OutputError, match="--resume"):
        render_to(out, src, cfg, rdreamer, **opts)
    report = render_to(out, src, cfg, rdreamer, resume=True, **opts)
    assert report["resumed_at_frames"] == [7] and report["frames"] == 12
    assert out.read_bytes() == ref.read_bytes()


# ---- the commands ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture
def one_model(monkeypatch, rdreamer):
    """The CLI's Dreamer is the module's random-weights one (the same weights `--weights random` gives), so the
    commands below do not build and trace a model each."""
    import dreamvid.cli

    monkeypatch.setattr(dreamvid.cli, "_dreamer", lambda *a: rdreamer)


def test_cli_zoom_makes_a_video_of_the_asked_length_with_a_report(runner, tmp_path, image_file, one_model):
    src = image_file("img.png", size=(64, 48))
    out = tmp_path / "zoom.mp4"
    r = runner.invoke(app, ["zoom", str(src), "-o", str(out), "--seconds", "0.5", "--fps", "12", *TINY])
    assert r.exit_code == 0, r.output
    info = probe(out)
    assert (info.width, info.height) == (64, 48) and info.frame_count == 6 and info.fps == pytest.approx(12)
    report = json.loads(report_path_for(out).read_text())
    assert report["frames"] == 6 and report["config"]["preset"] == "zoom-tunnel"
    assert report["config"]["motion"]["zoom"] == "1.012 + 0.02*energy"  # the schedule string, as given
    frames = decode_all(out)
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 5  # it moved on
    again = runner.invoke(app, ["zoom", str(src), "-o", str(out), "--seconds", "0.5", *TINY])
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_cli_zoom_with_a_song_lasts_as_long_as_the_song(runner, tmp_path, image_file, one_model):
    src = image_file("img.png", size=(64, 48))
    song = make_song(tmp_path / "song.wav", 0.8, kind="beats")
    out = tmp_path / "zoom.mp4"
    r = runner.invoke(app, ["zoom", str(src), "-o", str(out), "--song", str(song), "--fps", "10", *TINY])
    assert r.exit_code == 0, r.output
    assert count_frames(out) == 8
    d = stream_durations(out)
    assert d["audio"] == pytest.approx(0.8, abs=0.06) and d["video"] == pytest.approx(0.8, abs=0.01)
    report = json.loads(report_path_for(out).read_text())
    assert report["audio_sync"] is not None


@pytest.mark.parametrize("args, match", [
    (["missing.png"], "missing.png"),
    (["IMG", "--seconds", "-1"], "--seconds must be above 0"),
    (["IMG", "--fps", "0.5"], "--fps must be from 1 to 240"),
    (["IMG", "--preset", "nope"], "nope"),
    (["IMG", "--song", "missing.wav"], "missing.wav"),
])  # fmt: skip
def test_cli_zoom_refuses_bad_input_with_one_line(runner, tmp_path, image_file, args, match):
    src = image_file("img.png", size=(64, 48))
    args = [str(src) if a == "IMG" else (str(tmp_path / a) if a.startswith("missing") else a) for a in args]
    r = runner.invoke(app, ["zoom", *args, "-o", str(tmp_path / "z.mp4"), *TINY])
    assert r.exit_code != 0
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], r.output
    assert "Traceback" not in r.output and not (tmp_path / "z.mp4").exists()


def test_cli_schedule_plots_a_presets_schedules_over_a_song(runner, tmp_path):
    song = make_song(tmp_path / "song.wav", 3.0, kind="beats")
    out = tmp_path / "plot.png"
    r = runner.invoke(app, ["schedule", "odyssey", "--song", str(song), "-o", str(out), "--fps", "10"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "dream.step_size" in r.output and "dream.layers" in r.output and "30 frames" in r.output
    img = cv2.imread(str(out))
    assert img.shape[0] > 600  # the analysis and a panel per scheduled parameter
    r = runner.invoke(app, ["schedule", "odyssey", "--song", str(song), "-o", str(out)])
    assert r.exit_code != 0 and "--overwrite" in r.output
    r = runner.invoke(app, ["schedule", "odyssey", "--song", str(song), "-o", str(tmp_path / "plot.jpg")])
    assert r.exit_code != 0 and "ending in .png" in r.output


def test_cli_zoom_refuses_beats_without_a_song_before_loading_a_framework(tmp_path, image_file):
    from tests.test_cli import assert_fails_fast, run_process

    src = image_file("img.png", size=(64, 48))
    cfg = tmp_path / "beats.toml"
    cfg.write_text('description = "beats"\n[dream]\nstep_size = "0:0.01, 8b:0.03"\n')  # no [motion] bpm
    line = assert_fails_fast(*run_process("zoom", src, "-o", tmp_path / "z.mp4", "--preset", cfg, "--weights",
                                          "random", cwd=tmp_path), match="counts in beats")
    assert "dream.step_size" in line and "--song" in line and "bpm" in line
    bad = tmp_path / "bad.toml"
    bad.write_text('[motion]\nzoom = "1.01 + 0.01*sin(t"\n')
    assert_fails_fast(*run_process("zoom", src, "-o", tmp_path / "z.mp4", "--config", bad, cwd=tmp_path),
                      match=r"motion\.zoom .*at position 18 of .*expected .\)., found the end")
