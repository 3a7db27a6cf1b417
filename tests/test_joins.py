"""Segment joins do not show (issue 19): across a join a still shot changes no more than between its other frames.

A render encodes its frames in segments, each a separate x264 encode that starts on a keyframe. Joined by copying
packets, every join re-rounds a dense still picture from scratch: at crf 18 the frame after a join differs from
the one before by ~2 grey levels while other neighbours differ by ~0.01. Pieces written with ``piece=True`` and
joined by one encode (``concat(..., crf=...)``) must not show their joins. Real ffmpeg and x264, 96x64 frames.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dreamvid.errors import ConfigError
from dreamvid.video import FrameWriter, concat, iter_frames
from dreamvid.video.encode import piece_crf
from tests.media import clip_frame
from tests.test_output import SMALL, assert_reads_exactly

SIZE = (96, 64)  # (width, height)
SEG = 8  # frames per segment (the render's are 48; the pop is the same, the test is faster)
N = 3 * SEG
SLACK = 0.1  # grey levels: today's joins change by ~2, the other pairs by 0.00-0.05


def still_shot(n: int = N, *, seed: int = 0) -> list[np.ndarray]:
    """A still shot of dense dream-like texture (2-px colour blobs), with sensor noise of 0.5 grey levels a frame."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    base = cv2.resize(rng.uniform(40, 215, (h // 2, w // 2, 3)).astype(np.float32), SIZE,
                      interpolation=cv2.INTER_CUBIC)  # fmt: skip
    return [np.clip(base + rng.normal(0, 0.5, base.shape), 0, 255).round().astype(np.uint8) for _ in range(n)]


def write_segments(folder: Path, frames: list[np.ndarray], *, crf: int = 18, piece: bool,
                   fps: float | Fraction = 24, seg: int = SEG) -> list[Path]:
    """The frames in segments of ``seg``, each its own x264 encode, as the render writes them."""
    folder.mkdir(exist_ok=True)
    paths = []
    for s in range(0, len(frames), seg):
        path = folder / f"seg_{s // seg:06d}.mp4"
        with FrameWriter(path, fps=fps, size=(frames[0].shape[1], frames[0].shape[0]), crf=crf, piece=piece) as w:
            for frame in frames[s : s + seg]:
                w.write(frame)
        paths.append(path)
    return paths


def changes(path: Path) -> np.ndarray:
    """Mean absolute change between each decoded frame and the next (grey levels, channels averaged)."""
    frames = [f.astype(np.int16) for f in iter_frames(path)]
    return np.array([np.abs(b - a).mean() for a, b in itertools.pairwise(frames)])


def join_and_others(path: Path, seg: int = SEG) -> tuple[np.ndarray, np.ndarray]:
    d = changes(path)
    at_join = np.arange(1, len(d) + 1) % seg == 0  # pair k compares frames k and k + 1
    return d[at_join], d[~at_join]


@pytest.mark.parametrize("crf", [18, 28])
def test_a_still_shot_does_not_change_at_the_joins(tmp_path, crf):
    frames = still_shot()
    # today's way, copied: the measure sees each join (so the bound below can fail)
    copied = concat(write_segments(tmp_path / "copy", frames, crf=crf, piece=False), tmp_path / "copied.mp4")
    joins, others = join_and_others(copied)
    assert len(joins) == 2 and joins.min() > others.max() + SLACK + 0.5, (joins, others.max())

    pieces = write_segments(tmp_path / "pieces", frames, crf=crf, piece=True)
    out = concat(pieces, tmp_path / "out.mp4", crf=crf)
    joins, others = join_and_others(out)
    assert len(joins) == 2 and joins.max() <= others.max() + SLACK, (joins, others.max())
    assert len(others) == N - 3
    # one stream with one keyframe costs less than three keyframes copied
    assert out.stat().st_size < copied.stat().st_size


def test_batch_chunks_and_join_windows_do_not_show_either(tmp_path):
    """A batch job: each chunk's pieces copied into the chunk's output, a join window between chunks written on its
    own, and the job's outputs and windows encoded once."""
    frames = still_shot(3 * SEG + 4, seed=5)
    a = concat(write_segments(tmp_path / "a", frames[: SEG + 4], piece=True), tmp_path / "a.mp4")
    window = write_segments(tmp_path / "window", frames[SEG + 4 : SEG + 8], piece=True)
    b = concat(write_segments(tmp_path / "b", frames[SEG + 8 :], piece=True), tmp_path / "b.mp4")
    out = concat([a, *window, b], tmp_path / "out.mp4", crf=18)
    d = changes(out)
    joins = [SEG, SEG + 4, SEG + 8, 2 * SEG + 8]  # first frames of: a's 2nd piece, the window, b, b's 2nd piece
    others = np.delete(d, [j - 1 for j in joins])
    assert len(d) == len(frames) - 1
    assert d[[j - 1 for j in joins]].max() <= others.max() + SLACK, (d[[j - 1 for j in joins]], others.max())


