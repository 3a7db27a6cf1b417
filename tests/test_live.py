"""``dreamvid live``: a clip as the camera and a song, real parts (the model with the real weights, ffmpeg, OpenCV,
UDP OSC, the page in headless Chromium), tiny frames and few steps.

* the performance replays exactly: live with a frame clock (every frame dreamed) and OSC moves over 127.0.0.1,
  recorded, then rendered offline the way ``dreamvid render --config perf.toml`` does: the same schedule on every
  frame and the same pixels; in real time, the same schedule on every frame live dreamed;
* OSC moves change the next frames' strength (their mean change);
* the page in headless Chromium shows frames updating, in order, and the song playing;
* bad sources, ports, devices and options are one line each, before a framework is imported;
* MIDI runs where a virtual port can be opened and is skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dreamvid.config import resolve
from dreamvid.errors import ConfigError
from dreamvid.keyframes import Timeline, parse

from .conftest import REPO, WEIGHTS_FILE, needs_weights
from .media import make_clip, make_song

FPS = 12.0
SONG_SECONDS = 3.0
N = int(FPS * SONG_SECONDS)  # the clip is as long as the song: the offline film is the live film

PRESET = """
description = "tiny live test preset"
[dream]
layers = "mixed3:1,mixed4:1"
octaves = 1
steps = 2
step_size = 0.02
jitter = 8
[video]
strength = 10.0
gain_limits = [0.1, 10.0]
[audio]
drive = "energy"
strength = [0.6, 1.4]
pulse = "onset"
pulse_step = 0.5
[live.controls]
strength = { key = "video.strength", range = [1, 60], cc = 1 }
eyes = { key = "dream.layers.mixed4", range = [0, 3], cc = 2 }
[live.pulse]
key = "dream.step_size"
peak = 2.0
decay = 0.25
note = 36
"""


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    (d / "tiny.toml").write_text(PRESET)
    return {"dir": d, "clip": make_clip(d / "clip.mp4", n=N, size=(96, 64), fps=FPS),
            "song": make_song(d / "song.wav", SONG_SECONDS, kind="beats"), "preset": d / "tiny.toml"}


@pytest.fixture(scope="module")
def ldreamer():
    if WEIGHTS_FILE is None:
        pytest.skip("trained weights not available: set DREAMVID_WEIGHTS")
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras is not installed")
    from dreamvid.dream import Dreamer

    return Dreamer(weights=str(WEIGHTS_FILE), seed=0)


def _osc_client(port: int):
    pytest.importorskip("pythonosc", reason="python-osc is not installed (pip install \"dreamvid[live]\")")
    from pythonosc.udp_client import SimpleUDPClient

    return SimpleUDPClient("127.0.0.1", port)


# ---------------------------------------------------------------------------------------------------------------
# pure


def test_hold_keyframes_step_exactly_at_their_time():
    tl = Timeline(n=8, fps=2.0)
    assert parse("0:1, 1.25:=4, 2.75:=2", key="video.strength").evaluate(tl).tolist() == [1, 1, 1, 4, 4, 4, 2, 2]
    assert parse("=0:1, 1.25:4, 2.75:2", key="video.strength").evaluate(tl).tolist() == [1, 1, 1, 4, 4, 4, 2, 2]
    ramp = parse("0:1, 1.25:=4, 2.75:2", key="video.strength").evaluate(tl)  # a pulse's return: linear after a hold
    assert ramp[:3].tolist() == [1, 1, 1] and ramp[3] == pytest.approx(4 - 2 * 0.25 / 1.5) and ramp[-1] == 2
    with pytest.raises(ConfigError, match="not a number"):
        parse("0:1, 2:=x", key="video.strength")


@pytest.mark.parametrize("table, match", [
    ({"controls": {"a": {"key": "video.strenght", "range": [0, 1]}}}, r"did you mean 'video\.strength'"),
    ({"controls": {"a": {"key": "video.strength", "range": [0, 500]}}}, r"range must be a number from 0 to 128"),
    ({"controls": {"a": {"key": "dream.layers.mixed9", "range": [0, 1]}}}, r"cannot be driven"),
    ({"controls": {"a": {"key": "video.strength", "range": [0, 9], "cc": 1},
                   "b": {"key": "video.blend", "range": [0, 1], "cc": 1}}}, r"cc 1 is already used"),
    ({"pulse": {"key": "video.strength", "decay": 0}}, r"decay must be a number from 0\.04"),
    ({"knobs": {}}, r"unknown key 'live\.knobs'"),
])
def test_live_table_is_checked_with_one_line(table, match):
    with pytest.raises(ConfigError, match=match):
        resolve({"live": table})


def test_remote_maps_osc_midi_and_sliders(media):
    """OSC addresses, MIDI messages (mido's, no port needed) and sliders move the mapped keys, clipped to range."""
    mido = pytest.importorskip("mido", reason="mido is not installed (pip install \"dreamvid[live]\")")
    from dreamvid.config import load_toml
    from dreamvid.live import Performance
    from dreamvid.live.remote import Remote

    layer = load_toml(media["preset"])
    perf = Performance(preset="tiny", preset_layer=layer, fps=FPS, build=lambda cfg: cfg)
    remote = Remote(perf)
    perf.begin(5)  # the loop has started frame 5: moves take effect from frame 6
    assert remote.osc("/dreamvid/video/strength", 33.0) and perf.value("video.strength") == 33.0
    assert remote.osc("/dreamvid/video/strength", 999.0) and perf.value("video.strength") == 128.0  # its range
    assert remote.osc("/dreamvid/control/eyes", 0.5) and perf.value("dream.layers.mixed4") == 1.5
    assert remote.osc("/dreamvid/dream/layers/mixed3", 0.25) and perf.value("dream.layers.mixed3") == 0.25
    assert remote.midi(mido.Message("control_change", control=1, value=127)) and perf.value("video.strength") == 60
    assert not remote.midi(mido.Message("control_change", control=9, value=64))  # not mapped
    assert remote.midi(mido.Message("note_on", note=36, velocity=100))  # the pulse
    assert remote.slider("strength", 7.0) and perf.value("video.strength") == 7.0
    assert not remote.osc("/dreamvid/video/strenght", 1.0) and not remote.osc("/other/x", 1.0)
    cfg = perf.config  # what live dreams with is the recording resolved on the preset
    assert dict(cfg.schedules)["video.strength"] == "0:10, 0.4583:=7"  # moves before frame 6 coalesce, at 5.5/fps
    assert "mixed4:{0:1, 0.4583:=1.5}" in cfg.to_dict()["dream"]["layers"]
    assert dict(cfg.schedules)["dream.step_size"] == "0:0.02, 0.4583:=0.04, 0.7083:0.02"  # the pulse: up, back in 0.25 s


# ---------------------------------------------------------------------------------------------------------------
# live vs the offline render


def _live(media, dreamer, tmp_path, *, clock=None, moves=(), adapt=False, seconds=None, osc=True):
    """Play the clip live with the song (frame clock by default), sending ``moves`` ((frame, address, value)) over
    UDP OSC as frames are shown; returns the frames shown (k, params, change, out) and the summary."""
    from dreamvid.live import FrameClock, LiveOptions, Session

    opts = LiveOptions(source=str(media["clip"]), song=media["song"], preset=str(media["preset"]), size=96,
                       fps=FPS, port=0, osc=0 if osc else None, record=tmp_path / "perf.toml", adapt=adapt,
                       seconds=seconds, page=False)
    session = Session.open(opts, clock=clock if clock is not None else FrameClock(FPS))
    client = _osc_client(session.osc.port) if osc else None
    shown, pending = [], list(moves)

    def on_frame(ev):
        shown.append((ev.k, ev.params, ev.change, ev.out.copy()))
        while pending and pending[0][0] <= ev.k:
            _, address, value = pending.pop(0)
            client.send_message(address, value)
            if clock is None:
                time.sleep(0.05)  # the frame clock does not wait: let the datagram land

    summary = session.run(dreamer, on_frame=on_frame)
    return shown, summary, session


def _effective(fp):
    """A frame's parameters as the dream uses them (a layer's schedule text, which names where its weight came from,
    left out: before a layer's first move live's config has none yet)."""
    import dataclasses

    from dreamvid.config import LayerSpec

    layers = tuple(LayerSpec(s.name, s.weight, s.channels) for s in fp.dream.layers)
    return dataclasses.replace(fp, dream=fp.dream.replace(layers=layers))


def _offline(media, dreamer, tmp_path, perf: Path):
    """The offline render of the recorded performance, as `dreamvid render clip --song S --preset P --config perf`
    resolves it: every frame (exact, from the encoder's thread) and the film's schedule."""
    from dreamvid import pipeline
    from dreamvid.cli import _config

    cfg = _config(str(media["preset"]), perf)
    opts = pipeline.RenderOptions(input=media["clip"], output=tmp_path / "offline.mp4", song=media["song"],
                                  x264_preset="ultrafast")
    frames = {}
    pipeline.render(opts, cfg, dreamer, on_output=lambda k, img: frames.__setitem__(k, img.copy()))
    film = pipeline.Film.of(opts.__class__(**{**opts.__dict__, "overwrite": True}), cfg)
    return frames, film.schedule, cfg


@needs_weights
def test_recorded_performance_replays_exactly_offline(media, ldreamer, tmp_path):
    moves = [(5, "/dreamvid/video/strength", 45.0), (9, "/dreamvid/control/eyes", 0.0), (14, "/dreamvid/pulse", 1.0),
             (20, "/dreamvid/video/strength", 3.0)]
    shown, summary, session = _live(media, ldreamer, tmp_path, moves=moves)
    assert [k for k, *_ in shown] == list(range(N)), "the frame clock dreams every frame, in order"
    assert summary["moves"] == 4
    text = (tmp_path / "perf.toml").read_text()
    assert "strength" in text and "mixed4:{" in text and "step_size" in text
    frames, schedule, cfg = _offline(media, ldreamer, tmp_path, tmp_path / "perf.toml")
    assert len(frames) == N
    for k, params, _, out in shown:
        assert _effective(params) == _effective(schedule.frame(k)), f"frame {k}: {params} != {schedule.frame(k)}"
        assert np.array_equal(out, frames[k]), f"frame {k} differs from the offline render's"
    targets = [p.target for _, p, _, _ in shown]
    assert max(targets) > 3 * min(targets)  # the moves did move the schedule


@needs_weights
def test_osc_moves_change_the_next_frames_strength_in_real_time(media, ldreamer, tmp_path):
    """Real time (the song's clock on the wall): OSC moves change the strength of the frames after them, and every
    frame live dreamed got exactly the offline schedule's parameters."""
    from dreamvid.live import SongClock

    moves = [(0, "/dreamvid/video/strength", 2.0), (int(FPS * 1.2), "/dreamvid/video/strength", 40.0)]
    shown, summary, _ = _live(media, ldreamer, tmp_path, clock=SongClock(FPS), moves=moves)
    ks = [k for k, *_ in shown]
    assert ks == sorted(set(ks)) and ks[0] == 0 and len(ks) >= 8, ks  # in order, some frames skipped at most
    low = [c for k, p, c, _ in shown if p.target is not None and p.target < 5]
    high = [c for k, p, c, _ in shown if p.target is not None and p.target > 20]
    assert len(low) >= 2 and len(high) >= 2, [(k, p.target) for k, p, _, _ in shown]
    assert np.mean(high) > 3 * np.mean(low), (np.mean(low), np.mean(high))
    from dreamvid import pipeline
    from dreamvid.cli import _config

    cfg = _config(str(media["preset"]), tmp_path / "perf.toml")
    opts = pipeline.RenderOptions(input=media["clip"], output=tmp_path / "never.mp4", song=media["song"])
    schedule = pipeline.Film.of(opts, cfg).schedule
    assert all(_effective(p) == _effective(schedule.frame(k)) for k, p, _, _ in shown)


# ---------------------------------------------------------------------------------------------------------------
# the command


def _cases(tmp_path: Path, media) -> dict[str, tuple[list, str]]:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    _cases.keep = (busy, udp)
    clip, song = media["clip"], media["song"]
    return {
        "missing source": (["live", tmp_path / "nope.mp4"], r"nope\.mp4 is neither a camera index"),
        "camera": (["live", "7"], r"camera 7 cannot be opened"),
        "not a clip": (["live", media["preset"]], r"tiny\.toml"),
        "page port in use": (["live", clip, "--port", busy.getsockname()[1]], r"cannot listen on 127\.0\.0\.1:\d+: the port is in use"),
        "osc port in use": (["live", clip, "--port", 0, "--osc", udp.getsockname()[1]], r"cannot listen for OSC on .* the port is in use"),
        "network host": (["live", clip, "--host", "0.0.0.0"], r"--allow-network"),
        "bad size": (["live", clip, "--size", 8], r"--size must be"),
        "bad song": (["live", clip, "--song", tmp_path / "nosong.wav"], r"nosong\.wav"),
        "bad record": (["live", clip, "--record", tmp_path / "perf.txt", "--port", 0], r"ending in \.toml"),
        "bad out": (["live", clip, "--out", tmp_path / "out.avi", "--port", 0], r"out\.avi"),
        "bad preset": (["live", clip, "--preset", "lysergik", "--port", 0], r"did you mean 'lysergic'"),
        "bad weights": (["live", clip, "--port", 0, "--weights", tmp_path / "nope.h5"], r"nope\.h5"),
    }


@pytest.mark.parametrize("case", ["missing source", "camera", "not a clip", "page port in use", "osc port in use",
                                  "network host", "bad size", "bad song", "bad record", "bad out", "bad preset",
                                  "bad weights"])
def test_bad_sources_ports_and_options_are_one_line_before_any_framework(case, tmp_path, media):
    from .test_cli import assert_fails_fast, run_process

    args, match = _cases(tmp_path, media)[case]
    proc, elapsed, imported = run_process(*args, cwd=tmp_path)
    assert_fails_fast(proc, elapsed, imported, match)


def test_midi_port_or_the_reason_it_cannot_open(tmp_path, media):
    """Where a virtual MIDI port can be opened, a CC on it moves the strength; elsewhere `--midi` is one line."""
    from .test_cli import assert_fails_fast, run_process

    mido = pytest.importorskip("mido", reason="mido is not installed (pip install \"dreamvid[live]\")")
    try:
        port = mido.open_output("dreamvid-test", virtual=True)
    except Exception as e:  # noqa: BLE001 - no ALSA sequencer / JACK here
        proc, elapsed, imported = run_process("live", media["clip"], "--port", 0, "--midi", "any", cwd=tmp_path)
        assert_fails_fast(proc, elapsed, imported, r"MIDI is not available here|no MIDI input port")
        pytest.skip(f"no virtual MIDI port can be opened here ({str(e).splitlines()[0][:80]}); --midi refused in one line")
    from dreamvid.live import LiveOptions, Session

    with port:
        session = Session.open(LiveOptions(source=str(media["clip"]), preset=str(media["preset"]), port=0, page=False,
                                           midi="dreamvid-test"))
        try:
            port.send(mido.Message("control_change", control=1, value=127))
            deadline = time.monotonic() + 5
            while session.perf.value("video.strength") != 60 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert session.perf.value("video.strength") == 60
        finally:
            session.close()


def test_sound_card_or_the_reason_it_cannot_open():
    """`--audio-in` is not built yet; where PortAudio and a capture device exist this is where its test goes."""
    try:
        import sounddevice as sd

        devices = [d for d in sd.query_devices() if d["max_input_channels"] > 0]
    except Exception as e:  # noqa: BLE001 - PortAudio missing, or no ALSA
        pytest.skip(f"no sound card here: {str(e).splitlines()[0][:80]}")
    if not devices:
        pytest.skip("no capture device here")
    pytest.skip("--audio-in is not built yet (see docs/live.md)")


# ---------------------------------------------------------------------------------------------------------------
# the page, in headless Chromium


def _browser_missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        return "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    if WEIGHTS_FILE is None:
        return "trained weights not available: set DREAMVID_WEIGHTS"
    return None


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_page_shows_frames_in_order_and_plays_the_song(tmp_path, media):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from dreamvid.live.page import free_port

    port = free_port()
    env = {**os.environ, "DREAMVID_WEIGHTS": str(WEIGHTS_FILE), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    log = open(tmp_path / "live.log", "w+")  # noqa: SIM115 - the process writes it until the end
    song = make_song(tmp_path / "long.wav", 40.0, kind="beats")  # the run lasts as long as its song
    proc = subprocess.Popen([sys.executable, "-m", "dreamvid", "live", str(media["clip"]), "--song", str(song),
                             "--preset", str(media["preset"]), "--size", "96", "--port", str(port), "--seconds", "60",
                             "--quiet"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    driver = None
    try:
        deadline = time.monotonic() + 180
        while "dreamvid live: http" not in (text := (log.seek(0), log.read())[1]):
            if proc.poll() is not None:
                pytest.fail(f"dreamvid live exited with {proc.returncode}:\n{text}")
            assert time.monotonic() < deadline, f"dreamvid live did not start within 180 s:\n{text}"
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/"
        for path in ("/etc/passwd", "/../../etc/passwd", "/song/../clip.mp4", "/tiny.toml"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url.rstrip("/") + path, timeout=5)
            assert e.value.code == 404
        opts = Options()
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=800,600",
                  "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
            opts.add_argument(a)
        opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        try:
            driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
        except Exception as e:  # noqa: BLE001 - a browser that cannot start here is a skip, with the reason
            pytest.skip(f"headless chromium does not start here: {str(e).splitlines()[0]}")
        driver.get(url)

        def page():
            return driver.execute_script("return {k: lastK, inOrder: inOrder, t: song.currentTime, "
                                         "paused: song.paused, n: shown.length, sliders: "
                                         "document.querySelectorAll('#sliders input').length}")

        first = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = page()
            if first is None and now["k"] >= 0 and now["t"] > 0:
                first = now
            if first is not None and now["k"] > first["k"] + 3 and now["t"] > first["t"] + 1.0:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"the page did not update: {page()}\n{(log.seek(0), log.read())[1]}")
        assert now["inOrder"] and not now["paused"] and now["sliders"] == 2, now
        state = json.loads(urllib.request.urlopen(url + "state", timeout=5).read())
        assert state["page"].get("fps", 0) > 0 and state["page"].get("latency_ms") is not None, state
        assert state["quality"]["size"] and state["frame"] >= now["k"]
        shot = os.environ.get("DREAMVID_LIVE_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
