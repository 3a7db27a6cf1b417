"""Tests of dreamvid.video: decode, flow, encode and mux, on tiny synthetic clips (real OpenCV and ffmpeg)."""

from __future__ import annotations

import itertools
import os
from fractions import Fraction

import cv2
import numpy as np
import pytest

from dreamvid.errors import AudioError, ConfigError, OutputError, VideoError
from dreamvid.video import (
    FrameWriter,
    MotionTracker,
    coherent_init,
    concat,
    consistency_mask,
    count_frames,
    estimate_flow,
    flow_pair,
    frame_range,
    iter_frames,
    mux,
    output_size,
    probe,
    scene_cut_score,
    stream_durations,
    warp,
)
from tests.media import clip_frame, make_clip, make_song, texture

SIZE = (96, 64)  # (width, height)
N = 24
FPS = 24.0


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {
        "dir": d,
        "clip": make_clip(d / "clip.mp4", n=N, size=SIZE, fps=FPS),
        "render": make_clip(d / "render.mp4", n=48, size=SIZE, fps=FPS),  # 2.0 s, silent
        "source": make_clip(d / "source.mp4", n=72, size=SIZE, fps=FPS, audio=True),  # 3.0 s with sound
    }


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# -- decode -----------------------------------------------------------------------------------------------------
def test_probe_reports_fps_size_and_count(media):
    info = probe(media["clip"])
    assert (info.width, info.height) == SIZE
    assert info.fps == pytest.approx(FPS)
    assert info.frame_count == N
    assert info.duration == pytest.approx(N / FPS)
    assert info.has_audio is False
    assert probe(media["source"]).has_audio is True


def test_iter_frames_count_first_and_size(media):
    frames = list(iter_frames(media["clip"]))
    assert len(frames) == N
    assert all(f.dtype == np.uint8 and f.shape == (SIZE[1], SIZE[0], 3) for f in frames)

    sub = list(iter_frames(media["clip"], first=5, count=3))
    assert len(sub) == 3
    for k, frame in enumerate(sub):  # frames 5, 6, 7 in RGB order, close to what was encoded
        err = np.abs(frame.astype(float) - clip_frame(5 + k, SIZE)).mean()
        off = np.abs(frame.astype(float) - clip_frame(9 + k, SIZE)).mean()
        assert err < 6 and err < 0.6 * off  # lossy (yuv420p halves the chroma), but clearly the right frame

    small = list(iter_frames(media["clip"], count=2, size=(48, 32)))
    assert [f.shape for f in small] == [(32, 48, 3)] * 2
    assert len(list(iter_frames(media["clip"], first=N - 2, count=10))) == 2
    assert list(iter_frames(media["clip"], first=N + 5)) == []


@pytest.mark.parametrize(
    ("w", "h", "max_side", "expected"),
    [
        (1920, 1080, 512, (512, 288)),
        (1080, 1920, 513, (288, 512)),
        (1921, 1081, None, (1920, 1080)),
        (640, 480, 4000, (640, 480)),  # never upscaled
        (101, 57, 50, (50, 28)),
    ],
)
def test_output_size_keeps_aspect_with_even_sides(w, h, max_side, expected):
    ow, oh = output_size(w, h, max_side)
    assert (ow, oh) == expected
    assert ow % 2 == 0 and oh % 2 == 0
    if max_side is not None:
        assert max(ow, oh) <= max_side
    assert ow / oh == pytest.approx(w / h, rel=0.05)


def test_output_size_rejects_tiny_limit():
    with pytest.raises(ConfigError):
        output_size(640, 480, 1)


def test_frame_range(media):
    info = probe(media["render"])  # 48 frames at 24 fps
    assert frame_range(info) == (0, 48)
    assert frame_range(info, 0.5, 1.0) == (12, 24)
    assert frame_range(info, 1.5, 10.0) == (36, 12)  # shortened at the end
    with pytest.raises(ConfigError) as err:
        frame_range(info, 2.5)
    assert "beyond the end" in _one_line(err)
    with pytest.raises(ConfigError):
        frame_range(info, 0.0, 0.0)
    with pytest.raises(ConfigError):
        frame_range(info, -1.0)


