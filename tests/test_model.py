"""The model: weights resolution (--weights > $DREAMVID_WEIGHTS > imported file > ImageNet), loading errors,
``dreamvid weights --import``, and the feature extractor.

Resolution is tested with stand-in files (it never loads them). Loading is tested with a weights file saved from
the random model, and with the trained file where it exists. Nothing here may download the ImageNet weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dreamvid import model
from dreamvid.cli import app
from dreamvid.config import LAYER_CHANNELS, LAYER_NAMES
from dreamvid.dream import Dreamer
from dreamvid.errors import ConfigError, WeightsError
from dreamvid.model import ENV_VAR, IMPORTED_NAME, WeightsSource, resolve_weights

RANDOM = WeightsSource("random", None, "--weights", 0)  # what Dreamer(weights="random") and --weights random use


def stand_in(path: Path) -> Path:
    """A non-empty file that resolution accepts (it checks existence and size, not content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really weights")
    return path


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, repr(msg)
    return msg


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, match: str):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(match, errors[0]), result.output


@pytest.fixture
def cache(clean_env, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DREAMVID_CACHE", str(folder))
    return folder


# ---- resolution order ------------------------------------------------------------------------------------------

def test_cache_dir_resolution(clean_env, tmp_path, monkeypatch):
    assert model.cache_dir() == clean_env / ".cache" / "dreamvid"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model.cache_dir() == tmp_path / "xdg" / "dreamvid"
    monkeypatch.setenv("DREAMVID_CACHE", str(tmp_path / "mine"))
    assert model.cache_dir() == tmp_path / "mine"


def test_default_is_imagenet_in_the_keras_cache(clean_env):
    src = resolve_weights()
    assert src.kind == "imagenet" and src.origin == "the default"
    assert src.path == clean_env / ".keras" / "models" / model.IMAGENET_FILE
    assert src.describe().startswith("ImageNet weights via Keras, not downloaded yet")


def test_resolution_order(cache, tmp_path, monkeypatch):
    imported = stand_in(cache / IMPORTED_NAME)
    src = resolve_weights()
    assert (src.kind, src.path) == ("file", imported) and "cache" in src.origin  # 3. the imported file

    env_file = stand_in(tmp_path / "env.weights.h5")
    monkeypatch.setenv(ENV_VAR, str(env_file))
    src = resolve_weights()
    assert (src.kind, src.path, src.origin) == ("file", env_file, f"${ENV_VAR}")  # 2. beats the imported file

    flag_file = stand_in(tmp_path / "flag.weights.h5")
    src = resolve_weights(flag_file)
    assert (src.kind, src.path, src.origin) == ("file", flag_file, "--weights")  # 1. beats everything
    assert resolve_weights("random").kind == "random"
    assert resolve_weights("imagenet").kind == "imagenet"
    assert resolve_weights("").path == env_file  # an empty flag is no flag

    monkeypatch.setenv(ENV_VAR, "random")
    assert (resolve_weights().kind, resolve_weights().origin) == ("random", f"${ENV_VAR}")
    monkeypatch.setenv(ENV_VAR, "imagenet")
    assert resolve_weights().kind == "imagenet"


def test_random_weights_need_no_file(clean_env):
    src = resolve_weights("random", seed=3)
    assert (src.kind, src.path, src.seed) == ("random", None, 3)
    assert src.describe() == "random weights (seed 3), from --weights — for smoke runs only"


def test_the_source_key_ignores_who_chose_it(tmp_path):
    p = tmp_path / "w.h5"
    assert WeightsSource("file", p, "--weights").key == WeightsSource("file", p, f"${ENV_VAR}").key
    assert WeightsSource("random", None, "x", 1).key != WeightsSource("random", None, "x", 2).key


# ---- resolution errors ---------------------------------------------------------------------------------------

def test_missing_weights_file(clean_env, tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match=r"nope\.h5 \(from --weights\) does not exist") as e:
        resolve_weights(tmp_path / "nope.h5")
    one_line(e)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.h5"))
    with pytest.raises(WeightsError, match=r"gone\.h5 \(from \$DREAMVID_WEIGHTS\) does not exist") as e:
        resolve_weights()
    one_line(e)


def test_empty_file_or_folder_is_not_weights(tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="is empty or a folder") as e:
        resolve_weights(empty)
    one_line(e)
    with pytest.raises(WeightsError, match="is empty or a folder"):
        resolve_weights(tmp_path)


def test_corrupt_weights_file_is_one_clear_line(clean_env, image_file, tmp_path):
    corrupt = tmp_path / "x.h5"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WeightsError, match=r"cannot load .*x\.h5 into InceptionV3") as e:
        model.base_model(resolve_weights(corrupt))
    one_line(e)
    # and through the CLI: one line, no traceback, no output file
    src = image_file("in.png", size=(96, 80))
    out = tmp_path / "out.png"
    result = cli("dream", src, "-o", out, "--weights", corrupt, "-p", "thumbnail", "--layers", "mixed3:1",
                 "--octaves", 1, "--steps", 1, "-q")
    assert_one_line_error(result, r"cannot load .*x\.h5 into InceptionV3")
    assert result.exit_code == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


