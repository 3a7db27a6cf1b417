"""Temporal coherence (dreamvid.coherence): the anchor, the masks and the governor, on tiny moving clips.

The clips are windows moving over a real photo, so the true motion is known; the dreams use the trained weights,
1–2 octaves and 2–3 steps, so each test runs in seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from dreamvid.coherence import Coherence, photometric_mask
from dreamvid.config import DreamParams, VideoParams, parse_layers, resolve
from dreamvid.metrics import StabilityMeter, StrengthMeter
from dreamvid.video import MotionTracker, flow_pair, warp

from .conftest import load_example, needs_weights

PARAMS = DreamParams(layers=parse_layers("mixed3:1"), octaves=2, octave_scale=1.4, steps=3, step_size=0.03,
                     jitter=8, tile_size=512, tile_overlap=32)


def pan(n: int, *, size: int = 96, speed: float = 2.0, photo: str = "coffee.png") -> list[np.ndarray]:
    """``n`` frames of a ``size``² window panning right over a real photo, ``speed`` px per frame."""
    img = load_example(photo, 320)
    frames = []
    for k in range(n):
        x = int(round(10 + speed * k)) % (img.shape[1] - size)
        frames.append(np.ascontiguousarray(img[20 : 20 + size, x : x + size]))
    return frames


def render(dreamer, frames, video: VideoParams, *, params=PARAMS, targets=None):
    """The render loop in miniature (what pipeline.render does per frame: the motion tracker, the dream, the
    measures): ``(StabilityMeter, per-frame strength, outputs)``."""
    coh = Coherence(video)
    tracker = MotionTracker(video)
    stab, strength = StabilityMeter(), StrengthMeter()
    per_frame, outs = [], []
    prev_src = prev_out = None
    for k, src in enumerate(frames):
        flows = tracker.push(src)
        target = targets[k] if targets is not None else video.strength
        out, plan = coh.dream(dreamer, src, prev_src, prev_out, params, flows=flows, target=target)
        if prev_src is not None:
            stab.update(prev_src, src, prev_out, out)
        per_frame.append(strength.update(src, out))
        outs.append(out)
        prev_src, prev_out = src, out
    return stab, np.array(per_frame), outs


def noisy(frame: np.ndarray, k: int, sigma: float = 1.5) -> np.ndarray:
    """``frame`` with fresh sensor noise of ``sigma`` grey levels (frame ``k``'s own)."""
    rng = np.random.default_rng(500 + k)
    return np.clip(np.rint(frame + rng.normal(0.0, sigma, frame.shape)), 0, 255).astype(np.uint8)


def test_photometric_mask_is_one_where_colours_agree_and_falls_where_they_differ():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[:4] = 160  # a lighting change of 60 levels in every channel
    m = photometric_mask(a, b, alpha=50.0)
    assert m.shape == (8, 8) and m.dtype == np.float32
    assert np.allclose(m[4:], 1.0)
    expected = math.exp(-50.0 * 3 * (60 / 255) ** 2)
    assert np.allclose(m[:4], expected, rtol=1e-4)
    assert np.all(photometric_mask(a, b, alpha=0.0) == 1.0)


def test_video_keys_are_validated_with_clear_errors():
    from dreamvid.errors import ConfigError

    cfg = resolve({"video": {"coherence": "anchor", "anchor": 2, "gain_limits": [0.25, 3]}})
    assert cfg.video.anchor == 2.0 and cfg.video.gain_limits == (0.25, 3.0)
    with pytest.raises(ConfigError, match="video.coherence"):
        resolve({"video": {"coherence": "glue"}})
    with pytest.raises(ConfigError, match="video.gain_limits"):
        resolve({"video": {"gain_limits": [2, 3]}})


@needs_weights
def test_the_anchor_lowers_the_warping_error_against_blending_at_equal_strength(dreamer):
    frames = pan(16)
    target = 12.0
    blend = VideoParams(coherence="blend", blend=0.7, strength=target)
    anchor = VideoParams(coherence="anchor", strength=target)
    stab_blend, s_blend, _ = render(dreamer, frames, blend)
    stab_anchor, s_anchor, _ = render(dreamer, frames, anchor)
    stab_blend, stab_anchor = stab_blend.value, stab_anchor.value
    # equal strength (the governor holds both at the target), so the comparison is fair
    assert abs(s_blend[2:].mean() - target) < 0.15 * target
    assert abs(s_anchor[2:].mean() - target) < 0.15 * target
    assert stab_anchor < 0.6 * stab_blend, (stab_anchor, stab_blend)


@needs_weights
def test_the_governor_holds_strength_within_15_percent_of_its_target_over_100_frames(dreamer):
    frames = pan(100, speed=1.5)
    targets = 10.0 + 4.0 * np.sin(np.arange(100) / 8.0)  # a target that moves, as the music's does
    _, per_frame, _ = render(dreamer, frames, VideoParams(strength=10.0), targets=targets)
    err = np.abs(per_frame - targets) / targets
    assert err.max() < 0.15, (err.argmax(), err.max())
    assert np.corrcoef(per_frame, targets)[0, 1] > 0.95


@needs_weights
def test_a_still_shot_holds_still_through_its_noise(dreamer):
    """A locked-off camera: one photo with fresh sensor noise on every frame. Carried along the raw flow, which
    DIS measures anew in the noise on every frame, the dream swims; carried along the tracker's motion it holds:
    the output changes on still pixels hardly more than the footage itself does."""
    frames = [noisy(pan(1)[0], k) for k in range(10)]
    held, per_frame, outs = render(dreamer, frames, VideoParams(strength=12.0))
    swam, _, _ = render(dreamer, frames, VideoParams(strength=12.0, motion_window=0))
    assert per_frame[-1] > 10.0  # a real dream, not the footage
    noise = held.still_change_source  # the footage's own change there
    assert held.still_change - noise < 0.03, (held.still_change, noise)
    assert swam.still_change - noise > 3 * (held.still_change - noise) + 0.05, (swam.still_change, noise)


@needs_weights
def test_a_slow_pan_keeps_the_dream_glued_to_it(dreamer):
    """0.4 px a frame: the dream moves with the footage (a snap of sub-pixel flow to zero would leave it behind)."""
    img = load_example("coffee.png", 320).astype(np.float32)
    frames = []
    for k in range(10):
        m = np.float32([[1, 0, -40 - 0.4 * k], [0, 1, -20]])
        frames.append(noisy(cv2.warpAffine(img, m, (96, 96), flags=cv2.INTER_CUBIC), k))
    _, _, outs = render(dreamer, frames, VideoParams(strength=12.0))
    true = np.zeros((96, 96, 2), np.float32)
    true[..., 0] = 0.4  # frame k's pixel x was at x + 0.4 in frame k − 1

    def change(flow):  # the output's mean change along a motion
        inner = (slice(8, -8), slice(8, -8))
        return np.mean([np.abs(outs[k].astype(np.float32) - warp(outs[k - 1], flow))[inner].mean()
                        for k in range(4, 10)])

    # glued: the dream changes half as much along the pan as in place (3.5 against 7.4 grey levels); a dream
    # snapped to zero flow does the opposite (7.4 against 3.8), the raw flow is glued too but swims on still shots
    assert change(true) < 0.6 * change(np.zeros_like(true)), (change(true), change(np.zeros_like(true)))


@needs_weights
def test_no_brightness_or_saturation_drift_over_200_frames(dreamer):
    frames = pan(200, speed=1.0, size=80)
    params = PARAMS.replace(octaves=1, steps=2)
    _, per_frame, outs = render(dreamer, frames, VideoParams(strength=12.0), params=params)

    def brightness(k):
        return float(outs[k].mean()) - float(frames[k].mean())

    def saturation(img):
        return float((img.max(axis=2).astype(int) - img.min(axis=2)).mean())

    early = np.mean([brightness(k) for k in range(5, 25)])
    late = np.mean([brightness(k) for k in range(180, 200)])
    assert abs(late - early) < 3.0, (early, late)
    sat_early = np.mean([saturation(outs[k]) - saturation(frames[k]) for k in range(5, 25)])
    sat_late = np.mean([saturation(outs[k]) - saturation(frames[k]) for k in range(180, 200)])
    assert abs(sat_late - sat_early) < 4.0, (sat_early, sat_late)
    assert abs(per_frame[180:].mean() - 12.0) < 0.15 * 12.0


@needs_weights
def test_disoccluded_pixels_dream_fresh_instead_of_smearing(dreamer):
    """Where the flow cannot be trusted the anchor lets go: a scene cut's new frame carries nothing of the old."""
    a, b = pan(1, photo="coffee.png")[0], pan(1, photo="chelsea.png")[0]
    coh = Coherence(VideoParams(strength=12.0))
    out_a, _ = coh.dream(dreamer, a, None, None, PARAMS, flows=None)
    flows = flow_pair(b, a)
    plan = coh.plan(b, a, out_a, flows=flows)
    # the cat does not match the coffee cup: almost no pixel passes the consistency and photometric masks
    assert plan.anchor is not None and plan.anchor.weight.mean() < 0.3
    out_b, plan_cut = coh.dream(dreamer, b, a, out_a, PARAMS, flows=flows, cut=True)
    assert plan_cut.anchor is None and not plan_cut.carried


def test_frame_warp_blend_weights_every_channel_alike():
    """coherent_init's frame mode is (1 − w)·src + w·warp(prev_dream) in all three channels (OpenCV 4.x turned a
    Python scalar 1.0 into (1, 0, 0, 0), so two channels got −w)."""
    from dreamvid.video import coherent_init

    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    prev_dream = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    zero = np.zeros((24, 32, 2), np.float32)
    init, mask = coherent_init(src, src, prev_dream, mode="frame", blend=0.5, flows=(zero, zero))
    w = 0.5 * mask[..., None]
    expected = np.clip(np.rint((1 - w) * src + w * prev_dream), 0, 255)
    assert np.abs(init.astype(int) - expected).max() <= 1


# -- in the render ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory):
    from dreamvid.video import FrameWriter

    path = tmp_path_factory.mktemp("coherence") / "pan.mp4"
    with FrameWriter(path, fps=25.0, size=(96, 96), crf=10, preset="ultrafast") as w:
        for frame in pan(14, speed=1.5):
            w.write(frame)
    return path


def _render(dreamer, clip, out, audio: dict | None = None, video: dict | None = None):
    from dreamvid import presets
    from dreamvid.pipeline import RenderOptions, render

    cfg = resolve(presets.load("lysergic"), {"dream": {"octaves": 2, "steps": 2, "layers": "mixed3:1,mixed5:1"},
                                             "audio": audio or {}, "video": video or {}}, preset="lysergic")
    song = Path(__file__).resolve().parents[1] / "examples" / "groove.wav"
    return render(RenderOptions(input=clip, output=out, song=song, x264_preset="ultrafast"), cfg, dreamer)


@needs_weights
def test_the_report_measures_dream_gain_and_sync_against_the_songs_level(dreamer, pan_clip, tmp_path):
    report = _render(dreamer, pan_clip, tmp_path / "a.mp4")
    assert report["dream_gain"] is not None and report["dream_gain"] > 1.05  # the frames are dreamier than the footage
    assert -1.0 <= report["audio_sync"] <= 1.0
    assert report["config"]["video"]["coherence"] == "anchor"
    assert 1.0 <= report["temporal_stability"] < 20.0  # a finite ratio (tiny frames: the unit tests compare modes)


@needs_weights
def test_a_zoom_pulse_moves_footage_and_dream_together(dreamer, pan_clip, tmp_path):
    """A beat's zoom applies to the footage before the flow is measured, so the carried dream stays aligned:
    the warping error barely changes, where zooming the carried dream alone broke the alignment on every hit."""
    calm = _render(dreamer, pan_clip, tmp_path / "calm.mp4", audio={"pulse_zoom": 0.0})
    pulsed = _render(dreamer, pan_clip, tmp_path / "pulsed.mp4", audio={"pulse_zoom": 0.06, "pulse": "onset"})
    assert pulsed["temporal_stability"] < 1.3 * calm["temporal_stability"], (pulsed, calm)