def test_bad_videos_raise_video_error(media, tmp_path):
    missing = tmp_path / "missing.mp4"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    # A faststart MP4 cut after its header: it opens, but no frame decodes.
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(media["clip"].read_bytes()[:1500])
    messages = {}
    for name, path in [("missing", missing), ("empty", empty), ("corrupt", corrupt), ("frameless", truncated)]:
        with pytest.raises(VideoError) as err:
            probe(path)
        messages[name] = _one_line(err)
    assert "does not exist" in messages["missing"]
    assert "empty" in messages["empty"]
    assert "corrupt" in messages["corrupt"]
    assert "no decodable" in messages["frameless"]
    with pytest.raises(VideoError):
        next(iter_frames(missing))


def test_audio_only_file_is_not_a_video(tmp_path):
    import subprocess

    from dreamvid.video.decode import ffmpeg_exe

    song = make_song(tmp_path / "s.wav", 0.5)
    m4a = tmp_path / "audio_only.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(song), "-c:a", "aac", str(m4a)], check=True)
    with pytest.raises(VideoError) as err:
        probe(m4a)
    _one_line(err)


def test_damaged_frames_are_skipped_not_fatal(media, tmp_path):
    data = bytearray(media["render"].read_bytes())
    mid = len(data) // 2
    data[mid : mid + 600] = np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    warnings: list[str] = []
    frames = list(iter_frames(damaged, on_warning=warnings.append))
    # the timeline is kept (damaged frames concealed or repeated, none dropped), so the sound stays in sync
    assert len(frames) == probe(damaged).frame_count == 48
    assert warnings and all("\n" not in w for w in warnings)
    assert any("damaged" in w and "damaged.mp4" in w for w in warnings)
    # the frames before the damage are intact and in place (after it, H.264 carries the error until a keyframe)
    assert all(np.abs(frames[k].astype(int) - clip_frame(k, SIZE)).mean() < 4 for k in range(12))


# -- flow -------------------------------------------------------------------------------------------------------
def test_warp_with_known_flow_translates():
    a = texture(SIZE, seed=3)
    b = texture(SIZE, seed=3, shift=(2.5, 1.0))  # b[x] = a[x - (2.5, 1)]
    flow = np.zeros((SIZE[1], SIZE[0], 2), np.float32)
    flow[..., 0], flow[..., 1] = -2.5, -1.0
    for img in (a, a.astype(np.float32), np.ascontiguousarray(a[..., 0])):
        out = warp(img, flow)
        assert out.dtype == img.dtype and out.shape == img.shape
        ref = b if img.ndim == 3 else b[..., 0]
        assert np.abs(out.astype(float) - ref)[4:-4, 4:-4].mean() < 1.5
    assert np.abs(a.astype(float) - b)[4:-4, 4:-4].mean() > 10  # the shift is visible at all


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_estimated_flow_warps_onto_the_target(method):
    prev = texture(SIZE, seed=3)
    cur = texture(SIZE, seed=3, shift=(2.5, 1.0))
    bwd = estimate_flow(cur, prev, method=method)  # cur[x] ≈ prev[x + bwd[x]]
    assert bwd.dtype == np.float32 and bwd.shape == (SIZE[1], SIZE[0], 2)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(bwd[inner][..., 0]) == pytest.approx(-2.5, abs=0.25)
    assert np.median(bwd[inner][..., 1]) == pytest.approx(-1.0, abs=0.25)
    assert np.abs(warp(prev, bwd).astype(float) - cur)[inner].mean() < 2.0


def test_flow_measured_on_scaled_down_frames_is_scaled_back_up():
    """``max_side`` measures on smaller copies; the vectors come back in full-size pixels, at full size."""
    size = (320, 192)
    prev = texture(size, seed=4)
    cur = texture(size, seed=4, shift=(6.0, 3.0))  # cur[x] = prev[x - (6, 3)]
    bwd, fwd = flow_pair(cur, prev, max_side=160)
    assert bwd.shape == fwd.shape == (size[1], size[0], 2) and bwd.dtype == np.float32
    inner = (slice(16, -16), slice(16, -16))
    assert np.median(bwd[inner][..., 0]) == pytest.approx(-6.0, abs=0.5)
    assert np.median(bwd[inner][..., 1]) == pytest.approx(-3.0, abs=0.5)
    assert np.median(fwd[inner][..., 0]) == pytest.approx(6.0, abs=0.5)
    full_bwd, _ = flow_pair(cur, prev)  # frames no larger than max_side are measured as they are
    assert np.array_equal(flow_pair(cur, prev, max_side=320)[0], full_bwd)


