"""Tests of dreamvid.metrics on synthetic frames (no files)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from dreamvid.metrics import Measures, StabilityMeter, StrengthMeter, measure_flows, pair_maps, pearson
from dreamvid.video.flow import warp
from tests.media import texture

SIZE = (96, 64)


def _pan(i: int, speed=(1.5, 0.5)) -> np.ndarray:
    return texture(SIZE, seed=1, shift=(speed[0] * i, speed[1] * i))


def _noisy_still(i: int, sigma: float = 1.0) -> np.ndarray:
    """One texture, with fresh noise of ``sigma`` grey levels on every frame: a locked-off camera."""
    rng = np.random.default_rng(100 + i)
    base = texture(SIZE, seed=3).astype(np.float32)
    return np.clip(np.rint(base + rng.normal(0.0, sigma, base.shape)), 0, 255).astype(np.uint8)


def _run(meter: StabilityMeter, outputs, n: int = 8, source=_pan) -> StabilityMeter:
    prev = None
    for i in range(n):
        src = source(i)
        out = outputs(i, src)
        if prev is not None:
            meter.update(prev[0], src, prev[1], out)
        prev = (src, out)
    return meter


def test_stability_of_a_coherent_output_is_about_one():
    # The "dream" moves exactly with the footage: an inverted source, or another texture panned the same way.
    inverted = _run(StabilityMeter(), lambda i, src: 255 - src)
    carried = _run(StabilityMeter(), lambda i, src: texture(SIZE, seed=7, shift=(1.5 * i, 0.5 * i)))
    assert inverted.value == pytest.approx(1.0, abs=0.05)
    assert inverted.moving_value == pytest.approx(1.0, abs=0.05)  # every pixel moves 1.6 px a frame
    assert 0.7 < carried.value < 1.5 and 0.7 < carried.moving_value < 1.5
    assert math.isnan(inverted.still_change)  # nothing stands still in a pan


def test_stability_of_flickering_or_frozen_output_is_much_worse():
    rng = np.random.default_rng(0)

    def noisy(i, src):
        return np.clip(src.astype(int) + rng.integers(-30, 31, src.shape), 0, 255).astype(np.uint8)

    meter = _run(StabilityMeter(), noisy)
    assert meter.value > 5 and meter.moving_value > 5
    assert meter.frames == 7 and meter.skipped == 0
    assert meter.output_error > 5 * meter.source_error
    # a frozen output over moving footage is also unstable (it does not follow the motion)
    frozen = _run(StabilityMeter(), lambda i, src: texture(SIZE, seed=7))
    assert frozen.value > 5 and frozen.moving_value > 5


def test_pairs_without_consistent_pixels_are_skipped():
    a, b = _pan(0), _pan(1)
    # the consistency test: a known translation is consistent almost everywhere but at the entering edge
    assert pair_maps(a, b, a, b).consistent[4:-4, 4:-4].mean() > 0.9
    # flows that disagree everywhere (what a cut or a flash gives): the pair is no stability sample
    five = np.full((SIZE[1], SIZE[0], 2), 5.0, np.float32)
    maps = pair_maps(a, b, 255 - a, 255 - b, flows=(five, five))
    assert not maps.consistent.any() and not maps.moving.any()
    meter = StabilityMeter()
    meter.add(maps)
    assert meter.frames == 0 and meter.skipped == 1 and math.isnan(meter.value)
    meter.update(a, b, 255 - a, 255 - b)
    assert meter.frames == 1 and meter.value == pytest.approx(1.0, abs=0.05)


def test_still_change_is_the_outputs_change_on_still_pixels():
    # a locked-off camera with sensor noise: an output glued to it changes as much as the footage does there
    glued = _run(StabilityMeter(), lambda i, src: 255 - src, source=_noisy_still)
    assert glued.still_change == pytest.approx(glued.still_change_source, rel=1e-6)
    assert 0.3 < glued.still_change_source < 1.5  # σ = 1 noise, channels averaged
    # a dream texture that swims: moved by a different sub-pixel offset on every frame
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 60.0, (SIZE[1], SIZE[0], 3)).astype(np.float32)
    dream = cv2.GaussianBlur(noise, (0, 0), 1.0)  # fine detail, as a dream has

    def swim(i, src):
        shift = rng.uniform(-0.4, 0.4, 2).astype(np.float32)
        moved = warp(dream, np.broadcast_to(shift, (*dream.shape[:2], 2)).copy(), cubic=True)
        return np.clip(src + moved, 0, 255).astype(np.uint8)

    swimming = _run(StabilityMeter(), swim, source=_noisy_still)
    assert swimming.still_change > 2 * swimming.still_change_source + 1.0
    # a dream that pulses by 10 grey levels every other frame changes by about 10 a frame
    pulse = _run(StabilityMeter(), lambda i, src: np.clip(src.astype(int) + 10 * (i % 2) - 5, 0, 255).astype(np.uint8),
                 source=_noisy_still)
    assert pulse.still_change == pytest.approx(10.0, abs=1.0)
    assert math.isnan(glued.moving_value)  # nothing moves a pixel


def test_measures_use_their_own_flow_not_the_renders():
    # the report cannot be gamed by the flow that carried the dream: zero flows, wrong flows or none give the
    # same numbers; a raw estimate handed over as flows.measured is used as the measures' own (computed once)
    frames = [_pan(i) for i in range(5)]
    outs = [255 - f for f in frames]
    zero = np.zeros((SIZE[1], SIZE[0], 2), np.float32)

    class Carried(tuple):
        measured = None

    reports = []
    for mode in ("none", "zero", "measured"):
        m = Measures(stability_every=1)
        for k in range(5):
            prev = (frames[k - 1], outs[k - 1]) if k else (None, None)
            flows = None
            if mode == "zero":
                flows = (zero, zero)
            elif mode == "measured" and k:
                flows = Carried((zero, zero))
                flows.measured = measure_flows(frames[k], frames[k - 1])
            m.update(k, frames[k], outs[k], prev_src=prev[0], prev_out=prev[1], flows=flows)
        reports.append(m.report())
    assert reports[0] == reports[1] == reports[2]
    assert reports[0]["temporal_stability"] == pytest.approx(1.0, abs=0.05)


def test_measures_resume_from_a_small_state_to_the_same_report():
    frames = [_noisy_still(i) for i in range(4)] + [_pan(i) for i in range(4)]
    rng = np.random.default_rng(1)
    outs = [np.clip(f.astype(int) + rng.integers(-8, 9, f.shape), 0, 255).astype(np.uint8) for f in frames]
    level = np.linspace(0.1, 1.0, len(frames))

    def feed(m, ks):
        for k in ks:
            prev = (frames[k - 1], outs[k - 1]) if k else (None, None)
            m.update(k, frames[k], outs[k], prev_src=prev[0], prev_out=prev[1], cut=k == 4)

    whole = Measures(level=level)
    feed(whole, range(8))
    first = Measures(level=level)
    feed(first, range(3))
    state = json.loads(json.dumps(first.state_dict()))
    assert len(json.dumps(state)) < 600  # a few numbers, no arrays: state.json holds it every frame
    resumed = Measures(level=level)
    resumed.load_state_dict(state)
    feed(resumed, range(3, 8))
    assert resumed.report() == whole.report()
    rep = whole.report()
    assert whole.stability.frames == 6  # 7 pairs, one across the cut
    for key in ("temporal_stability", "still_change", "still_change_source", "moving_stability"):
        assert isinstance(rep[key], float), key


def test_stability_every_measures_a_sample_of_the_pairs():
    m = Measures(stability_every=2)
    for k in range(7):
        m.update(k, _pan(k), 255 - _pan(k), prev_src=_pan(k - 1) if k else None,
                 prev_out=255 - _pan(k - 1) if k else None)
    assert m.stability.frames == 3  # the pairs ending at frames 2, 4 and 6


def test_strength_meter_is_exact():
    src = np.full((4, 6, 3), 100, np.uint8)
    out = src.copy()
    out[:2] = 110  # half the pixels +10
    out[3, :, 0] = 40  # a quarter row of channel values -60
    m = StrengthMeter()
    first = m.update(src, out)
    expected = (10 * 2 * 6 * 3 + 60 * 6) / (4 * 6 * 3)
    assert first == pytest.approx(expected)
    assert m.update(src, src) == 0.0
    assert m.value == pytest.approx(expected / 2)
    assert m.frames == 2 and m.last == 0.0
    assert math.isnan(StrengthMeter().value)


def test_pearson():
    x = np.arange(10.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(x, np.full(10, 0.1)) == 0.0  # constant
    y = np.array([1, 3, 2, 5, 4, 6, 8, 7, 9, 12.0])
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    y_nan = y.copy()
    y_nan[[2, 5]] = np.nan
    keep = np.isfinite(y_nan)
    assert pearson(x, y_nan) == pytest.approx(np.corrcoef(x[keep], y[keep])[0, 1])
    assert pearson([1.0], [2.0]) == 0.0
    with pytest.raises(ValueError):
        pearson([1, 2, 3], [1, 2])
