"""Output side of dreamvid.video: exact frame rate and duration, containers, file modes, odd file names, colour tags.

Every check reads the files the way users' tools do: OpenCV (``CAP_PROP_FPS``, ``CAP_PROP_FRAME_COUNT``, a
decode), ffmpeg's own listing (``ffmpeg -i``: the stream line and the Duration line), the decoded frames'
timestamps, and the MP4's track headers (``mdhd``, ``elst``), which is where players take the frame rate from.
Segments are written straight with FrameWriter on 32x32 frames, so nothing here dreams.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dreamvid.errors import AudioError, OutputError
from dreamvid.fsutil import atomic_write_bytes
from dreamvid.video import FrameWriter, check_container, check_song, concat, count_frames, mux, stream_durations
from dreamvid.video.decode import ffmpeg_exe
from dreamvid.video.encode import fps_fraction
from tests.media import clip_frame, make_song

SMALL = (32, 32)
SEG = 48  # frames per segment, as pipeline.RenderOptions.segment_frames
FPS = {
    "23.976": Fraction(24000, 1001),
    "24": Fraction(24),
    "25": Fraction(25),
    "29.97": Fraction(30000, 1001),
    "30": Fraction(30),
    "60": Fraction(60),
}


# -- how users' tools see a file ----------------------------------------------------------------------------------
def _ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, check=False)


def listing(path: Path) -> str:
    """``ffmpeg -i``: what ffprobe and most players print."""
    return _ffmpeg("-i", f"file:{path}").stderr.decode("utf-8", "replace")


def stream_line(path: Path, kind: str = "Video", *, text: str | None = None) -> str:
    text = listing(path) if text is None else text
    lines = [ln for ln in text.splitlines() if re.search(rf"Stream #\d+:\d+.*: {kind}:", ln)]
    assert len(lines) == 1, text
    return lines[0]


def ffmpeg_fps_text(fps: Fraction) -> str:
    """How ffmpeg prints a frame rate on the stream line (libavformat/dump.c, print_fps)."""
    v = round(float(fps) * 100)
    return f"{float(fps):.2f}" if v % 100 else f"{float(fps):.0f}"


def listed_duration(path: Path, text: str | None = None) -> float:
    text = listing(path) if text is None else text
    h, m, s = re.search(r"Duration: (\d+):(\d+):(\d+\.\d+)", text).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def decoded_timestamps(path: Path, selector: str = "0:v:0") -> tuple[list[Fraction], Fraction]:
    """Start time of each decoded frame (video) or the end of the decoded sound (audio), in seconds."""
    text = _ffmpeg("-loglevel", "error", "-i", f"file:{path}", "-map", selector, "-f", "framecrc", "-").stdout
    tb, rows = Fraction(1), []
    for line in text.decode().splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            rows.append([int(v) for v in line.split(",")[1:4]])
    starts = [pts * tb for _, pts, _ in rows]
    end = max((pts + dur) * tb for _, pts, dur in rows) if rows else Fraction(0)
    return starts, end


_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"edts", b"minf", b"stbl"}


def _boxes(data: bytes) -> list[tuple[bytes, object]]:
    out, off = [], 0
    while off + 8 <= len(data):
        size, typ = struct.unpack(">I4s", data[off : off + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[off + 8 : off + 16])[0], 16
        elif size == 0:
            size = len(data) - off
        body = data[off + head : off + size]
        out.append((typ, _boxes(body) if typ in _CONTAINER_BOXES else body))
        off += size
    return out


def _child(tree, typ: bytes):
    return next(body for t, body in tree if t == typ)


def _timescale_and_duration(body: bytes) -> tuple[int, int]:  # mvhd and mdhd share this layout
    return struct.unpack(">II", body[12:20]) if body[0] == 0 else struct.unpack(">IQ", body[20:32])


def video_track_times(path: Path) -> tuple[Fraction, Fraction]:
    """(media duration from ``mdhd``, presented duration from the edit list), in seconds, of the video track."""
    moov = _child(_boxes(path.read_bytes()), b"moov")
    movie_scale, _ = _timescale_and_duration(_child(moov, b"mvhd"))
    for typ, trak in moov:
        if typ != b"trak":
            continue
        mdia = _child(trak, b"mdia")
        if _child(mdia, b"hdlr")[8:12] != b"vide":
            continue
        scale, duration = _timescale_and_duration(_child(mdia, b"mdhd"))
        elst = _child(_child(trak, b"edts"), b"elst")
        count = struct.unpack(">I", elst[4:8])[0]
        width, fmt = (12, ">I") if elst[0] == 0 else (20, ">Q")  # each entry starts with its duration
        edits = sum(struct.unpack_from(fmt, elst, 8 + i * width)[0] for i in range(count))
        return Fraction(duration, scale), Fraction(edits, movie_scale)
    raise AssertionError(f"{path} has no video track")


def assert_reads_exactly(path: Path, n: int, fps: Fraction) -> None:
    """``path`` holds n frames at exactly fps, lasting n / fps seconds, for every tool that reads it."""
    seconds = n / fps
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(float(fps), rel=1e-9), (path, n)
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == n
        decoded = 0
        while cap.read()[0]:
            decoded += 1
        assert decoded == n
    finally:
        cap.release()
    text = listing(path)
    line = stream_line(path, text=text)
    assert f" {ffmpeg_fps_text(fps)} fps," in line, (n, line)
    assert abs(listed_duration(path, text) - float(seconds)) <= 0.005 + 1e-9  # printed to the nearest 1/100 s
    media, presented = video_track_times(path)
    assert media == seconds, (n, float(media), float(seconds))  # the mdhd the bug made too long
    assert abs(presented - seconds) <= Fraction(1, 1000)
    starts, end = decoded_timestamps(path)
    assert starts == [k / fps for k in range(n)]
    assert end == seconds


def write_segment(path: Path, n: int, fps: Fraction, first: int = 0, preset: str = "medium") -> Path:
    """n frames of a panning texture (x264 uses B-frames on it), 32x32."""
    with FrameWriter(path, fps=fps, size=SMALL, preset=preset, crf=30) as writer:
        for k in range(first, first + n):
            writer.write(clip_frame(k, SMALL))
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# -- 1. exact frame rate and duration -----------------------------------------------------------------------------
@pytest.mark.parametrize("rate", list(FPS))
def test_joined_segments_read_the_exact_fps_and_duration(tmp_path, rate):
    """Render lengths 1 … 97 as the pipeline joins them (segments of 48 and a tail), at each usual frame rate.

    A tail of one or two frames has no B-frame delay; the join used to leave a three-frame step in the decode
    times, so the video track's mdhd grew by two frames (48 + 2 at 25 fps read 24.04 fps).
    """
    fps = FPS[rate]
    full = write_segment(tmp_path / "full.mp4", SEG, fps)
    tails = {m: write_segment(tmp_path / f"tail{m}.mp4", m, fps, first=SEG) for m in (1, 2, 47)}
    layouts = {
        1: [tails[1]],
        2: [tails[2]],
        47: [tails[47]],
        48: [full],
        49: [full, tails[1]],
        50: [full, tails[2]],
        97: [full, full, tails[1]],
    }
    for n, parts in layouts.items():
        out = concat(parts, tmp_path / f"joined{n}.mp4")
        assert_reads_exactly(out, n, fps)
    # a short segment first and a long one after (not what the pipeline writes, but concat must not care)
    assert_reads_exactly(concat([tails[2], full], tmp_path / "short_first.mp4"), 2 + SEG, fps)


SONG_FORMATS = {  # suffix: (ffmpeg arguments, frame rate of the video it goes with)
    "wav": ([], "23.976"),
    "flac": ([], "24"),
    "ogg": (["-c:a", "libvorbis"], "25"),
    "mp3": (["-c:a", "libmp3lame"], "29.97"),
    "m4a": (["-c:a", "aac"], "60"),
}


@pytest.mark.parametrize("fmt", list(SONG_FORMATS))
def test_song_keeps_the_exact_fps_and_duration(tmp_path, fmt):
    """A 48 + 2 frame video with a longer, a shorter and a looped song: the video reads exactly as without sound,
    the sound never runs past the last frame, and the file lasts frames / fps seconds."""
    args, rate = SONG_FORMATS[fmt]
    fps, n = FPS[rate], SEG + 2
    seconds = n / fps
    video = concat(
        [write_segment(tmp_path / "a.mp4", SEG, fps), write_segment(tmp_path / "b.mp4", 2, fps, first=SEG)],
        tmp_path / "video.mp4",
    )
    songs = {}
    for name, length in (("long", 3.0), ("short", 0.7)):
        wav = make_song(tmp_path / f"{name}.wav", length, sr=44100)
        songs[name] = wav if fmt == "wav" else tmp_path / f"{name}.{fmt}"
        if fmt != "wav":
            _ffmpeg("-loglevel", "error", "-i", str(wav), *args, str(songs[name]))
    sample = Fraction(1, 44100)
    for case, song, loop, expected in (
        ("longer", songs["long"], False, seconds),
        ("shorter", songs["short"], False, Fraction(7, 10)),
        ("looped", songs["short"], True, seconds),
    ):
        out = tmp_path / f"{case}.mp4"
        written = mux(video, out, song=song, loop_song=loop)
        assert_reads_exactly(out, n, fps)
        _, audio_end = decoded_timestamps(out, "0:a:0")
        assert audio_end <= seconds, case  # the sound never makes the file longer than its frames
        tol = 2 * sample if case != "shorter" else Fraction(1, 200)  # lossy codecs pad the end of a short song
        assert abs(audio_end - expected) <= tol, (case, float(audio_end), float(expected))
        assert written == pytest.approx(float(audio_end), abs=1e-6)
        assert "Audio: aac" in stream_line(out, "Audio")


def test_typed_frame_rates_are_the_exact_ntsc_fractions(tmp_path):
    assert fps_fraction(29.97) == Fraction(30000, 1001)
    assert fps_fraction(23.976) == Fraction(24000, 1001)
    assert fps_fraction(59.94) == Fraction(60000, 1001)
    assert fps_fraction(30000 / 1001) == Fraction(30000, 1001)
    assert fps_fraction(25.0) == 25 and fps_fraction(12.5) == Fraction(25, 2)
    assert fps_fraction(Fraction(2997, 100)) == Fraction(2997, 100)  # a Fraction is taken as it is
    out = write_segment(tmp_path / "typed.mp4", 3, 29.97)
    assert_reads_exactly(out, 3, Fraction(30000, 1001))


# -- 2. the container is known before the first frame ------------------------------------------------------------
def test_output_container_is_checked_before_any_work(tmp_path):
    for good in ("a.mp4", "b.MOV", "c.m4v", "d.mkv"):
        assert check_container(tmp_path / good) == tmp_path / good
    messages = {}
    for bad in ("out", "out.webm", "out.gif"):
        with pytest.raises(OutputError) as err:
            check_container(tmp_path / bad)
        messages[bad] = _one_line(err)
    assert "no file extension" in messages["out"] and "out.mp4" in messages["out"]
    assert ".webm" in messages["out.webm"] and ".gif" in messages["out.gif"]

    video = write_segment(tmp_path / "v.mp4", 3, Fraction(25), preset="ultrafast")
    with pytest.raises(OutputError):
        mux(video, tmp_path / "out.webm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.parametrize("suffix", [".mov", ".m4v", ".mkv"])
def test_every_accepted_container_is_written(tmp_path, suffix):
    video = write_segment(tmp_path / "v.mp4", 5, Fraction(25), preset="ultrafast")
    song = make_song(tmp_path / "s.wav", 1.0)
    out = tmp_path / f"out{suffix}"
    assert mux(video, out, song=song) == pytest.approx(0.2, abs=1e-4)
    assert count_frames(out) == 5
    assert f" {ffmpeg_fps_text(Fraction(25))} fps," in stream_line(out)


def test_render_fails_on_the_container_or_the_song_before_reading_anything(tmp_path):
    """The input does not even exist: the container and the song must be what fails, and at once."""
    from dreamvid.errors import InputError, VideoError
    from dreamvid.pipeline import RenderOptions, render
    from tests.render_fixtures import tiny_config

    cfg = tiny_config()
    started = []
    missing = tmp_path / "missing.mp4"
    for out in ("out", "out.webm", "out.gif"):
        with pytest.raises(OutputError) as err:
            render(RenderOptions(input=missing, output=tmp_path / out), cfg, None, on_start=started.append)
        assert "missing" not in _one_line(err)
    bad_song = tmp_path / "song.mp3"
    bad_song.write_bytes(b"not audio at all " * 100)
    with pytest.raises(AudioError) as err:
        render(RenderOptions(input=missing, output=tmp_path / "o.mp4", song=bad_song), cfg, None, on_start=started.append)
    assert "song.mp3" in _one_line(err)
    with pytest.raises((InputError, VideoError)):  # with both right, the missing input is what fails
        render(RenderOptions(input=missing, output=tmp_path / "o.mp4"), cfg, None, on_start=started.append)
    assert started == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mp3"]


def test_check_song_reads_songs_the_way_the_mux_does(tmp_path):
    wav = make_song(tmp_path / "song.wav", 1.5)
    good = [wav]
    for suffix, args in (("flac", []), ("ogg", ["-c:a", "libvorbis"]), ("mp3", []), ("m4a", ["-c:a", "aac"])):
        good.append(tmp_path / f"song.{suffix}")
        _ffmpeg("-loglevel", "error", "-i", str(wav), *args, str(good[-1]))
    for song in good:
        assert check_song(song) == song
    silent_video = write_segment(tmp_path / "silent.mp4", 3, Fraction(25), preset="ultrafast")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mp3"
    text.write_text("la la la\n" * 200)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    no_samples = make_song(tmp_path / "no_samples.wav", 0.0)  # a valid WAV header and nothing after it
    reasons = {}
    for bad in (corrupt, text, empty, silent_video, tmp_path / "missing.wav", no_samples):
        with pytest.raises(AudioError) as err:
            check_song(bad)
        reasons[bad.name] = _one_line(err)
        assert bad.name in reasons[bad.name]
    assert "no audio stream" in reasons["silent.mp4"]
    assert "does not exist" in reasons["missing.wav"] and "empty" in reasons["empty.flac"]
    assert "no audio" in reasons["no_samples.wav"]
    with pytest.raises(AudioError):  # looping nothing must fail at once, not loop forever
        mux(silent_video, tmp_path / "out.mp4", song=no_samples, loop_song=True)
    assert not (tmp_path / "out.mp4").exists()


def test_source_audio_keeps_the_exact_fps_and_duration(tmp_path):
    """Without a song, the clip's own sound from ``start`` on: cut at the last frame, and the video exact."""
    from tests.media import make_clip

    fps, n = FPS["24"], SEG + 2
    source = make_clip(tmp_path / "source.mp4", n=72, size=SMALL, fps=24.0, audio=True)  # 3.0 s with a tone
    video = concat(
        [write_segment(tmp_path / "a.mp4", SEG, fps), write_segment(tmp_path / "b.mp4", 2, fps, first=SEG)],
        tmp_path / "video.mp4",
    )
    for start, expected in ((0.5, n / fps), (2.0, Fraction(1))):  # the tone ends 1 s after 2.0 s
        out = tmp_path / f"from{start}.mp4"
        written = mux(video, out, source=source, start=start)
        assert_reads_exactly(out, n, fps)
        _, end = decoded_timestamps(out, "0:a:0")
        assert abs(end - expected) <= Fraction(1, 100) and end <= n / fps
        assert written == pytest.approx(float(end), abs=1e-6)
    warnings = []
    late = tmp_path / "late.mp4"
    assert mux(video, late, source=source, start=5.0, on_warning=warnings.append) is None
    assert len(warnings) == 1 and "ends before 5 s" in warnings[0]
    assert_reads_exactly(late, n, fps)
    assert "Audio:" not in listing(late)