# ---- the feature model --------------------------------------------------------------------------------------------

def test_feature_model_outputs_the_chosen_layers_and_is_built_once(random_dreamer):
    fm = model.feature_model(RANDOM, ("mixed3", "mixed5"))
    assert model.feature_model(RANDOM, ("mixed3", "mixed5")) is fm
    assert [o.shape[-1] for o in fm.outputs] == [LAYER_CHANNELS["mixed3"], LAYER_CHANNELS["mixed5"]]
    assert model.base_model(RANDOM) is model.base_model(RANDOM)


def test_feature_model_rejects_unknown_layers_and_precisions():
    with pytest.raises(ConfigError, match=r"unknown layer 'mixed11'"):
        model.feature_model(RANDOM, ("mixed11",))
    with pytest.raises(ConfigError, match=r"unknown precision 'fp16'"):
        model.base_model(RANDOM, "fp16")


def test_layer_table_shapes():
    table = dict(model.layer_table(size=(128, 128)))
    assert list(table) == list(LAYER_NAMES)
    for name, shape in table.items():
        assert shape[-1] == LAYER_CHANNELS[name], name
    sides = [table[n][1] for n in LAYER_NAMES]
    assert sides == sorted(sides, reverse=True) and sides[0] > sides[-1]


def test_trained_weights_are_really_loaded(dreamer, random_dreamer, natural_image):
    from tests.test_dream import FAST

    assert dreamer.weights.kind == "file"
    trained = dreamer.objective_value(natural_image, FAST)
    random = random_dreamer.objective_value(natural_image, FAST)
    assert np.isfinite(trained) and trained > 0
    assert abs(trained - random) > 1e-3 * max(abs(trained), abs(random))


# ---- dreamvid weights --import ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_random_weights(tmp_path_factory) -> Path:
    """A real (loadable) InceptionV3 no-top weights file: the session's random model, saved."""
    path = tmp_path_factory.mktemp("weights") / "mine.weights.h5"
    model.base_model(RANDOM).save_weights(str(path))
    return path


def test_import_copies_into_the_cache_and_becomes_the_default(cache, saved_random_weights, tmp_path, monkeypatch):
    result = cli("weights", "--import", saved_random_weights)
    assert result.exit_code == 0, result.output
    dest = cache / IMPORTED_NAME
    assert dest.is_file() and dest.read_bytes() == saved_random_weights.read_bytes()
    assert str(dest) in result.stdout and "now the default" in result.stdout
    assert sorted(p.name for p in cache.iterdir()) == [IMPORTED_NAME], "no temp files left in the cache"

    src = resolve_weights()
    assert (src.kind, src.path) == ("file", dest)
    assert Dreamer().weights.path == dest  # what a run with no --weights and no $DREAMVID_WEIGHTS uses
    shown = cli("weights")
    assert shown.exit_code == 0 and shown.stdout.strip() == src.describe()
    assert str(dest) in shown.stdout and "dreamvid cache" in shown.stdout

    monkeypatch.setenv(ENV_VAR, "random")  # the environment still wins over the import
    assert "from $DREAMVID_WEIGHTS" in cli("weights").stdout


