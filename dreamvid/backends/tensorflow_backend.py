"""TensorFlow gradient step: one ``tf.function`` per objective, traced once for every tile shape.

The step's input signature leaves the batch and both sides open (``[None, None, None, 3]``), as the TensorFlow
DeepDream tutorial does, so every octave and tile shape runs the same graph: one trace (about a second on two
cores) instead of one per shape.

Where the weights come from a file and the precision is fp32, the network is not built with Keras at all: the
step runs :func:`dreamvid.model.inception_v3` over TensorFlow ops, with batch norm folded into the convolutions
and only the convolutions up to the deepest dreamed layer read from the file (:func:`dreamvid.model.folded_weights`).
That skips building Keras' InceptionV3 (seconds per process) and runs fewer ops per step; the activations are those
of the Keras model (tests/test_model.py compares them). Random weights and bf16 use the Keras model.

XLA (``jit_compile``) is used on GPU, where it fuses the elementwise work; on CPU oneDNN's kernels without XLA
are faster (measured 0.16 s vs 0.30 s per 512² step on 2 cores), so ``jit="auto"`` turns it off there.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .. import model as _model

name = "tensorflow"


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


class _Ops:
    """:func:`dreamvid.model.inception_v3`'s primitives in TensorFlow, over folded weights (as constants, so
    oneDNN can keep its reordered copy of each kernel between calls)."""

    def __init__(self, folded: _model.FoldedWeights):
        self.kernels = [tf.constant(k) for k in folded.kernels]
        self.biases = [tf.constant(b) for b in folded.biases]

    def conv(self, x, i, filters, kernel, stride, padding):
        y = tf.nn.conv2d(x, self.kernels[i], stride, padding.upper())
        return tf.nn.relu(tf.nn.bias_add(y, self.biases[i]))

    def max_pool(self, x):
        return tf.nn.max_pool2d(x, 3, 2, "VALID")

    def avg_pool(self, x):
        return tf.nn.avg_pool2d(x, 3, 1, "SAME")

    def concat(self, xs):
        return tf.concat(xs, axis=-1)


def _network(feats):
    """``tiles -> [activation per layer]`` for ``feats`` (a :class:`dreamvid.model.Features` or a Keras model)."""
    folded = feats.folded() if isinstance(feats, _model.Features) else None
    if folded is not None:
        ops, layers = _Ops(folded), folded.layers
        return lambda tiles: _model.inception_v3(ops, tiles, layers)
    keras_model = _model.as_keras(feats)

    def run(tiles):
        acts = keras_model(tiles, training=False)
        return list(acts) if isinstance(acts, (list, tuple)) else [acts]

    return run


def _match(act, target):
    """``mean_p max_k <act[p], target[k]>`` per tile: act (B, h, w, C), target (K, C) -> (B,)."""
    b, c = tf.shape(act)[0], tf.shape(act)[-1]
    scores = tf.einsum("bpc,kc->bpk", tf.reshape(act, [b, -1, c]), target)
    return tf.reduce_mean(tf.reduce_max(scores, axis=-1), axis=1)


def make_step(model, *, channels, matches: int = 0, precision: str = "fp32", jit: str | bool = "auto"):
    """Build the step function for ``model`` (outputs = the objective's layer terms, then ``matches`` match
    terms' layers). See ``backends.base``.

    ``model`` is a :class:`dreamvid.model.Features` (the folded network where it can be used, else Keras) or a
    Keras model. ``precision`` is honoured by how the model was built (:func:`dreamvid.model.feature_model`);
    activations are reduced in float32 either way.
    """
    use_jit = has_gpu() if jit == "auto" else bool(jit)
    chans = [tf.constant(c, tf.int32) if c else None for c in channels]
    n_layers = len(chans)
    network = _network(model)

    def losses_of(tiles, weights, targets):
        terms = []
        for i, act in enumerate(network(tiles)):
            act = tf.cast(act, tf.float32)
            if i >= n_layers:  # a match term (guide, class)
                terms.append(weights[i] * _match(act, targets[i - n_layers]))
                continue
            if chans[i] is not None:
                act = tf.gather(act, chans[i], axis=-1)
            terms.append(weights[i] * tf.reduce_mean(act, axis=[1, 2, 3]))
        return tf.add_n(terms)

    @tf.function(
        input_signature=(tf.TensorSpec([None, None, None, 3], tf.float32),
                         tf.TensorSpec([n_layers + matches], tf.float32),
                         tuple(tf.TensorSpec([None, None], tf.float32) for _ in range(matches))),
        jit_compile=use_jit,
        autograph=False,
    )
    def step(tiles, weights, targets):
        with tf.GradientTape() as tape:
            tape.watch(tiles)
            losses = losses_of(tiles, weights, targets)
            total = tf.reduce_sum(losses)
        return tape.gradient(total, tiles), losses

    def run(tiles: np.ndarray, weights: np.ndarray, targets=()):
        if len(targets) != matches:
            raise ValueError(f"this step has {matches} match terms, got {len(targets)} targets")
        g, l = step(tf.convert_to_tensor(tiles, tf.float32), tf.convert_to_tensor(weights, tf.float32),
                    tuple(tf.convert_to_tensor(t, tf.float32) for t in targets))
        return g.numpy(), l.numpy()

    run.trace_count = lambda: step.experimental_get_tracing_count()
    return run


def make_forward(model, *, precision: str = "fp32", jit: str | bool = "auto"):
    """``forward(tiles (B, H, W, 3)) -> [float32 activation (B, h, w, C) per output of model]``."""
    network = _network(model)

    @tf.function(input_signature=(tf.TensorSpec([None, None, None, 3], tf.float32),), autograph=False)
    def forward(tiles):
        return [tf.cast(a, tf.float32) for a in network(tiles)]

    return lambda tiles: [a.numpy() for a in forward(tf.convert_to_tensor(tiles, tf.float32))]