# -- 3. normal file modes -----------------------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_mode_a_normal_write_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        seg = write_segment(tmp_path / "seg.mp4", 3, Fraction(25), preset="ultrafast")
        joined = concat([seg, seg], tmp_path / "joined.mp4")
        muxed = tmp_path / "out.mp4"
        mux(joined, muxed, song=make_song(tmp_path / "s.wav", 0.5))
        silent = tmp_path / "silent.mp4"
        mux(joined, silent)
        report = atomic_write_bytes(tmp_path / "report.json", b"{}")
        with open(tmp_path / "plain.txt", "w") as f:  # what a normal write gives
            f.write("x")
    finally:
        os.umask(old)
    for path in (seg, joined, muxed, silent, report, tmp_path / "plain.txt"):
        assert path.stat().st_mode & 0o777 == mode, path.name


# -- 4. every path handed to ffmpeg is unambiguous ------------------------------------------------------------------
# A colon and a leading - matter where they start a name; the rest are in one name together.
ODD_NAMES = ["take:2", "-dash", "#1 it's \"two\" [x] ünï·日本"]


def test_odd_file_names_reach_ffmpeg_intact(tmp_path, monkeypatch):
    """Relative names, as a user types them: a colon reads as a protocol and a leading - as an option unless
    every path carries ``file:``; quotes must survive the concat listing."""
    monkeypatch.chdir(tmp_path)
    wav = make_song(tmp_path / "plain.wav", 1.0)
    fps = Fraction(25)
    for name in ODD_NAMES:
        segs = [write_segment(Path(f"{name}.{i}.mp4"), 3, fps, first=3 * i, preset="ultrafast") for i in range(2)]
        joined = concat(segs, Path(f"{name}.joined.mp4"))
        song = Path(f"{name}.wav")
        song.write_bytes(wav.read_bytes())
        assert check_song(song) == song
        out = Path(f"{name}.mp4")
        assert mux(joined, out, song=song) == pytest.approx(6 / 25, abs=1e-4)
        assert count_frames(out) == 6
        assert stream_durations(out) == pytest.approx({"video": 0.24, "audio": 0.24}, abs=0.011)
        assert f" {ffmpeg_fps_text(fps)} fps," in stream_line(tmp_path / out)
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert leftovers == []


