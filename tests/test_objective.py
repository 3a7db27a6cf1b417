"""Directing the dream: guide and class terms composed with layer terms, and the creativity lever.

Pure parts (the lever, class names, term composition, top files) run anywhere; the dreams use the trained weights
file (tiny images, one octave, a few steps) and, for classes, a seeded random ImageNet top: the real top is never
used or downloaded by a test.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from dreamvid import creativity, model, presets, targets
from dreamvid.config import DreamParams, parse_layers, resolve
from dreamvid.dream import Objective
from dreamvid.dream.objective import GAUGE, Match
from dreamvid.errors import ConfigError, InputError, WeightsError
from tests.conftest import REPO, load_example, needs, write_rgb
from tests.render_fixtures import media  # noqa: F401  (a fixture)

TABBY = 281


# ---- the lever -------------------------------------------------------------------------------------------------

def test_lever_ends_and_middle_are_the_documented_table():
    assert creativity.lever(0) == {"layers": "mixed3:1", "step_size": 0.006, "steps": 6, "octaves": 2}
    assert creativity.lever(0.5) == {"layers": "mixed4:0.75,mixed5:0.25", "step_size": 0.013, "steps": 10,
                                     "octaves": 4}
    assert creativity.lever(1) == {"layers": "mixed5:0.5,mixed6:0.5", "step_size": 0.02, "steps": 14, "octaves": 5}


def test_lever_rises_in_every_key():
    levels = [creativity.lever(c) for c in np.linspace(0, 1, 21)]
    for key in ("step_size", "steps", "octaves"):
        values = [lv[key] for lv in levels]
        assert values == sorted(values) and values[0] < values[-1], key

    def depth(text):  # the weighted mean mixedN of the layers
        specs = parse_layers(text)
        return sum(int(s.name[5:]) * s.weight for s in specs) / sum(s.weight for s in specs)

    depths = [depth(lv["layers"]) for lv in levels]
    assert depths == sorted(depths) and depths[0] == 3 and depths[-1] == 5.5


@pytest.mark.parametrize("bad", [-0.1, 1.5, "high", True, float("nan")])
def test_creativity_out_of_range_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="creativity must be a number from 0"):
        resolve({"dream": {"creativity": bad}})


def test_creativity_precedence_later_places_win_earlier_lose():
    preset = presets.load("lysergic")  # sets layers, steps 10, step_size 0.02, octaves 4
    flag = resolve(preset, {"dream": {"creativity": 0.0}}).dream  # the flag's lever beats the preset's keys
    assert (flag.steps, flag.step_size, flag.octaves, flag.layer_names) == (6, 0.006, 2, ("mixed3",))
    both = resolve(preset, {"dream": {"creativity": 0.0, "steps": 3}}).dream  # a key beside the lever wins
    assert (both.steps, both.step_size) == (3, 0.006)
    in_preset = {**preset, "dream": {**preset["dream"], "creativity": 1.0}}  # the preset's own keys win
    own = resolve(in_preset).dream
    assert own.layers == resolve(preset).dream.layers and own.steps == 10 and own.creativity == 1.0
    later = resolve(in_preset, {"dream": {"steps": 4}}).dream
    assert later.steps == 4
    assert resolve(preset).dream.creativity is None


def test_config_with_creativity_round_trips_through_json():
    cfg = resolve(presets.load("lysergic"), {"dream": {"creativity": 0.7, "octaves": 3}})
    again = resolve(json.loads(json.dumps(cfg.to_dict())))
    assert again.dream == cfg.dream
    plain = resolve(presets.load("lysergic"))
    assert resolve(json.loads(json.dumps(plain.to_dict()))).dream == plain.dream


# ---- classes and guides as config -----------------------------------------------------------------------------

def test_class_names_ship_with_dreamvid():
    names = targets.class_names()
    assert len(names) == 1000 and len({n.lower() for n in names}) == 1000
    assert names[TABBY] == "tabby cat" and names[0] == "tench" and names[999] == "toilet paper"


@pytest.mark.parametrize("value", ["tabby cat", "Tabby  Cat", 281, "281", 281.0, "tabby", "TABBY", "tabby_cat"])
def test_class_by_name_or_index(value):
    """A class's name, its index, or any of its WordNet synonyms, such as ``tabby``: the name Keras'
    ``decode_predictions`` prints for class 281 (``_`` as Keras writes it, any case)."""
    assert targets.class_index(value) == TABBY
    assert resolve({"dream": {"dream_class": value}}).dream.dream_class == value


def test_every_synonym_of_every_imagenet_class_names_it():
    """The 1000 synsets' lemmas (dreamvid/data/imagenet_lemmas.txt): each one that belongs to one class names it;
    one shared by two classes and not either's own name is ambiguous."""
    lemmas = targets.class_lemmas()
    assert len(lemmas) == 1000 and lemmas[TABBY] == ("tabby", "tabby cat")
    assert lemmas[0] == ("tench", "Tinca tinca") and lemmas[999][0] == "toilet tissue"
    owners: dict[str, set[int]] = {}
    for i, names in enumerate(lemmas):
        for name in names:
            owners.setdefault(name.lower(), set()).add(i)
    own = {n.lower(): i for i, n in enumerate(targets.class_names())}
    ambiguous = []
    for name, classes in owners.items():
        if name in own:  # dreamvid's own name of a class ('harp', 'crayfish') names that class
            assert targets.class_index(name) == own[name], name
        elif len(classes) == 1:
            assert targets.class_index(name) == next(iter(classes)), name
            assert targets.class_index(name.upper().replace(" ", "_")) == next(iter(classes)), name  # Keras' spelling
        else:
            ambiguous.append(name)
            with pytest.raises(ConfigError, match=f"ImageNet class '{name}' is ambiguous"):
                targets.class_index(name)
    assert len(owners) > 1800 and sorted(ambiguous) == [
        "catamount", "crane", "crawfish", "grass snake", "horn", "maillot", "panda", "panther", "polecat",
        "sand viper", "sus scrofa", "wagon"]
    for keras_name, index in (("tiger_cat", 282), ("Egyptian_cat", 285), ("golden_retriever", 207),
                              ("toilet_tissue", 999), ("harmonica", 593), ("harp", 594), ("cardigan", 474)):
        assert targets.class_index(keras_name) == index, keras_name


