"""dreamvid.keyframes and the schedulable config keys: parsing, interpolation, expressions, errors, composition."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamvid.audio import analyze
from dreamvid.config import DreamParams, resolve
from dreamvid.errors import ConfigError
from dreamvid.keyframes import Timeline, parse
from dreamvid.schedule import build_schedule
from tests.songs import SR, kick_song

FPS = 25.0


@pytest.fixture(scope="module")
def feats():
    return analyze((kick_song(), SR), fps=FPS)


def _tl(n=101, fps=10.0, **kw) -> Timeline:
    return Timeline(n=n, fps=fps, **kw)


def ev(text: str, tl: Timeline, key: str = "dream.step_size") -> np.ndarray:
    return parse(text, key=key).evaluate(tl)


# ---- keyframes -----------------------------------------------------------------------------------------------


def test_keyframes_in_seconds_interpolate_linearly_and_hold_outside():
    v = ev("2:0.01, 4:0.03, 8s:0.01", _tl())  # frames 20, 40, 80 at 10 fps
    assert v[0] == v[20] == pytest.approx(0.01)  # held before the first keyframe
    assert v[30] == pytest.approx(0.02) and v[40] == pytest.approx(0.03) and v[60] == pytest.approx(0.02)
    assert v[80] == v[100] == pytest.approx(0.01)  # held after the last
    assert np.all(np.abs(np.diff(v[20:41]) - 0.001) < 1e-12)  # a straight line


def test_keyframes_in_frames_and_in_percent_of_the_film():
    tl = _tl(n=51)
    assert ev("10f:1, 20f:3", tl)[15] == pytest.approx(2.0)
    v = ev("0%:0, 50%:1, 100%:0", tl)
    assert v[0] == 0 and v[25] == pytest.approx(1.0) and v[50] == 0 and v[12] == pytest.approx(12 / 25)


def test_smooth_keyframes_ease_in_and_out_where_linear_ones_do_not():
    tl = _tl()
    lin = ev("0:0, 10:1", tl)
    smo = ev("0:0, 10:~1", tl)
    assert smo[50] == pytest.approx(0.5) == lin[50]
    assert lin[25] == pytest.approx(0.25) and smo[25] == pytest.approx(0.25 * 0.25 * (3 - 0.5))  # smoothstep
    assert smo[1] - smo[0] < 0.1 * (lin[1] - lin[0])  # no kink: it leaves the keyframe flat
    assert np.all(smo >= 0) and np.all(smo <= 1)  # no overshoot
    assert np.array_equal(ev("~ 0:0, 10:1", tl), smo)  # a leading ~ eases every segment
    mixed = ev("0:0, 5:~1, 10:0", tl)
    assert mixed[10] == pytest.approx(0.2 * 0.2 * (3 - 0.4))  # eased into the keyframe at 5 s
    assert mixed[75] == pytest.approx(0.5)  # linear out of it


def test_two_keyframes_at_one_time_make_a_jump():
    v = ev("0:1, 5:1, 5:3", _tl())
    assert v[49] == pytest.approx(1.0) and v[50] == pytest.approx(3.0) and v[60] == pytest.approx(3.0)


def test_keyframes_in_beats_land_on_the_songs_beats(feats):
    bf = feats.beat_frames
    assert len(bf) >= 6, bf
    tl = Timeline.of(feats.n_frames, FPS, feats)
    v = ev("2b:0, 3b:1, 5b:~0", tl)
    assert v[bf[2]] == pytest.approx(0.0) and v[bf[3]] == pytest.approx(1.0) and v[bf[5]] == pytest.approx(0.0)
    assert 0 < v[(bf[2] + bf[3]) // 2] < 1
    beat = ev("beat", tl, key="motion.rotate")
    assert np.allclose(beat[bf], np.arange(len(bf)))  # the beat counter is an integer on each beat
    assert np.all(np.diff(beat) > 0)


def test_beats_without_a_song_need_a_tempo():
    with pytest.raises(ConfigError, match=r"dream\.steps counts in beats, but there is no song.*bpm"):
        parse("0:1, 4b:10", key="dream.steps").evaluate(_tl())
    tl = _tl(bpm=120.0)  # 2 beats a second
    assert ev("4b:1, 8b:3", tl)[30] == pytest.approx(2.0)  # beat 6 at 3 s
    assert np.allclose(ev("beat", tl), np.arange(101) / 10 * 2)


# ---- expressions ---------------------------------------------------------------------------------------------


def test_expressions_over_time_and_the_audio_features(feats):
    n = feats.n_frames
    tl = Timeline.of(n, FPS, feats)
    v = ev("0.02 + 0.01*sin(t*2*pi/8) + 0.02*onset", tl)
    t = np.arange(n) / FPS
    assert np.allclose(v, 0.02 + 0.01 * np.sin(t * 2 * np.pi / 8) + 0.02 * feats.onset)
    assert np.allclose(ev("energy - low + high*mid + rms", tl), feats.energy - feats.low + feats.high * feats.mid
                       + feats.rms)
    assert np.allclose(ev("frame/fps", tl), t)


def test_without_a_song_every_feature_is_zero():
    assert np.all(ev("1 + onset + rms + energy", _tl()) == 1.0)


@pytest.mark.parametrize("text, expect", [
    ("-2^2", -4.0), ("2**3**2", 512.0), ("7 % 4", 3.0), ("(1 + 2) * 3", 9.0), ("1e-2*100", 1.0),
    ("where(t < 5, 1, 2)", None), ("clip(t, 1, 2)", None), ("min(1, 2) + max(1, 2) + abs(-3)", 6.0),
    ("smoothstep(0, 10, t)", None), ("mix(1, 3, 0.5)", 2.0), ("floor(2.7) + ceil(2.2) + round(2.5)", 7.0),
    ("(t >= 5) + (t == 0)", None), ("fract(3.25) + sign(-2)", -0.75), ("tau - 2*pi + e - e", 0.0),
])  # fmt: skip
def test_the_expression_grammar(text, expect):
    tl = _tl()
    v = ev(text, tl)
    t = np.arange(101) / 10
    if expect is not None:
        assert np.allclose(v, expect)
    elif text.startswith("where"):
        assert np.array_equal(v, np.where(t < 5, 1.0, 2.0))
    elif text.startswith("clip"):
        assert np.array_equal(v, np.clip(t, 1, 2))
    elif text.startswith("smooth"):
        assert v[0] == 0 and v[-1] == 1 and v[50] == pytest.approx(0.5)
    else:
        assert np.array_equal(v, (t >= 5).astype(float) + (t == 0))


# ---- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, pos, what", [
    ("__import__('os')", 12, "unexpected character"),
    ("__import__(os)", 1, "unknown function '__import__'"),
    ("eval(1)", 1, "unknown function 'eval'"),
    ("().__class__", 3, "unexpected character '.'"),
    ("t.__class__", 2, "unexpected character '.'"),
    ("lambda: 1", 1, "a keyframe is TIME:VALUE|cannot read the time"),
    ("0.02 + )", 8, "expected a number"),
    ("0.02 + onest", 8, "unknown name 'onest' \\(did you mean 'onset'\\?\\)"),
    ("sin(t, 2)", 1, "sin\\(\\) takes 1 argument"),
    ("(1 + 2", 7, "expected '\\)'"),
    ("1 2", 3, "unexpected '2'"),
    ("0:1, 8x:2", 6, "cannot read the time '8x'"),
    ("0:1,,2:3", 5, "empty keyframe"),
    ("0:1, 2:abc", 8, "keyframe value 'abc' is not a number"),
    ("0:1, 2:3:4", 9, "one ':' per keyframe"),
])  # fmt: skip
def test_a_bad_schedule_names_the_key_and_the_position(text, pos, what):
    with pytest.raises(ConfigError) as e:
        parse(text, key="motion.zoom")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("motion.zoom"), msg
    assert f"at position {pos} of" in msg, msg
    assert re.search(what, msg), msg


@pytest.mark.parametrize("text, pos, what", [
    # Python that tokenizes: it reaches the parser, which knows only its own names
    ("__import__(os)", 1, "unknown function '__import__'"),
    ("open(t)", 1, "unknown function 'open'"),
    ("exec(t) + eval(t)", 1, "unknown function 'exec'"),
    ("globals", 1, "unknown name 'globals'"),
    ("t + __builtins__", 5, "unknown name '__builtins__'"),
    ("sin(t) if t else 0", 8, "unexpected 'if'"),
    ("lambda t", 1, "unknown name 'lambda'"),
])  # fmt: skip
def test_python_payloads_reach_the_parser_and_are_refused(text, pos, what):
    """Payloads that pass the tokenizer: the parser knows only its own names, so no Python is ever run."""
    with pytest.raises(ConfigError) as e:
        parse(text, key="motion.zoom").evaluate(_tl())
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("motion.zoom: at position"), msg
    assert f"at position {pos} of" in msg and what in msg, msg


@pytest.mark.parametrize("text, opener", [
    ("2^" * 1999 + "2", r"\^"),
    ("2**" * 1333 + "2", r"\*\*"),
    ("-" * 3999 + "1", "-"),
    ("-2^" * 1333 + "2", "[-^]"),
    ("(" * 1999 + "1" + ")" * 1999, r"\("),
    ("sin(" * 790 + "t" + ")" * 790, r"\("),
    ("min(1, " * 450 + "1" + ")" * 450, r"\("),
    ("1 + (" * 600 + "1" + ")" * 600, r"\("),
])  # fmt: skip
def test_deep_expressions_are_one_config_error_naming_the_limit_and_the_place(text, opener):
    """Each level of nesting is a Python call while parsing: the parser has an explicit limit, reported with the
    position of the token that passed it (the 61st opener), never a RecursionError."""
    pos = [m.start() for m in re.finditer(opener, text)][60] + 1
    with pytest.raises(ConfigError) as e:
        parse(text, key="motion.zoom")
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg  # one line, with an excerpt of the long text, not all of it
    assert msg.startswith(f"motion.zoom: at position {pos} of "), msg
    assert msg.endswith("nested too deeply: more than 60 levels of parentheses, function calls, signs or powers "
                        "(schedules: docs/presets.md)"), msg


def test_long_flat_expressions_are_values_not_errors():
    """``1+1+...+1`` nests nothing: it is parsed and evaluated without recursion (it used to be a RecursionError)."""
    assert np.all(ev("1+" * 1999 + "1", _tl()) == 2000.0)
    assert np.allclose(ev("t*" * 1000 + "1", _tl(n=3)), [0.0, 0.1**1000, 0.2**1000])
    assert np.all(ev("1-" * 1999 + "1", _tl(n=2)) == -1998.0)  # left to right: ((1-1)-1)-... = 1 - 1999
    assert np.all(ev("(t < 1) == " * 300 + "1", _tl(n=2)) == 1.0)
    assert np.all(ev("-" * 60 + "1", _tl(n=1)) == 1.0)  # 60 signs: at the limit, not past it
    assert np.all(ev("(" * 60 + "2" + ")" * 60, _tl(n=1)) == 2.0)


@pytest.mark.parametrize("text, what", [
    ("x" * 4001, "the expression is 4001 characters long; keep it under 4000"),
    ("9" * 3999, r"is not a finite number at t = 0\.000 s"),  # a float that overflows: inf
    ("exp(1000)", r"is not a finite number"),
    ("pow(-1, 0.5)", r"is not a finite number"),
    ("2^" * 9 + "9", r"is not a finite number"),
    ("1/(t - t)", r"is not a finite number"),
])  # fmt: skip
def test_long_and_overflowing_schedules_are_config_errors(text, what):
    with pytest.raises(ConfigError, match=what) as e:
        parse(text, key="k").evaluate(_tl())
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


# ---- properties: whatever the text, one ConfigError or a Curve -------------------------------------------------

_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
_ATOMS = st.sampled_from(["1", "0", "2.5", "1e3", ".5", "t", "beat", "onset", "frame", "progress", "pi", "e"])


def _exprs():
    """Well-formed expressions of any depth and size, over every operator and function of the grammar."""
    from dreamvid.keyframes import FUNCTIONS

    binary = st.sampled_from(["+", "-", "*", "/", "%", "^", "**", "<", "<=", ">", ">=", "==", "!="])

    def extend(inner):
        return st.one_of(
            st.tuples(inner, binary, inner).map(lambda p: f"{p[0]} {p[1]} {p[2]}"),
            st.tuples(st.sampled_from(["-", "+"]), inner).map("".join),
            inner.map(lambda x: f"({x})"),
            st.sampled_from(sorted(FUNCTIONS)).flatmap(
                lambda f: st.lists(inner, min_size=FUNCTIONS[f][0], max_size=FUNCTIONS[f][0]).map(
                    lambda a, f=f: f"{f}({', '.join(a)})")),
        )

    return st.recursive(_ATOMS, extend, max_leaves=60)


def _check(text: str, tl: Timeline) -> None:
    """``parse`` gives a Curve or a one-line ConfigError; a Curve evaluates to n finite numbers or a ConfigError."""
    try:
        curve = parse(text, key="motion.zoom")
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith("motion.zoom"), str(e)
        return
    try:
        v = curve.evaluate(tl)
    except ConfigError as e:
        assert "\n" not in str(e), str(e)
        return
    assert v.shape == (tl.n,) and v.dtype == np.float64 and np.all(np.isfinite(v))
    assert math.isfinite(curve.static())


_TL = Timeline(n=7, fps=5.0, bpm=120.0)
_GRAMMAR = "0123456789.eE+-*/%^()<>=!, :~sbf%tabcilmnoprsuwxhgdpkv_ \t"


@_SETTINGS
@given(st.text(alphabet=_GRAMMAR, max_size=120))
def test_property_garbage_made_of_the_grammars_own_characters(text):
    _check(text, _TL)


@_SETTINGS
@given(st.text(max_size=80))
def test_property_any_unicode_text(text):
    _check(text, _TL)


@_SETTINGS
@given(_exprs())
def test_property_well_formed_expressions_of_any_shape(text):
    _check(text, _TL)


@settings(_SETTINGS, max_examples=40)  # long lists are slow to draw
@given(st.integers(0, 1500).flatmap(lambda n: st.lists(
    st.sampled_from(["(", ")", "-", "+", "2", "^", "**", "sin(", "min(1,", ",", "t", "*"]), min_size=n, max_size=n)
).map("".join))
def test_property_deep_and_long_token_soup(text):
    _check(text, _TL)


@_SETTINGS
@given(st.integers(0, 3000), st.sampled_from(["({})", "sin({})", "-{}", "2^{}", "min(1, {})", "-2**{}", "1+({})"]))
def test_property_depth_is_limited_explicitly(depth, wrap):
    text = "t"
    for _ in range(depth):
        text = wrap.format(text)
    if len(text) > 4000:
        with pytest.raises(ConfigError, match="characters long; keep it under 4000"):
            parse(text, key="k")
    elif depth > 60:
        with pytest.raises(ConfigError, match="nested too deeply: more than 60 levels"):
            parse(text, key="k")
    else:
        _check(text, _TL)


@_SETTINGS
@given(st.lists(st.tuples(st.floats(0, 1e3), st.sampled_from(["", "s", "b", "f", "%"]),
                          st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "~", "="])),
                max_size=40), st.sampled_from(["", "~", "=", " ~ "]))
def test_property_keyframe_lists(keys, before):
    text = before + ", ".join(f"{t!r}{u}:{ease}{v!r}" for t, u, v, ease in keys)
    _check(text, _TL)


@_SETTINGS
@given(st.text(alphabet=_GRAMMAR, max_size=60), st.sampled_from(["dream.step_size", "dream.steps", "motion.zoom"]))
def test_property_config_values(text, key):
    """Through the config, as the CLI, batch and the UI read it: a Config or one ConfigError."""
    section, name = key.split(".")
    try:
        resolve({section: {name: text}})
    except ConfigError as e:
        assert "\n" not in str(e)


def test_out_of_order_keyframes_and_non_finite_values_are_errors():
    with pytest.raises(ConfigError, match=r"k: keyframe 2 \(1s\) comes before keyframe 1 \(2s\)"):
        parse("2:1, 1:3", key="k")
    with pytest.raises(ConfigError, match="comes before the one ahead of it"):
        parse("5:1, 10f:3", key="k").evaluate(_tl())  # 10 frames = 1 s, before 5 s
    with pytest.raises(ConfigError, match=r"k = '1/\(t - 1\)' is not a finite number at t = 1\.000 s \(frame 10\)"):
        parse("1/(t - 1)", key="k").evaluate(_tl())


# ---- config ----------------------------------------------------------------------------------------------------


def test_config_keys_take_schedules_and_round_trip():
    cfg = resolve({
        "dream": {"step_size": "0:0.01, 8b:0.03", "steps": "10 + 5*onset",
                  "layers": "mixed3:{0:1, 60:0}, mixed5[1-3]:{0:0, 60:1}"},
        "video": {"strength": "0%:5, 100%:~20"},
        "motion": {"zoom": "1.01 + 0.01*onset", "rotate": 0.5},
    })
    assert dict(cfg.schedules) == {"dream.step_size": "0:0.01, 8b:0.03", "dream.steps": "10 + 5*onset",
                                   "video.strength": "0%:5, 100%:~20", "motion.zoom": "1.01 + 0.01*onset"}
    assert cfg.dream.step_size == 0.01 and cfg.dream.steps == 10 and cfg.motion.zoom == 1.01  # first values
    assert cfg.motion.rotate == 0.5
    d = cfg.to_dict()  # what a render's job.json fingerprints and its report records
    assert d["dream"]["step_size"] == "0:0.01, 8b:0.03" and d["motion"]["zoom"] == "1.01 + 0.01*onset"
    assert d["dream"]["layers"] == "mixed3:{0:1, 60:0},mixed5[1,2,3]:{0:0, 60:1}"
    again = resolve(d)
    assert again == cfg and hash(again) == hash(cfg)
    table = resolve({"dream": {"layers": {"mixed3": "0%:1, 100%:0", "mixed5": 1.5}}})  # the table form
    assert [(s.name, s.weight, s.schedule) for s in table.dream.layers] == [("mixed3", 1.0, "0%:1, 100%:0"),
                                                                             ("mixed5", 1.5, None)]
    other = resolve({**d, "dream": {**d["dream"], "step_size": "0:0.01, 8b:0.04"}})
    assert other != cfg and other.to_dict() != d


@pytest.mark.parametrize("table, match", [
    ({"dream": {"seed": "0:1"}}, r"dream\.seed must be an integer >= 0.*cannot be a schedule"),
    ({"dream": {"step_size": "0:0.01, 4:5"}}, r"dream\.step_size must be .* or a schedule; keyframe value 5 .* out of range"),
    ({"motion": {"rotate": "sin(t"}}, r"motion\.rotate must be .* or a schedule; at position 6 of 'sin\(t'"),
    ({"dream": {"layers": "mixed3:{0:1,,}"}}, r"dream\.layers\.mixed3: at position 5"),
    ({"motion": {"spin": 1}}, r"unknown key 'motion\.spin'"),
    ({"motion": {"zoom": 3}}, r"motion\.zoom must be a scale per frame"),
])  # fmt: skip
def test_bad_schedules_in_a_config_are_one_line_config_errors(table, match):
    with pytest.raises(ConfigError, match=match) as e:
        resolve(table)
    assert "\n" not in str(e.value)


# ---- the schedule: keyframed bases under the music -----------------------------------------------------------


def test_the_music_multiplies_the_keyframed_base(feats):
    n = feats.n_frames
    table = {"step": [0.5, 2.0], "steps": [1.0, 1.0]}
    cfg = resolve({"dream": {"step_size": "0%:0.01, 100%:0.03"}, "audio": table})
    keyed = build_schedule(feats, table, base=cfg.dream, blend=0.5, n_frames=n, config=cfg)
    flat = build_schedule(feats, table, base=cfg.dream, blend=0.5, n_frames=n)
    base = np.linspace(0.01, 0.03, n)
    assert np.allclose(keyed.step_size, flat.step_size / 0.01 * base)
    quiet = build_schedule(None, table, base=cfg.dream, blend=0.5, n_frames=n, config=cfg, fps=FPS)
    assert np.allclose(quiet.step_size, base)  # without a song: the keyframes alone


def test_layer_weights_move_from_one_layer_to_another(feats):
    cfg = resolve({"dream": {"layers": "mixed3:{0%:1, 100%:~0}, mixed5:{0%:0, 100%:~1}"}})
    s = build_schedule(None, {}, base=cfg.dream, blend=0.5, n_frames=101, config=cfg, fps=10)
    w = s.layer_weights
    assert tuple(w[0]) == (1.0, 0.0) and tuple(w[-1]) == (0.0, 1.0) and w[50] == pytest.approx([0.5, 0.5])
    assert [sp.weight for sp in s.frame(100).dream.layers] == [0.0, 1.0]
    # with [audio.layers], the music's gain multiplies the scheduled weight
    table = {"layers": {"mixed5": {"by": "high", "gain": [0.5, 2.0]}}}
    m = build_schedule(feats, table, base=cfg.dream, blend=0.5, n_frames=feats.n_frames, config=cfg)
    base5 = parse("0%:0, 100%:~1", key="x").evaluate(Timeline.of(feats.n_frames, FPS, feats))
    assert np.allclose(m.layer_weights[:, 1], base5 * (0.5 + 1.5 * feats.high))
    bad = resolve({"dream": {"layers": "mixed3:{0:1, 5:0}, mixed5:{6:0, 10:1}"}})
    with pytest.raises(ConfigError, match=r"every layer weight is 0 at t = 5\.\d+ s"):
        build_schedule(None, {}, base=bad.dream, blend=0.5, n_frames=101, config=bad, fps=10)


def test_integer_keys_round_and_values_are_clipped_to_their_range():
    cfg = resolve({"dream": {"steps": "t*3", "octaves": "0:1, 10:4", "jitter": "-50 + 0*t"},
                   "motion": {"zoom": "1 + t", "translate_x": "0.01*sin(t)"}})
    s = build_schedule(None, {}, base=cfg.dream, blend=0.5, n_frames=101, config=cfg, fps=10)
    assert s.steps.dtype == np.int64 and s.steps[0] == 1 and s.steps[50] == 15  # clipped up to 1 at t = 0
    assert s.frame(100).dream.octaves == 4 and s.frame(0).dream.octaves == 1
    assert np.all(s.jitter == 0)
    assert s.motion[0, 0] == 1.0 and s.motion[100, 0] == 2.0  # zoom clipped to [0.5, 2]
    assert np.allclose(s.motion[:, 2], 0.01 * np.sin(np.arange(101) / 10))
    assert s.moving and not build_schedule(None, {}, base=DreamParams(), blend=0.5, n_frames=5).moving
