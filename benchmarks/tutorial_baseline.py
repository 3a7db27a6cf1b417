"""A faithful copy of the TensorFlow DeepDream tutorial's algorithm, as the speed baseline.

Source: https://www.tensorflow.org/tutorials/generative/deepdream ("Taking it up an octave" and "Scaling up
with tiles"). Kept as close to the tutorial's code as possible: `random_roll` with maxroll = tile size, a
`TiledGradients` tf.function with a dynamic-shape input signature, a GradientTape per 512-px tile (the last
tile in each direction absorbs the remainder), gradient normalised by its standard deviation, step then clip
to [-1, 1], octaves by `tf.image.resize` with no detail re-injection, the loss being the sum over layers of the
mean activation.

Two deliberate, documented departures so that both sides do the same work: the octave sizes are passed in
(dreamvid's own pyramid, ending at the input size, instead of the tutorial's `range(-2, 3)` around it), and the
random roll is seeded.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def calc_loss(img, model):
    # Pass forward the image through the model to retrieve the activations.
    # Converts the image into a batch of size 1.
    img_batch = tf.expand_dims(img, axis=0)
    layer_activations = model(img_batch)
    if len(layer_activations) == 1:
        layer_activations = [layer_activations]

    losses = []
    for act in layer_activations:
        loss = tf.math.reduce_mean(act)
        losses.append(loss)

    return tf.reduce_sum(losses)


def random_roll(img, maxroll):
    # Randomly shift the image to avoid tiled boundaries.
    shift = tf.random.uniform(shape=[2], minval=-maxroll, maxval=maxroll, dtype=tf.int32)
    img_rolled = tf.roll(img, shift=shift, axis=[0, 1])
    return shift, img_rolled


class TiledGradients(tf.Module):
    def __init__(self, model):
        self.model = model

    @tf.function(
        input_signature=(
            tf.TensorSpec(shape=[None, None, 3], dtype=tf.float32),
            tf.TensorSpec(shape=[2], dtype=tf.int32),
            tf.TensorSpec(shape=[], dtype=tf.int32),
        )
    )
    def __call__(self, img, img_size, tile_size=512):
        shift, img_rolled = random_roll(img, tile_size)

        # Initialize the image gradients to zero.
        gradients = tf.zeros_like(img_rolled)

        # Skip the last tile, unless there's only one tile.
        xs = tf.range(0, img_size[1], tile_size)[:-1]
        if not tf.cast(len(xs), bool):
            xs = tf.constant([0])
        ys = tf.range(0, img_size[0], tile_size)[:-1]
        if not tf.cast(len(ys), bool):
            ys = tf.constant([0])

        for x in xs:
            for y in ys:
                # Calculate the gradients for this tile.
                with tf.GradientTape() as tape:
                    # This needs gradients relative to `img_rolled`.
                    # `GradientTape` only watches `tf.Variable`s by default.
                    tape.watch(img_rolled)

                    # Extract a tile out of the image.
                    img_tile = img_rolled[y : y + tile_size, x : x + tile_size]
                    loss = calc_loss(img_tile, self.model)

                # Update the image gradients for this tile.
                gradients = gradients + tape.gradient(loss, img_rolled)

        # Undo the random shift applied to the image and its gradients.
        gradients = tf.roll(gradients, shift=-shift, axis=[0, 1])

        # Normalize the gradients.
        gradients /= tf.math.reduce_std(gradients) + 1e-8

        return gradients


def run_deep_dream_with_octaves(img, model, *, octave_sizes, steps_per_octave=100, step_size=0.01, seed=0):
    """``img``: float32 HxWx3 in [-1, 1] (already preprocessed). ``octave_sizes``: [(h, w), ...] small to large."""
    tf.random.set_seed(seed)
    get_tiled_gradients = TiledGradients(model)
    img = tf.convert_to_tensor(img, tf.float32)
    for new_size in octave_sizes:
        new_size = tf.constant(new_size, tf.int32)
        img = tf.image.resize(img, new_size)
        for _step in range(steps_per_octave):
            gradients = get_tiled_gradients(img, new_size)
            img = img + gradients * step_size
            img = tf.clip_by_value(img, -1, 1)
    return np.asarray(img)