@pytest.mark.parametrize("value, choices", [
    ("crane", "134 'crane \\(bird\\)' or 517 'crane \\(machine\\)'"),
    ("Maillot", "638 'tights' or 639 'tank suit'"),
    ("panda", "387 'red panda' or 388 'giant panda'"),
])  # fmt: skip
def test_an_ambiguous_synonym_is_one_line_naming_the_choices(value, choices):
    with pytest.raises(ConfigError) as e:
        resolve({"dream": {"dream_class": value}})
    msg = str(e.value)
    assert "\n" not in msg and re.fullmatch(
        f"ImageNet class '{value}' is ambiguous: it is {choices}; give that name or the index", msg), msg


@pytest.mark.parametrize("value, match", [
    ("cat", r"unknown ImageNet class 'cat' \(did you mean 'tabby cat', 'tiger cat'"),
    ("tabby kat", r"did you mean 'tabby cat'"),
    ("tigr_cat", r"did you mean 'tiger cat'"),
    (1000, "out of range"),
    (-1, "out of range"),
    (True, "class name or index"),
])
def test_unknown_class_suggests(value, match):
    with pytest.raises(ConfigError, match=match):
        resolve({"dream": {"dream_class": value}})


def test_a_guide_is_checked_where_it_is_used_not_by_the_config(tmp_path):
    """Validating a config reads no file: a guide that is not there is found missing where it is used (the CLI
    before any framework import: test_cli_bad_direction_fails_fast; the dreamer), with one clear line."""
    missing = str(tmp_path / "nope.png")
    assert resolve({"dream": {"guide": missing}}).dream.guide == missing
    with pytest.raises(InputError, match="guide image .*nope.png does not exist"):
        targets.find_guide(missing)
    with pytest.raises(ConfigError, match="dream.guide must be a path to an image file"):
        resolve({"dream": {"guide": 3}})
    with pytest.raises(ConfigError, match="guide_weight must be a number from 0 to 1"):
        resolve({"dream": {"guide_weight": 1.5}})


