"""The clip's own sound stays where it was against the picture: clicks on streams that start apart.

Each source has a click every second (10 ms of 1 kHz) on an audio stream that starts 0.48 s after its video (or
0.3 s before it), in the containers where streams that start apart are common: MP4 (AAC), MPEG-TS (MP2) and
Matroska (Vorbis). The render's silent video is made from the source's own frames, the clip's sound is muxed in
(``video.mux(..., source=...)``, from frame 0 or from ``start``), and the click times are measured in the output
against its first video frame, by decoding: the first decoded audio sample's timestamp plus the sample index of
each click. A constant tone, which the older tests used, cannot tell an offset.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamvid.video import FrameWriter, iter_frames, mux, probe
from dreamvid.video.decode import ffmpeg_exe

FPS = 25
SECONDS = 4
CLICK = 1000.0  # Hz, 10 ms every second from the audio stream's own start


def _ff(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", *args],
                          capture_output=True, check=True).stdout


def _first_time(path: Path, selector: str, codec: str) -> float:
    """The earliest timestamp (seconds, the file's own clock) of a stream's packets (``copy``) or decoded frames."""
    text = _ff("-copyts", "-i", f"file:{path}", "-map", selector, "-c", codec, "-f", "framecrc", "pipe:1").decode()
    tb = Fraction(1)
    pts = []
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            pts.append(int(line.split(",")[2]))
    return float(min(pts) * tb)


def click_times(path: Path, sr: int = 48000) -> list[float]:
    """Where each click starts, in seconds after the first video frame."""
    pcm = np.frombuffer(_ff("-i", f"file:{path}", "-map", "0:a:0", "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"),
                        np.float32)
    onsets: list[int] = []
    for i in np.flatnonzero(np.abs(pcm) > 0.2):
        if not onsets or i - onsets[-1] > sr // 3:
            onsets.append(int(i))
    shift = _first_time(path, "0:a:0", "pcm_f32le") - _first_time(path, "0:v:0", "copy")
    return [i / sr + shift for i in onsets]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[Path, float]]:
    """name -> (clip, where its audio starts against its video, in seconds)."""
    d = tmp_path_factory.mktemp("av")
    sr = 48000
    clicks = np.zeros(SECONDS * sr, np.float32)
    burst = 0.8 * np.sin(2 * np.pi * CLICK * np.arange(sr // 100) / sr)
    for k in range(SECONDS):
        clicks[k * sr : k * sr + burst.size] = burst
    sf.write(d / "clicks.wav", clicks, sr, subtype="PCM_16")
    video = d / "video.mp4"
    _ff("-f", "lavfi", "-i", f"testsrc2=size=96x64:rate={FPS}:duration={SECONDS + 1}", "-c:v", "libx264",
        "-preset", "ultrafast", "-pix_fmt", "yuv420p", f"file:{video}")
    out = {}
    for name, audio, offset in (("late.mp4", "aac", 0.48), ("late.ts", "mp2", 0.48), ("late.mkv", "libvorbis", 0.48),
                                ("early.mp4", "aac", -0.3)):
        clip = d / name
        if offset >= 0:
            inputs = ["-i", f"file:{video}", "-itsoffset", str(offset), "-i", f"file:{d / 'clicks.wav'}"]
        else:
            inputs = ["-itsoffset", str(-offset), "-i", f"file:{video}", "-i", f"file:{d / 'clicks.wav'}"]
        _ff(*inputs, "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", audio, f"file:{clip}")
        out[name] = (clip, offset)
    return out


def _render(source: Path, out: Path, first: int) -> Path:
    """What a render writes before the mux: the source's frames from ``first`` on, re-encoded, silent."""
    info = probe(source)
    with FrameWriter(out, fps=info.fps, size=(info.width, info.height), crf=18, preset="ultrafast") as writer:
        for frame in iter_frames(source, first=first, info=info):
            writer.write(frame)
    return out


@pytest.mark.parametrize("name", ["late.mp4", "late.ts", "late.mkv", "early.mp4"])
def test_the_measure_sees_the_offset_in_the_sources(sources, name):
    clip, offset = sources[name]
    assert click_times(clip) == pytest.approx([offset + k for k in range(SECONDS) if offset + k >= -1], abs=0.002)


@pytest.mark.parametrize("name", ["late.mp4", "late.ts", "late.mkv", "early.mp4"])
@pytest.mark.parametrize("start", [0.0, 1.3])
def test_the_clips_own_sound_keeps_its_place_against_the_picture(sources, tmp_path, name, start):
    """Every click comes with the frame it came with in the source (today's mux put each one 0.48 s early: it
    counted samples from the audio stream's first one, not its timestamps), from frame 0 or from ``start``."""
    clip, offset = sources[name]
    first = round(start * FPS)  # the render starts at the frame nearest to start
    out = tmp_path / "out.mp4"
    written = mux(_render(clip, tmp_path / "silent.mp4", first), out, source=clip, start=start)
    duration = probe(out).duration
    want = [offset + k - first / FPS for k in range(SECONDS)]
    want = [t for t in want if 0 <= t < duration - 0.02]
    assert click_times(out) == pytest.approx(want, abs=0.003)
    assert written == pytest.approx(min(duration, offset + SECONDS - first / FPS), abs=0.03)


def test_a_song_still_starts_with_the_first_frame(sources, tmp_path):
    """Songs are muxed as before: from their first sample, at the first frame."""
    clip, _ = sources["late.mp4"]
    song = clip.parent / "clicks.wav"  # the clicks alone: the first at 0 s in the song
    out = tmp_path / "out.mp4"
    mux(_render(clip, tmp_path / "silent.mp4", 0), out, song=song)
    assert click_times(out) == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.003)
