"""``dreamvid ui``: the Studio (server-side state, no browser) and the page in a real headless Chromium.

The browser test starts ``python -m dreamvid ui`` in a subprocess with the real weights, drives Debian's
``chromium`` through ``chromedriver`` (Selenium), uploads the bundled clip and song, moves sliders and times the
preview, saves a preset that the CLI then loads, and renders, stops, resumes (across a page reload) a tiny render.
It is skipped, with the reason, where the weights, gradio, selenium, chromium or chromedriver are missing.

``DREAMVID_UI_SCREENSHOT=docs/ui.png`` saves a screenshot of the page; ``DREAMVID_UI_LATENCY=FILE`` writes the
measured preview latencies as JSON.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dreamvid import presets
from dreamvid.config import resolve
from dreamvid.errors import AudioError, ConfigError, InputError, OutputError, VideoError

from .conftest import (EXAMPLES, REPO, WEIGHTS_FILE, chromedriver_path, chromium_path, needs, part_missing, stop_server,
                       write_rgb)

ui = pytest.importorskip("dreamvid.ui")


# ---------------------------------------------------------------------------------------------------------------
# without a browser


def test_importing_dreamvid_never_imports_gradio():
    code = ("import sys, dreamvid, dreamvid.cli, dreamvid.ui, dreamvid.pipeline, dreamvid.stills; "
            "from dreamvid.cli import app; print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_ui_without_gradio_is_one_clear_line(monkeypatch):
    from typer.testing import CliRunner

    from dreamvid.cli import app

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed: find_spec says None
    res = CliRunner().invoke(app, ["ui", "--port", "7999"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and 'pip install "dreamvid[ui]"' in lines[0], res.output


def test_ui_bad_port_and_preset_are_one_line():
    from typer.testing import CliRunner

    from dreamvid.cli import app

    res = CliRunner().invoke(app, ["ui", "--port", "70000"])
    assert res.exit_code == 2 and "--port must be from 1 to 65535" in res.output
    if importlib.util.find_spec("gradio") is not None:
        res = CliRunner().invoke(app, ["ui", "--preset", "lysergik"])
        assert res.exit_code == 2 and "did you mean 'lysergic'" in res.output


@needs("ui")
@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed: `dreamvid ui` "
                    "refuses with that first (pip install \"dreamvid[ui]\")")
def test_ui_refuses_bad_weights_before_importing_gradio_or_a_framework(tmp_path):
    from .test_cli import assert_fails_fast, run_process

    (tmp_path / "notweights.h5").write_text("these are not weights\n")
    proc, elapsed, imported = run_process("ui", "--weights", tmp_path / "notweights.h5", "--port", _free_port(),
                                          cwd=tmp_path)
    assert_fails_fast(proc, elapsed, imported, r"notweights\.h5")
    assert not (tmp_path / "dreamvid-ui").exists()  # refused before the working folder was made
    proc, elapsed, imported = run_process("ui", "--host", "0.0.0.0", "--port", _free_port(), cwd=tmp_path)
    assert_fails_fast(proc, elapsed, imported, r"--host 0\.0\.0\.0 opens the page to the network: .* --auth USER:PASS")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc, elapsed, imported = run_process("ui", "--port", taken.getsockname()[1], "--weights", WEIGHTS_FILE or "random",
                                              cwd=tmp_path)
    assert_fails_fast(proc, elapsed, imported, r"cannot listen on 127\.0\.0\.1:\d+: the port is in use")


@pytest.mark.parametrize("name", sorted(presets.available()))
def test_every_preset_survives_toml(name):
    """The preset writer writes what config.resolve reads back to the same Config ([audio.layers] tables too)."""
    from dreamvid.config import tomllib

    cfg = resolve(presets.load(name), preset=name)
    table = cfg.to_dict()
    table.pop("preset")
    again = resolve(tomllib.loads(ui.preset_text(table, header="a comment")), preset=name)
    assert again == cfg


def test_toml_strings_are_escaped():
    from dreamvid.config import tomllib

    table = {"description": 'quote " back\\slash \x7f tab\t ünï 😀\nnew line', "dream": {"steps": 3, "seed": 0}}
    assert tomllib.loads(ui.preset_text(table)) == table


@pytest.fixture
def studio(tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMVID_PRESETS", str(tmp_path / "user-presets"))
    return ui.Studio(tmp_path / "wd")


def test_changes_name_only_what_the_page_moved(studio):
    base = studio.base
    s = ui.settings_of(base)
    assert ui.changes(base, s) == {}
    s["steps"] = base.dream.steps + 2
    s["layer:mixed3"] = 0.0
    s["layer:mixed6"] = 0.5
    s["coherence"] = "blend"
    layer = ui.changes(base, s)
    assert layer["dream"]["steps"] == base.dream.steps + 2 and isinstance(layer["dream"]["steps"], int)
    assert layer["video"] == {"coherence": "blend"}
    assert layer["dream"]["layers"] == "mixed4:1,mixed5:1.5,mixed6:0.5"
    cfg = studio.config(s)
    assert cfg.dream.steps == base.dream.steps + 2 and cfg.dream.layer_names == ("mixed4", "mixed5", "mixed6")
    assert cfg.audio == resolve(presets.load(studio.preset), layer).audio  # the preset's [audio] is kept
    s2 = ui.settings_of(base)
    for k in s2:
        if k.startswith("layer:"):
            s2[k] = 0.0
    with pytest.raises(ConfigError, match="every layer weight is 0"):
        ui.changes(base, s2)


def test_save_preset_is_read_unchanged_by_the_cli(studio, tmp_path):
    from dreamvid.cli import _config

    studio.set_preset("thumbnail")
    studio.request_preview(0, {"steps": 3, "strength": 11.5, "layer:mixed4": 0.75, "react": 0.5})
    path = studio.save_preset("my-dream", description="tuned by eye")
    assert path == studio.workdir / "presets" / "my-dream.toml"
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    cfg = _config(str(path), None)  # what `dreamvid render --preset PATH` resolves
    want = studio.config()
    assert cfg.dream == want.dream and cfg.video == want.video and dict(cfg.audio) == dict(want.audio)
    assert cfg.dream.steps == 3 and cfg.video.strength == 11.5 and cfg.description == "tuned by eye"
    assert "mixed4:0.75" in cfg.to_dict()["dream"]["layers"]
    with pytest.raises(OutputError, match="tick overwrite"):
        studio.save_preset("my-dream")
    assert studio.save_preset("my-dream.toml", overwrite=True) == path
    for bad in ("../evil", "a/b", "", ".hidden", "x" * 80):
        with pytest.raises(ConfigError):
            studio.save_preset(bad)
    assert sorted(p.name for p in (studio.workdir / "presets").iterdir()) == ["my-dream.toml"]
    assert str(path) in [v for _, v in studio.presets.choices(studio.preset)]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_uploads_are_checked_like_cli_inputs(studio, tmp_path):
    junk = tmp_path / "up"
    junk.mkdir()
    (junk / "clip.mp4").write_bytes(b"not a video at all" * 100)
    (junk / "song.wav").write_bytes(b"RIFF" + b"\0" * 200)
    (junk / "pic.png").write_bytes(b"\x89PNG broken")
    (junk / "notes.txt").write_text("hello")
    (junk / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError):
        studio.load_clip(junk / "clip.mp4")
    with pytest.raises(AudioError):
        studio.inputs.load_song(junk / "song.wav")
    with pytest.raises(InputError, match="not a readable image"):
        studio.load_still(junk / "pic.png")
    with pytest.raises(InputError, match="not a video clip this app takes"):
        studio.load_clip(junk / "notes.txt")
    with pytest.raises(InputError, match="empty"):
        studio.load_clip(junk / "empty.mp4")
    small = ui.Studio(tmp_path / "wd2", max_upload_mb=0.5)
    with pytest.raises(InputError, match="over this app's limit"):
        small.load_clip(EXAMPLES / "bigbuckbunny.mp4")
    assert list((studio.workdir / "inputs").iterdir()) == []  # a rejected upload leaves nothing
    assert studio.inputs.clip is None and studio.inputs.song is None and studio.inputs.still is None
    msg = studio.load_clip(EXAMPLES / "bigbuckbunny.mp4")
    assert "132 frames" in msg and studio.inputs.clip.parent == studio.workdir / "inputs"
    assert studio.load_clip(EXAMPLES / "bigbuckbunny.mp4") and len(list((studio.workdir / "inputs").iterdir())) == 1
    with pytest.raises(InputError, match="load a clip"):
        ui.Studio(tmp_path / "wd3").start_strip()


def test_scrubbing_forward_reads_on_and_gives_the_exact_frames(studio):
    from dreamvid import video
    from dreamvid.ui.preview import Decoder

    studio.load_clip(EXAMPLES / "bigbuckbunny.mp4")
    clip, info = studio.inputs.clip, studio.inputs.info
    size = video.output_size(info.width, info.height, ui.PREVIEW_SIDE)
    decoder, seen = Decoder(), []
    for k in (10, 12, 13, 13, 5, 60):
        got = decoder.read(clip, info, size, k)
        want = next(iter(video.iter_frames(clip, first=k, count=1, size=size, info=info)))
        assert np.array_equal(got, want), k
        seen.append(decoder.frames)  # (kept: a closed decoder's id cannot be re-used meanwhile)
    assert seen[0] is seen[1] is seen[2] is seen[3]  # 12 and 13 read on in the decoder that gave 10; 13 again: kept
    assert len({id(r) for r in seen[3:]}) == 3  # back to 5: a new decoder; 60 is far ahead of 6: another
    decoder.close()
    assert decoder.frames is None


def test_plot_marks_the_frame(tmp_path):
    import cv2

    from dreamvid.audio import AudioFeatures
    from dreamvid.plot import plot_analysis

    n = 50  # 2 s at 25 fps, built by hand (the plot needs no analysis)
    wave = (0.5 + 0.5 * np.sin(np.arange(n) / 3.0)).astype(np.float32)
    feats = AudioFeatures(fps=25.0, n_frames=n, duration=2.0, sr=22050, tempo=120.0, rms=wave, energy=wave,
                          level=wave, onset=wave[::-1].copy(), low=wave, mid=wave, high=wave,
                          beat=np.zeros(n, np.float32), beat_frames=np.array([0, 12, 25, 37]))
    a = cv2.imread(str(plot_analysis(feats, tmp_path / "a.png", dpi=40)))
    b = cv2.imread(str(plot_analysis(feats, tmp_path / "b.png", dpi=40, marker=1.0)))
    assert a.shape == b.shape
    orange = (np.abs(b.astype(int) - (14, 127, 255)).sum(axis=2) < 60) & ~(np.abs(a.astype(int) - (14, 127, 255))
                                                                           .sum(axis=2) < 60)
    orange[:, int(0.8 * a.shape[1]):] = False  # the legend's entry
    cols = np.nonzero(orange.any(axis=0))[0]
    assert orange.sum() > 20 and cols.max() - cols.min() < 0.05 * a.shape[1]  # one thin vertical line


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
def test_preview_keeps_only_the_newest_request(tmp_path, dreamer, natural_image):
    """Requests faster than the dreams: the stale one is dropped (never shown), only the newest is dreamed."""
    studio = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()
    studio.set_preset("thumbnail")
    studio.load_still(write_rgb(tmp_path / "cat.png", natural_image))
    tiny = {"octaves": 1, "steps": 2, "step_size": 0.05}
    g1 = studio.request_preview(0, {**tiny, "seed": 1})
    g2 = studio.request_preview(0, {**tiny, "seed": 2})
    assert studio.wait_preview(g1, timeout=60) is None  # superseded: nothing stale reaches the page
    r = studio.wait_preview(g2, timeout=60)
    assert r is not None and not r.error and r.gen == g2, r and r.message
    assert r.image.shape == r.source.shape == natural_image.shape
    assert np.abs(r.image.astype(int) - r.source.astype(int)).mean() > 2  # it dreamed
    want = dreamer.dream(natural_image, studio.config().dream)
    assert np.array_equal(r.image, want)  # what `dreamvid dream` gives with these settings
    g3 = studio.request_preview(0, {**tiny, "seed": 2})  # the same settings: the last dream, at once
    t = time.perf_counter()
    r3 = studio.wait_preview(g3, timeout=10)
    assert r3 is not None and np.array_equal(r3.image, r.image) and time.perf_counter() - t < 1.0
    studio.request_preview(0, {**tiny, "layer:mixed3": 0.0, "layer:mixed5": 0.0})
    r4 = studio.wait_preview(timeout=30)
    assert r4 is not None and r4.error and "every layer weight is 0" in r4.message


class _Watched:
    """The real Dreamer, with the gradient steps of each dream counted (the dream itself is untouched)."""

    def __init__(self, dreamer):
        self.dreamer, self.dreams, self.running = dreamer, [], [0]

    def __getattr__(self, name):
        return getattr(self.dreamer, name)

    def _counted(self, dream, x, params, kw):
        callback, self.running = kw.get("callback"), [0]
        count = self.running

        def step(info):
            count[0] += 1
            if callback is not None:
                callback(info)

        try:
            return dream(x, params, **{**kw, "callback": step})
        finally:
            self.dreams.append((params.octaves * params.steps, count[0]))

    def dream_float(self, x, params, **kw):
        return self._counted(self.dreamer.dream_float, x, params, kw)

    def dream(self, image, params, **kw):
        return self._counted(self.dreamer.dream, image, params, kw)


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
def test_a_newer_request_abandons_the_dream_under_way(tmp_path, dreamer, natural_image):
    watched = _Watched(dreamer)
    studio = ui.Studio(tmp_path / "wd", dreamer=watched).start()
    studio.load_still(write_rgb(tmp_path / "cat.png", natural_image))
    slow = studio.request_preview(0, {"octaves": 2, "steps": 40, "step_size": 0.01})
    deadline = time.monotonic() + 60
    while watched.running[0] < 2 and time.monotonic() < deadline:  # the slow dream is under way
        time.sleep(0.005)
    fast = studio.request_preview(0, {"octaves": 1, "steps": 1, "step_size": 0.01})
    r = studio.wait_preview(fast, timeout=60)
    assert studio.wait_preview(slow, timeout=1) is None and r is not None and r.gen == fast
    (planned, done), last = watched.dreams[0], watched.dreams[-1]
    assert planned == 80 and 2 <= done < 40, watched.dreams  # abandoned within its first octave
    assert last == (1, 1) and len(watched.dreams) == 2  # then only the newest was dreamed


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
def test_preview_shows_the_frame_as_the_camera_moved_it(tmp_path, dreamer):
    """A preset with a [motion] camera: the preview's source at frame k is the footage moved up to k, as rendered."""
    from dreamvid import video

    studio = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()
    studio.load_clip(EXAMPLES / "bigbuckbunny.mp4")
    info = studio.inputs.info
    size = video.output_size(info.width, info.height, ui.PREVIEW_SIDE)
    raw = next(iter(video.iter_frames(studio.inputs.clip, first=30, count=1, size=size, info=info)))
    tiny = {"octaves": 1, "steps": 1}
    for preset, moved in (("thumbnail", False), ("zoom-tunnel", True)):
        studio.set_preset(preset)
        r = studio.wait_preview(studio.request_preview(30, tiny), timeout=60)
        assert r is not None and not r.error, r and r.message
        assert (np.abs(r.source.astype(int) - raw.astype(int)).mean() > 5) == moved, preset


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
def test_render_of_a_still_is_the_cli_dream(tmp_path, dreamer, natural_image):
    studio = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()
    studio.load_still(write_rgb(tmp_path / "cat.png", natural_image))
    studio.request_preview(0, {"octaves": 1, "steps": 2, "step_size": 0.05})
    job = studio.start_render()
    with pytest.raises(OutputError, match="is running"):
        studio.start_render()
    deadline = time.monotonic() + 60
    while job.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status == "done", job.message
    assert job.output.parent == studio.workdir / "renders" and job.done == job.total == 2
    from dreamvid.images import read_image

    assert np.array_equal(read_image(job.output), dreamer.dream(natural_image, studio.config().dream))
    assert json.loads(job.output.with_name(job.output.name + ".dreamvid.json").read_text())["config"]["dream"][
        "steps"] == 2


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
def test_an_interrupted_render_resumes_in_a_new_app(tmp_path, dreamer):
    """Stopped in one app, finished by the next on the same working folder, from its own record."""
    def finish(job, timeout=120):
        deadline = time.monotonic() + timeout
        while job.active and time.monotonic() < deadline:
            time.sleep(0.05)
        return job

    first = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()
    first.load_clip(EXAMPLES / "bigbuckbunny.mp4")
    first.request_preview(0, {"octaves": 1, "steps": 1, "seed": 3})
    job = first.start_render(duration=0.4, max_side=96)
    deadline = time.monotonic() + 60
    while job.done < 2 and job.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.stop()
    assert finish(job).status == "stopped", job.message
    assert first.jobs.resumable() == [{"name": job.output.stem, "done": job.done, "total": 10}]
    second = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()  # the app restarted: default settings
    assert second.settings["steps"] != 1 and second.jobs.resumable()[0]["name"] == job.output.stem
    with pytest.raises(InputError, match="no interrupted render named"):
        second.jobs.resume("nothing-here")
    again = finish(second.jobs.resume(job.output.stem))
    assert again.status == "done", again.message
    assert again.report["frames"] == 10 and again.report["resumed_at_frames"] == [job.done]
    assert again.report["config"]["dream"]["steps"] == 1 and second.jobs.resumable() == []