def test_builtin_presets_direct_the_dream():
    guided = resolve(presets.load("guided")).dream
    assert guided.guide and 0 < guided.guide_weight <= 1
    shipped = targets.find_guide(guided.guide)  # found among the built-in presets' guides, from any folder
    assert shipped.is_file() and shipped.parent == presets.builtin_dir() / "guides"
    assert targets.class_index(resolve(presets.load("cats")).dream.dream_class) == TABBY
    assert resolve(presets.load("strange")).dream.creativity == 1.0


# ---- composing terms -------------------------------------------------------------------------------------------

def test_guide_and_class_terms_compose_like_lucid():
    rng = np.random.default_rng(0)
    feats = rng.random((6, 8, 768)).astype(np.float32)
    layers = Objective.parse("mixed3:1,mixed5:1.5")
    obj = 0.7 * layers + 0.3 * Objective.guide("mixed5", feats)
    np.testing.assert_allclose(obj.weights, [0.7, 1.05, 0.3], rtol=1e-6)
    assert obj.outputs == ("mixed3", "mixed5", "mixed5")
    assert obj.targets[0].shape == (48, 768)
    # the target is the guide's features centred across channels (the layer term's own direction, all ones,
    # taken out), one scalar scaling them to a mean norm of GAUGE/sqrt(C)
    t = obj.targets[0]
    np.testing.assert_allclose(t.sum(axis=1), 0.0, atol=1e-6)
    norms = np.linalg.norm(t, axis=1)
    assert norms.mean() == pytest.approx(GAUGE["guide"] / np.sqrt(768), rel=1e-5)
    centred = feats.reshape(-1, 768) - feats.reshape(-1, 768).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(t / norms.mean(), centred / np.linalg.norm(centred, axis=1).mean(), atol=1e-5)
    # the compiled step depends on the structure only: not on weights or targets
    other = 0.2 * layers + 5 * Objective.guide("mixed5", rng.random((3, 3, 768)))
    assert other.structure == obj.structure
    assert (obj + Objective.direction("mixed10", rng.standard_normal(2048))).structure != obj.structure


def test_from_params_mixes_shares():
    rng = np.random.default_rng(1)
    guide = {"mixed3": rng.random((4, 4, 768)), "mixed5": rng.random((4, 4, 768))}
    p = DreamParams(layers=parse_layers("mixed3:1,mixed5:3"), guide="x", guide_weight=0.25, class_weight=0.4)
    obj = Objective.from_params(p, guide=guide, class_vector=rng.standard_normal(2048))
    # (1 - 0.4) * [(1 - 0.25) * layers + 0.25 * guide(same layers, same weights)] + 0.4 * class
    np.testing.assert_allclose(obj.weights, [0.6 * 0.75 * 1, 0.6 * 0.75 * 3, 0.6 * 0.25 * 1, 0.6 * 0.25 * 3,
                                             0.4], rtol=1e-6)
    assert [m.kind for m in obj.matches] == ["guide", "guide", "class"]
    assert obj.outputs == ("mixed3", "mixed5", "mixed3", "mixed5", "mixed10")
    assert Objective.from_params(p).weights.tolist() == [1.0, 3.0]  # no targets given: the layers alone
    # a share of 0 leaves the term out: the unguided (or class-less) objective itself, the same compiled step
    off = Objective.from_params(p.replace(guide_weight=0.0, class_weight=0.0), guide=guide,
                                class_vector=rng.standard_normal(2048))
    assert off.structure == Objective.from_params(p).structure and off.weights.tolist() == [1.0, 3.0]


