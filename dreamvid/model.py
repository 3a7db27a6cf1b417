"""InceptionV3 feature extractor and weights resolution.

Weights are resolved in this order (first hit wins):

1. ``--weights`` (a file, ``imagenet`` or ``random``);
2. ``$DREAMVID_WEIGHTS``;
3. a file imported with ``dreamvid weights --import FILE`` (kept in the dreamvid cache folder);
4. Keras' ImageNet weights, downloaded once and cached in ``~/.keras/models/``.

The model is built once per process (:func:`feature_model` is memoised) and truncated at the deepest chosen
layer, so no work is spent on layers the objective does not use.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import LAYER_NAMES
from .errors import ConfigError, WeightsError, suggest

ENV_VAR = "DREAMVID_WEIGHTS"
IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + IMAGENET_FILE
IMPORTED_NAME = "inception_v3_notop.weights.h5"
MIN_SIDE = 75  # InceptionV3's smallest valid input


def cache_dir() -> Path:
    """dreamvid's cache folder: ``$DREAMVID_CACHE``, else ``$XDG_CACHE_HOME/dreamvid``, else ``~/.cache/dreamvid``."""
    if os.environ.get("DREAMVID_CACHE"):
        return Path(os.environ["DREAMVID_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dreamvid"


def keras_cache_file() -> Path:
    base = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return base / "models" / IMAGENET_FILE


@dataclass(frozen=True)
class WeightsSource:
    """Which weights a run uses. ``kind`` is 'file', 'imagenet' or 'random'; ``origin`` says who chose it."""

    kind: str
    path: Path | None
    origin: str
    seed: int = 0

    def describe(self) -> str:
        if self.kind == "random":
            return f"random weights (seed {self.seed}), from {self.origin} — for smoke runs only"
        if self.kind == "imagenet":
            where = self.path if self.path and self.path.exists() else f"{IMAGENET_URL} (downloaded on first use)"
            state = "cached" if self.path and self.path.exists() else "not downloaded yet"
            return f"ImageNet weights via Keras, {state}: {where}"
        return f"weights file {self.path}, from {self.origin}"

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}:{self.seed if self.kind == 'random' else ''}"


def resolve_weights(weights: str | os.PathLike | None = None, *, seed: int = 0) -> WeightsSource:
    """Decide which weights to use, without loading them. Raises :class:`WeightsError` for a missing file."""
    if weights is not None and str(weights) != "":
        origin, value = "--weights", str(weights)
    elif os.environ.get(ENV_VAR):
        origin, value = f"${ENV_VAR}", os.environ[ENV_VAR]
    else:
        imported = cache_dir() / IMPORTED_NAME
        if imported.exists():
            return WeightsSource("file", imported, "the dreamvid cache (dreamvid weights --import)")
        return WeightsSource("imagenet", keras_cache_file(), "the default")
    if value == "random":
        return WeightsSource("random", None, origin, seed)
    if value == "imagenet":
        return WeightsSource("imagenet", keras_cache_file(), origin)
    path = Path(value).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file {path} (from {origin}) does not exist; give a path to an InceptionV3 "
                           "no-top weights file, or 'imagenet', or 'random'")
    if path.is_dir() or path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} (from {origin}) is empty or a folder; give an InceptionV3 .h5 file")
    return WeightsSource("file", path, origin)


def import_weights(src: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that ``src`` loads into InceptionV3, then copy it into the dreamvid cache; return the new path."""
    from .fsutil import atomic_output

    src_path = resolve_weights(src).path
    if src_path is None:
        raise WeightsError("import takes a weights file, not 'imagenet' or 'random'")
    base_model(WeightsSource("file", src_path, "import"), "fp32")  # raises WeightsError if it does not fit
    dest = cache_dir() / IMPORTED_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest, overwrite=True if overwrite or dest.exists() else False) as tmp:
        shutil.copyfile(src_path, tmp)
    return dest


PRECISIONS = ("fp32", "bf16")
_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16"}


@functools.lru_cache(maxsize=2)
def base_model(source: WeightsSource, precision: str = "fp32"):
    """The full no-top InceptionV3 with ``source``'s weights. Built once per process, source and precision.

    ``bf16`` builds the layers under Keras' ``mixed_bfloat16`` policy: weights stay float32, the convolutions
    run in bfloat16 (about 1.5x faster on CPUs with AVX512-BF16 or AMX, and on GPUs).
    """
    import keras

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'{suggest(precision, PRECISIONS)}; use fp32 or bf16")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICY[precision])
    try:
        return _build(source)
    finally:
        keras.config.set_dtype_policy(previous)


def _build(source: WeightsSource):
    import keras

    if source.kind == "random":
        keras.utils.set_random_seed(source.seed)
        return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    if source.kind == "imagenet":
        try:
            return keras.applications.InceptionV3(include_top=False, weights="imagenet", input_shape=(None, None, 3))
        except Exception as e:  # network errors surface as many types
            reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise WeightsError(
                f"could not download the ImageNet weights ({reason}); check your connection, or download "
                f"{IMAGENET_URL} yourself and pass --weights FILE (or run `dreamvid weights --import FILE`)"
            ) from None
    model = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    try:
        model.load_weights(str(source.path))
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise WeightsError(
            f"cannot load {source.path} into InceptionV3 ({reason}); it must be weights for "
            "keras.applications.InceptionV3(include_top=False)"
        ) from None
    return model


def check_layers(names) -> tuple[str, ...]:
    for n in names:
        if n not in LAYER_NAMES:
            raise ConfigError(f"unknown layer '{n}'{suggest(n, LAYER_NAMES)}; choose from mixed0..mixed10")
    return tuple(names)


@functools.lru_cache(maxsize=8)
def feature_model(source: WeightsSource, layers: tuple[str, ...], precision: str = "fp32"):
    """A keras Model from the image to the activations of ``layers``, truncated at the deepest of them."""
    import keras

    check_layers(layers)
    base = base_model(source, precision)
    return keras.Model(base.input, [base.get_layer(n).output for n in layers], name="dreamvid_features")


def layer_table(source: WeightsSource | None = None, *, size: tuple[int, int] = (512, 512)) -> list[tuple[str, tuple]]:
    """(name, output shape for an ``size`` input) of every dreamable layer. Needs no weights."""
    import keras

    model = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size[0], size[1], 3))
    return [(n, tuple(model.get_layer(n).output.shape)) for n in LAYER_NAMES]
