"""Tests of the render loop (dreamvid.pipeline.render) on tiny synthetic clips, with real OpenCV, ffmpeg and model.

Frame count and rate, the sound track in every case, the report, resume after an interruption, the scene-cut
reset of the feedback, bounded work-folder size and the music's hold on the dream (react).
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from dreamvid.audio import load_song
from dreamvid.config import resolve
from dreamvid.errors import OutputError
from dreamvid.pipeline import STAGES, RenderOptions, film_schedule, render, work_dir_for
from dreamvid.video import count_frames, iter_frames, output_size, probe, scene_cut_score, stream_durations
from dreamvid.coherence import Coherence
from tests.render_fixtures import (  # noqa: F401  (media and rdreamer are fixtures)
    FPS,
    N,
    NTSC,
    SECOND_AUDIO_TOL,
    SIZE,
    decode_all,
    media,
    rdreamer,
    read_report,
    render_to,
    tiny_config,
)


@pytest.fixture(scope="module")
def cfg():
    return tiny_config()


@pytest.fixture(scope="module")
def song_render(media, rdreamer, cfg, tmp_path_factory):
    """The 16-frame clip rendered with a 2 s song; per-frame events kept."""
    out = tmp_path_factory.mktemp("song_render") / "video.mp4"
    events = []
    report = render_to(out, media["clip"], cfg, rdreamer, song=media["song"], on_frame=events.append)
    return out, report, events


@pytest.fixture(scope="module")
def silent_render(media, rdreamer, cfg, tmp_path_factory):
    """The same silent clip rendered without a song."""
    out = tmp_path_factory.mktemp("silent_render") / "video.mp4"
    events = []
    report = render_to(out, media["clip"], cfg, rdreamer, on_frame=events.append)
    return out, report, events


def _dominant_hz(path) -> float:
    y, sr = load_song(path)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.fft.rfftfreq(y.size, 1 / sr)[np.argmax(spectrum)])


# -- frames, rate and sound -------------------------------------------------------------------------------------
def test_output_keeps_frame_count_and_fps_and_cuts_a_longer_song(song_render):
    out, report, events = song_render
    assert count_frames(out) == N
    info = probe(out)
    assert info.fps == pytest.approx(FPS, rel=1e-6)
    assert (info.width, info.height) == SIZE
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(N / FPS, abs=0.01)
    assert durations["audio"] == pytest.approx(N / FPS, abs=SECOND_AUDIO_TOL)  # the 2 s song is cut to the video
    assert report["audio_seconds"] == pytest.approx(N / FPS, abs=SECOND_AUDIO_TOL)
    assert [e.index for e in events] == list(range(N)) and not any(e.resumed for e in events)


def test_ntsc_frame_rate_is_kept_exactly(media, rdreamer, cfg, tmp_path):
    src = probe(media["ntsc"])
    assert src.fps == pytest.approx(NTSC, rel=1e-6)
    out = tmp_path / "ntsc.mp4"
    report = render_to(out, media["ntsc"], cfg, rdreamer, song=media["song"])
    assert count_frames(out) == 12 == report["frames"]
    assert probe(out).fps == pytest.approx(NTSC, rel=1e-6)  # 29.97..., not rounded to 30
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(12 / NTSC, abs=0.01)
    assert durations["audio"] == pytest.approx(12 / NTSC, abs=SECOND_AUDIO_TOL)


@pytest.mark.parametrize(
    ("song", "loop", "audio_seconds"),
    [("short", False, 0.3), ("short", True, N / FPS)],
    ids=["shorter-song-ends-early", "shorter-song-looped"],
)
def test_shorter_song_ends_early_or_loops(media, rdreamer, cfg, tmp_path, song, loop, audio_seconds):
    out = tmp_path / "out.mp4"
    report = render_to(out, media["clip"], cfg, rdreamer, song=media[song], loop_song=loop)
    assert count_frames(out) == N  # the video is never shortened to the song
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(N / FPS, abs=0.01)
    assert durations["audio"] == pytest.approx(audio_seconds, abs=SECOND_AUDIO_TOL)
    assert report["audio_seconds"] == pytest.approx(audio_seconds, abs=SECOND_AUDIO_TOL)


def test_start_and_duration_render_that_part_with_the_clips_own_audio(media, rdreamer, cfg, tmp_path):
    out = tmp_path / "part.mp4"
    report = render_to(out, media["voiced"], cfg, rdreamer, start=0.25, duration=0.5)  # frames 6..17 of 24
    assert report["start_frame"] == 6
    assert report["frames"] == 12 == count_frames(out)
    assert probe(out).fps == pytest.approx(FPS, rel=1e-6)
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(0.5, abs=0.01)
    assert durations["audio"] == pytest.approx(0.5, abs=SECOND_AUDIO_TOL)
    assert _dominant_hz(out) == pytest.approx(440, abs=10)  # the clip's own 440 Hz tone, not silence
    assert report["song"] is None and report["audio_sync"] is None


def test_silent_clip_without_song_gives_a_silent_video(silent_render):
    out, report, _ = silent_render
    assert count_frames(out) == N
    assert "audio" not in stream_durations(out)
    assert report["audio_seconds"] is None


# -- the report -------------------------------------------------------------------------------------------------
def test_report_beside_the_output(song_render, silent_render, cfg, media, rdreamer):
    out, report, events = song_render
    assert out.with_name("video.report.json").is_file()
    on_disk = read_report(out)
    assert on_disk == json.loads(json.dumps(report))  # what render returned is what it wrote
    assert on_disk["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert resolve(on_disk["config"]) == cfg  # the render can be reproduced from its report
    # what is known exactly
    assert (on_disk["input"], on_disk["output"], on_disk["song"]) == (str(media["clip"]), str(out), str(media["song"]))
    assert on_disk["frames"] == N
    assert on_disk["fps"] == FPS == probe(media["clip"]).fps
    assert on_disk["size"] == list(SIZE)
    assert on_disk["start_frame"] == 0
    # the 2 s song is cut to the sample where the video ends; what ffmpeg decodes of it agrees (10 ms resolution)
    assert on_disk["audio_seconds"] == pytest.approx(N / FPS, abs=1e-3)
    assert stream_durations(out)["audio"] == pytest.approx(on_disk["audio_seconds"], abs=0.011)
    assert on_disk["react"] == 1.0
    assert on_disk["resumed_at_frames"] == []
    assert (on_disk["backend"], on_disk["precision"]) == (rdreamer.backend_name, rdreamer.precision)
    assert on_disk["weights"] == rdreamer.weights.describe()
    # timings: every stage, consistent with each other
    assert set(STAGES) | {"total_this_run"} <= set(on_disk["seconds"])
    for stage in STAGES:
        assert isinstance(on_disk["seconds"][stage], float) and on_disk["seconds"][stage] >= 0.0, stage
    assert on_disk["seconds"]["dream"] > 0.0 and on_disk["seconds"]["mux"] > 0.0
    assert on_disk["seconds"]["total_this_run"] >= on_disk["seconds"]["dream"]
    assert on_disk["dream_seconds_per_frame"] == pytest.approx(on_disk["seconds"]["dream"] / N, abs=2e-3)
    assert 0.0 <= on_disk["accelerator_idle_fraction"] <= 1.0
    # the measures: strength is the mean of the per-frame intensities; sync their correlation with the song's energy
    intensities = np.array([e.intensity for e in events])
    assert on_disk["dream_strength"] == pytest.approx(float(intensities.mean()), rel=1e-3, abs=1e-4)
    _, features = film_schedule(RenderOptions(input=media["clip"], output=out, song=media["song"]), cfg, FPS, N)
    expected_sync = float(np.corrcoef(features.level[:N], intensities)[0, 1])  # the song's own RMS per frame
    assert math.isfinite(on_disk["audio_sync"]) and -1.0 <= on_disk["audio_sync"] <= 1.0
    assert on_disk["audio_sync"] == pytest.approx(expected_sync, abs=1e-3)
    assert isinstance(on_disk["temporal_stability"], float) and on_disk["temporal_stability"] > 0.0
    assert not work_dir_for(out).exists()  # cleaned up after success (keep_work False)

    silent_out, silent_report, _ = silent_render
    on_disk = read_report(silent_out)
    assert on_disk == json.loads(json.dumps(silent_report))
    assert (on_disk["song"], on_disk["audio_seconds"], on_disk["audio_sync"]) == (None, None, None)
    assert (on_disk["frames"], on_disk["size"], on_disk["start_frame"]) == (N, list(SIZE), 0)
    assert silent_report["dream_strength"] > 0.0


# -- resume -----------------------------------------------------------------------------------------------------
def _interrupt_after(k: int, seen: list):
    def on_frame(event):
        seen.append(event)
        if len(seen) == k:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a render

    return on_frame


def _pngs(work) -> list[str]:
    return sorted(p.name for p in (work / "frames").glob("*.png"))


def test_resume_after_interrupt_gives_identical_frames(media, rdreamer, cfg, tmp_path):
    seg = 4
    a = tmp_path / "a.mp4"
    report_a = render_to(a, media["clip"], cfg, rdreamer, song=media["song"], segment_frames=seg)

    b = tmp_path / "b.mp4"
    work = work_dir_for(b)
    # Ctrl-C after 6 frames: segment 0 (frames 0-3) is finished, frames 4 and 5 are pending in the open segment
    with pytest.raises(KeyboardInterrupt):
        render_to(b, media["clip"], cfg, rdreamer, song=media["song"], segment_frames=seg,
                  on_frame=_interrupt_after(6, []))
    assert work.is_dir()
    assert not b.exists() and not b.with_name("b.report.json").exists()
    assert sorted(p.name for p in work.glob("seg_*.mp4")) == ["seg_000000.mp4"]
    assert _pngs(work) == ["000003.png", "000004.png", "000005.png"]  # frame 3 seeds frame 4's feedback
    assert json.loads((work / "state.json").read_text())["done"] == 6

    # the resumed render is interrupted too, right where a segment ends (after frame 7)
    seen: list = []
    with pytest.raises(KeyboardInterrupt):
        render_to(b, media["clip"], cfg, rdreamer, song=media["song"], segment_frames=seg, resume=True,
                  on_frame=_interrupt_after(8, seen))
    assert [(e.index, e.resumed) for e in seen] == [(k, k < 6) for k in range(8)]
    assert sorted(p.name for p in work.glob("seg_*.mp4")) == ["seg_000000.mp4", "seg_000001.mp4"]
    assert _pngs(work) == ["000007.png"]
    assert json.loads((work / "state.json").read_text())["done"] == 8

    events: list = []
    report_b = render_to(b, media["clip"], cfg, rdreamer, song=media["song"], segment_frames=seg, resume=True,
                         on_frame=events.append)
    assert report_b["resumed_at_frames"] == [6, 8]
    assert report_b["frames"] == N
    assert [(e.index, e.resumed) for e in events] == [(k, k < 8) for k in range(N)]
    assert not work.exists()

    frames_a, frames_b = decode_all(a), decode_all(b)
    assert len(frames_a) == len(frames_b) == N
    for i, (fa, fb) in enumerate(zip(frames_a, frames_b, strict=True)):
        assert np.array_equal(fa, fb), f"frame {i} differs after resuming"
    assert b.read_bytes() == a.read_bytes()  # the same file, sound track included
    # the measures accumulated before each interruption survive it
    for key in ("dream_strength", "temporal_stability", "audio_sync", "frames", "size", "audio_seconds"):
        assert report_b[key] == report_a[key], key


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_existing_work_folder_needs_resume_or_same_settings(media, rdreamer, cfg, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        render_to(out, media["clip"], cfg, rdreamer, segment_frames=4, on_frame=_interrupt_after(2, []))
    work = work_dir_for(out)
    before = _snapshot(work)
    assert before

    with pytest.raises(OutputError) as e:  # neither --resume nor --overwrite
        render_to(out, media["clip"], cfg, rdreamer, segment_frames=4)
    assert "--resume" in str(e.value) and "\n" not in str(e.value)

    changed = tiny_config(dream={"steps": 2})
    with pytest.raises(OutputError, match="cannot resume") as e:
        render_to(out, media["clip"], changed, rdreamer, segment_frames=4, resume=True)
    assert "config" in str(e.value)
    with pytest.raises(OutputError, match="cannot resume") as e:
        render_to(out, media["clip"], cfg, rdreamer, segment_frames=4, resume=True, react=2.0)
    assert "react" in str(e.value)

    assert _snapshot(work) == before  # refusing touched nothing
    assert not out.exists()

    report = render_to(out, media["clip"], cfg, rdreamer, segment_frames=4, overwrite=True)  # start over
    assert report["resumed_at_frames"] == [] and count_frames(out) == N


# -- feedback and scene cuts ------------------------------------------------------------------------------------
def test_scene_cut_resets_the_feedback(media, rdreamer, tmp_path):
    cut = 6
    cfg = tiny_config(video={"flow": "dis", "warp": "delta", "blend": 1.0})
    out = tmp_path / "cut.mp4"
    report = render_to(out, media["cut"], cfg, rdreamer, keep_work=True, segment_frames=64)
    size = tuple(report["size"])
    assert size == output_size(*SIZE)
    src = list(iter_frames(media["cut"], size=size))  # what the pipeline decodes
    assert scene_cut_score(src[cut - 1], src[cut]) > cfg.video.scene_cut  # the clip really cuts there
    dreamed = {k: cv2.cvtColor(cv2.imread(str(work_dir_for(out) / "frames" / f"{k:06d}.png")), cv2.COLOR_BGR2RGB)
               for k in (0, cut - 1, cut)}  # the lossless checkpoints of the dreamed frames

    def alone(frame):  # the frame dreamed on its own (no previous frame), governed as the pipeline governs it
        return Coherence(cfg.video).dream(rdreamer, frame, None, None, cfg.dream, flows=None,
                                          target=cfg.video.strength)[0]

    assert np.array_equal(dreamed[0], alone(src[0]))  # the first frame starts from the footage as it is
    assert not np.array_equal(dreamed[cut - 1], alone(src[cut - 1]))  # before the cut the previous dream carries over
    assert np.array_equal(dreamed[cut], alone(src[cut]))  # right after it, nothing of the previous shot does


# -- memory -----------------------------------------------------------------------------------------------------
def test_work_folder_stays_bounded_while_rendering(media, rdreamer, cfg, tmp_path):
    seg = 4
    out = tmp_path / "out.mp4"
    frames_dir = work_dir_for(out) / "frames"
    most = []

    def on_frame(event):
        most.append(len(list(frames_dir.glob("*.png"))))

    render_to(out, media["clip"], cfg, rdreamer, segment_frames=seg, keep_work=True, on_frame=on_frame)
    assert len(most) == N
    # the open segment's frames, plus the newest of the last closed one (it seeds the next frame's flow)
    assert max(most) <= seg + 1
    assert len(list(frames_dir.glob("*.png"))) <= seg + 1
    assert len(list(work_dir_for(out).glob("seg_*.mp4"))) == N // seg
    assert count_frames(out) == N


# -- the music's hold on the dream ------------------------------------------------------------------------------
def test_react_zero_ignores_the_song_and_react_two_follows_it(media, rdreamer, cfg, tmp_path, silent_render):
    def strengths(song, react):
        events = []
        report = render_to(tmp_path / f"{song}-{react}.mp4", media["clip"], cfg, rdreamer, song=media[song],
                           react=react, on_frame=events.append)
        return np.array([e.intensity for e in events]), report

    off_a, report_off = strengths("song", 0.0)
    off_b, _ = strengths("song_b", 0.0)
    on_a, report_on = strengths("song", 2.0)
    on_b, _ = strengths("song_b", 2.0)
    no_song = np.array([e.intensity for e in silent_render[2]])

    assert len(off_a) == len(on_a) == N
    # react 0: the same dream whatever the song, and the same as with no song at all
    assert np.array_equal(off_a, off_b)
    assert np.array_equal(off_a, no_song)
    # react 2: the per-frame strength moves with the song
    assert np.max(np.abs(on_a - off_a)) > 1.0
    assert not np.allclose(on_a, on_b)
    assert report_on["dream_strength"] != report_off["dream_strength"]
    assert report_on["react"] == 2.0 and report_off["react"] == 0.0


def test_flow_none_dreams_each_frame_on_its_own(media, rdreamer, tmp_path):
    """``[video] flow = "none"`` is documented as "dreams each frame on its own": it carries nothing, like
    ``coherence = "none"`` (it used to measure DIS flow and anchor anyway: byte-identical to ``dis``)."""
    got = {}
    for name, video in (("flow-none", {"flow": "none"}), ("coh-none", {"coherence": "none"}), ("dis", {})):
        frames = []
        render(RenderOptions(input=media["clip"], output=tmp_path / f"{name}.mp4", x264_preset="ultrafast"),
               tiny_config(video=video), rdreamer, on_output=lambda k, f: frames.append(f.copy()))
        got[name] = frames
    assert all(np.array_equal(a, b) for a, b in zip(got["flow-none"], got["coh-none"]))
    assert not all(np.array_equal(a, b) for a, b in zip(got["flow-none"], got["dis"]))


def test_a_write_the_disk_refuses_is_one_line(media, tmp_path):
    """A full disk (here: the file-size limit, a real OS refusal) while the render writes its work folder is one
    line naming the file, never a traceback."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1200, 1200))

    cmd = [sys.executable, "-m", "dreamvid", "render", str(media["clip"]), "-o", str(tmp_path / "o.mp4"),
           "--weights", "random", "--octaves", "1", "--steps", "1", "--quiet"]
    r = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, timeout=300, check=False)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and "cannot write" in errors[0] and "File too large" in errors[0], r.stderr