def test_unknown_flow_method_suggests_a_name():
    a = texture(SIZE)
    with pytest.raises(ConfigError) as err:
        estimate_flow(a, a, method="farnback")
    assert "did you mean 'farneback'" in _one_line(err)


def _moving_square(x0: int) -> np.ndarray:
    frame = texture(SIZE, seed=5)
    cv2.rectangle(frame, (x0, 20), (x0 + 24, 44), (255, 255, 255), -1)
    cv2.rectangle(frame, (x0 + 4, 24), (x0 + 20, 40), (0, 0, 0), -1)
    return frame


def test_consistency_mask_marks_disoccluded_area():
    prev, cur = _moving_square(20), _moving_square(30)  # the square moves 10 px right
    bwd, fwd = flow_pair(cur, prev)
    mask = consistency_mask(bwd, fwd)
    assert mask.dtype == np.float32 and mask.shape == (SIZE[1], SIZE[0])
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask[22:42, 21:29].mean() < 0.2  # background the square uncovered: no history there
    assert mask[:, 70:].mean() > 0.95  # static background far away: reliable
    # a wrong forward flow makes everything inconsistent
    assert consistency_mask(bwd, fwd + 5.0).mean() < 0.1


def test_scene_cut_score_high_at_cut_low_for_motion():
    cut = 12
    frames = [clip_frame(i, SIZE, cut_at=cut) for i in range(20)]
    scores = [scene_cut_score(a, b) for a, b in itertools.pairwise(frames)]
    at_cut = scores[cut - 1]
    others = scores[: cut - 1] + scores[cut:]
    assert at_cut > 0.6
    assert max(others) < 0.2
    black = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    assert scene_cut_score(black, black) == 0.0
    assert scene_cut_score(black, black + 200) > 0.6  # flat shots: caught by the tone change


def test_coherent_init_fresh_where_disoccluded():
    prev_src, src = _moving_square(20), _moving_square(30)
    prev_dream = np.clip(prev_src.astype(int) + 50, 0, 255).astype(np.uint8)
    init, mask = coherent_init(src, prev_src, prev_dream, mode="delta", blend=0.6)
    assert init.dtype == np.uint8 and init.shape == src.shape
    diff = init.astype(float) - src
    assert np.abs(diff[22:42, 21:29]).mean() < 8  # uncovered: starts from the source
    far = diff[:, 70:][src[:, 70:] < 200]  # background far away: carries 0.6 * 50 of the dream
    assert far.mean() == pytest.approx(30, abs=2)
    with pytest.raises(ConfigError):
        coherent_init(src, prev_src, prev_dream, mode="deltaa")


@pytest.mark.parametrize("mode", ["delta", "frame"])
@pytest.mark.parametrize("speed", [0.0, 0.7])
def test_no_brightness_or_saturation_drift(mode, speed):
    """A toy dreamer adds a fixed pattern each frame; 200 frames of feedback must settle, not creep."""
    w, h = 64, 48
    added = np.full((h, w, 3), 2.0, np.float32)
    added[::8] += 12.0
    added[:, ::8, 0] += 9.0
    blend = 0.6
    fixed_point = blend * added.mean() / (1 - blend)  # carried excess brightness at equilibrium

    def source(i):  # mid-range texture so nothing clips at 255
        return (64 + texture((w, h), seed=1, shift=(speed * i, 0.3 * speed * i)) // 2).astype(np.uint8)

    def saturation(img):
        return cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1].astype(float).mean()

    excess, sat_gap = [], []
    prev_src = prev_dream = None
    for i in range(200):
        src = source(i)
        init = src if prev_src is None else coherent_init(src, prev_src, prev_dream, mode=mode, blend=blend)[0]
        prev_src, prev_dream = src, np.clip(init + added, 0, 255).astype(np.uint8)
        excess.append(init.astype(float).mean() - src.astype(float).mean())
        sat_gap.append(saturation(init) - saturation(src))
    late = excess[-50:]
    assert max(excess) < fixed_point + 3
    assert abs(np.mean(late) - fixed_point) < 3
    assert max(late) - min(late) < 1.5  # settled
    assert max(abs(g) for g in sat_gap[-50:]) < 20
    assert max(sat_gap[-50:]) - min(sat_gap[-50:]) < 3


