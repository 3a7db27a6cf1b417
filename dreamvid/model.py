"""InceptionV3 feature extractor and weights resolution.

Weights are resolved in this order (first hit wins):

1. ``--weights`` (a file, ``imagenet`` or ``random``);
2. ``$DREAMVID_WEIGHTS``;
3. a file imported with ``dreamvid weights --import FILE`` (kept in the dreamvid cache folder);
4. Keras' ImageNet weights, downloaded once and cached in ``~/.keras/models/``.

The model is built once per process (:func:`feature_model` is memoised) and truncated at the deepest chosen
layer, so no work is spent on layers the objective does not use. Where the weights come from a file,
:func:`inception_v3` and :func:`folded_weights` describe the same network without Keras (the architecture as plain
code, batch norm folded into the convolutions), which a backend can run without building the Keras model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    check_weights(WeightsSource("file", src_path, "import"))
    # every convolution and batch norm, shape by shape (no framework needed)
    _check_shapes(src_path, _read_convs(src_path, CONVS_UPTO["mixed10"]), LAYER_NAMES)
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
    check_precision(precision)
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICY[precision])
    try:
        return _build(source)
    finally:
        keras.config.set_dtype_policy(previous)


def _reason(e: BaseException) -> str:
    """A failed download's cause in a few words (network errors surface as many types)."""
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__