# -- 5. colour tags -------------------------------------------------------------------------------------------------
def test_outputs_are_tagged_bt709_and_converted_with_its_matrix(tmp_path):
    red = np.zeros((*SMALL, 3), np.uint8)
    red[...] = (255, 0, 0)
    seg = tmp_path / "red.mp4"
    with FrameWriter(seg, fps=25, size=SMALL, crf=0, preset="ultrafast") as writer:
        writer.write(red)
        writer.write(red)
    joined = concat([seg, seg], tmp_path / "joined.mp4")
    out = tmp_path / "out.mp4"
    mux(joined, out, song=make_song(tmp_path / "s.wav", 1.0))
    for path in (seg, joined, out):
        assert "yuv420p(tv, bt709, progressive)" in stream_line(path), stream_line(path)  # range, matrix/prim/trc
    # the tag matches the numbers: pure red has luma 16 + 219 * 0.2126 = 63 in BT.709 (BT.601 would give 81)
    luma = _ffmpeg("-loglevel", "error", "-i", str(seg), "-frames:v", "1", "-c:v", "rawvideo", "-f", "rawvideo", "-")
    assert abs(int(np.frombuffer(luma.stdout, np.uint8)[: SMALL[0] * SMALL[1]].mean()) - 63) <= 1
    ok, bgr = cv2.VideoCapture(str(out)).read()
    assert ok and np.abs(bgr[..., ::-1].astype(int) - red).max() <= 3  # and it decodes back to red