def _finish(job, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while job.active and time.monotonic() < deadline:
        time.sleep(0.02)
    return job


# odyssey's scheduled strength and layer weights, a [motion] camera and a song: everything on the film's clock
_FILM_PRESET = """
description = "odyssey's schedules, a camera and a song, tiny"
[dream]
layers = "mixed3:{0%:1.2, 100%:~0.2}, mixed4:{0%:0.2, 100%:~1.0}"
octaves = 1
steps = 2
step_size = "0%:0.012, 100%:~0.03"
jitter = 8
[video]
strength = "0%:3, 100%:~6"   # odyssey's 10 -> 20, scaled to this tiny dream (the governor stays within its gains)
[motion]
zoom = "1.004 + 0.01*energy"
rotate = 0.3
[audio]
drive = "energy"
step = [0.6, 1.4]
pulse = "onset"
pulse_zoom = 0.03
pulse_decay = 0.12
strength = [0.6, 1.3]
"""


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
def test_preview_and_strip_are_the_renders_frames(tmp_path, dreamer):
    """The preview of frame k is frame k of a render of the range k..k+n (as batch renders a chunk), and the strip
    is that range: scheduled strength and layers, the camera and the song on the whole film's clock."""
    from dreamvid.pipeline import RenderOptions, film_schedule, render, report_path_for
    from dreamvid.video import iter_frames, probe

    from .media import make_clip, make_song

    fps, k, n = 24.0, 30, 3
    studio = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()
    studio.load_clip(make_clip(tmp_path / "pan.mp4", n=40, size=(96, 64), fps=fps))
    studio.inputs.load_song(make_song(tmp_path / "song.wav", 2.0, kind="beats"))
    (tmp_path / "film.toml").write_text(_FILM_PRESET)
    studio.set_preset(str(tmp_path / "film.toml"))
    r = studio.wait_preview(studio.request_preview(k, {}), timeout=120)
    assert r is not None and not r.error, r and r.message

    cfg, clip, song = studio.config(), studio.inputs.clip, studio.inputs.song
    chunk = RenderOptions(input=clip, output=tmp_path / "chunk.mp4", song=song, frames=(k, n),
                          max_side=ui.PREVIEW_SIDE, crf=20, x264_preset="veryfast")
    fp = film_schedule(chunk, cfg, fps, 40)[0].frame(k)
    assert fp.target > 1.3 * cfg.video.strength * fp.strength  # the strength the preview used to dream frame k at
    frames = {}
    render(chunk, cfg, dreamer, on_output=lambda j, out: frames.__setitem__(j, out.copy()))
    assert sorted(frames) == list(range(n))
    assert np.array_equal(r.image, frames[0])  # the preview is the render's frame k, to the bit
    strength = np.abs(r.image.astype(int) - r.source.astype(int)).mean()
    assert abs(strength - fp.target) < 0.1 * fp.target, (strength, fp.target)  # the governor met the schedule

    job = _finish(studio.start_strip(n / fps))
    assert job.status == "done", job.message
    strip, want = list(iter_frames(job.output)), list(iter_frames(chunk.output))
    assert len(strip) == n and all(np.array_equal(a, b) for a, b in zip(strip, want))  # the same frames, encoded alike
    for j, a in enumerate(strip):  # each is frame k + j of the range, to the encoder's loss (crf 20: ~5 grey levels)
        off = [np.abs(a.astype(int) - frames[i].astype(int)).mean() for i in range(n)]
        assert off[j] < 8 and off[j] == min(off), (j, off)
    report = json.loads(report_path_for(job.output).read_text())
    assert report["chunk"]["offset"] == k and report["song"] == str(song)  # the whole song, heard from frame k
    assert probe(job.output).has_audio and not list(studio.workdir.glob("strips/*.wav"))


@pytest.mark.skipif(WEIGHTS_FILE is None, reason="trained weights not available: set DREAMVID_WEIGHTS")
@pytest.mark.parametrize("name", ["VID_20240612_183012_HDR_stabilized_final.mp4", "-x.mp4"])
def test_every_render_the_page_names_can_be_resumed(tmp_path, dreamer, name):
    from .media import make_clip

    studio = ui.Studio(tmp_path / "wd", dreamer=dreamer).start()
    studio.set_preset("lysergic")
    studio.load_clip(make_clip(tmp_path / name, n=24, size=(64, 48)))
    studio.request_preview(0, {"octaves": 1, "steps": 1})
    job = studio.start_render(max_side=64)
    deadline = time.monotonic() + 60
    while job.done < 1 and job.active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert studio.stop() and _finish(job).status == "stopped", job.message
    assert ui.names.NAME_RE.fullmatch(job.output.stem) and "lysergic" in job.output.stem
    assert [r["name"] for r in studio.jobs.resumable()] == [job.output.stem]
    again = _finish(studio.jobs.resume(job.output.stem))
    assert again.status == "done" and again.report["frames"] == 24, again.message


def test_render_names_obey_the_rule_resume_takes():
    import datetime as dt

    when = dt.datetime(2024, 6, 12, 18, 30, 12)
    for stem, preset in (("VID_20240612_183012_HDR_stabilized_final", "lysergic"), ("-x", "a" * 80),
                         ("..", "../evil"), ("ünï côdé", "my preset"), ("", "")):
        name = ui.names.render_name(stem, preset, when)
        assert ui.names.NAME_RE.fullmatch(name) and name.endswith("-20240612-183012"), name
    assert ui.names.render_name("VID_20240612_183012_HDR_stabilized_final", "lysergic", when).startswith("VID_2024")


def test_render_options_are_checked_in_one_place(studio):
    """The page's render fields go through RenderOptions' own checks: one line, no job started."""
    from dreamvid.options import OptionError

    studio.load_clip(EXAMPLES / "bigbuckbunny.mp4")
    for kw, line in (({"crf": 60}, "crf must be from 0 to 51, got 60"),
                     ({"max_side": 8}, "max-side must be at least 16, got 8"),
                     ({"start": -1.0}, "start must be a number of seconds >= 0, got -1.0"),
                     ({"duration": 0.0}, "duration must be above 0 seconds, got 0.0")):
        with pytest.raises(OptionError) as e:
            studio.start_render(**kw)
        assert studio.one_line(e.value) == line
    assert studio.job is None and list((studio.workdir / "renders").iterdir()) == []


def _ui_cli(*args, home: Path):
    """``dreamvid ui ARGS`` refused: its one line. (Its port is taken: were it not refused, it could not serve.)"""
    from typer.testing import CliRunner

    from dreamvid.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = CliRunner().invoke(app, ["ui", "--port", taken.getsockname()[1], *map(str, args)],
                                 env={"HOME": str(home)})
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    return lines[0]


def test_ui_refuses_an_open_page_without_a_login_and_a_workdir_not_its_own(tmp_path):
    """Each refusal is one line, before anything is made or served."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\n")
    (project / ".git").mkdir()
    for args, want in (
        (["--share"], "--share makes a public link: give the page a login with --auth USER:PASS"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0 opens the page to the network: give the page a login with --auth"),
        (["--host", "0.0.0.0", "--auth", "nopassword"], "--auth takes USER:PASS"),
        (["--workdir", home], "is your home folder"),
        (["--workdir", "/"], "is the root folder"),
        (["--workdir", home.parent], "is a folder above your home folder"),
        (["--workdir", project], "is a project folder (it holds .git)"),
        (["--workdir", home / "photos" / ".."], "is your home folder"),
    ):
        assert want in _ui_cli(*args, home=home), args
    (home / "notes.txt").write_text("mine")
    assert "a folder of other files (it holds notes.txt and 1 more)" in _ui_cli("--workdir", home / "photos" / "..", home=tmp_path)
    assert ui.check_workdir(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    assert ui.check_access(host="localhost", share=False, auth=None) is None
    assert ui.check_access(host="0.0.0.0", share=False, auth="me:a:b") == ("me", "a:b")


@needs("ui")
@pytest.mark.skipif(part_missing("ui") is not None, reason=part_missing("ui") or "")
def test_the_server_hands_out_only_what_the_page_shows(tmp_path):
    """A real `dreamvid ui` with a login: a file in its working folder that the page does not show is refused by
    gradio's file route (it was served before), one it shows is served, and nothing without the login."""
    import requests

    run = tmp_path / "run"
    run.mkdir()
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "MPLCONFIGDIR": str(tmp_path / ".mpl")}
    env.pop("GRADIO_TEMP_DIR", None)
    with _ui_process(run, env, tmp_path / "app.log", "--port", port, "--workdir", "wd", "--weights", "random",
                     "--auth", "dv:s3cret"):
        wd, url = run / "wd", f"http://127.0.0.1:{port}"
        files = {"shown": wd / "renders" / "shown.mp4", "notes": wd / "notes.txt", "log": wd / "ui.log",
                 "preset": wd / "presets" / "mine.toml", "cache": wd / "cache" / "other.png",
                 "outside": run / "outside.txt"}
        for p in files.values():
            p.write_bytes(b"some bytes")

        def get(session, what):
            return session.get(f"{url}/gradio_api/file={files[what]}", timeout=30).status_code

        assert get(requests.Session(), "shown") in (401, 403)  # no login: nothing
        session = requests.Session()
        assert session.post(f"{url}/login", data={"username": "dv", "password": "s3cret"}, timeout=30).ok
        assert get(session, "shown") == 200
        assert {w: get(session, w) for w in files if w != "shown"} == {w: 403 for w in files if w != "shown"}