def test_a_guide_of_zeros_is_refused():
    with pytest.raises(InputError, match="gives no features to match"):
        Objective.guide("mixed3", np.zeros((2, 2, 768)))
    assert isinstance(Objective.direction("mixed10", np.ones(2048)).matches[0], Match)


# ---- the ImageNet top ------------------------------------------------------------------------------------------

@pytest.fixture
def random_top(tmp_path) -> str:
    """A seeded random ImageNet top (never the real one): kernel (2048, 1000), bias (1000,)."""
    rng = np.random.default_rng(1234)
    path = tmp_path / "random_top.npz"
    np.savez(path, kernel=(rng.standard_normal((2048, 1000)) * 0.03).astype(np.float32),
             bias=np.zeros(1000, np.float32))
    return str(path)


def test_top_from_npz_and_keras_h5(tmp_path, random_top, clean_env, monkeypatch):
    import h5py

    kernel, bias = model.top_weights(model.resolve_top(random_top))
    assert kernel.shape == (2048, 1000) and bias.shape == (1000,)
    legacy = tmp_path / "full.h5"  # Keras' legacy full-model layout: the 'predictions' layer
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = [b"conv2d", b"predictions"]
        g = f.create_group("predictions")
        g.attrs["weight_names"] = [b"predictions/kernel:0", b"predictions/bias:0"]
        g.create_dataset("predictions/kernel:0", data=kernel)
        g.create_dataset("predictions/bias:0", data=bias + 1)
    k2, b2 = model.top_weights(legacy)
    np.testing.assert_array_equal(k2, kernel) and np.testing.assert_array_equal(b2, bias + 1)
    monkeypatch.setenv(model.TOP_ENV_VAR, str(legacy))
    assert model.resolve_top() == legacy
    bad = tmp_path / "bad.npz"
    np.savez(bad, kernel=np.zeros((10, 10)), bias=np.zeros(10))
    with pytest.raises(WeightsError, match="has shapes"):
        model.top_weights(bad)


def test_top_that_cannot_be_had_is_one_weights_error(clean_env, monkeypatch, tmp_path):
    assert model.resolve_top() is None  # nothing cached in the clean home
    monkeypatch.setattr(model, "TOP_URL", (tmp_path / "nowhere.h5").as_uri())  # no network needed to fail
    with pytest.raises(WeightsError, match="class dreaming needs InceptionV3's ImageNet top"):
        model.ensure_top()
    assert not list((clean_env / ".keras").rglob("*.h5"))  # nothing half-written
    monkeypatch.setenv(model.TOP_ENV_VAR, str(tmp_path / "missing.npz"))
    with pytest.raises(WeightsError, match="do not exist"):
        model.resolve_top()


# ---- dreaming toward a guide, a class, and by the lever (trained weights) --------------------------------------

FAST = DreamParams(layers=parse_layers("mixed4:1"), octaves=1, steps=4, step_size=0.02, jitter=4, tile_size=512,
                   tile_overlap=32, seed=0)


@pytest.fixture(scope="module")
def guide_file(tmp_path_factory):
    return str(write_rgb(tmp_path_factory.mktemp("guide") / "coffee.png", load_example("coffee.png", 96)))


def test_match_term_loss_is_the_best_match_dot_product(dreamer, natural_image, guide_file):
    """The backend's match term is mean_p max_k <a_p, t_k>, checked against numpy on the real activations."""
    obj = Objective.parse("mixed4:0.5") + Objective.guide("mixed4", dreamer.guide_features(guide_file, ("mixed4",))["mixed4"])
    x = (natural_image.astype(np.float32) / 127.5 - 1.0)[None]
    grads, losses = obj.bind(dreamer.step_fn(obj))(x, obj.weights)
    (a,) = dreamer.features(natural_image, ("mixed4",))
    a = a.reshape(-1, a.shape[-1])
    want = 0.5 * a.mean() + float(np.mean(np.max(a @ obj.targets[0].T, axis=1)))
    assert losses[0] == pytest.approx(want, rel=1e-4)
    assert grads.shape == x.shape and np.abs(grads).mean() > 0