def _build(source: WeightsSource):
    import keras

    if source.kind == "random":
        keras.utils.set_random_seed(source.seed)
        return keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    if source.kind == "imagenet":
        try:
            return keras.applications.InceptionV3(include_top=False, weights="imagenet", input_shape=(None, None, 3))
        except Exception as e:  # network errors surface as many types
            raise WeightsError(
                f"could not download the ImageNet weights ({_reason(e)}); check your connection, or download "
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


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'{suggest(precision, PRECISIONS)}; use fp32 or bf16")
    return precision


@functools.lru_cache(maxsize=8)
def feature_model(source: WeightsSource, layers: tuple[str, ...], precision: str = "fp32"):
    """A keras Model from the image to the activations of ``layers``, truncated at the deepest of them."""
    import keras

    check_layers(layers)
    base = base_model(source, precision)
    return keras.Model(base.input, [base.get_layer(n).output for n in layers], name="dreamvid_features")


def layer_table(source: WeightsSource | None = None, *, size: tuple[int, int] = (512, 512)) -> list[tuple[str, tuple]]:
    """(name, output shape ``(None, h, w, channels)`` for a ``size`` input) of every dreamable layer.

    Computed from the architecture (:func:`inception_v3`) alone: no weights, no framework.
    """
    acts = inception_v3(_ShapeOps(), (int(size[0]), int(size[1]), 3), LAYER_NAMES)
    return [(n, (None, *shape)) for n, shape in zip(LAYER_NAMES, acts)]


# ---------------------------------------------------------------------------------------------------------------
# InceptionV3 without Keras: the architecture as plain code, and its weights with batch norm folded in.
#
# Building ``keras.applications.InceptionV3`` costs seconds per process (the functional graph of 300 layers, and
# initialisers for 22M parameters that the weights file then overwrites). A backend that can run the network from
# the architecture below instead reads only the convolutions it needs (up to the deepest dreamed layer) straight
# from the weights file, each with its batch norm folded in: ``relu(bn(conv(x, W)))`` = ``relu(conv(x, W·s) + b)``.

BN_EPSILON = 1e-3  # keras.layers.BatchNormalization's default, which InceptionV3 uses
# number of convolutions from the input up to and including each mixed layer
CONVS_UPTO = dict(zip(LAYER_NAMES, (12, 19, 26, 30, 40, 50, 60, 70, 76, 85, 94)))
# The i-th convolution the architecture creates is the FILE_ORDER[i]-th Conv2D (and BatchNormalization) of the
# Keras model's layer list, which is the order weights files use (``conv2d_<n>`` in a .weights.h5 file; the order
# of the layers with weights in a legacy .h5 file). Checked against Keras by tests/test_model.py.
FILE_ORDER = (
    0, 1, 2, 3, 4, 8, 6, 9, 5, 7, 10, 11, 15, 13, 16, 12, 14, 17, 18, 22, 20, 23, 19, 21, 24, 25, 28, 26, 27, 29,
    36, 32, 34, 37, 30, 31, 33, 35, 38, 39, 46, 42, 44, 47, 40, 41, 43, 45, 48, 49, 56, 52, 54, 57, 50, 51, 53, 55,
    58, 59, 66, 62, 64, 67, 60, 61, 63, 65, 68, 69, 72, 74, 70, 71, 73, 75, 83, 77, 79, 80, 76, 78, 81, 82, 84, 92,
    86, 88, 89, 85, 87, 90, 91, 93,
)


def inception_v3(ops, x, layers: Sequence[str]) -> list:
    """Run InceptionV3 (``keras.applications``, no top) on ``x`` up to the deepest of ``layers``.

    ``ops`` supplies the primitives, so one definition serves every framework (and shape inference):

    - ``ops.conv(x, i, filters, (kh, kw), stride, padding)``: convolution ``i`` (creation order) + bias + relu
    - ``ops.max_pool(x)``: 3x3, stride 2, valid;  ``ops.avg_pool(x)``: 3x3, stride 1, same
    - ``ops.concat([x, ...])``: along channels

    Returns the activations of ``layers``, in that order.
    """
    check_layers(layers)
    deepest = max(LAYER_NAMES.index(n) for n in layers)
    count = iter(range(len(FILE_ORDER)))
    acts: dict[str, object] = {}

    def cb(x, filters, kh, kw, stride=1, padding="same"):
        return ops.conv(x, next(count), filters, (kh, kw), stride, padding)

    def done(name, x) -> bool:
        acts[name] = x
        return LAYER_NAMES.index(name) == deepest

    x = cb(x, 32, 3, 3, 2, "valid")
    x = cb(x, 32, 3, 3, 1, "valid")
    x = ops.max_pool(cb(x, 64, 3, 3))
    x = cb(x, 80, 1, 1, 1, "valid")
    x = ops.max_pool(cb(x, 192, 3, 3, 1, "valid"))
    for i, pool_filters in enumerate((32, 64, 64)):  # mixed0-2
        b1 = cb(x, 64, 1, 1)
        b5 = cb(cb(x, 48, 1, 1), 64, 5, 5)
        b3 = cb(cb(cb(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
        bp = cb(ops.avg_pool(x), pool_filters, 1, 1)
        x = ops.concat([b1, b5, b3, bp])
        if done(f"mixed{i}", x):
            return [acts[n] for n in layers]
    b3 = cb(x, 384, 3, 3, 2, "valid")  # mixed3
    bd = cb(cb(cb(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, 2, "valid")
    x = ops.concat([b3, bd, ops.max_pool(x)])
    if done("mixed3", x):
        return [acts[n] for n in layers]
    for i, f in zip(range(4, 8), (128, 160, 160, 192)):  # mixed4-7
        b1 = cb(x, 192, 1, 1)
        b7 = cb(cb(cb(x, f, 1, 1), f, 1, 7), 192, 7, 1)
        bd = cb(cb(cb(cb(cb(x, f, 1, 1), f, 7, 1), f, 1, 7), f, 7, 1), 192, 1, 7)
        bp = cb(ops.avg_pool(x), 192, 1, 1)
        x = ops.concat([b1, b7, bd, bp])
        if done(f"mixed{i}", x):
            return [acts[n] for n in layers]
    b3 = cb(cb(x, 192, 1, 1), 320, 3, 3, 2, "valid")  # mixed8
    b7 = cb(cb(cb(cb(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, 2, "valid")
    x = ops.concat([b3, b7, ops.max_pool(x)])
    if done("mixed8", x):
        return [acts[n] for n in layers]
    for i in (9, 10):
        b1 = cb(x, 320, 1, 1)
        b3 = cb(x, 384, 1, 1)
        b3 = ops.concat([cb(b3, 384, 1, 3), cb(b3, 384, 3, 1)])
        bd = cb(cb(x, 448, 1, 1), 384, 3, 3)
        bd = ops.concat([cb(bd, 384, 1, 3), cb(bd, 384, 3, 1)])
        bp = cb(ops.avg_pool(x), 192, 1, 1)
        x = ops.concat([b1, b3, bd, bp])
        if done(f"mixed{i}", x):
            return [acts[n] for n in layers]
    raise AssertionError("unreachable")  # pragma: no cover


class _ShapeOps:
    """:func:`inception_v3`'s primitives over shapes ``(h, w, channels)``."""

    @staticmethod
    def _side(n: int, k: int, stride: int, padding: str) -> int:
        return -(-n // stride) if padding == "same" else (n - k) // stride + 1

    def conv(self, x, i, filters, kernel, stride, padding):
        return (self._side(x[0], kernel[0], stride, padding), self._side(x[1], kernel[1], stride, padding), filters)

    def max_pool(self, x):
        return (self._side(x[0], 3, 2, "valid"), self._side(x[1], 3, 2, "valid"), x[2])

    def avg_pool(self, x):
        return x

    def concat(self, xs):
        return (xs[0][0], xs[0][1], sum(x[2] for x in xs))


@dataclass(frozen=True)
class FoldedWeights:
    """InceptionV3's convolutions up to ``layers``' deepest, batch norm folded in: float32 numpy arrays.

    ``kernels[i]`` is (kh, kw, in, out) and ``biases[i]`` is (out,) for convolution ``i`` in creation order
    (the ``i`` that :func:`inception_v3` passes to ``ops.conv``).
    """

    layers: tuple[str, ...]
    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            for offset in (0, 512, 1024, 2048):  # the superblock follows an optional user block
                f.seek(offset)
                if f.read(8) == _HDF5_MAGIC:
                    return True
    except OSError:
        return False
    return False


def _bad_weights(path: Path, reason: str) -> WeightsError:
    return WeightsError(f"cannot load {path} into InceptionV3 ({reason}); it must be weights for "
                        "keras.applications.InceptionV3(include_top=False)")


def check_weights(source: WeightsSource) -> WeightsSource:
    """Cheaply check that a weights file can be InceptionV3's (HDF5, with its first convolution), without any
    framework. Raises :class:`WeightsError`; a full check happens when the weights are loaded."""
    if source.kind != "file" or source.path is None:
        return source
    if not _is_hdf5(source.path):
        raise _bad_weights(source.path, "not an HDF5 file")
    try:
        _read_convs(source.path, 1)
    except WeightsError:
        raise
    except Exception as e:  # h5py raises many types for damaged files
        raise _bad_weights(source.path, str(e).splitlines()[0][:160] if str(e) else type(e).__name__) from None
    return source


def _attr_list(group, name: str) -> list[str]:
    """An HDF5 attribute list as Keras writes it (long lists are split into ``name0``, ``name1``, ...)."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, k = [], 0
        while f"{name}{k}" in group.attrs:
            values.extend(group.attrs[f"{name}{k}"])
            k += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_convs(path: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` (creation order) convolutions of a weights file, batch norm folded in."""
    import h5py

    with h5py.File(path, "r") as f:
        if "layers" in f and "conv2d" in f["layers"]:  # Keras 3 .weights.h5: layers/conv2d_<k>/vars/<j>
            def conv(k):
                return [f[f"layers/conv2d{'_' + str(k) if k else ''}/vars/0"]]

            def bn(k):
                g = f[f"layers/batch_normalization{'_' + str(k) if k else ''}/vars"]
                return [g[str(j)] for j in range(len(g))]
        elif _attr_list(f, "layer_names"):  # legacy .h5 (Keras' ImageNet files): layers with weights, in order
            convs, bns = [], []
            for name in _attr_list(f, "layer_names"):
                names = _attr_list(f[name], "weight_names")
                (convs if len(names) == 1 else bns if len(names) == 3 else []).append([f[name][w] for w in names])

            def conv(k):
                return convs[k]

            def bn(k):
                return bns[k]
        else:
            raise _bad_weights(path, "no InceptionV3 layers in it")
        out = []
        for i in range(n):
            k = FILE_ORDER[i]
            try:
                (kernel,), (beta, mean, var) = conv(k), bn(k)
                kernel, beta, mean, var = (np.asarray(d[()], np.float32) for d in (kernel, beta, mean, var))
            except (KeyError, IndexError, ValueError):
                raise _bad_weights(path, f"convolution {k} or its batch norm is missing or has another form") from None
            if kernel.ndim != 4 or not beta.shape == mean.shape == var.shape == (kernel.shape[-1],):
                raise _bad_weights(path, f"convolution {k} has shape {kernel.shape}")
            scale = 1.0 / np.sqrt(var + np.float32(BN_EPSILON))
            out.append((kernel * scale, beta - mean * scale))
    if out and out[0][0].shape != (3, 3, 3, 32):
        raise _bad_weights(path, f"its first convolution has shape {out[0][0].shape}, not (3, 3, 3, 32)")
    return out


def _cached_convs(path: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`_read_convs`, kept between runs in the cache folder as an uncompressed .npz (weights files are
    gzip-compressed: reading them takes ~0.25 s on 2 cores, the .npz ~0.02 s). The cache entry is named after the
    file's path, size and modification time, so a changed file is read again; a cache that cannot be read or
    written is ignored."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{FILE_ORDER}".encode()).hexdigest()[:24]
    cached = cache_dir() / "folded" / f"{key}.npz"
    try:
        with np.load(cached) as z:
            if int(z["count"]) >= n:
                return [(z[f"k{i}"], z[f"b{i}"]) for i in range(n)]
    except Exception:  # absent, partial or damaged: read the weights file
        pass
    convs = _read_convs(path, n)
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp.npz", dir=cached.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, count=np.int64(n), **{f"k{i}": k for i, (k, _) in enumerate(convs)},
                     **{f"b{i}": b for i, (_, b) in enumerate(convs)})
        os.replace(tmp, cached)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return convs


@functools.lru_cache(maxsize=4)
def folded_weights(source: WeightsSource, layers: tuple[str, ...]) -> FoldedWeights | None:
    """The weights :func:`inception_v3` needs for ``layers``, read from ``source``'s file; None where the source
    has no file to read (random weights, or ImageNet weights not downloaded yet): build the Keras model then."""
    check_layers(layers)
    if source.kind == "random" or source.path is None or not source.path.is_file():
        return None
    convs = _check_shapes(source.path, _cached_convs(source.path, max(CONVS_UPTO[n] for n in layers)), layers)
    return FoldedWeights(tuple(layers), tuple(k for k, _ in convs), tuple(b for _, b in convs))


def _check_shapes(path: Path, convs, layers: Sequence[str]):
    for i, ((k, _), want) in enumerate(zip(convs, _expected_kernels(layers))):
        if k.shape != want:
            raise _bad_weights(path, f"convolution {FILE_ORDER[i]} has shape {k.shape}, expected {want}")
    return convs


def _expected_kernels(layers: Sequence[str]) -> list[tuple[int, int, int, int]]:
    shapes: list[tuple[int, int, int, int]] = []

    class Ops(_ShapeOps):
        def conv(self, x, i, filters, kernel, stride, padding):
            shapes.append((*kernel, x[2], filters))
            return super().conv(x, i, filters, kernel, stride, padding)

    inception_v3(Ops(), (299, 299, 3), layers)
    return shapes


@dataclass(frozen=True)
class Features:
    """What a backend needs to build the feature extractor for ``layers``, built only when asked for:
    :meth:`keras` (the Keras model, any backend) or :meth:`folded` (raw folded weights for :func:`inception_v3`,
    where the weights come from a file and the precision is fp32; else None)."""

    source: WeightsSource
    layers: tuple[str, ...]
    precision: str = "fp32"

    def keras(self):
        return feature_model(self.source, self.layers, self.precision)

    def folded(self) -> FoldedWeights | None:
        return folded_weights(self.source, self.layers) if self.precision == "fp32" else None


def as_keras(feats):
    """A Keras feature model from a :class:`Features` (or the Keras model itself)."""
    return feats.keras() if isinstance(feats, Features) else feats


# ---------------------------------------------------------------------------------------------------------------
# The ImageNet top (class dreaming): global average pool of mixed10 + a 1000-way dense layer.
#
# Keras ships it inside the full model's weights file (``InceptionV3(weights="imagenet", include_top=True)``),
# downloaded once into ``~/.keras/models/``. dreamvid reads only that file's ``predictions`` layer. Because pooling
# and the dense layer are linear, class c's logit is ``mean_p <mixed10[p], kernel[:, c]> + bias[c]``: a class term
# is a direction in mixed10's feature space (dreamvid.dream.objective.Objective.direction), not another network.

TOP_ENV_VAR = "DREAMVID_TOP_WEIGHTS"
TOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
TOP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + TOP_FILE
TOP_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"  # keras.applications.inception_v3's file_hash for it
TOP_SHAPE = (2048, 1000)


def keras_top_file() -> Path:
    return keras_cache_file().with_name(TOP_FILE)


def resolve_top(top: str | os.PathLike | None = None) -> Path | None:
    """Where the ImageNet top comes from, without loading or downloading anything: ``top``, else
    ``$DREAMVID_TOP_WEIGHTS`` (a full InceptionV3 .h5, or an .npz with ``kernel`` (2048, 1000) and ``bias``
    (1000,)), else Keras' cached full-model file; None when it still has to be downloaded."""
    if top is not None and str(top) != "":
        origin, value = "the top weights option", str(top)
    elif os.environ.get(TOP_ENV_VAR):
        origin, value = f"${TOP_ENV_VAR}", os.environ[TOP_ENV_VAR]
    else:
        cached = keras_top_file()
        return cached if cached.is_file() and cached.stat().st_size > 0 else None
    path = Path(value).expanduser()
    if not path.is_file() or path.stat().st_size == 0:
        raise WeightsError(f"ImageNet top weights {path} (from {origin}) do not exist or are empty; give the full "
                           f"InceptionV3 weights file ({TOP_FILE}) or an .npz with kernel and bias")
    return path


def ensure_top(top: str | os.PathLike | None = None) -> Path:
    """:func:`resolve_top`, downloading Keras' full-model file into its cache where needed (as Keras would,
    same file, same place, same checksum). Call it before any slow work: a failure is one WeightsError line."""
    found = resolve_top(top)
    if found is not None:
        return found
    import urllib.request

    from .fsutil import atomic_output

    dest = keras_top_file()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5()
        with urllib.request.urlopen(TOP_URL, timeout=30) as r, atomic_output(dest, overwrite=False) as tmp:
            with open(tmp, "wb") as f:
                while chunk := r.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != TOP_MD5:
                raise OSError(f"checksum {digest.hexdigest()} is not {TOP_MD5}")
    except Exception as e:  # network errors surface as many types
        raise WeightsError(
            f"class dreaming needs InceptionV3's ImageNet top, which could not be downloaded ({_reason(e)}); check "
            f"your connection, or download {TOP_URL} into {dest.parent}/ yourself (or set ${TOP_ENV_VAR})"
        ) from None
    return dest


@functools.lru_cache(maxsize=2)
def top_weights(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet top's ``kernel`` (2048, 1000) and ``bias`` (1000,), float32, from a full-model .h5 (legacy or
    Keras 3 .weights.h5) or an .npz."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                kernel, bias = z["kernel"], z["bias"]
        else:
            import h5py

            with h5py.File(path, "r") as f:
                if "layers" in f and "dense" in f["layers"]:  # Keras 3 .weights.h5 of the full model
                    g = f["layers/dense/vars"]
                    kernel, bias = g["0"][()], g["1"][()]
                else:  # legacy .h5 (Keras' own file): the 'predictions' layer
                    g = f["predictions"] if "predictions" in f else f["model_weights/predictions"]
                    names = _attr_list(g, "weight_names")
                    kernel, bias = (g[n][()] for n in names) if len(names) == 2 else (g["predictions/kernel:0"][()],
                                                                                      g["predictions/bias:0"][()])
    except Exception as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise WeightsError(f"cannot read the ImageNet top from {path} ({reason}); it must be the full InceptionV3 "
                           f"weights file ({TOP_FILE}) or an .npz with kernel and bias") from None
    kernel, bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
    if kernel.shape != TOP_SHAPE or bias.shape != (TOP_SHAPE[1],):
        raise WeightsError(f"the ImageNet top in {path} has shapes {kernel.shape} and {bias.shape}, expected "
                           f"{TOP_SHAPE} and ({TOP_SHAPE[1]},)")
    return kernel, bias
