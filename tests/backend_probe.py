"""Run in a fresh process per backend by ``test_backends.py`` (Keras fixes its backend at import).

    python tests/backend_probe.py BACKEND WEIGHTS OUT.npz

Writes one gradient step on a seeded batch of tiles (grads, losses) in fp32 and bf16, and a short fp32 dream of
a natural image (uint8). For a backend with an on-device octave loop (JAX), also the same dream by the host
loop, so the two paths can be compared.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(backend: str, weights: str, out: str) -> None:
    from dreamvid import backends, model
    from dreamvid.config import DreamParams
    from dreamvid.dream import Dreamer, Objective
    from tests.conftest import load_example

    mod = backends.load(backend)
    assert mod.name == backend, mod.name
    import keras

    assert keras.backend.backend() == backend, keras.backend.backend()

    obj = Objective.parse("mixed3:1,mixed4[10-20]:0.5,mixed5:1")
    tiles = np.random.default_rng(0).uniform(-1, 1, (2, 96, 128, 3)).astype(np.float32)
    image = load_example("chelsea.png", width=144)
    params = dataclasses.replace(DreamParams(), layers=obj.terms, octaves=2, steps=2, tile_size=112,
                                 tile_overlap=24, jitter=16)
    src = model.resolve_weights(weights)
    result = {}
    for precision in ("fp32", "bf16"):
        feats = model.feature_model(src, obj.names, precision)
        step = mod.make_step(feats, channels=obj.channels, precision=precision)
        g, losses = step(tiles, obj.weights)
        result[f"grads_{precision}"], result[f"losses_{precision}"] = g, losses
        if precision == "fp32":  # guide and class (match) terms: targets passed per call; and the forward pass
            rng = np.random.default_rng(3)
            directed = (obj + Objective.guide("mixed4", rng.random((7, 768), np.float32))
                        + Objective.direction("mixed5", rng.standard_normal(768).astype(np.float32)))
            feats_m = model.feature_model(src, directed.outputs, precision)
            step_m = mod.make_step(feats_m, channels=directed.channels, matches=len(directed.matches),
                                   precision=precision)
            result["grads_match"], result["losses_match"] = step_m(tiles, directed.weights, directed.targets)
            result["forward_mixed4"] = mod.make_forward(feats_m, precision=precision)(tiles)[3]
        if precision != "fp32":  # each dream compiles a few programs: fp32 is enough to compare the loops
            continue
        d = Dreamer(weights=weights, backend=backend, precision=precision)
        result[f"dream_{precision}"] = d.dream(image, params, rng=np.random.default_rng(7))
        result[f"fused_{precision}"] = np.array(d.fused)
        if d.fused:
            host = Dreamer(weights=weights, backend=backend, precision=precision, fused=False)
            result[f"host_dream_{precision}"] = host.dream(image, params, rng=np.random.default_rng(7))
    np.savez(out, image=image, **result)


if __name__ == "__main__":
    main(*sys.argv[1:4])