def test_a_new_guide_needs_no_recompile(dreamer, natural_image, guide_file):
    """Targets are call arguments: another guide (another number of features) reuses the traced step."""
    rng = np.random.default_rng(0)
    first = Objective.parse("mixed4:1") + Objective.guide("mixed4", rng.random((5, 768)))
    step = dreamer.step_fn(first)
    x = (natural_image.astype(np.float32) / 127.5 - 1.0)[None]
    first.bind(step)(x, first.weights)
    traces = step.trace_count() if hasattr(step, "trace_count") else None
    second = 0.3 * Objective.parse("mixed4:1") + 2 * Objective.guide("mixed4", rng.random((9, 768)))
    assert dreamer.step_fn(second) is step
    second.bind(step)(x, second.weights)
    if traces is not None:
        assert step.trace_count() == traces


@pytest.fixture(scope="module")
def cat_guide(tmp_path_factory):
    return str(write_rgb(tmp_path_factory.mktemp("guide") / "cat.png", load_example("chelsea.png", 96)))


def _toward(dreamer, before, after, guide, layer="mixed4") -> tuple[float, float]:
    """How far a dream moved the mean ``layer`` feature toward the guide's: (the rise in its cosine with the
    guide's mean feature, the cosine between its change and the direction from the photo to the guide)."""
    def mean(image):
        (a,) = dreamer.features(image, (layer,))
        return a.reshape(-1, a.shape[-1]).mean(0)

    def cos(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    g = dreamer.guide_features(guide, (layer,))[layer]
    g = g.reshape(-1, g.shape[-1]).mean(0)
    f0, f1 = mean(before), mean(after)
    return cos(f1, g) - cos(f0, g), cos(f1 - f0, g - f0)


def test_guided_dream_moves_features_toward_the_guide(dreamer, cat_guide):
    """The gallery's case in small: a cat guide on the coffee photo, the `guided` preset's layers, guide_weight 0.8.

    Before the guide's features were centred and weighted like their layers (the review of guided-coffee.jpg),
    this dream barely moved toward the guide: rise +0.002, change-direction cosine 0.05 (plain: -0.123, -0.110);
    now +0.069 and 0.27."""
    photo = load_example("coffee.png", 128)
    p = FAST.replace(layers=parse_layers("mixed3:0.5,mixed4:1,mixed5:1"))
    plain = dreamer.dream(photo, p)
    guided = dreamer.dream(photo, p.replace(guide=cat_guide, guide_weight=0.8))
    rise_plain, dir_plain = _toward(dreamer, photo, plain, cat_guide)
    rise, direction = _toward(dreamer, photo, guided, cat_guide)
    assert rise > 0.035 and direction > 0.15, (rise, direction)  # the old code: 0.002, 0.049
    assert rise > rise_plain + 0.15 and direction > dir_plain + 0.3, (rise_plain, dir_plain, rise, direction)
    half = dreamer.dream(photo, p.replace(guide=cat_guide, guide_weight=0.5))
    rise_half, _ = _toward(dreamer, photo, half, cat_guide)
    assert rise_plain < rise_half < rise, (rise_plain, rise_half, rise)
    # guide_weight 0 is the unguided dream itself
    np.testing.assert_array_equal(dreamer.dream(photo, p.replace(guide=cat_guide, guide_weight=0.0)), plain)


def test_class_dream_raises_that_class_logit_more_than_the_others(dreamer, natural_image, random_top, monkeypatch):
    monkeypatch.setattr(dreamer, "top_weights", random_top)
    before = dreamer.logits(natural_image)
    params = FAST.replace(steps=5, dream_class="tabby cat", class_weight=1.0)
    delta = dreamer.logits(dreamer.dream(natural_image, params)) - before
    others = np.delete(delta, TABBY)
    assert delta[TABBY] > 0 and delta[TABBY] > others.mean() + 3 * others.std() / np.sqrt(len(others)), \
        (delta[TABBY], others.mean())
    assert (others < delta[TABBY]).mean() > 0.8, (others < delta[TABBY]).mean()
    plain = dreamer.logits(dreamer.dream(natural_image, FAST.replace(steps=5))) - before
    assert delta[TABBY] > plain[TABBY]


def test_creativity_is_monotone_in_dream_strength(dreamer):
    image = load_example("chelsea.png", 96)
    strength = []
    for c in (0.0, 0.5, 1.0):
        params = resolve({"dream": {"creativity": c, "jitter": 8}}).dream
        out = dreamer.dream(image, params)
        strength.append(float(np.abs(out.astype(np.int16) - image).mean()))
    assert strength[0] < strength[1] < strength[2], strength
    assert strength[2] > 1.5 * strength[0], strength


# ---- the command line ----------------------------------------------------------------------------------------

def test_cli_guided_dream_with_the_lever_records_both(tmp_path, image_file, guide_file, weights_path, clean_env):
    from typer.testing import CliRunner

    from dreamvid.cli import app

    out = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["dream", str(image_file("in.png", size=(96, 64))), "-o", str(out),
                                      "--weights", str(weights_path), "-p", "thumbnail", "--creativity", "0.2",
                                      "--steps", "1", "--octaves", "1", "--guide", guide_file, "--guide-weight",
                                      "0.6", "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_name(out.name + ".dreamvid.json").read_text())["config"]["dream"]
    assert record["creativity"] == 0.2 and record["guide"] == guide_file and record["guide_weight"] == 0.6
    assert record["steps"] == 1 and record["layers"] == creativity.lever(0.2)["layers"]


@pytest.mark.parametrize("args, match", [
    (["--creativity", "1.5"], "creativity must be a number from 0"),
    (["--dream-class", "kitty cat"], "unknown ImageNet class 'kitty cat'"),
    (["--dream-class", "1000"], "out of range"),
    (["--guide", "missing.png"], "guide image missing.png does not exist"),
    (["--guide", "notanimage.png"], "guide image: .*not a readable image"),
    (["--guide-weight", "-1"], "guide_weight must be"),
])
def test_cli_bad_direction_fails_fast(tmp_path, image_file, args, match):
    from tests.test_cli import assert_fails_fast, run_process

    (tmp_path / "notanimage.png").write_text("not an image\n")
    src = image_file("in.png", size=(96, 64))
    assert_fails_fast(*run_process("dream", src, "-o", tmp_path / "out.png", "--weights", "random", *args,
                                   cwd=tmp_path), match=match)


def test_cli_class_without_a_top_fails_fast(tmp_path, image_file, clean_env, monkeypatch):
    """No top cached, no download possible: one WeightsError line, before any framework import."""
    from tests.test_cli import assert_fails_fast, run_process

    monkeypatch.setenv(model.TOP_ENV_VAR, str(tmp_path / "absent_top.h5"))
    src = image_file("in.png", size=(96, 64))
    line = assert_fails_fast(*run_process("dream", src, "-o", tmp_path / "out.png", "--weights", "random",
                                          "--dream-class", "tabby cat", cwd=tmp_path), match="ImageNet top")
    assert "absent_top.h5" in line


@pytest.mark.parametrize("args, match", [
    (["--creativity", "1.5"], "creativity must be a number from 0"),
    (["--dream-class", "kitty cat"], "unknown ImageNet class 'kitty cat'"),
    (["--guide", "notanimage.png"], "guide image: .*not a readable image"),
    (["--class-weight", "2"], "class_weight must be"),
])
def test_cli_zoom_bad_direction_fails_fast(tmp_path, image_file, args, match):
    """`dreamvid zoom` takes the same direction flags as `dream` and `render`, checked before any framework."""
    from tests.test_cli import assert_fails_fast, run_process

    (tmp_path / "notanimage.png").write_text("not an image\n")
    src = image_file("in.png", size=(96, 64))
    assert_fails_fast(*run_process("zoom", src, "-o", tmp_path / "out.mp4", "--seconds", "1", "--weights", "random",
                                   *args, cwd=tmp_path), match=match)


def test_cli_zoom_class_without_a_top_fails_fast(tmp_path, image_file, clean_env, monkeypatch):
    from tests.test_cli import assert_fails_fast, run_process

    monkeypatch.setenv(model.TOP_ENV_VAR, str(tmp_path / "absent_top.h5"))
    src = image_file("in.png", size=(96, 64))
    assert_fails_fast(*run_process("zoom", src, "-o", tmp_path / "out.mp4", "--seconds", "1", "--weights", "random",
                                   "--dream-class", "281", cwd=tmp_path), match="ImageNet top")


def test_cli_guided_zoom_records_the_direction(tmp_path, image_file, guide_file, dreamer, monkeypatch):
    """A guided zoom with the lever runs, its report records guide, share and lever, and its frames differ from
    the same zoom without the guide."""
    from typer.testing import CliRunner

    import dreamvid.cli
    from dreamvid.cli import app
    from dreamvid.pipeline import report_path_for
    from tests.render_fixtures import decode_all

    monkeypatch.setattr(dreamvid.cli, "_dreamer", lambda *a: dreamer)
    src = image_file("in.png", size=(96, 64))
    common = ["--seconds", "0.5", "--fps", "6", "--octaves", "1", "--steps", "2", "--layers", "mixed4:1", "-q"]
    guided, plain = tmp_path / "guided.mp4", tmp_path / "plain.mp4"
    r = CliRunner().invoke(app, ["zoom", str(src), "-o", str(guided), *common, "--creativity", "0.3",
                                 "--guide", guide_file, "--guide-weight", "0.9"])
    assert r.exit_code == 0, r.output
    dream = json.loads(report_path_for(guided).read_text())["config"]["dream"]
    assert dream["guide"] == guide_file and dream["guide_weight"] == 0.9 and dream["creativity"] == 0.3
    assert dream["layers"] == "mixed4:1" and dream["steps"] == 2  # explicit flags beat the lever
    r = CliRunner().invoke(app, ["zoom", str(src), "-o", str(plain), *common, "--creativity", "0.3"])
    assert r.exit_code == 0, r.output
    a, b = decode_all(guided), decode_all(plain)
    assert len(a) == len(b) == 3
    assert np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]) > 0.5