def test_import_rejects_a_file_that_is_not_inceptionv3_weights(cache, tmp_path):
    bogus = tmp_path / "bogus.weights.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    assert_one_line_error(cli("weights", "--import", bogus), r"cannot load .*bogus\.weights\.h5 into InceptionV3")
    assert not (cache / IMPORTED_NAME).exists()
    assert not cache.exists() or list(cache.iterdir()) == []
    assert_one_line_error(cli("weights", "--import", tmp_path / "nope.h5"), r"nope\.h5 .*does not exist")
    assert_one_line_error(cli("weights", "--import", "random"), r"import takes a weights file")


# ---- InceptionV3 without Keras: the architecture as code, folded weights -----------------------------------------

@pytest.fixture(scope="module")
def keras_net(tmp_path_factory):
    """A fresh Keras InceptionV3 with random weights *and* random batch-norm statistics (so folding them matters),
    saved in both the Keras 3 (.weights.h5) and the legacy (.h5, Keras' ImageNet files) formats."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    net = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(5)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            beta, mean, var = (v.numpy() for v in layer.weights)
            layer.set_weights([rng.normal(0, 0.2, beta.shape), rng.normal(0, 0.2, mean.shape),
                               rng.uniform(0.3, 2.0, var.shape)])
    folder = tmp_path_factory.mktemp("net")
    new, legacy = folder / "net.weights.h5", folder / "net_legacy.h5"
    net.save_weights(str(new))
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, net)
    return net, new, legacy


def test_file_order_is_keras_layer_order(keras_net):
    """Weights files store layers in the Keras model's order; model.FILE_ORDER maps creation order onto it."""
    import keras

    net = keras_net[0]
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # the fixture's model is built with fresh names; its creation order is the order of the trailing counters
    def created(layer):
        m = re.search(r"_(\d+)$", layer.name)
        return int(m[1]) if m else 0

    base_c, base_b = min(map(created, convs)), min(map(created, bns))
    order_c = [None] * len(convs)
    order_b = [None] * len(bns)
    for i, layer in enumerate(convs):
        order_c[created(layer) - base_c] = i
    for i, layer in enumerate(bns):
        order_b[created(layer) - base_b] = i
    assert tuple(order_c) == model.FILE_ORDER == tuple(order_b)
    assert model.CONVS_UPTO["mixed10"] == len(convs) == 94


@pytest.mark.parametrize("fmt", ["keras3", "legacy"])
def test_folded_network_computes_what_keras_computes(keras_net, fmt):
    import tensorflow as tf

    from dreamvid.backends import tensorflow_backend as tb

    net, new, legacy = keras_net
    layers = ("mixed2", "mixed5", "mixed10")
    folded = model.folded_weights(WeightsSource("file", new if fmt == "keras3" else legacy, "test"), layers)
    assert len(folded.kernels) == model.CONVS_UPTO["mixed10"]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 91, 117, 3)).astype(np.float32)
    ref = [a.numpy() for a in _keras_features(net, layers)(x)]
    got = [a.numpy() for a in model.inception_v3(tb._Ops(folded), tf.constant(x), layers)]
    for name, r, g in zip(layers, ref, got):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name)


