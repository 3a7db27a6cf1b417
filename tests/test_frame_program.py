"""The one-program frame (``backends/jax_frame.py``) dreams what the host path dreams, and embeds no weights.

Keras fixes its backend at import and this test process runs it on TensorFlow, so ``tests/frame_probe.py`` runs the
JAX side in its own process (once per session) and this file compares what it wrote. The dream is chaotic (one
grey level changed at one pixel of the carried frame moves the next frame's dream by ~0.5 levels on average), so
every comparison is of single frames given identical inputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import REPO, WEIGHTS_FILE, needs

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("jax") is None or importlib.util.find_spec("keras") is None,
                                 reason="jax (and keras) are not installed: pip install 'dreamvid[jax]'"), needs("jax")]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """{name: array} and the info dict; frames only with the trained weights (``-`` runs the coherence part)."""
    out = tmp_path_factory.mktemp("frame") / "probe.npz"
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "DREAMVID_BACKEND")}
    weights = str(WEIGHTS_FILE) if WEIGHTS_FILE is not None else "-"
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "frame_probe.py"), weights, str(out)], env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as z:
        arrays = dict(z)
    return arrays, json.loads(out.with_suffix(".json").read_text())


def _frames(probe):
    arrays, info = probe
    if "frame_fresh_dev" not in arrays:
        pytest.skip("trained weights (inception_v3_notop_q8.weights.h5) not available: set DREAMVID_WEIGHTS")
    return arrays, info


# -- the coherence step on the device ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["warp_cubic", "warp_linear", "warp_u8", "photometric"])
def test_device_warps_and_photometric_mask_match_opencv(probe, name):
    arrays, _ = probe
    dev, ref = arrays[f"dev_{name}"], arrays[f"ref_{name}"]
    assert dev.shape == ref.shape and np.ptp(ref) > 0.05  # something to compare
    # OpenCV >= 5 samples float maps exactly; 4.x rounds coordinates to 1/32 px
    tol = 1e-4 if name != "warp_u8" else 0.0
    if not _opencv5():
        tol = 0.05 * np.abs(ref).max() if name != "warp_u8" else 8.0
    assert np.abs(dev - ref).max() <= tol + 1e-6, (name, np.abs(dev - ref).max())


@pytest.mark.parametrize("name", ["resize_80x91", "resize_57x65", "resize_150x171", "resize_2d"])
def test_device_resizes_match_the_octave_resize(probe, name):
    """cv2's area (shrinking) and bilinear (growing) resizes, as the program's two matrix products."""
    arrays, _ = probe
    dev, ref = arrays[f"dev_{name}"], arrays[f"ref_{name}"]
    assert dev.shape == ref.shape and np.abs(dev - ref).max() < 1e-5, np.abs(dev - ref).max()


def test_device_consistency_mask_matches_video_flow(probe):
    arrays, _ = probe
    dev, ref = arrays["dev_consistency"], arrays["ref_consistency"]
    assert 0.05 < ref.mean() < 0.999  # a real pan: some pixels are reliable, some are not
    assert np.mean(np.abs(dev - ref) > 1e-5) < (1e-3 if _opencv5() else 0.02)


@pytest.mark.parametrize("warp_mode", ["delta", "frame"])
def test_device_anchor_plan_matches_coherence_plan(probe, warp_mode):
    arrays, _ = probe
    for part, tol in (("init", 2e-3), ("omega", 2e-3), ("weight", 1e-4), ("step", 1e-4)):
        dev, ref = arrays[f"dev_anchor_{warp_mode}_{part}"], arrays[f"ref_anchor_{warp_mode}_{part}"]
        assert dev.shape == ref.shape
        bad = np.abs(dev - ref) > tol
        assert bad.mean() < (1e-3 if _opencv5() else 0.03), (part, np.abs(dev - ref).max())
    w = arrays[f"ref_anchor_{warp_mode}_weight"]
    assert 0.05 < w.mean() < 0.999


@pytest.mark.parametrize("warp_mode", ["delta", "frame"])
def test_device_blend_init_matches_coherent_init(probe, warp_mode):
    arrays, _ = probe
    diff = np.abs(arrays[f"dev_blend_{warp_mode}_init"] - arrays[f"ref_blend_{warp_mode}_init"])
    assert diff.max() <= 1.0 and diff.mean() < 0.01, (diff.max(), diff.mean())


@pytest.mark.parametrize("target", ["0", "3", "40"])
def test_device_governor_matches_coherence_finish(probe, target):
    arrays, _ = probe
    dev, ref = arrays[f"dev_govern_{target}"], arrays[f"ref_govern_{target}"]
    assert np.abs(dev - ref).max() <= 1.0 and np.mean(dev != ref) < 1e-3
    gain_dev, gain_ref = arrays[f"gain_{target}"]
    assert gain_dev == pytest.approx(gain_ref, rel=1e-4)
    if target == "40":
        assert gain_ref == 2.0  # clipped at the upper gain limit: the limits are applied on the device too


# -- the whole frame ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["fresh", "anchor", "blend", "tiled"])
def test_one_program_frame_equals_the_host_path(probe, case):
    """Fresh, anchored, blended and tiled frames (2 octaves, 2 steps, the trained weights): within the tolerance the
    backends are held to (tests/test_backends.py: mean < 0.5 grey levels, 99th percentile <= 3)."""
    arrays, info = _frames(probe)
    host, dev = arrays[f"frame_{case}_host"].astype(int), arrays[f"frame_{case}_dev"].astype(int)
    assert np.abs(host - arrays["frame_source"]).mean() > 2.0  # the frame was dreamed
    diff = np.abs(host - dev)
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3, (case, diff.mean(), np.percentile(diff, 99))
    assert info[f"{case}_gain_dev"] == pytest.approx(info[f"{case}_gain_host"], rel=2e-2)
    assert info[f"{case}_carried_dev"] == info[f"{case}_carried_host"] == (case != "fresh")


def test_the_compiled_frame_program_takes_the_weights_as_arguments(probe):
    """Its StableHLO text is a small fraction of the weights' size, and every variable is a parameter of main."""
    _, info = _frames(probe)
    assert info["variable_bytes"] > 1_000_000
    assert info["frame_hlo_chars"] < 0.5 * info["variable_bytes"], info
    assert info["frame_main_args"] >= info["n_variables"], info
    assert info["octave_hlo_chars"] < 0.5 * info["variable_bytes"], info  # make_octave's program too


def test_step_count_and_size_are_run_time_values(probe):
    _, info = _frames(probe)
    assert info["programs_after_other_steps"] == 0


def _opencv5() -> bool:
    import cv2

    return int(cv2.__version__.split(".")[0]) >= 5


def test_a_render_runs_on_one_program_frames_with_the_measures_behind(probe):
    """pipeline.render with the JAX dreamer's frame programs: every frame, dreamed to the governor's target, the
    measures (stability) timed in their own thread, two programs (fresh, carried) compiled up front."""
    _, info = _frames(probe)
    r = info["render"]
    assert r["frames"] == r["decoded"] == 4
    assert abs(r["strength"] - 12.0) < 0.15 * 12.0, r
    assert r["stability"] is not None and r["stability"] > 0
    assert "measure" in r["seconds"] and r["seconds"]["measure"] > 0.0
    assert 0.0 <= r["idle"] <= 1.0
    assert r["programs"] == 2, r
