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
