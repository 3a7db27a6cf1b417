"""Camera motion: the affine moves of video.flow match known transforms, and render moves footage along them."""

from __future__ import annotations

import numpy as np
import pytest

from dreamvid.config import resolve
from dreamvid.sources import camera as mover
from dreamvid.schedule import build_schedule
from dreamvid.video import compose, motion_flow, motion_matrix, warp, warp_motion


def _pattern(h=40, w=40, seed=0) -> np.ndarray:
    """A random test pattern with a bright square off-centre, uint8 RGB."""
    img = (np.random.default_rng(seed).random((h, w, 3)) * 200).astype(np.uint8)
    img[8:14, 22:30] = 255
    return img


def test_a_translate_of_3_px_moves_the_pattern_3_px():
    img = _pattern()
    right = warp_motion(img, motion_matrix((40, 40), translate=(3, 0)))
    assert np.array_equal(right[:, 3:], img[:, :-3])
    down = warp_motion(img, motion_matrix((40, 40), translate=(0, -2)))  # negative: up
    assert np.array_equal(down[:-2], img[2:])


def test_rotate_90_is_rot90_on_a_square():
    img = _pattern()
    out = warp_motion(img, motion_matrix((40, 40), rotate=90))
    assert np.abs(out.astype(int) - np.rot90(img).astype(int)).max() <= 1
    half = motion_matrix((40, 40), rotate=45)
    assert np.abs(warp_motion(img, compose(half, half)).astype(int) - np.rot90(img).astype(int)).max() <= 1


def test_zoom_2_about_the_centre_magnifies_the_middle():
    img = np.zeros((41, 41), np.float32)
    img[20, 20] = 1.0  # the centre pixel of an odd grid stays put
    img[20, 25] = 1.0  # 5 px right of it goes to 10 px right
    out = warp_motion(img[..., None], motion_matrix((41, 41), zoom=2.0))[..., 0]
    assert out[20, 20] == pytest.approx(1.0) and out[20, 30] == pytest.approx(1.0)
    assert out[20, 25] == pytest.approx(0.0)


def test_the_move_as_a_flow_field_warps_the_same_as_the_affine_warp():
    img = _pattern().astype(np.float32)
    m = motion_matrix((40, 40), zoom=1.1, rotate=12, translate=(2.5, -1))
    a = warp_motion(img, m)
    b = warp(img, motion_flow(m, (40, 40)))
    assert np.abs(a - b)[5:-5, 5:-5].max() < 0.01


def test_the_identity_is_free():
    img = _pattern()
    assert warp_motion(img, motion_matrix((40, 40))) is img
    assert np.allclose(motion_flow(np.eye(3), (40, 40)), 0)


def test_render_motion_accumulates_over_frames_and_the_pulse_stays_as_it_was():
    cfg = resolve({"motion": {"rotate": "90*(frame > 0)"}})  # an expression beyond +-45 is clipped to the range
    s = build_schedule(None, {}, base=cfg.dream, blend=0.5, n_frames=4, config=cfg, fps=10)
    assert np.array_equal(s.motion[:, 1], [0, 45, 45, 45])
    cfg = resolve({"motion": {"rotate": 45.0}})
    s = build_schedule(None, {}, base=cfg.dream, blend=0.5, n_frames=7, config=cfg, fps=10)
    move = mover(s, (40, 40))
    img = _pattern()
    assert move(0, img) is img  # the first frame is where the camera starts
    assert np.abs(move(4, img).astype(int) - np.rot90(img, 2).astype(int)).max() <= 1  # 4 frames: 180 degrees
    assert np.abs(move(6, img).astype(int) - np.rot90(img, 3).astype(int)).max() <= 1
    # without [motion], a music zoom pulse is applied as before: the frame's own zoom, not accumulated
    still = build_schedule(None, {}, base=cfg.dream, blend=0.5, n_frames=4, fps=10)
    assert not still.moving
    assert mover(still, (40, 40))(3, img) is img


def test_a_render_moves_footage_and_dream_together(tmp_path):
    """A still shot with a camera that pans 2 px a frame: each output frame is the previous one moved 2 px."""
    from dreamvid.config import resolve as _resolve
    from dreamvid.video import FrameWriter, iter_frames
    from tests.conftest import load_example
    from tests.render_fixtures import render_to, shared_dreamer

    pytest.importorskip("keras")
    import cv2

    img = cv2.resize(load_example("chelsea.png"), (64, 48), interpolation=cv2.INTER_AREA)
    clip = tmp_path / "still.mp4"
    with FrameWriter(clip, fps=10, size=(64, 48), crf=0, preset="ultrafast", overwrite=True) as w:
        for _ in range(8):
            w.write(img)
    cfg = _resolve({"dream": {"layers": "mixed3:1", "octaves": 1, "steps": 1, "step_size": 0.05},
                    "video": {"strength": 12.0}, "motion": {"translate_x": 2 / 64}})
    out = tmp_path / "out.mp4"
    report = render_to(out, clip, cfg, shared_dreamer(), crf=0)
    frames = [f.astype(np.float64) for f in iter_frames(out)]
    assert len(frames) == 8 and report["temporal_stability"] is not None
    for a, b in zip(frames[1:-1], frames[2:]):
        moved = np.abs(b[4:-4, 6:-4] - a[4:-4, 4:-6]).mean()  # b is a moved 2 px right
        still = np.abs(b[4:-4, 6:-4] - a[4:-4, 6:-4]).mean()
        assert moved < 0.5 * still, (moved, still)
    assert np.abs(frames[3] - img).mean() > 3  # it is dreamed, not just the footage
