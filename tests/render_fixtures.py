"""Helpers shared by test_render.py and test_cli_render.py: tiny clips and songs, a tiny config, one Dreamer.

Everything is small so the render tests stay fast on a 2-core machine: 64x48 clips of 12-24 frames,
one octave and one gradient step per frame, random weights (no file, never the ImageNet download).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from dreamvid import presets
from dreamvid.config import Config, resolve
from dreamvid.pipeline import RenderOptions, render, report_path_for
from dreamvid.video import iter_frames
from tests.media import make_clip, make_song

SIZE = (64, 48)  # (width, height)
FPS = 24.0
N = 16  # frames of the standard clip: 0.667 s at 24 fps
NTSC = 30000 / 1001
TINY = {"octaves": 1, "steps": 1}
SECOND_AUDIO_TOL = 0.06  # AAC frames are 1024 samples (23 ms at 44.1 kHz) and carry priming/padding


def tiny_config(preset: str = "lysergic", *, video: dict | None = None, dream: dict | None = None) -> Config:
    """The preset (its [audio] table included) with one octave and one step, plus ``video``/``dream`` overrides."""
    return resolve(presets.load(preset), {"dream": {**TINY, **(dream or {})}, "video": video or {}}, preset=preset)


@functools.cache
def shared_dreamer():
    """One Dreamer with random weights per process: the model and its compiled step are built once."""
    from dreamvid.dream import Dreamer

    return Dreamer(weights="random", seed=0)


@pytest.fixture(scope="module")
def rdreamer(request):
    """The session's random-weights Dreamer from conftest if there is one, else this module's own."""
    try:
        return request.getfixturevalue("random_dreamer")
    except pytest.FixtureLookupError:
        return shared_dreamer()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Tiny clips and songs, written once per module."""
    d = tmp_path_factory.mktemp("render_media")
    return {
        "dir": d,
        "clip": make_clip(d / "clip.mp4", n=N, size=SIZE, fps=FPS),  # silent, 0.667 s
        "ntsc": make_clip(d / "ntsc.mp4", n=12, size=SIZE, fps=NTSC),  # 29.97 fps
        "voiced": make_clip(d / "voiced.mp4", n=24, size=SIZE, fps=FPS, audio=True),  # 1.0 s with a 440 Hz tone
        "cut": make_clip(d / "cut.mp4", n=12, size=SIZE, fps=FPS, cut_at=6),  # a scene cut at frame 6
        "song": make_song(d / "song.wav", 2.0, kind="beats"),  # longer than the clip
        "song_b": make_song(d / "song_b.wav", 2.0, kind="noise"),  # another song, as long
        "short": make_song(d / "short.wav", 0.3, kind="beats"),  # shorter than the clip
    }


def render_to(out: Path, clip: Path, config: Config, dreamer, *, on_frame=None, **options) -> dict:
    """Run the library's render with a fast encoder; returns the report."""
    opts = RenderOptions(input=clip, output=out, x264_preset=options.pop("x264_preset", "ultrafast"), **options)
    return render(opts, config, dreamer, on_frame=on_frame)


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a (tiny) video, uint8 RGB."""
    return list(iter_frames(path))


def read_report(output: Path) -> dict:
    path = report_path_for(output)
    assert path.is_file(), f"no report beside {output}"
    return json.loads(path.read_text())