# -- the motion tracker ---------------------------------------------------------------------------------------------
def _footage(k: int, *, speed=(0.0, 0.0), square: float | None = None, sigma: float = 1.5, size=(128, 96)):
    """Frame ``k`` of a camera shot of a photo: panned by ``speed`` px a frame (bicubic), a textured square moving
    ``square`` px a frame to the right over it, and fresh sensor noise of ``sigma`` grey levels on every frame."""
    from tests.conftest import load_example

    photo = load_example("coffee.png", 200).astype(np.float32)
    m = np.float32([[1, 0, -20 - speed[0] * k], [0, 1, -10 - speed[1] * k]])
    frame = cv2.warpAffine(photo, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    if square is not None:
        x = round(10 + square * k)
        frame[30:62, x:x + 32] = texture((32, 32), seed=9)
    rng = np.random.default_rng(1000 + k)
    return np.clip(np.rint(frame + rng.normal(0.0, sigma, frame.shape)), 0, 255).astype(np.uint8)


def _carried(frames, **video):
    from dreamvid.config import VideoParams

    tracker = MotionTracker(VideoParams(**video))
    return [tracker.push(f) for f in frames]


def test_motion_tracker_holds_a_still_shot_still():
    # DIS measures a different sub-pixel flow on every frame of still, noisy footage; the tracker hands on none
    frames = [_footage(k) for k in range(8)]
    raw = _carried(frames, motion_window=0)
    carried = _carried(frames)
    assert raw[0] is None and carried[0] is None
    assert np.count_nonzero(raw[-1][0]) > 0.9 * raw[-1][0].size  # the noise the dream would swim on
    for flows in carried[1:]:
        assert not flows[0].any() and not flows[1].any()


def test_motion_tracker_follows_a_slow_pan_more_precisely_than_one_frame_flow():
    speed = (0.3, 0.1)  # bwd = +speed: the photo slides left/up under a camera panning right/down
    frames = [_footage(k, speed=speed) for k in range(10)]
    inner = (slice(12, -12), slice(12, -12))
    err_carried = [np.abs(f[0][inner] - speed).mean() for f in _carried(frames)[3:]]
    err_raw = [np.abs(f[0][inner] - speed).mean() for f in _carried(frames, motion_window=0)[3:]]
    assert max(err_carried) < 0.04  # glued: a snap to zero would be off by 0.2 on average
    assert np.mean(err_carried) < 0.5 * np.mean(err_raw)


def test_motion_tracker_moves_an_object_and_not_the_still_background_around_it():
    frames = [_footage(k, square=2.0) for k in range(8)]
    bwd, fwd = _carried(frames)[-1]
    x = round(10 + 2.0 * 7)  # the square's left edge in the last frame
    inside = bwd[36:56, x + 6:x + 26]
    assert np.median(inside[..., 0]) == pytest.approx(-2.0, abs=0.3)
    assert np.median(fwd[36:56, x + 4:x + 24][..., 0]) == pytest.approx(2.0, abs=0.3)
    far = np.ones(bwd.shape[:2], bool)
    far[14:80, max(0, x - 30):x + 60] = False  # the square's path and a margin around it
    assert not bwd[far].any()


def test_motion_tracker_state_is_the_frames_since_the_window_or_the_cut():
    """A resume pushes the frames it skips with ``need=False``, a batch chunk starts ``motion_window`` frames
    early: both give the flows an uninterrupted run gives. A cut forgets what came before it."""
    from dreamvid.config import VideoParams

    frames = [_footage(k, speed=(0.4, 0.0), square=1.5) for k in range(12)]
    whole = _carried(frames)

    resumed = MotionTracker(VideoParams())
    for k, f in enumerate(frames):
        got = resumed.push(f, need=k >= 9)
        assert (got is None) == (k < 9)
    assert all(np.array_equal(a, b) for a, b in zip(got, whole[-1]))
    late = _carried(frames[11 - VideoParams().motion_window:])  # a run started motion_window frames before 11
    assert all(np.array_equal(a, b) for a, b in zip(late[-1], whole[-1]))
    short = _carried(frames[12 - VideoParams().motion_window:])  # one frame later: the window is not full yet
    assert not all(np.array_equal(a, b) for a, b in zip(short[-1], whole[-1]))
    cut = MotionTracker(VideoParams())
    for k, f in enumerate(frames):
        got = cut.push(f, cut=k == 6)
        if k == 6:
            assert got is None
    after = _carried(frames[6:])
    assert all(np.array_equal(a, b) for a, b in zip(got, after[-1]))


def test_motion_tracker_hands_the_raw_estimate_to_the_measures():
    frames = [_footage(k, square=2.0) for k in range(3)]
    flows = _carried(frames)[-1]
    raw = flow_pair(frames[2], frames[1])
    assert all(np.array_equal(a, b) for a, b in zip(flows.measured, raw))
    assert not np.array_equal(flows[0], raw[0])  # what carries the dream is not the raw estimate
    small = _carried(frames, flow_max_side=64)[-1]  # measured on scaled-down frames: not the measures' estimate
    assert small.measured is None and small[0].shape == (96, 128, 2)


# -- encode -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [24.0, 30000 / 1001])
def test_frame_writer_round_trip_exact_count_and_fps(tmp_path, fps):
    out = tmp_path / "rt.mp4"
    frames = [clip_frame(i, SIZE) for i in range(30)]
    with FrameWriter(out, fps=fps, size=SIZE, crf=12, preset="ultrafast") as writer:
        for f in frames:
            writer.write(f)
        assert writer.frames_written == 30
    info = probe(out)
    assert info.frame_count == 30
    assert count_frames(out) == 30
    assert Fraction(info.fps).limit_denominator(1001) == Fraction(fps).limit_denominator(1001)
    assert abs(info.fps - fps) < 1e-6
    decoded = list(iter_frames(out))
    assert len(decoded) == 30
    err = np.abs(decoded[17].astype(float) - frames[17]).mean()
    assert err < 6 and err < 0.6 * np.abs(decoded[17].astype(float) - frames[16]).mean()
    assert [p.name for p in tmp_path.iterdir()] == ["rt.mp4"]  # no temp file left


def test_frame_writer_rejects_odd_size(tmp_path):
    with pytest.raises(ConfigError) as err:
        FrameWriter(tmp_path / "odd.mp4", fps=24, size=(95, 64))
    assert "even" in _one_line(err)
    assert not any(tmp_path.iterdir())


def test_frame_writer_never_overwrites_silently(tmp_path):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError) as err:
        FrameWriter(out, fps=24, size=SIZE)
    assert "--overwrite" in _one_line(err)
    assert out.read_bytes() == b"precious"
    with FrameWriter(out, fps=24, size=SIZE, preset="ultrafast", overwrite=True) as writer:
        writer.write(clip_frame(0, SIZE))
    assert probe(out).frame_count == 1