def test_batch_with_a_class_and_no_top_fails_up_front(tmp_path, image_file, clean_env, monkeypatch):
    """`dreamvid batch` fetches or refuses the ImageNet top while it checks the job file, before any worker: a
    class job on a machine without the top is one line naming the job; with --skip-bad the other jobs run."""
    from dreamvid import batch
    from dreamvid.errors import ConfigError
    from tests.test_cli import assert_fails_fast, run_process

    monkeypatch.setenv(model.TOP_ENV_VAR, str(tmp_path / "absent_top.h5"))
    src = image_file("in.png", size=(96, 64))
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[defaults]\nweights = "random"\n\n[[job]]\nname = "plain"\ninput = "{src}"\n'
                    f'output = "plain.png"\n\n[[job]]\nname = "cats"\ninput = "{src}"\noutput = "cats.png"\n'
                    f'[job.dream]\ndream_class = "tabby cat"\n')
    with pytest.raises(ConfigError, match=r"1 bad job.*line 9 \(job 'cats'\): ImageNet top weights .*absent_top"):
        batch.load_jobs(jobs)
    skipped = []
    kept = batch.load_jobs(jobs, skip_bad=True, on_skip=lambda *a: skipped.append(a))
    assert [j.name for j in kept] == ["plain"] and [s[1] for s in skipped] == ["cats"]
    line = assert_fails_fast(*run_process("batch", jobs, cwd=tmp_path), match="job 'cats'.*ImageNet top")
    assert "absent_top.h5" in line and not (tmp_path / "plain.png").exists()