# ---------------------------------------------------------------------------------------------------------------
# in a real browser


def _browser_missing() -> str | None:
    missing = part_missing("browser")
    if missing is not None:
        return f"{missing} (pip install \"dreamvid[ui]\" selenium; apt-get install chromium chromium-driver)"
    if WEIGHTS_FILE is None:
        return "trained weights not available: set DREAMVID_WEIGHTS"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(tmp_path):
    """``python -m dreamvid ui`` in a subprocess (cwd and HOME inside tmp_path), the URL once it serves."""
    run, home = tmp_path / "run", tmp_path / "home"
    run.mkdir()
    home.mkdir()
    port = _free_port()
    env = {**os.environ, "HOME": str(home), "DREAMVID_WEIGHTS": str(WEIGHTS_FILE), "PYTHONPATH": str(REPO),
           "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
           "MPLCONFIGDIR": str(home / ".mpl"), "DREAMVID_CACHE": str(home / ".dreamvid-cache")}
    for var in ("GRADIO_TEMP_DIR", "DREAMVID_PRESETS"):
        env.pop(var, None)
    with _ui_process(run, env, tmp_path / "app.log", "--port", port, "--workdir", "wd", "--preset", "thumbnail") as proc:
        yield {"url": f"http://127.0.0.1:{port}/", "run": run, "home": home, "workdir": run / "wd", "proc": proc,
               "log": tmp_path / "app.log"}


