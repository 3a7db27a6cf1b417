"""``dreamvid live``: a clip as the camera and a song, real parts (the model with the real weights, ffmpeg, OpenCV,
UDP OSC, the page in headless Chromium), tiny frames and few steps.

* the performance replays exactly: live with a frame clock (every frame dreamed) and OSC moves over 127.0.0.1,
  recorded, then rendered offline the way ``dreamvid render --config perf.toml`` does: the same schedule on every
  frame and the same pixels; in real time, the same schedule on every frame live dreamed;
* a camera's footage (a clip played through OpenCV as a camera) and a looped clip's are kept beside the recording,
  one frame per film frame, and their offline render replays the performance to the pixel, over the whole song;
* OSC moves change the next frames' strength (their mean change);
* the page in headless Chromium shows frames updating, in order, and the song playing;
* bad sources, ports, devices and options are one line each, before a framework is imported;
* MIDI runs where a virtual port can be opened and is skipped with the reason otherwise;
* ``--audio-in``: the schedule of what was heard is ``build_schedule`` over the causal features, frame for frame;
  a file played through the sound card's contract drives a run and is captured exactly beside the recording; the
  sound card itself is opened where PortAudio finds one, and is one line (and a skip) otherwise;
* the page's login (``--auth``, which a non-loopback ``--host`` needs): no request gets through without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
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

from .conftest import EXAMPLES, REPO, WEIGHTS_FILE, needs, needs_weights, stop_server
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


def _osc_or_skip() -> None:
    pytest.importorskip("pythonosc", reason="python-osc is not installed (pip install \"dreamvid[live]\")")


def _osc_client(port: int):
    _osc_or_skip()
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


@needs("live")
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


def _live(media, dreamer, tmp_path, *, clock=None, moves=(), adapt=False, seconds=None, osc=True, clip=None,
          song=None, source=None):
    """Play the clip (or ``source``, an opened one) live with the song (frame clock by default), sending ``moves``
    ((frame, address, value)) over UDP OSC as frames are shown; returns the frames shown (k, params, change, out),
    the summary and the session."""
    from dreamvid.live import FrameClock, LiveOptions, Session

    opts = LiveOptions(source=str(clip or media["clip"]), song=song or media["song"], preset=str(media["preset"]),
                       size=96, fps=FPS, port=0, osc=0 if osc else None, record=tmp_path / "perf.toml", adapt=adapt,
                       seconds=seconds, page=False)
    session = Session.open(opts, clock=clock if clock is not None else FrameClock(FPS), source=source)
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


def _offline(media, dreamer, tmp_path, perf: Path, *, clip=None, song=None):
    """The offline render of the recorded performance, as `dreamvid render CLIP --song S --preset P --config perf
    --max-side 96` resolves it: every frame (exact, from the encoder's thread) and the film's schedule."""
    from dreamvid import pipeline
    from dreamvid.cli import _config

    cfg = _config(str(media["preset"]), perf)
    opts = pipeline.RenderOptions(input=clip or media["clip"], output=tmp_path / "offline.mp4",
                                  song=song or media["song"], max_side=96, x264_preset="ultrafast")
    frames = {}
    pipeline.render(opts, cfg, dreamer, on_output=lambda k, img: frames.__setitem__(k, img.copy()))
    film = pipeline.Film.of(opts.__class__(**{**opts.__dict__, "overwrite": True}), cfg)
    return frames, film.schedule, cfg


@needs_weights
@needs("live")
def test_recorded_performance_replays_exactly_offline(media, ldreamer, tmp_path):
    _osc_or_skip()
    moves = [(5, "/dreamvid/video/strength", 45.0), (9, "/dreamvid/control/eyes", 0.0), (14, "/dreamvid/pulse", 1.0),
             (20, "/dreamvid/video/strength", 3.0)]
    shown, summary, session = _live(media, ldreamer, tmp_path, moves=moves)
    assert [k for k, *_ in shown] == list(range(N)), "the frame clock dreams every frame, in order"
    assert summary["moves"] == 4
    text = (tmp_path / "perf.toml").read_text()
    assert "strength" in text and "mixed4:{" in text and "step_size" in text
    assert summary["footage"] is None and not list(tmp_path.glob("perf.source*")), "the clip is the film's footage"
    assert f"Replay: dreamvid render {media['clip']} -o OUT.mp4 --song {media['song']}" in text
    frames, schedule, cfg = _offline(media, ldreamer, tmp_path, tmp_path / "perf.toml")
    assert len(frames) == N
    for k, params, _, out in shown:
        assert _effective(params) == _effective(schedule.frame(k)), f"frame {k}: {params} != {schedule.frame(k)}"
        assert np.array_equal(out, frames[k]), f"frame {k} differs from the offline render's"
    targets = [p.target for _, p, _, _ in shown]
    assert max(targets) > 3 * min(targets)  # the moves did move the schedule


@needs_weights
@needs("live")
def test_osc_moves_change_the_next_frames_strength_in_real_time(media, ldreamer, tmp_path):
    """Real time (the song's clock on the wall): OSC moves change the strength of the frames after them, and every
    frame live dreamed got exactly the offline schedule's parameters."""
    _osc_or_skip()
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
# the footage: a camera's, a looped clip's


def _clip_camera(path: Path):
    """A clip played through OpenCV as a camera (``source.Camera`` on the file), whose reading thread takes the frames
    at the clip's rate, in a loop, as a camera delivers them (OpenCV alone would race through the file)."""
    import cv2

    from dreamvid.live.source import Camera

    class Paced(Camera):
        def _run(self) -> None:
            due = time.monotonic()
            while not self._stop.is_set():
                ok, frame = self._cap.read()
                if not ok:  # the end of the clip: from the start again
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                due += 1.0 / self.fps
                self._stop.wait(max(0.0, due - time.monotonic()))
                self._latest = (frame, time.monotonic())

    return Paced(str(path))


def _area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def test_footage_is_kept_as_the_film_saw_it_and_decodes_as_live_dreamed(tmp_path):
    """The footage recorder: frame k is the frame kept for it, the last kept frame stands for the frames skipped (the
    first for those before it) and up to the film's end; what it hands the dream is what the recording decodes at the
    film's size (bit for bit, though H.264's yuv420p is not the RGB written); a failed run leaves nothing."""
    from dreamvid import video
    from dreamvid.errors import OutputError
    from dreamvid.live.footage import Footage
    from dreamvid.video.recorded import AsRecorded

    from .media import clip_frame

    native, film = (128, 80), (96, 60)
    frames = {k: clip_frame(3 * k, native) for k in (2, 5, 6)}
    path = tmp_path / "perf.source.mp4"
    footage = Footage(path, fps=FPS, size=native, film=film, overwrite=False)
    dreamed = {k: footage.keep(k, f, film) for k, f in frames.items()}
    assert footage.keep(7, frames[6], (64, 40)).shape == (40, 64, 3)  # a smaller size the pacer chose
    assert footage.finish(ok=True, frames=10) == path and not (tmp_path / "perf.source.mp4.dreamvid-live").exists()
    info = video.probe(path)
    assert (info.width, info.height, info.fps, info.frame_count) == (*native, FPS, 10)
    back = list(video.iter_frames(path, size=film))
    assert [[k for k, d in dreamed.items() if np.array_equal(b, d)] for b in back] == [[2]] * 5 + [[5]] + [[6]] * 4
    assert not np.array_equal(dreamed[2], _area(frames[2], film))  # not the RGB written, scaled
    with AsRecorded(size=native, out=native) as same:
        assert np.array_equal(same(frames[5]), next(video.iter_frames(path, first=5, count=1)))
    failed = Footage(tmp_path / "failed.source.mp4", fps=FPS, size=native, film=film, overwrite=False)
    failed.keep(0, frames[2], film)
    assert failed.finish(ok=False) is None and sorted(p.name for p in tmp_path.iterdir()) == ["perf.source.mp4"]
    with pytest.raises(OutputError, match="already exists"):
        Footage(path, fps=FPS, size=native, film=film, overwrite=False)


def _replays_exactly(shown, frames, schedule) -> None:
    for k, params, _, out in shown:
        assert _effective(params) == _effective(schedule.frame(k)), f"frame {k}: {params} != {schedule.frame(k)}"
        assert np.array_equal(out, frames[k]), f"frame {k} differs from the offline render's"


@needs_weights
@needs("live")
def test_camera_performance_replays_exactly_from_its_footage(media, ldreamer, tmp_path):
    """A camera (a clip played through OpenCV at its rate) live with the song and OSC knobs: --record keeps the camera's
    footage beside the preset, at the camera's size, one frame per film frame, and the offline render of that footage
    with the recorded performance (the description's command) gives every frame's parameters and pixels."""
    _osc_or_skip()
    from dreamvid import video

    camera = _clip_camera(make_clip(tmp_path / "camera.mp4", n=24, size=(128, 80), fps=FPS, cut_at=16))
    moves = [(4, "/dreamvid/video/strength", 45.0), (12, "/dreamvid/control/eyes", 0.0), (20, "/dreamvid/pulse", 1.0)]
    shown, summary, _ = _live(media, ldreamer, tmp_path, moves=moves, source=camera)
    kept = tmp_path / "perf.source.mp4"
    assert [k for k, *_ in shown] == list(range(N)) and summary["footage"] == str(kept) and summary["moves"] == 3
    text = (tmp_path / "perf.toml").read_text()
    assert f"Replay: dreamvid render {kept} -o OUT.mp4 --song {media['song']}" in text and "--max-side 96" in text
    assert summary["replay"] in text
    info = video.probe(kept)
    assert (info.width, info.height, info.fps, info.frame_count) == (128, 80, FPS, N)
    raw = [f.astype(np.int16) for f in video.iter_frames(kept)]
    assert sum(np.abs(a - b).mean() > 1 for a, b in zip(raw, raw[1:])) >= N // 3, "the camera's frames moved"
    frames, schedule, _ = _offline(media, ldreamer, tmp_path, tmp_path / "perf.toml", clip=kept)
    assert len(frames) == N
    _replays_exactly(shown, frames, schedule)


@needs_weights
@needs("live")
def test_looped_clip_replays_over_the_whole_song(media, ldreamer, tmp_path):
    """A clip shorter than the song, at another rate, looped live: its footage covers the whole song, and the offline
    render of it replays every frame's parameters and pixels."""
    from dreamvid import video

    clip = make_clip(tmp_path / "short.mp4", n=8, size=(96, 64), fps=10.0)  # 0.8 s: looped twice in 2 s
    song = make_song(tmp_path / "short.wav", 2.0, kind="beats")
    n = int(2.0 * FPS)
    shown, summary, _ = _live(media, ldreamer, tmp_path, clip=clip, song=song, osc=False)
    kept = tmp_path / "perf.source.mp4"
    assert [k for k, *_ in shown] == list(range(n)) and summary["footage"] == str(kept)
    assert video.probe(kept).frame_count == n  # the whole song, where `render short.mp4` would give 0.8 s
    frames, schedule, _ = _offline(media, ldreamer, tmp_path, tmp_path / "perf.toml", clip=kept, song=song)
    assert len(frames) == n and len(schedule) == n
    _replays_exactly(shown, frames, schedule)
    clip_frames = list(video.iter_frames(clip))
    footage = list(video.iter_frames(kept))
    for k in (0, 7, 8, 10, 19, 23):  # film frame k shows clip frame floor(k * 10 / 12) mod 8
        assert np.abs(footage[k].astype(int) - clip_frames[(k * 10 // 12) % 8]).mean() < 2, k


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
    (media["dir"] / "beats.toml").write_text('[video]\nstrength = "0b:10, 8b:30"\n')
    return {
        "missing source": (["live", tmp_path / "nope.mp4"], r"nope\.mp4 is neither a camera index"),
        "camera": (["live", "7"], r"camera 7 cannot be opened"),
        "not a clip": (["live", media["preset"]], r"tiny\.toml"),
        "page port in use": (["live", clip, "--port", busy.getsockname()[1]], r"cannot listen on 127\.0\.0\.1:\d+: the port is in use"),
        "osc port in use": (["live", clip, "--port", 0, "--osc", udp.getsockname()[1]], r"cannot listen for OSC on .* the port is in use"),
        "network host": (["live", clip, "--host", "0.0.0.0"], r"--host 0\.0\.0\.0 opens the page to the network: give the page a login with --auth USER:PASS"),
        "bad login": (["live", clip, "--host", "0.0.0.0", "--auth", "nopassword"], r"--auth takes USER:PASS"),
        "song and sound card": (["live", clip, "--song", song, "--audio-in", "default"], r"--song and --audio-in are two sounds"),
        "sound card and beats": (["live", clip, "--audio-in", "default", "--preset", media["dir"] / "beats.toml"], r"video\.strength counts in beats, but the sound card gives no beat grid: set \[motion\] bpm"),
        "bad size": (["live", clip, "--size", 8], r"--size must be"),
        "bad song": (["live", clip, "--song", tmp_path / "nosong.wav"], r"nosong\.wav"),
        "bad record": (["live", clip, "--record", tmp_path / "perf.txt", "--port", 0], r"ending in \.toml"),
        "bad out": (["live", clip, "--out", tmp_path / "out.avi", "--port", 0], r"out\.avi"),
        "bad preset": (["live", clip, "--preset", "lysergik", "--port", 0], r"did you mean 'lysergic'"),
        "bad weights": (["live", clip, "--port", 0, "--weights", tmp_path / "nope.h5"], r"nope\.h5"),
    }


@pytest.mark.parametrize("case", ["missing source", "camera", "not a clip", "page port in use", "osc port in use",
                                  "network host", "bad login", "song and sound card",
                                  "sound card and beats", "bad size", "bad song", "bad record", "bad out",
                                  "bad preset", "bad weights"])
def test_bad_sources_ports_and_options_are_one_line_before_any_framework(case, tmp_path, media):
    from .test_cli import assert_fails_fast, run_process

    if case == "osc port in use":  # without the live extra, --osc says that instead (tested below)
        _osc_or_skip()
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


def test_sound_card_or_the_reason_it_cannot_open(tmp_path, media):
    """Where PortAudio finds a capture device, the sound card streams: its samples reach the analysis, the features
    of the frames and the clock, for about a second. Elsewhere `--audio-in` is one line, before any framework, that
    says how to fix it (install PortAudio, connect an input), and this test is skipped with that line."""
    from dreamvid.errors import InputError
    from dreamvid.live.soundcard import SoundCard

    from .test_cli import assert_fails_fast, run_process

    try:
        card = SoundCard("default")
    except InputError as e:
        proc, elapsed, imported = run_process("live", media["clip"], "--port", 0, "--audio-in", "default", cwd=tmp_path)
        line = assert_fails_fast(proc, elapsed, imported, r"--audio-in.*(PortAudio|sound card input|sounddevice)")
        assert line == f"error: {e}"
        pytest.skip(f"no sound card here: {e}")
    from dreamvid.audio import CausalAnalyzer
    from dreamvid.live import AudioClock
    from dreamvid.live.heard import Heard, Listener

    clock = AudioClock(FPS, sr=card.sr)
    heard = Heard(fps=FPS, sr=card.sr, capacity=64)
    listener = Listener(card, analyzer=CausalAnalyzer(sr=card.sr, fps=FPS), heard=heard, clock=clock)
    listener.start()
    try:
        assert clock.wait_frame(int(FPS), __import__("threading").Event()), "no sound came for a second"
    finally:
        listener.close(ok=True)
    assert clock.now() >= 1.0 and heard.newest >= FPS and listener.stats["samples"] >= card.sr


class _FilePlayer:
    """A sound card that plays a signal: (n, channels) float32 blocks of 512 samples, at the sound card's pace, from
    its own thread (the contract ``heard.Listener`` takes), so a live run hears a known sound."""

    name = "a file"

    def __init__(self, y: np.ndarray, sr: int, block: int = 512):
        import threading

        self.y, self.sr, self.channels, self.block = y, sr, y.shape[1], block
        self._stop = threading.Event()
        self._t = None

    def start(self, feed) -> None:
        import threading

        def play():
            t0 = time.monotonic()
            for a in range(0, len(self.y), self.block):
                if self._stop.wait(max(0.0, t0 + (a + self.block) / self.sr - time.monotonic())):
                    return
                feed(self.y[a:a + self.block])

        self._t = threading.Thread(target=play, daemon=True)
        self._t.start()

    def close(self) -> None:
        self._stop.set()
        if self._t is not None:
            self._t.join()


def _heard_features(y: np.ndarray, sr: int, config, n: int):
    """What the analysis hears of ``y`` (fed in 512-sample blocks), as AudioFeatures of ``n`` frames."""
    from dreamvid.audio import HEARD_NAMES, AudioFeatures, CausalAnalyzer
    from dreamvid.audiomap import analysis_options

    an = CausalAnalyzer(sr=sr, fps=FPS, **analysis_options(config.audio))
    rows = [f.values() for a in range(0, len(y), 512) for f in an.push(y[a:a + 512])]
    rows = np.asarray(rows[:n], np.float32)
    assert len(rows) == n
    return AudioFeatures(fps=FPS, n_frames=n, duration=n / FPS, sr=sr, tempo=0.0, beat_frames=np.zeros(0, np.int64),
                         **{name: rows[:, i] for i, name in enumerate(HEARD_NAMES)})


def _same_params(a, b, where: str) -> None:
    """Two FrameParams equal but for float rounding (the pulse's tail beyond the frames live looks at: < 1e-6)."""
    assert (a.dream.steps, a.dream.jitter, a.dream.octaves) == (b.dream.steps, b.dream.jitter, b.dream.octaves), where
    for x, y in [(a.dream.step_size, b.dream.step_size), (a.dream.octave_scale, b.dream.octave_scale),
                 (a.blend, b.blend), (a.zoom, b.zoom), (a.intensity, b.intensity), (a.strength, b.strength),
                 (a.target, b.target), *zip(a.dream.layer_weights, b.dream.layer_weights), *zip(a.motion, b.motion)]:
        assert x == pytest.approx(y, rel=1e-5, abs=1e-6), f"{where}: {a} != {b}"


@pytest.mark.parametrize("preset", ["lysergic", "zoom-tunnel", "tiny"])
def test_causal_schedule_is_build_schedule_over_what_was_heard(preset, media):
    """Frame k of the live schedule with --audio-in, computed as live does (when frame k has just been heard, from
    the last frames heard around frame k's keyframed base), equals frame k of build_schedule over the whole causal
    history, with keyframed bases (a recorded knob, a layer's schedule), pulses, layer gains and zoom pulses."""
    from dreamvid import presets
    from dreamvid.audio import CausalAnalyzer, load_song
    from dreamvid.audiomap import analysis_options
    from dreamvid.config import load_toml
    from dreamvid.live.heard import CausalSchedule, Heard, span_of
    from dreamvid.schedule import build_schedule

    layer = load_toml(media["preset"]) if preset == "tiny" else presets.load(preset)
    names = [s.name for s in resolve(layer, preset=preset).dream.layers]
    knobs = {"video": {"strength": "0:18, 2.5:=30, 5:=10"},
             "dream": {"layers": ",".join(f"{n}:{{0:1, 3:=2}}" if i == 0 else f"{n}:1" for i, n in enumerate(names))}}
    if preset == "tiny":  # schedules that read features, on every kind of key
        knobs["dream"] = {"layers": "mixed3:{0:1, 3:=2},mixed4:{0.5 + 2*high}", "step_size": "0.02*(0.5 + rms)",
                          "octave_scale": "1.3 + 0.3*low", "jitter": "4 + 8*onset"}
    cfg = resolve(layer, knobs, preset=preset)
    sr, n, react = 44100, 90, 1.5  # 7.5 s of the song at 12 fps
    y = load_song(EXAMPLES / "groove.wav", sr=sr)[0]
    base = build_schedule(None, {}, base=cfg.dream, blend=cfg.video.blend, n_frames=n, react=react, config=cfg, fps=FPS)
    heard = Heard(fps=FPS, sr=sr, capacity=span_of(cfg.audio, fps=FPS) + 64)
    live = CausalSchedule(base, heard, cfg, react=react, fps=FPS)
    an = CausalAnalyzer(sr=sr, fps=FPS, **analysis_options(cfg.audio))
    params = {}
    for a in range(0, len(y), 512):
        for f in an.push(y[a:a + 512]):
            heard.put(f)
            if f.k < n:
                params[f.k] = live.frame(f.k)  # as the loop takes it: the frame just heard
    full = build_schedule(_heard_features(y, sr, cfg, n), cfg.audio, base=cfg.dream, blend=cfg.video.blend,
                          n_frames=n, react=react, config=cfg, fps=FPS)
    assert sorted(params) == list(range(n))
    for k in range(n):
        _same_params(params[k], full.frame(k), f"frame {k}")
    assert np.array_equal(live.zoom[:n], full.zoom) or np.allclose(live.zoom[:n], full.zoom, atol=1e-6)
    assert np.ptp(full.step_size) > 0.2 * cfg.dream.step_size  # the music moved it ...
    assert np.ptp([p.target for p in params.values()]) > 5  # ... and so did the knobs
    if preset == "zoom-tunnel":  # its zoom pulse, and its camera zoom = "1.012 + 0.02*energy", frame by frame
        assert np.ptp(live.zoom[:n]) > 0.01 and np.ptp([p.motion[0] for p in params.values()]) > 0.005
    if preset == "tiny":
        for field in (lambda p: p.dream.octave_scale, lambda p: p.dream.jitter, lambda p: p.dream.layer_weights[1]):
            assert len({field(p) for p in params.values()}) > 2


@needs_weights
@needs("live")
def test_audio_in_drives_the_dream_and_records_what_it_heard(media, ldreamer, tmp_path):
    """A sound played through the sound card's contract (a stereo file, in real time) drives a live run with an OSC
    move: every frame dreamed got exactly the schedule of what had been heard (build_schedule over the causal
    features), the capture beside the recording is the sound heard, as long as the run, and the recording replays
    offline with it: the same knobs on every frame (the music there is the offline analysis of the capture)."""
    _osc_or_skip()
    import soundfile as sf

    from dreamvid import pipeline
    from dreamvid.audio import load_song
    from dreamvid.cli import _config
    from dreamvid.live import LiveOptions, Session
    from dreamvid.schedule import build_schedule

    sr = 44100
    mono = load_song(media["song"], sr=sr)[0]
    sound = np.stack([mono, 0.5 * mono], axis=1)
    opts = LiveOptions(source=str(media["clip"]), audio_in="test", preset=str(media["preset"]), size=96, fps=FPS,
                       port=0, osc=0, record=tmp_path / "perf.toml", seconds=SONG_SECONDS, adapt=False, page=False)
    session = Session.open(opts, sound=_FilePlayer(sound, sr))
    client = _osc_client(session.osc.port)
    shown, sent = [], []

    def on_frame(ev):
        shown.append((ev.k, ev.params))
        if ev.k >= FPS and not sent:
            sent.append(ev.k)
            client.send_message("/dreamvid/video/strength", 45.0)

    summary = session.run(ldreamer, on_frame=on_frame)
    ks = [k for k, _ in shown]
    assert ks == sorted(set(ks)) and ks[0] == 0 and len(ks) >= 8 and summary["moves"] == 1, (ks, summary)
    wav = tmp_path / "perf.wav"
    got, got_sr = sf.read(str(wav), dtype="float32")
    assert got_sr == sr and got.shape == (int(SONG_SECONDS * sr), 2), got.shape
    assert np.abs(got - sound[:len(got)]).max() <= 1.5 / 32768  # the sound heard (16-bit)
    assert summary["heard"]["capture"] == str(wav) and summary["heard"]["dropped"] == 0
    assert f"--song {wav}" in (tmp_path / "perf.toml").read_text()

    cfg = _config(str(media["preset"]), tmp_path / "perf.toml")
    full = build_schedule(_heard_features(sound, sr, cfg, N), cfg.audio, base=cfg.dream, blend=cfg.video.blend,
                          n_frames=N, react=1.0, config=cfg, fps=FPS)
    for k, p in shown:
        _same_params(p, full.frame(k), f"frame {k}")
    targets = [p.target for _, p in shown]
    assert max(targets) > 2 * min(targets)  # the knob moved it
    opts = pipeline.RenderOptions(input=media["clip"], output=tmp_path / "never.mp4", song=wav)
    offline = pipeline.Film.of(opts, cfg).schedule
    for k, p in shown:  # the knobs (the keyframed target, before the music's strength) are the same offline
        q = offline.frame(k)
        assert p.target / p.strength == pytest.approx(q.target / q.strength, rel=1e-9), k


def test_live_page_asks_for_its_login(tmp_path):
    """With --auth, no request reaches the page without the login (401, the browser asks for it), a wrong one
    neither, and with it the page, its state and its controls work. A non-loopback host needs it."""
    import base64
    import urllib.error

    from dreamvid.live import LiveOptions
    from dreamvid.live.page import Page

    pulses = []
    page = Page("127.0.0.1", 0, song=None, on_control=lambda name, v: None, on_pulse=lambda: pulses.append(1),
                on_clock=lambda t, p: None, state=lambda: {"controls": []}, login=("vj", "s3cret:é"))
    page.start()

    def ask(path: str, login: str | None, data: bytes | None = None):
        req = urllib.request.Request(page.url.rstrip("/") + path, data=data)
        if login is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
        return urllib.request.urlopen(req, timeout=5)

    try:
        for path, data in (("/", None), ("/state", None), ("/frame?after=-1", None), ("/pulse", b"{}"),
                           ("/control", b'{"name": "x", "value": 1}')):
            for login in (None, "vj:wrong", "vj:s3cret:", "VJ:s3cret:é"):
                with pytest.raises(urllib.error.HTTPError) as e:
                    ask(path, login, data)
                assert e.value.code == 401 and e.value.headers["WWW-Authenticate"].startswith("Basic "), (path, login)
        assert pulses == []
        with ask("/", "vj:s3cret:é") as r:
            assert r.status == 200 and b"dreamvid live" in r.read()
        with ask("/state", "vj:s3cret:é") as r:
            assert json.loads(r.read())["controls"] == []
        with ask("/pulse", "vj:s3cret:é", b"{}") as r:
            assert r.status == 200 and pulses == [1]
    finally:
        page.close()
    with pytest.raises(ConfigError, match=r"--host 0\.0\.0\.0 opens the page to the network: give the page a login"):
        LiveOptions(source="0", host="0.0.0.0")
    assert LiveOptions(source="0", host="0.0.0.0", auth="vj:pw").auth == "vj:pw"


def _chromium():
    """A headless Chromium through selenium, or a skip with the reason."""
    if importlib.util.find_spec("selenium") is None:
        pytest.skip("selenium is not installed")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=800,600",
              "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    except Exception as e:  # noqa: BLE001 - a browser that cannot start here is a skip, with the reason
        pytest.skip(f"headless chromium does not start here: {str(e).splitlines()[0]}")


def test_page_works_in_a_browser_behind_its_login():
    """In Chromium, the page opened with its login shows the frames and the sliders, and its pulse button gets
    through (the page's own requests go to its origin, so a login given in the URL does not break them)."""
    from dreamvid.live.page import Page

    moves = []
    state = {"controls": [{"name": "strength", "key": "video.strength", "range": [0, 40], "value": 10, "cc": None,
                           "full": False}], "frame": 3, "quality": {"size": [96, 64]}}
    page = Page("127.0.0.1", 0, song=None, on_control=lambda name, v: moves.append((name, v)),
                on_pulse=lambda: moves.append("pulse"), on_clock=lambda t, p: None, state=lambda: state,
                login=("vj", "s3cret"))
    page.start()
    page.show(3, np.full((64, 96, 3), 128, np.uint8), time.monotonic())
    driver = None
    try:
        driver = _chromium()
        driver.get(f"http://vj:s3cret@127.0.0.1:{page.port}/")
        deadline = time.monotonic() + 20
        while driver.execute_script("return lastK") != 3 or not driver.execute_script(
                "return document.querySelectorAll('#sliders input').length"):
            assert time.monotonic() < deadline, driver.execute_script("return hud.textContent")
            time.sleep(0.2)
        driver.execute_script("document.getElementById('pulse').click()")
        while "pulse" not in moves or page.stats.get("last") != 3:  # the pulse, and the page's own report
            assert time.monotonic() < deadline, (moves, page.stats)
            time.sleep(0.1)
    finally:
        if driver is not None:
            driver.quit()
        page.close()


def test_live_login_can_come_from_the_environment(tmp_path, media, monkeypatch):
    """$DREAMVID_UI_AUTH (as dreamvid ui reads it) is the login: a network host then passes the access check (the
    next check, the recording's name, is the one that refuses)."""
    from .test_cli import assert_fails_fast, run_process

    monkeypatch.setenv("DREAMVID_UI_AUTH", "vj:pw")
    proc, elapsed, imported = run_process("live", media["clip"], "--host", "0.0.0.0", "--port", 0, "--record",
                                          tmp_path / "perf.txt", cwd=tmp_path)
    assert_fails_fast(proc, elapsed, imported, r"ending in \.toml")


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
        driver = _chromium()
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
        stop_server(proc, log)
