"""The three backends agree: same input, weights and seed give the same gradients and the same dream.

Keras fixes its backend at import, so each backend runs in its own process (``tests/backend_probe.py``), and
this file compares what they wrote. Every backend that is installed is tested; TensorFlow is the reference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dreamvid import backends
from dreamvid.errors import ConfigError

from .conftest import REPO, needs

FRAMEWORK = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def installed(name: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK[name]) is not None


@pytest.fixture(scope="module")
def probes(weights_path, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """Run the probe once per installed backend; {backend: arrays}."""
    out = tmp_path_factory.mktemp("backends")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "DREAMVID_BACKEND")}
    results = {}
    for name in backends.BACKENDS:
        if not installed(name):
            continue
        npz = out / f"{name}.npz"
        proc = subprocess.run([sys.executable, str(REPO / "tests" / "backend_probe.py"), name, str(weights_path),
                               str(npz)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{name} probe failed:\n{proc.stderr[-3000:]}"
        with np.load(npz) as z:
            results[name] = dict(z)
    return results


def _others(probes):
    others = [n for n in probes if n != "tensorflow"]
    if "tensorflow" not in probes or not others:
        pytest.skip("needs tensorflow and at least one of jax/torch installed")
    return others


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(a).max())


@needs("jax", "torch")
def test_gradients_agree_fp32(probes):
    ref = probes["tensorflow"]
    for name in _others(probes):
        got = probes[name]
        assert _rel(ref["grads_fp32"], got["grads_fp32"]) < 1e-3, name
        np.testing.assert_allclose(got["losses_fp32"], ref["losses_fp32"], rtol=1e-4, err_msg=name)


@needs("jax", "torch")
def test_guide_and_class_terms_agree(probes):
    """Match terms (a guide's features, a class's direction) passed per call give the same gradients everywhere,
    and so does the forward pass that computes a guide's features."""
    ref = probes["tensorflow"]
    for name in _others(probes):
        got = probes[name]
        assert _rel(ref["grads_match"], got["grads_match"]) < 1e-3, name
        np.testing.assert_allclose(got["losses_match"], ref["losses_match"], rtol=1e-4, err_msg=name)
        assert _rel(ref["forward_mixed4"], got["forward_mixed4"]) < 1e-4, name
    assert not np.allclose(ref["grads_match"], ref["grads_fp32"])  # the match terms changed the gradient


@needs("jax", "torch")
def test_bf16_gradients_close_to_fp32(probes):
    """bf16 is lossy but points the same way: every backend's bf16 gradient correlates with fp32's."""
    ref = probes["tensorflow"]["grads_fp32"].ravel()
    for name, got in probes.items():
        corr = np.corrcoef(ref, got["grads_bf16"].ravel())[0, 1]
        assert corr > 0.95, (name, corr)
        np.testing.assert_allclose(got["losses_bf16"], probes["tensorflow"]["losses_fp32"], rtol=2e-2)


@needs("jax", "torch")
def test_dreams_agree(probes):
    """Two octaves of two steps on a photo: within a fraction of one grey level on average across backends."""
    ref = probes["tensorflow"]
    changed = np.abs(ref["dream_fp32"].astype(int) - ref["image"]).mean()
    assert changed > 1.0  # the dream did something, so agreeing means something
    for name in _others(probes):
        diff = np.abs(probes[name]["dream_fp32"].astype(int) - ref["dream_fp32"])
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3, (name, diff.mean(), np.percentile(diff, 99))


@needs("jax")
def test_jax_octave_on_device_matches_host_loop(probes):
    """JAX runs each octave on the device; it dreams what the numpy host loop dreams with the same shifts."""
    if "jax" not in probes:
        pytest.skip("jax is not installed")
    got = probes["jax"]
    assert bool(got["fused_fp32"])
    diff = np.abs(got["dream_fp32"].astype(int) - got["host_dream_fp32"])
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3, diff.mean()


def test_backend_names_resolve(monkeypatch):
    monkeypatch.delenv("DREAMVID_BACKEND", raising=False)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert backends.resolve_name(None) == "tensorflow"
    assert backends.resolve_name("PyTorch") == "torch"
    monkeypatch.setenv("DREAMVID_BACKEND", "jax")
    assert backends.resolve_name(None) == "jax"
    assert backends.resolve_name("tf") == "tensorflow"  # the flag beats the environment
    with pytest.raises(ConfigError, match="did you mean 'jax'"):
        backends.resolve_name("jaxx")


def test_switching_backend_in_a_running_process_is_a_clear_error():
    """This test process already runs keras on tensorflow: asking for another backend names the fix."""
    import keras  # noqa: F401  (the suite imports it anyway; make sure)

    with pytest.raises(ConfigError, match="start a new process with DREAMVID_BACKEND=jax"):
        backends.activate("jax")


@pytest.mark.parametrize("name", [pytest.param("jax", marks=needs("jax")), pytest.param("torch", marks=needs("torch"))])
def test_cli_dreams_with_backend(name, weights_path, tmp_path):
    """``dreamvid dream --backend NAME`` end to end, in its own process."""
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    out = tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "DREAMVID_BACKEND")}
    proc = subprocess.run(
        [sys.executable, "-m", "dreamvid", "dream", str(REPO / "examples" / "chelsea.png"), "-o", str(out),
         "--backend", name, "--weights", str(weights_path), "--steps", "1", "--octaves", "1", "--max-side", "96",
         "--quiet"],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.with_name(out.name + ".dreamvid.json").read_text())
    assert record["backend"] == name


_PRECISION_PROBE = """
import json, jax, jax.numpy as jnp
from dreamvid import model
from dreamvid.backends.jax_common import losses_fn, variables
seen = {}
for precision in ("fp32", "bf16"):
    m = model.feature_model(model.resolve_weights("random"), ("mixed0",), precision)
    tv, ntv = variables(m)
    grad = jax.grad(lambda x: losses_fn(m, [None])(x, [1.0], tv, ntv).sum())
    jaxpr = jax.make_jaxpr(grad)(jnp.zeros((1, 80, 80, 3)))
    seen[precision] = sorted({str(e.params.get("precision")) for e in jaxpr.jaxpr.eqns
                              if e.primitive.name == "conv_general_dilated"})
print(json.dumps(seen))
"""


@pytest.mark.skipif(not installed("jax"), reason="jax is not installed: pip install 'dreamvid[jax]'")
@needs("jax")
def test_jax_fp32_convolutions_are_float32_on_a_gpu_too():
    """A GPU runs JAX's float32 convolutions in TF32 unless told otherwise; on an H200 the one-program frame then left
    the host path beyond the backends' tolerance, and passed at full precision (issue 21). So ``fp32`` traces every
    convolution (forward and gradient) at HIGHEST, which a CPU can check; ``bf16`` stays the fast mode."""
    env = {k: v for k, v in os.environ.items() if k not in ("DREAMVID_BACKEND", "JAX_DEFAULT_MATMUL_PRECISION")}
    proc = subprocess.run([sys.executable, "-c", _PRECISION_PROBE], env=dict(env, KERAS_BACKEND="jax"),
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["fp32"] == ["(Precision.HIGHEST, Precision.HIGHEST)"], seen
    assert seen["bf16"] == ["None"], seen