@contextlib.contextmanager
def _ui_process(cwd: Path, env: dict, log_path: Path, *args):
    """``python -m dreamvid ui ARGS`` in a subprocess in ``cwd``, output in ``log_path``: yields the process once it
    serves, and ends it after."""
    log = open(log_path, "w+")  # noqa: SIM115 - the server writes it until the end
    proc = subprocess.Popen([sys.executable, "-m", "dreamvid", "ui", *map(str, args)], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            log.seek(0)
            text = log.read()
            if "dreamvid ui: http" in text:
                break
            if proc.poll() is not None:
                pytest.fail(f"dreamvid ui exited with {proc.returncode}:\n{text}")
            time.sleep(0.2)
        else:
            pytest.fail("dreamvid ui did not start within 180 s")
        yield proc
    finally:
        stop_server(proc, log)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,2400",
              "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    opts.binary_location = chromium_path()
    try:
        driver = webdriver.Chrome(options=opts, service=Service(chromedriver_path()))
    except Exception as e:  # noqa: BLE001 - a browser that cannot start here is a skip, with the reason
        pytest.skip(f"headless chromium does not start here: {str(e).splitlines()[0]}")
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


_PAGE = None  # the driver, for the page's messages in a timeout's report


def _wait(what: str, fn, timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            seen = {sel: _text(_PAGE, sel) for sel in ("#message", "#inputs", "#preview-info", "#progress",
                                                        "#preset-message")} if _PAGE is not None else {}
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; the page says {seen}")
        time.sleep(every)


_JS_SET = """
const [sel, value] = arguments;
const el = document.querySelector(sel);
const proto = el.tagName === 'TEXTAREA' ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, String(value));
el.dispatchEvent(new Event('input', {bubbles: true}));
el.dispatchEvent(new Event('change', {bubbles: true}));
el.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
window.__dv_t0 = performance.now();
"""


def _text(driver, sel: str) -> str:
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.CSS_SELECTOR, sel)
    return els[0].text if els else ""


def _src(driver, sel: str) -> str:
    return driver.execute_script(f"const i = document.querySelector({json.dumps(sel + ' img')}); "
                                 "return i ? i.getAttribute('src') || '' : '';") or ""


def _value(driver, sel: str) -> str:
    """A slider's value, as its number box shows it."""
    return driver.execute_script(f"const i = document.querySelector({json.dumps(sel + ' input[type=number]')}); "
                                 "return i ? i.value : '';") or ""


def _choose(driver, sel: str, option: str) -> None:
    """Pick ``option`` in a dropdown the way a user does: open it, click the option."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"{sel} input").click()
    _wait(f"{option} in {sel}", lambda: [o for o in driver.find_elements(By.CSS_SELECTOR, "[role=option]")
                                         if o.get_attribute("aria-label") == option], timeout=10)[0].click()


def _set(driver, sel: str, value) -> None:
    driver.execute_script(_JS_SET, sel, value)


@needs("browser")
@pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")
def test_page_in_a_real_browser(app_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    global _PAGE
    d = _PAGE = browser
    d.get(app_server["url"])
    upload = "#clip-upload input[type=file]"
    _wait("the page", lambda: d.find_elements(By.CSS_SELECTOR, upload), timeout=60)
    _wait("the page's state", lambda: "no input loaded" in _text(d, "#inputs"), timeout=60)  # its load event ran
    _wait("the model", lambda: "model: weights" in _text(d, "#model-status"), timeout=120)

    # a preset sets every slider; the creativity lever sets layers, step size, steps and octaves
    _choose(d, "#preset", "subtle")
    _wait("subtle's sliders", lambda: _value(d, "#ctl-jitter") == "16" and "preset subtle" in _text(d, "#message"))
    if d.find_elements(By.CSS_SELECTOR, "#ctl-creativity"):
        _set(d, "#ctl-creativity input[type=range]", 1)
        _wait("the lever's sliders", lambda: _value(d, "#ctl-steps") == "14" and _value(d, "#ctl-layer-mixed6") == "0.5")
    _choose(d, "#preset", "thumbnail")
    _wait("thumbnail's sliders", lambda: (_value(d, "#ctl-jitter"), _value(d, "#ctl-steps"),
                                          _value(d, "#ctl-layer-mixed6")) == ("24", "6", "0"))

    # an upload that is not a clip: one clear line on the page, no traceback
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\0\1garbage" * 500)
    d.find_element(By.CSS_SELECTOR, upload).send_keys(str(bad))
    _wait("the upload's error", lambda: "error:" in _text(d, "#inputs"), timeout=60)
    assert "Traceback" not in d.page_source and "broken" in _text(d, "#inputs")
    _wait("the upload's clear button", lambda: d.find_elements(By.CSS_SELECTOR, "#clip-upload button[aria-label='Clear']"),
          timeout=20)[0].click()
    _wait("the upload box again", lambda: d.find_elements(By.CSS_SELECTOR, upload), timeout=20)

    # the bundled clip and song: the first frame is dreamed, the song's plot appears
    d.find_element(By.CSS_SELECTOR, upload).send_keys(str(EXAMPLES / "bigbuckbunny.mp4"))
    _wait("the clip", lambda: "132 frames" in _text(d, "#inputs"), timeout=60)
    d.find_element(By.CSS_SELECTOR, "#song-upload input[type=file]").send_keys(str(EXAMPLES / "groove.wav"))
    _wait("the first preview", lambda: _src(d, "#preview") and " in " in _text(d, "#preview-info"), timeout=120)
    _wait("the song's plot", lambda: _src(d, "#analysis"), timeout=90)
    assert _src(d, "#source")

    # scrub, then move sliders: each change shows a new dream; time it from the browser (thumbnail at 360 px)
    latencies = []
    for sel, value in (("#frame input[type=range]", 40), ("#ctl-steps input[type=range]", 5),
                       ("#ctl-strength input[type=range]", 22), ("#ctl-layer-mixed4 input[type=range]", 0.8),
                       ("#ctl-steps input[type=range]", 6), ("#ctl-step_size input[type=range]", 0.025)):
        before = _src(d, "#preview")
        _wait("an idle preview", lambda: "dreaming" not in _text(d, "#preview-info"), timeout=60)
        _set(d, sel, value)
        _wait(f"a new preview after {sel} = {value}", lambda b=before: _src(d, "#preview") not in ("", b), timeout=60,
              every=0.02)
        seen = d.execute_script("return (performance.now() - window.__dv_t0) / 1000;")
        info = _text(d, "#preview-info")
        server = float(re.search(r" in ([0-9.]+) s", info).group(1)) if re.search(r" in ([0-9.]+) s", info) else None
        latencies.append({"control": sel.split()[0][1:], "value": value, "browser_s": round(seen, 3),
                          "server_s": server, "reused": "re-used" in info})
    assert "frame 40" in _text(d, "#preview-info")

    # the page never blocks while it dreams: a button answers during a dream
    _set(d, "#ctl-seed input[type=range]", 7)
    _wait("a dream under way", lambda: "dreaming" in _text(d, "#preview-info"), timeout=10, every=0.01)
    t = time.perf_counter()
    d.find_element(By.CSS_SELECTOR, "#stop-button").click()
    _wait("the page's answer", lambda: "nothing is running" in _text(d, "#message"), timeout=10, every=0.02)
    answer = time.perf_counter() - t
    dreaming_meanwhile = "dreaming" in _text(d, "#preview-info")
    _wait("the seed's dream", lambda: "dreamed in" in _text(d, "#preview-info"), timeout=60)
    dreamed = sorted(x["browser_s"] for x in latencies if not x["reused"])
    result = {"changes": latencies, "median_dreamed_s": dreamed[len(dreamed) // 2],
              "max_dreamed_s": dreamed[-1], "button_answer_during_dream_s": round(answer, 3),
              "answered_while_dreaming": dreaming_meanwhile, "load_average": os.getloadavg()}
    print("\nui preview latency:", json.dumps(result))
    if os.environ.get("DREAMVID_UI_LATENCY"):
        Path(os.environ["DREAMVID_UI_LATENCY"]).write_text(json.dumps(result, indent=2))
    assert answer < 3.0 and dreamed[-1] < 30
    assert [x["reused"] for x in latencies if x["control"] == "ctl-strength"] == [True]  # the governor alone

    if os.environ.get("DREAMVID_UI_SCREENSHOT"):  # the page as tuned: thumbnail, frame 40, the song's plot
        _screenshot(d, Path(os.environ["DREAMVID_UI_SCREENSHOT"]))

    # save a preset; the CLI reads it unchanged
    _set(d, "#preset-name textarea, #preset-name input", "by-eye")
    d.find_element(By.CSS_SELECTOR, "#preset-save").click()
    _wait("the preset saved", lambda: "saved" in _text(d, "#preset-message") or "error" in _text(d, "#preset-message"))
    assert "saved" in _text(d, "#preset-message"), _text(d, "#preset-message")
    saved = app_server["workdir"] / "presets" / "by-eye.toml"
    from dreamvid.cli import _config

    cfg = _config(str(saved), None)
    assert cfg.dream.steps == 6 and cfg.video.strength == 22.0 and cfg.dream.seed == 7
    assert "mixed4:0.8" in cfg.to_dict()["dream"]["layers"]
    res = subprocess.run([sys.executable, "-m", "dreamvid", "presets", str(saved)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert res.returncode == 0 and "steps = 6" in res.stdout

    # a tiny render: start, stop, reload the page, resume, see it finish with its measures and a download link
    _set(d, "#ctl-octaves input[type=range]", 1)
    _set(d, "#ctl-steps input[type=range]", 2)
    _set(d, "#render-duration input", 1.2)
    _set(d, "#render-side input", 160)
    time.sleep(0.5)
    d.find_element(By.CSS_SELECTOR, "#render-button").click()
    _wait("frames rendered", lambda: _progress(d)[0] == "running" and _progress(d)[1] >= 3, timeout=120)
    d.find_element(By.CSS_SELECTOR, "#stop-button").click()
    _wait("the render stopped", lambda: _progress(d)[0] == "stopped", timeout=60)
    _wait("the interrupted render listed", lambda: _resume_choice(d), timeout=10)
    d.refresh()
    _wait("the page again", lambda: d.find_elements(By.CSS_SELECTOR, "#resume-button"), timeout=60)
    _wait("the interrupted render listed after a reload", lambda: _resume_choice(d), timeout=20)
    _wait("the inputs re-attached", lambda: "bigbuckbunny" in _text(d, "#clip-upload")
          and "groove" in _text(d, "#song-upload"), timeout=60)
    d.find_element(By.CSS_SELECTOR, "#resume-button").click()
    _wait("the resumed render", lambda: _progress(d)[0] in ("running", "done"), timeout=60)
    d.refresh()  # a render in progress survives a reload: the page re-attaches to it
    _wait("the finished render", lambda: _progress(d)[0] == "done", timeout=180)
    _wait("the measures", lambda: "temporal_stability" in _text(d, "#measures"), timeout=10)
    _wait("the download link", lambda: d.find_elements(By.CSS_SELECTOR, "#download a"), timeout=10)
    renders = app_server["workdir"] / "renders"
    outs = sorted(renders.glob("*.mp4"))
    assert len(outs) == 1 and outs[0].stat().st_size > 0
    report = json.loads(outs[0].with_name(outs[0].stem + ".report.json").read_text())
    assert report["frames"] == 30 and report["resumed_at_frames"] and report["size"][0] == 160
    assert f"| frames | {report['frames']} |" in _text(d, "#measures").replace("\n", " ") or report["frames"] == 30
    assert report["config"]["dream"]["octaves"] == 1 and report["song"].endswith("groove.wav")

    # a strip: frames 40..45 of the render at preview size, shown looping
    _set(d, "#strip-seconds input[type=range]", 0.2)
    d.find_element(By.CSS_SELECTOR, "#strip-button").click()
    _wait("the strip", lambda: d.execute_script("const v = document.querySelector('#strip video'); "
                                                "return v && v.getAttribute('src');"), timeout=120)
    assert d.execute_script("return document.querySelector('#strip video').loop;")
    strip = json.loads((app_server["workdir"] / "strips" / "strip.report.json").read_text())
    assert strip["frames"] == 5 and strip["chunk"]["offset"] == 40 and max(strip["size"]) == 360
    assert strip["song"].endswith("groove.wav")  # the whole song, heard from frame 40 as a render of the clip has it

    # nothing was written outside the working folder (cwd and HOME are fresh folders)
    assert [p.name for p in app_server["run"].iterdir()] == ["wd"]
    # in HOME only the libraries' own caches, as any dreamvid command leaves them (Keras' config, fonts, weights)
    assert {p.name for p in app_server["home"].iterdir()} <= {".keras", ".mpl", ".cache", ".dreamvid-cache"}
    assert "Traceback" not in app_server["log"].read_text()


def _progress(d) -> tuple[str, int]:
    from selenium.webdriver.common.by import By

    els = d.find_elements(By.CSS_SELECTOR, "#dv-progress-text")
    if not els:
        return "", 0
    status = els[0].get_attribute("data-status") or ""
    text = els[0].text
    try:
        done = int(text.split(" · ")[1].split("/")[0])
    except (IndexError, ValueError):
        done = 0
    return status, done


def _resume_choice(d) -> str:
    return d.execute_script("const i = document.querySelector('#resume-choice input'); return i ? i.value : '';")


def _screenshot(d, path: Path) -> None:
    # PIL is matplotlib's dependency: a 256-colour PNG keeps docs/ui.png small
    import cv2
    from PIL import Image

    d.execute_script("window.scrollTo(0, 0);")
    raw = d.get_screenshot_as_png()
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    img = img[: min(img.shape[0], 1500)]
    scale = 900 / img.shape[1]
    img = cv2.resize(img, (900, round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).quantize(256, dither=Image.Dither.NONE).save(
        path, optimize=True)