def test_presets_docs_name_every_new_key():
    text = (REPO / "docs" / "presets.md").read_text()
    for key in ("creativity", "guide", "guide_weight", "dream_class", "class_weight"):
        assert f"| `{key}` |" in text, key


# ---- renders, and the other backends --------------------------------------------------------------------------

def test_render_with_guide_and_class(tmp_path, media, dreamer, guide_file, random_top, monkeypatch):
    """A render dreams every frame toward the guide and the class (random top: the path, not the look), records
    them in its report, and differs from the same render without them."""
    from tests.render_fixtures import decode_all, read_report, render_to, tiny_config

    monkeypatch.setattr(dreamer, "top_weights", random_top)
    directed = tiny_config(dream={"guide": guide_file, "guide_weight": 0.7, "dream_class": "tabby cat",
                                  "class_weight": 0.5, "creativity": 0.0, "layers": "mixed4:1", "steps": 1})
    plain = tiny_config(dream={"creativity": 0.0, "layers": "mixed4:1", "steps": 1})
    a = render_to(tmp_path / "directed.mp4", media["clip"], directed, dreamer, duration=0.25)
    b = render_to(tmp_path / "plain.mp4", media["clip"], plain, dreamer, duration=0.25)
    assert a["frames"] == b["frames"] > 0
    dream = read_report(tmp_path / "directed.mp4")["config"]["dream"]
    assert dream["guide"] == guide_file and dream["dream_class"] == "tabby cat" and dream["creativity"] == 0.0
    diff = np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(decode_all(tmp_path / "directed.mp4"),
                                                                    decode_all(tmp_path / "plain.mp4"))])
    assert diff > 0.2, diff