def test_folded_step_matches_the_keras_step_and_traces_once(keras_net):
    from dreamvid.backends import tensorflow_backend as tb

    src = WeightsSource("file", keras_net[1], "test")
    channels = ((), (3, 7, 40))
    feats = model.Features(src, ("mixed3", "mixed5"))
    assert feats.folded() is not None
    fast = tb.make_step(feats, channels=channels)
    slow = tb.make_step(_keras_features(keras_net[0], ("mixed3", "mixed5")), channels=channels)
    w = np.array([1.0, 0.7], np.float32)
    rng = np.random.default_rng(1)
    for shape in [(1, 96, 128), (3, 80, 80), (1, 131, 97)]:  # every octave/tile shape: one graph
        x = rng.uniform(-1, 1, (*shape, 3)).astype(np.float32)
        g1, l1 = fast(x, w)
        g2, l2 = slow(x, w)
        np.testing.assert_allclose(l1, l2, rtol=1e-4)
        # (not element by element: where a max-pool window holds near-ties, rounding can route a gradient to a
        # neighbouring pixel in either implementation)
        assert np.linalg.norm(g1 - g2) < 1e-2 * np.linalg.norm(g2), shape
        assert np.corrcoef(g1.ravel(), g2.ravel())[0, 1] > 0.9999, shape
    assert fast.trace_count() == 1 and slow.trace_count() == 1


def _keras_features(net, layers):
    import keras

    return keras.Model(net.input, [net.get_layer(n).output for n in layers])


def test_a_weights_file_dream_never_builds_the_keras_model(weights_path, natural_image):
    from tests.test_dream import FAST

    d = Dreamer(weights=str(weights_path), seed=0)
    before = model.feature_model.cache_info().misses
    out = d.dream(natural_image, FAST)
    assert out.shape == natural_image.shape and np.abs(out.astype(int) - natural_image).mean() > 0.5
    assert model.feature_model.cache_info().misses == before, "the Keras model was built for a weights file"


def test_layer_table_is_the_keras_models_shapes():
    import keras

    for h, w in [(75, 75), (128, 128), (333, 517)]:
        net = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(h, w, 3))
        assert model.layer_table(size=(h, w)) == [(n, tuple(net.get_layer(n).output.shape)) for n in LAYER_NAMES]


def test_weights_file_is_checked_without_a_framework(tmp_path, keras_net):
    import h5py

    text = tmp_path / "w.h5"
    text.write_text("not weights")
    with pytest.raises(WeightsError, match=r"cannot load .*w\.h5 into InceptionV3 \(not an HDF5 file\)") as e:
        model.check_weights(WeightsSource("file", text, "test"))
    one_line(e)
    other = tmp_path / "other.weights.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((3, 3), np.float32))
    with pytest.raises(WeightsError, match=r"other\.weights\.h5 into InceptionV3 \(no InceptionV3 layers"):
        model.check_weights(WeightsSource("file", other, "test"))
    assert model.check_weights(WeightsSource("file", keras_net[1], "test")).path == keras_net[1]
    assert model.check_weights(RANDOM) is RANDOM


def test_folded_weights_are_cached_between_runs(cache, keras_net, tmp_path):
    import shutil

    path = shutil.copy(keras_net[1], tmp_path / "w.weights.h5")
    src = WeightsSource("file", Path(path), "test")
    model.folded_weights.cache_clear()
    first = model.folded_weights(src, ("mixed4",))
    entries = list((cache / "folded").glob("*.npz"))
    assert len(entries) == 1 and entries[0].stat().st_size > sum(k.nbytes for k in first.kernels)
    model.folded_weights.cache_clear()
    again = model.folded_weights(src, ("mixed2",))  # fewer convolutions: served from the same entry
    assert all(np.array_equal(a, b) for a, b in zip(first.kernels, again.kernels))
    assert list((cache / "folded").glob("*.npz")) == entries

    entries[0].write_bytes(b"damaged")  # a damaged entry is read around and rewritten
    model.folded_weights.cache_clear()
    assert all(np.array_equal(a, b) for a, b in zip(first.biases, model.folded_weights(src, ("mixed4",)).biases))
    assert entries[0].stat().st_size > 1000

    with h5py_file(path) as f:  # a changed weights file is read again, not served stale
        f["layers/conv2d/vars/0"][0, 0, 0, 0] += 1.0
    model.folded_weights.cache_clear()
    changed = model.folded_weights(src, ("mixed4",))
    assert not np.array_equal(changed.kernels[0], first.kernels[0])
    assert len(list((cache / "folded").glob("*.npz"))) == 2
    model.folded_weights.cache_clear()


def h5py_file(path):
    import h5py

    return h5py.File(path, "r+")