def test_frame_writer_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with FrameWriter(out, fps=24, size=SIZE, preset="ultrafast") as writer:
            writer.write(clip_frame(0, SIZE))
            raise RuntimeError("render crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        with FrameWriter(out, fps=24, size=SIZE, preset="ultrafast") as writer:
            writer.write(np.zeros((10, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def _packet_hashes(path, *, decode: bool = False) -> list[tuple[int, str, bool]]:
    """(size, md5, keyframe) of each video packet as stored (``-c copy``), or of each decoded frame."""
    import subprocess

    from dreamvid.video.decode import ffmpeg_exe

    copy = [] if decode else ["-c", "copy"]
    text = subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-i", f"file:{path}", "-map", "0:v:0", *copy,
         "-f", "framemd5", "-"],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    rows = [ln.split(",") for ln in text.splitlines() if ln and not ln.startswith("#")]
    # flags are printed only when they differ from a keyframe's ("F=0x0": not a keyframe)
    return [(int(r[4]), r[5].strip(), len(r) < 7 or bool(int(r[6].split("=")[1], 16) & 1)) for r in rows]


def test_concat_joins_segments_without_reencoding(tmp_path):
    a = make_clip(tmp_path / "a.mp4", n=10, size=SIZE, fps=FPS)
    b = make_clip(tmp_path / "b.mp4", n=14, size=SIZE, fps=FPS)
    out = concat([a, b], tmp_path / "ab.mp4")
    info = probe(out)
    assert info.frame_count == 24 and count_frames(out) == 24
    assert info.fps == pytest.approx(FPS)
    # the very same packets: a re-encode (even a lossless one) changes them; only each segment's first
    # keyframe may gain the in-band parameter sets (SPS/PPS) that the concat demuxer puts in front of it
    parts, joined = _packet_hashes(a) + _packet_hashes(b), _packet_hashes(out)
    assert len(joined) == len(parts) == 24
    for (size, md5, key), (jsize, jmd5, jkey) in zip(parts, joined, strict=True):
        assert jkey == key
        if key:
            assert size <= jsize <= size + 200
        else:
            assert (jsize, jmd5) == (size, md5)
    assert _packet_hashes(out, decode=True) == _packet_hashes(a, decode=True) + _packet_hashes(b, decode=True)
    with pytest.raises(OutputError):
        concat([a, b], out)


# -- mux --------------------------------------------------------------------------------------------------------
def test_mux_cuts_a_long_song_to_the_video(media):
    song = make_song(media["dir"] / "long.wav", 3.0)
    out = media["dir"] / "long_out.mp4"
    written = mux(media["render"], out, song=song)
    d = stream_durations(out)
    assert d["audio"] == pytest.approx(2.0, abs=0.1)
    assert written == pytest.approx(2.0, abs=0.1)
    assert count_frames(out) == 48
    assert probe(out).fps == pytest.approx(FPS)


def test_mux_short_song_leaves_video_intact(media):
    song = make_song(media["dir"] / "short.wav", 1.0)
    out = media["dir"] / "short_out.mp4"
    written = mux(media["render"], out, song=song)
    d = stream_durations(out)
    assert d["audio"] == pytest.approx(1.0, abs=0.1)
    assert written == pytest.approx(1.0, abs=0.1)
    assert d["video"] == pytest.approx(2.0, abs=0.05)
    assert count_frames(out) == 48


def test_mux_loops_a_short_song(media):
    song = make_song(media["dir"] / "loop.wav", 0.7)
    out = media["dir"] / "loop_out.mp4"
    written = mux(media["render"], out, song=song, loop_song=True)
    assert stream_durations(out)["audio"] == pytest.approx(2.0, abs=0.1)
    assert written == pytest.approx(2.0, abs=0.1)
    assert count_frames(out) == 48


def test_mux_keeps_the_source_audio(media):
    out = media["dir"] / "src_out.mp4"
    written = mux(media["render"], out, source=media["source"], start=0.5)
    assert stream_durations(out)["audio"] == pytest.approx(2.0, abs=0.1)
    assert written == pytest.approx(2.0, abs=0.1)
    assert count_frames(out) == 48
    silent = media["dir"] / "silent_out.mp4"
    assert mux(media["render"], silent, source=media["clip"]) is None  # a source without sound
    assert "audio" not in stream_durations(silent)
    assert count_frames(silent) == 48


def test_mux_bad_song_raises_audio_error(media, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    for bad in (corrupt, empty, tmp_path / "missing.wav", media["clip"]):  # the clip is a video without sound
        out = tmp_path / "out.mp4"
        with pytest.raises(AudioError) as err:
            mux(media["render"], out, song=bad)
        assert str(bad.name) in _one_line(err)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.wav", "empty.mp3"]


def test_mux_refuses_existing_output(media, tmp_path):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"keep")
    song = make_song(tmp_path / "s.wav", 1.0)
    with pytest.raises(OutputError):
        mux(media["render"], out, song=song)
    assert out.read_bytes() == b"keep"
    mux(media["render"], out, song=song, overwrite=True)
    assert count_frames(out) == 48


def test_no_temp_files_left_beside_outputs(media):
    names = sorted(p.name for p in media["dir"].iterdir())
    assert not [n for n in names if ".tmp" in n or n.startswith(".")]
    assert os.path.getsize(media["render"]) > 0
