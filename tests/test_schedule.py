"""dreamvid.schedule: features + [audio] table -> per-frame dream params. Real analysis of a synthetic song."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from dreamvid.audio import AudioFeatures, analyze
from dreamvid.config import DreamParams, LayerSpec
from dreamvid.errors import ConfigError
from dreamvid.schedule import (
    AUDIO_KEYS,
    OCTAVE_GRID,
    FrameParams,
    analysis_options,
    build_schedule,
    validate_audio_table,
)
from tests.songs import KICKS, LOUD_START, SR, kick_song

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FPS = 30000 / 1001
BASE = DreamParams()  # mixed3:1, mixed5:1.5, octave_scale 1.4, steps 10, step_size 0.015, jitter 32
TABLE = {
    "step": [0.6, 1.5],
    "steps": [0.8, 1.2],
    "pulse": "onset",
    "pulse_step": 1.0,
    "pulse_zoom": 0.02,
    "pulse_decay": 0.1,
    "octave_scale": [1.3, 1.5],
    "blend": [0.7, 0.4],
    "jitter": [0.5, 1.5],
    "layers": {"mixed3": "low", "mixed5": {"by": "high", "gain": [0.5, 2.5]}},
}


@pytest.fixture(scope="module")
def feats() -> AudioFeatures:
    return analyze((kick_song(), SR), fps=FPS, **analysis_options(TABLE))


@pytest.fixture(scope="module")
def sched(feats):
    return build_schedule(feats, TABLE, base=BASE, blend=0.6, n_frames=feats.n_frames)


def _between_kicks(t: np.ndarray) -> np.ndarray:
    phase = (t - KICKS[0]) % 0.5
    return (t > KICKS[0]) & (t < LOUD_START - 0.05) & (phase > 0.2) & (phase < 0.45)


def test_quiet_in_the_silence(feats, sched):
    silence = feats.times < 1.9
    mult = sched.step_size / BASE.step_size
    assert np.all(mult[silence] <= 1.0)
    np.testing.assert_allclose(mult[silence], 0.6)  # the low end of `step`
    assert np.all(sched.steps[silence] <= BASE.steps)
    assert np.all(sched.intensity[silence] == 0.0)
    assert np.all(sched.zoom[silence] == 1.0)
    assert np.all(sched.blend[silence] == pytest.approx(0.7))  # quiet keeps more of the previous dream


def test_pulses_on_the_frame_of_each_kick(feats, sched):
    mult = sched.step_size / BASE.step_size
    for t0 in KICKS:
        k = round(t0 * FPS)
        local_max = [j for j in range(k - 1, k + 2) if mult[j] >= mult[j - 1] and mult[j] >= mult[j + 1]]
        assert local_max, f"no step-size peak within 1 frame of the kick at {t0}s: {mult[k - 3 : k + 4]}"
        j = local_max[0]
        assert mult[j] > 1.4 * mult[k - 3], f"the kick at {t0}s does not stand out: {mult[k - 3 : k + 4]}"
        assert sched.zoom[j] > 1.01
    # and the pulse is gone before the next kick
    between = _between_kicks(feats.times)
    assert sched.pulse[between].max() < 0.35


def test_strong_in_the_loud_section(feats, sched):
    t = feats.times
    loud = t > LOUD_START + 0.3
    between = _between_kicks(t)
    assert sched.intensity[loud].mean() > sched.intensity[between].mean() + 0.2
    mult = sched.step_size / BASE.step_size
    assert mult[loud].mean() > 1.4
    assert np.all(sched.steps[loud] == 12)
    assert sched.blend[loud].mean() < 0.45  # loud → fresher dream
    assert sched.octave_scale[loud].mean() > sched.octave_scale[between].mean()


def test_bands_drive_layer_weights(feats, sched):
    t = feats.times
    between, loud = _between_kicks(t), t > LOUD_START + 0.3
    w3, w5 = sched.layer_weights[:, 0], sched.layer_weights[:, 1]
    # bass kicks: textures (mixed3) outweigh their quiet level; highs in the loud part wake the eyes (mixed5)
    assert w3[between].mean() > 1.2 * BASE.layers[0].weight
    assert w5[loud].mean() > 3.0 and w5[between].mean() < 1.5
    frame = sched.frame(int(np.flatnonzero(loud)[10]))
    assert [s.name for s in frame.dream.layers] == ["mixed3", "mixed5"]
    assert frame.dream.layers[1].weight == pytest.approx(w5[np.flatnonzero(loud)[10]])


def test_react_zero_gives_exactly_base(feats):
    s = build_schedule(feats, TABLE, base=BASE, blend=0.6, n_frames=feats.n_frames, react=0)
    assert len(s) == feats.n_frames
    for fp in s:
        assert fp == FrameParams(dream=BASE, blend=0.6, zoom=1.0, intensity=0.0)


@pytest.mark.parametrize("table", [{}, None, {"attack": 0.02, "release": 0.5, "drive": "low"}])
def test_no_reaction_without_mapping(feats, table):
    s = build_schedule(feats, table, base=BASE, blend=0.5, n_frames=feats.n_frames)
    assert all(fp.dream == BASE and fp.blend == 0.5 and fp.zoom == 1.0 for fp in s)


def test_no_song_gives_base():
    s = build_schedule(None, TABLE, base=BASE, blend=0.6, n_frames=7)
    assert len(s) == 7 and s.frame(-1).dream == BASE and s.frame(3).dream == BASE
    with pytest.raises(IndexError):
        s.frame(7)


def test_react_scales_around_neutral(feats):
    table = {"step": [0.6, 1.5], "blend": [0.7, 0.4]}
    one = build_schedule(feats, table, base=BASE, blend=0.6, n_frames=feats.n_frames)
    two = build_schedule(feats, table, base=BASE, blend=0.6, n_frames=feats.n_frames, react=2.0)
    m1, m2 = one.step_size / BASE.step_size, two.step_size / BASE.step_size
    np.testing.assert_allclose(m2 - 1.0, 2.0 * (m1 - 1.0), atol=1e-12)
    np.testing.assert_allclose(np.clip(0.6 + 2 * (one.blend - 0.6), 0, 1), two.blend, atol=1e-12)
    np.testing.assert_allclose(two.intensity, 2.0 * one.intensity)


def test_octave_scale_is_quantised(feats, sched):
    oct_ = sched.octave_scale
    assert len(np.unique(oct_)) > 1
    np.testing.assert_allclose(oct_ / OCTAVE_GRID, np.round(oct_ / OCTAVE_GRID), atol=1e-9)
    assert set(np.round(oct_, 6)) <= {1.3, 1.35, 1.4, 1.45, 1.5}
    # with an off-grid base the grid runs through the base, so unmodulated frames keep its exact shape
    base = BASE.replace(octave_scale=1.33)
    s = build_schedule(feats, {"octave_scale": [1.2, 1.6]}, base=base, blend=0.6, n_frames=feats.n_frames)
    steps = (s.octave_scale - 1.33) / OCTAVE_GRID
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert 1.33 in set(s.octave_scale.tolist())


def test_limits_hold_at_extreme_react(feats):
    gain = {"by": "low", "gain": [0.0, 1.0]}
    table = {**TABLE, "step": [0.05, 10.0], "steps": [0.1, 3.0], "jitter": [0.0, 2.0], "blend": [0.0, 1.0],
             "layers": {"mixed3": gain, "mixed5": gain}}  # fmt: skip
    s = build_schedule(feats, table, base=BASE, blend=0.6, n_frames=feats.n_frames, react=10.0)
    assert s.steps.dtype.kind == "i" and s.steps.min() >= 1
    assert s.step_size.min() > 0 and s.jitter.min() >= 0
    assert s.layer_weights.min() >= 0 and np.all(s.layer_weights.max(axis=1) > 0)
    assert s.blend.min() >= 0 and s.blend.max() <= 1
    assert s.octave_scale.min() > 1.0
    # silent frames would zero every gain: the base weights take over (only their ratio matters)
    fp = s.frame(0)
    assert fp.dream.layer_weights == BASE.layer_weights
    assert isinstance(fp.dream.steps, int) and isinstance(fp.dream.jitter, int)


def test_features_must_cover_the_frames(feats):
    with pytest.raises(ValueError, match="cover"):
        build_schedule(feats, TABLE, base=BASE, blend=0.6, n_frames=feats.n_frames + 1)
    assert len(build_schedule(feats, TABLE, base=BASE, blend=0.6, n_frames=10)) == 10


# ---------------------------------------------------------------------------------------------------------------
# validation


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError) as err:
        validate_audio_table({"pulse_stpe": 0.5})
    msg = str(err.value)
    assert "'pulse_stpe'" in msg and "did you mean 'pulse_step'" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "table, match",
    [
        ({"step": 1.5}, r"audio\.step must be a \[low, high\]"),
        ({"step": [0.5, 1.5, 2.0]}, r"audio\.step must be a \[low, high\]"),
        ({"step": [0.5, "x"]}, "must be a number"),
        ({"step": [0.5, True]}, "must be a number"),
        ({"blend": [0.5, 1.5]}, "out of range"),
        ({"octave_scale": [0.9, 1.4]}, "out of range"),
        ({"release": -1}, "out of range"),
        ({"pulse_decay": "fast"}, "must be a number"),
        ({"drive": "rmss"}, "did you mean 'rms'"),
        ({"blend_by": 3}, "not an audio feature"),
        ({"layers": {"mixed33": "low"}}, "did you mean 'mixed3'"),
        ({"layers": {"mixed3": "bass"}}, "not an audio feature"),
        ({"layers": {"mixed3": {"by": "low", "gian": [1, 2]}}}, "did you mean 'gain'"),
        ({"layers": {"mixed3": {"gain": [1, 2]}}}, "needs a feature"),
        ({"layers": {"mixed3": 2}}, "must be a feature name"),
        ({"layers": "mixed3"}, "must be a table"),
    ],
)
def test_bad_values(table, match):
    with pytest.raises(ConfigError, match=match):
        validate_audio_table(table)


def test_mapping_for_an_undreamed_layer_is_dropped_but_a_typo_is_an_error():
    assert validate_audio_table({"layers": {"mixed7": "high"}}, layers=BASE.layer_names)["layers"] == {}
    build_schedule(None, {"layers": {"mixed7": "high"}}, base=BASE, blend=0.6, n_frames=3)
    with pytest.raises(ConfigError, match=r"unknown layer 'mixd7'.*did you mean 'mixed7'"):
        validate_audio_table({"layers": {"mixd7": "high"}}, layers=BASE.layer_names)


def test_validate_normalises_without_mutating():
    table = {"step": (1, 2), "layer_gain": [0.25, 4], "layers": {"mixed3": "low"}, "pulse_step": 1}
    before = repr(table)
    out = validate_audio_table(table)
    assert repr(table) == before
    assert out == {"step": [1.0, 2.0], "layer_gain": [0.25, 4.0], "pulse_step": 1.0,
                   "layers": {"mixed3": {"by": "low", "gain": [0.25, 4.0]}}}  # fmt: skip
    assert validate_audio_table(out) == out
    assert analysis_options({"release": 0.4}) == {"attack": 0.01, "release": 0.4}


def test_every_key_is_documented_and_the_lysergic_snippet_is_valid():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "presets.md").read_text()
    for key in AUDIO_KEYS:
        assert f"`{key}`" in doc, key
    snippet = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert snippet, "docs/presets.md has no TOML example"
    audio = tomllib.loads(snippet.group(1))["audio"]
    base = BASE.replace(layers=(LayerSpec("mixed3", 1.0), LayerSpec("mixed4", 0.5), LayerSpec("mixed5", 1.5)))
    assert validate_audio_table(audio, layers=base.layer_names)


# ---------------------------------------------------------------------------------------------------------------
# a range of the film's frames


def _rows(feats: AudioFeatures, frames: range) -> AudioFeatures:
    """``feats`` on ``frames`` only (row i: film frame frames[i]); the beat list stays the film's."""
    import dataclasses

    per_frame = {name: getattr(feats, name)[frames.start:frames.stop]
                 for name in ("rms", "energy", "level", "onset", "low", "mid", "high", "beat")}
    return dataclasses.replace(feats, n_frames=len(frames), **per_frame)