@pytest.mark.parametrize("backend", [pytest.param("jax", marks=needs("jax")),
                                     pytest.param("torch", marks=needs("torch"))])
def test_cli_directed_dream_with_backend(backend, weights_path, guide_file, random_top, tmp_path):
    """Guide, class and lever end to end on another backend, in its own process (Keras fixes its backend)."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    out = tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "DREAMVID_BACKEND")}
    env[model.TOP_ENV_VAR] = random_top
    proc = subprocess.run(
        [sys.executable, "-m", "dreamvid", "dream", str(REPO / "examples" / "chelsea.png"), "-o", str(out),
         "--backend", backend, "--weights", str(weights_path), "--creativity", "0", "--steps", "2", "--octaves",
         "1", "--max-side", "96", "--guide", guide_file, "--guide-weight", "0.5", "--dream-class", "281", "--quiet"],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.with_name(out.name + ".dreamvid.json").read_text())
    assert record["backend"] == backend and record["config"]["dream"]["dream_class"] == "281"


def test_class_names_and_guides_ship_inside_the_wheel(tmp_path):
    """The installed package (an unpacked wheel, outside the repository) has the class names and finds the
    built-in guide by its preset-relative path."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("hatchling", reason="the wheel build needs hatchling")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=240)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:  # pragma: no cover
        pytest.skip("pip is not installed in this environment")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("dreamvid-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    probe = ("from dreamvid import targets; print(targets.class_names()[281]); "
             "print(targets.find_guide('guides/tabby.jpg')); print(targets.class_index('tabby'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PYTHONPATH": str(tmp_path / "site"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    name, guide, tabby = out.stdout.splitlines()[:3]
    assert name == "tabby cat" and tabby == str(TABBY)  # the synonyms ship too
    assert guide == str(tmp_path / "site" / "dreamvid" / "presets_data" / "guides" / "tabby.jpg")