def test_the_one_encode_keeps_the_picture(tmp_path):
    """Encoded twice (a piece, then the output), a frame is as close to its source as one crf-18 encode makes it.

    The source is the frames as 4:2:0 holds them (a lossless encode): what no H.264 output can keep is not counted.
    """
    frames = still_shot(SEG + 2, seed=1)
    source = list(iter_frames(concat(write_segments(tmp_path / "lossless", frames, crf=0, piece=False),
                                     tmp_path / "lossless.mp4")))  # fmt: skip
    once = concat(write_segments(tmp_path / "once", frames, piece=False), tmp_path / "once.mp4")
    twice = concat(write_segments(tmp_path / "twice", frames, piece=True), tmp_path / "twice.mp4", crf=18)

    def error(path):
        return np.mean([np.abs(f.astype(int) - s).mean() for f, s in zip(iter_frames(path), source, strict=True)])

    assert error(twice) <= error(once) * 1.1, (error(twice), error(once))  # ~2.3 and ~2.6 grey levels


@pytest.mark.parametrize("layout", [(48, 1), (48, 2), (48, 48, 5)])
def test_the_one_encode_reads_the_exact_fps_and_duration(tmp_path, layout):
    """Short tails (no B-frame delay) and several pieces: one stream of exactly n frames at exactly 29.97 fps."""
    fps = Fraction(30000, 1001)
    frames = [clip_frame(k, SMALL) for k in range(sum(layout))]
    paths, first = [], 0
    for i, n in enumerate(layout):
        paths += write_segments(tmp_path / f"p{i}", frames[first : first + n], fps=fps, piece=True, seg=n)
        first += n
    out = concat(paths, tmp_path / "out.mp4", crf=18)
    assert_reads_exactly(out, sum(layout), fps)


def test_the_one_encode_is_repeatable(tmp_path):
    """The same pieces give the same bytes: a resumed render publishes the file an uninterrupted one does."""
    pieces = write_segments(tmp_path / "pieces", still_shot(SEG + 3, seed=2), piece=True)
    a = concat(pieces, tmp_path / "a.mp4", crf=18)
    b = concat(pieces, tmp_path / "b.mp4", crf=18)
    assert a.read_bytes() == b.read_bytes()


def test_pieces_are_finer_than_the_output_and_lossless_ones_are_copied(tmp_path):
    assert [piece_crf(c) for c in (0, 6, 12, 13, 18, 28, 51)] == [0] * 7  # lossless: no join can show
    frames = still_shot(SEG + 2, seed=3)
    lossless = write_segments(tmp_path / "lossless", frames, crf=0, piece=True)
    out = concat(lossless, tmp_path / "out.mp4", crf=0)  # nothing to hide: copied, exactly the pieces' frames
    pieces = [f for p in lossless for f in iter_frames(p)]
    assert all(np.array_equal(a, b) for a, b in zip(iter_frames(out), pieces, strict=True))


def test_progress_bad_settings_and_a_stopped_encode(tmp_path):
    pieces = write_segments(tmp_path / "pieces", still_shot(SEG + 4, seed=4), piece=True)
    seen = []
    concat(pieces, tmp_path / "out.mp4", crf=18, on_progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (SEG + 4, SEG + 4) and all(t == SEG + 4 for _, t in seen)

    with pytest.raises(ConfigError, match="preset 'medum' is unknown.*medium"):
        concat(pieces, tmp_path / "bad.mp4", crf=18, preset="medum")
    with pytest.raises(ConfigError, match="--crf must be from 0 to 51, got 52"):  # options.check_option, the one rule
        FrameWriter(tmp_path / "bad.mp4", fps=24, size=SIZE, crf=52, piece=True)

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        concat(pieces, tmp_path / "stopped.mp4", crf=18, on_progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "pieces"]  # no output, no temporary file


def test_a_render_of_a_still_shot_shows_no_segment_join(tmp_path):
    """End to end: ``dreamvid render`` of a still shot (one photo repeated) at the default crf and preset, in
    6-frame segments: once the carried dream has settled (a few frames), the change across each segment join is
    no larger than across the shot's other pairs (copied segments: 1-3 grey levels at each join against ~0.3)."""
    from dreamvid.pipeline import RenderOptions, render
    from tests.conftest import load_example
    from tests.render_fixtures import shared_dreamer, tiny_config

    clip = tmp_path / "still.mp4"
    img = cv2.resize(load_example("coffee.png", SIZE[0]), SIZE, interpolation=cv2.INTER_AREA)
    with FrameWriter(clip, fps=24, size=SIZE, crf=0, preset="ultrafast") as w:
        for _ in range(36):
            w.write(img)
    out = tmp_path / "out.mp4"
    render(RenderOptions(input=clip, output=out, segment_frames=6, react=0), tiny_config(), shared_dreamer())
    d = changes(out)[14:]  # pairs from frame 14 on: the dream has settled
    at_join = np.arange(15, 15 + len(d)) % 6 == 0  # d[i] compares frames 14 + i and 15 + i: joins at 18, 24, 30
    assert d[at_join].max() <= d[~at_join].max() + SLACK, (d[at_join], d[~at_join])
