"""What the JAX backend's two modules share (:mod:`.jax_backend`, the per-step and per-octave programs, and
:mod:`.jax_frame`, the one-program frame): the objective's loss over the model's outputs, the model's variables as
program arguments, and JAX's persistent compilation cache. Below both, so neither imports the other's internals."""

from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from ..model import cache_dir

__all__ = ["full_precision", "losses_fn", "variables"]

# Compiled programs persist between runs (one InceptionV3 step at 1080p takes seconds to compile), in the
# dreamvid cache folder unless the user set JAX's own option.
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    try:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    except Exception:  # an older JAX without the option: compile every run
        pass


def full_precision(model):
    """Where ``fp32`` means float32 on a GPU too: a context to trace the model's call in. JAX lets a GPU run float32
    convolutions in TF32 (10-bit mantissas) by default; on an H200 that moved the one-program frame away from the
    host path beyond the tolerance the backends are held to (fresh, anchored and blended frames), and the same tests
    passed at "highest" (issue 21, docs/performance.md). A bf16 model is left as it is (it is the fast mode), and a
    user's own ``JAX_DEFAULT_MATMUL_PRECISION`` wins. On a CPU float32 is float32 either way."""
    bf16 = any(getattr(layer, "compute_dtype", "float32") != "float32" for layer in model.layers)  # mixed_bfloat16
    if os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or bf16:
        return contextlib.nullcontext()
    return jax.default_matmul_precision("highest")


def _match(act, target):
    """``mean_p max_k <act[p], target[k]>`` per tile: act (B, h, w, C), target (K, C) -> (B,)."""
    scores = jnp.einsum("bpc,kc->bpk", act.reshape(act.shape[0], -1, act.shape[-1]), target)
    return jnp.mean(jnp.max(scores, axis=-1), axis=1)


def losses_fn(model, channels):
    """(tiles, weights, trainable, non_trainable, targets=()) -> per-tile losses (B,), float32. Outputs past
    ``channels`` are match terms (guide, class), one per target."""
    chans = [np.asarray(c, np.int32) if c else None for c in channels]

    def losses(tiles, weights, tv, ntv, targets=()):
        with full_precision(model):
            acts, _ = model.stateless_call(tv, ntv, tiles, training=False)
        if not isinstance(acts, (list, tuple)):
            acts = [acts]
        total = 0.0
        for i, act in enumerate(acts):
            act = act.astype(jnp.float32)
            if i >= len(chans):
                total = total + weights[i] * _match(act, targets[i - len(chans)])
                continue
            if chans[i] is not None:
                act = jnp.take(act, chans[i], axis=-1)
            total = total + weights[i] * jnp.mean(act, axis=(1, 2, 3))
        return total

    return losses


def variables(model):
    return ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
