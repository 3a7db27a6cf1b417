"""Tests of dreamvid.metrics on synthetic frames (no files)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dreamvid.metrics import StabilityMeter, StrengthMeter, pearson
from dreamvid.video.flow import flow_pair
from tests.media import texture

SIZE = (96, 64)


def _run(meter: StabilityMeter, outputs, n: int = 8) -> float:
    prev = None
    for i in range(n):
        src = texture(SIZE, seed=1, shift=(1.5 * i, 0.5 * i))
        out = outputs(i, src)
        if prev is not None:
            meter.update(prev[0], src, prev[1], out)
        prev = (src, out)
    return meter.value


def test_stability_of_a_coherent_output_is_about_one():
    # The "dream" moves exactly with the footage: an inverted source, or another texture panned the same way.
    inverted = _run(StabilityMeter(), lambda i, src: 255 - src)
    carried = _run(StabilityMeter(), lambda i, src: texture(SIZE, seed=7, shift=(1.5 * i, 0.5 * i)))
    assert inverted == pytest.approx(1.0, abs=0.05)
    assert 0.7 < carried < 1.5


def test_stability_of_flickering_output_is_much_worse():
    rng = np.random.default_rng(0)

    def noisy(i, src):
        return np.clip(src.astype(int) + rng.integers(-30, 31, src.shape), 0, 255).astype(np.uint8)

    meter = StabilityMeter()
    value = _run(meter, noisy)
    assert value > 5
    assert meter.frames == 7
    assert meter.output_error > 5 * meter.source_error
    # a frozen output over moving footage is also unstable (it does not follow the motion)
    assert _run(StabilityMeter(), lambda i, src: texture(SIZE, seed=7)) > 5


def test_update_with_flow_matches_update():
    a = texture(SIZE, seed=1)
    b = texture(SIZE, seed=1, shift=(2.0, 1.0))
    oa, ob = 255 - a, np.roll(255 - b, 3, axis=1)
    m1, m2 = StabilityMeter(), StabilityMeter()
    m1.update(a, b, oa, ob)
    bwd, fwd = flow_pair(b, a)
    m2.update_with_flow(a, b, oa, ob, bwd=bwd, fwd=fwd)
    assert m1.value == pytest.approx(m2.value, rel=1e-6)
    assert math.isnan(StabilityMeter().value)
    with pytest.raises(ValueError):
        m2.update_with_flow(a, b, oa, ob, bwd=bwd)


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