def test_a_range_of_frames_is_the_films_schedule_there(feats):
    """build_schedule(frames=range(a, b)) with the features of those frames gives, frame for frame, what the whole
    film's schedule gives there: keyframes in seconds, beats, frames and %, holds, expressions of t, progress, length
    and the features, layer schedules, and every reaction (the pulse too, once the range starts early enough)."""
    from dreamvid.config import resolve

    cfg = resolve({"dream": {"layers": "mixed3:{0:1, 50%:=2},mixed5:{1 + high}", "step_size": "0.01 + 0.01*progress",
                             "jitter": "0:8, 4b:~40, 200f:16", "octave_scale": "1.3 + 0.2*low"},
                   "video": {"strength": "0:10, 1.5:=30, 100%:12", "blend": "0.5 + 0.1*sin(t)*onset"},
                   "motion": {"zoom": "1 + 0.01*energy*t/length", "rotate": "0:0, 8b:2"}, "audio": TABLE})
    n = feats.n_frames
    nopulse = {k: v for k, v in TABLE.items() if not k.startswith("pulse")}

    def build(table, frames=None, rows=feats):
        return build_schedule(rows, table, base=cfg.dream, blend=cfg.video.blend, n_frames=n, react=1.3, config=cfg,
                              fps=FPS, frames=frames)

    decay_frames = int(np.ceil(14 * TABLE["pulse_decay"] * FPS)) + 2  # the pulse's memory, to below 1e-6
    for table in (nopulse, TABLE):
        whole = build(table)
        assert np.ptp(whole.layer_weights[:, 1]) > 0 and np.ptp(whole.jitter) > 8 and np.ptp(whole.motion[:, 1]) > 1
        for frames in (range(n), range(40), range(60, 61), range(n // 2, n - 3), range(n - 1, n)):
            part = build(table, frames, _rows(feats, frames))
            assert len(part) == len(frames)
            for i, k in enumerate(frames):
                if table is nopulse or frames.start == 0:
                    assert part.frame(i) == whole.frame(k), (frames, k)
                elif i >= decay_frames:
                    a, b = part.frame(i), whole.frame(k)
                    assert a.dream.steps == b.dream.steps and a.dream.jitter == b.dream.jitter
                    np.testing.assert_allclose([a.dream.step_size, a.zoom, a.target], [b.dream.step_size, b.zoom,
                                                                                       b.target], rtol=1e-5)
    with pytest.raises(ValueError, match="within the film"):
        build(TABLE, range(n - 2, n + 1))
