"""The dreaming engine: octaves, tiles + roll, the objective, and the ascent loop on real (tiny) images.

Lucid-style: run a few steps on a tiny input and assert that the objective went up. Tests that only need a
working network use random weights (they run anywhere); tests of what trained features do need the weights file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dreamvid import presets
from dreamvid.config import DreamParams, parse_layers, resolve
from dreamvid.dream import Objective, StepInfo, from_unit, to_unit
from dreamvid.dream.octaves import MIN_SIDE, octave_shapes, resize
from dreamvid.dream.tiles import roll, tile_starts, tiled_gradient
from tests.conftest import load_example

OBJ = "mixed3:1"  # one cheap layer shared by most tests, so compiled steps are reused
FAST = DreamParams(layers=parse_layers(OBJ), octaves=1, steps=3, step_size=0.02, jitter=8, tile_size=512,
                   tile_overlap=32, seed=0)


# ---- octaves ---------------------------------------------------------------------------------------------------

def test_octave_shapes_go_small_to_large_and_end_at_full_size():
    shapes = octave_shapes(400, 300, octaves=4, scale=1.4)
    assert len(shapes) == 4
    assert shapes[-1] == (400, 300)
    for (h0, w0), (h1, w1) in zip(shapes, shapes[1:]):
        assert h0 < h1 and w0 < w1
        assert h1 / h0 == pytest.approx(1.4, rel=0.02)
        assert w1 / w0 == pytest.approx(1.4, rel=0.02)
    assert shapes[0] == (round(400 / 1.4**3), round(300 / 1.4**3))


def test_octave_shapes_drop_octaves_below_the_network_minimum():
    shapes = octave_shapes(120, 200, octaves=5, scale=1.4)
    # 120 / 1.4 = 86 is kept; 120 / 1.96 = 61 is below 75 px and dropped, and so are the smaller ones
    assert shapes == [(86, 143), (120, 200)]
    assert all(min(s) >= MIN_SIDE for s in shapes)


@pytest.mark.parametrize("shape", [(50, 60), (74, 300), (75, 75)])
def test_octave_shapes_always_keep_the_full_size(shape):
    shapes = octave_shapes(*shape, octaves=4, scale=1.5)
    assert shapes[-1] == shape
    assert all(min(s) >= MIN_SIDE for s in shapes[:-1])


def test_octave_shapes_with_one_octave_is_the_image_itself():
    assert octave_shapes(97, 131, octaves=1, scale=1.4) == [(97, 131)]


def test_resize_gives_the_requested_shape():
    img = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)
    assert resize(img, (80, 101)).shape == (80, 101, 3)
    assert resize(img, (20, 11)).shape == (20, 11, 3)
    assert resize(img, (37, 53)) is img


# ---- tiles and roll ---------------------------------------------------------------------------------------------

TILE_CASES = [
    (80, 128, 32), (128, 128, 32), (129, 128, 32), (300, 128, 32), (400, 128, 32), (160, 96, 16),
    (97, 96, 0), (1000, 512, 64), (2160, 512, 64), (3840, 512, 64), (3840, 512, 0),
]


@pytest.mark.parametrize("n, tile, overlap", TILE_CASES)
def test_tile_starts_cover_the_axis_with_equal_overlapping_tiles(n, tile, overlap):
    starts, length = tile_starts(n, tile, overlap)
    assert 1 <= length <= tile and length <= n
    assert starts[0] == 0
    assert starts[-1] + length == n, "the last tile must end exactly at the edge"
    assert starts == sorted(set(starts)), "starts strictly increase"
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + length] = True
    assert covered.all()
    if n <= tile:
        assert starts == [0] and length == n
    else:
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert all(length - g >= overlap for g in gaps), "neighbours overlap by at least `overlap` pixels"


def test_a_4k_frame_is_split_into_bounded_tiles():
    # What makes 3840x2160 dream in bounded memory: no tile is larger than tile_size.
    ys, th = tile_starts(2160, 512, 64)
    xs, tw = tile_starts(3840, 512, 64)
    assert th <= 512 and tw <= 512
    assert len(ys) * len(xs) <= 6 * 9


def test_roll_round_trips_and_moves_pixels():
    x = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    shifted = roll(x, (2, -3))
    assert shifted.shape == x.shape
    np.testing.assert_array_equal(shifted[2, 4], x[0, 0])  # (0, 0) moved down 2 and left 3 (wrapping)
    np.testing.assert_array_equal(roll(shifted, (-2, 3)), x)


def test_tiled_gradient_blends_tiles_into_a_seamless_field():
    # loss = 0.5 * sum(x^2) per tile, so every tile's gradient is the tile itself: the cross-faded result must
    # reproduce the image exactly, whatever the tiling (weights sum to one everywhere, no holes, no seams).
    def identity_step(tiles, weights):
        return tiles * weights[0], 0.5 * np.sum(tiles**2, axis=(1, 2, 3))

    img = np.random.default_rng(3).uniform(-1, 1, (150, 230, 3)).astype(np.float32)
    for tile, overlap, batch in [(96, 16, 4), (100, 0, 3), (128, 48, 1), (512, 64, 4)]:
        g, loss = tiled_gradient(img, identity_step, np.ones(1, np.float32), tile=tile, overlap=overlap, batch=batch)
        assert g.shape == img.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, img, atol=1e-5)
        assert loss > 0


def test_to_unit_and_from_unit_round_trip():
    u8 = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    x = to_unit(u8)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    assert to_unit(np.array([[[0, 255, 0]]], np.uint8)).tolist() == [[[-1.0, 1.0, -1.0]]]
    np.testing.assert_array_equal(from_unit(x), u8)
    np.testing.assert_array_equal(from_unit(np.full((1, 1, 3), 7.0, np.float32)), np.full((1, 1, 3), 255))


# ---- objective ---------------------------------------------------------------------------------------------------

def test_objectives_add_and_scale_like_lucid():
    obj = 0.5 * Objective.layer("mixed3") + Objective.layer("mixed5", channels=[10, 11], weight=2.0)
    assert obj.names == ("mixed3", "mixed5")
    np.testing.assert_allclose(obj.weights, [0.5, 2.0])
    assert obj.channels == ((), (10, 11))
    same = Objective.layer("mixed3") + Objective.layer("mixed3", weight=2.0)
    np.testing.assert_allclose(same.weights, [3.0])
    assert Objective.parse("mixed3:0.5,mixed5[10-11]:2") == obj
    # the compiled step depends on layers and channels, not on weights
    assert (obj * 3).structure == obj.structure


# ---- the network: random weights (runs anywhere) -------------------------------------------------------------

def test_steps_raise_the_objective_with_random_weights(random_dreamer, natural_image):
    before = random_dreamer.objective_value(natural_image, FAST)
    out = random_dreamer.dream(natural_image, FAST)
    after = random_dreamer.objective_value(out, FAST)
    assert after > before


def test_callback_reports_every_step_and_the_loss_goes_up(random_dreamer, natural_image):
    infos: list[StepInfo] = []
    params = FAST.replace(steps=3, jitter=0)
    random_dreamer.dream(natural_image, params, callback=infos.append)
    assert [(i.octave, i.step) for i in infos] == [(0, 0), (0, 1), (0, 2)]
    assert all(i.octaves == 1 and i.steps == 3 and i.shape == natural_image.shape[:2] for i in infos)
    losses = [i.loss for i in infos]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] > losses[0]


def test_same_seed_same_output_other_seed_other_output(random_dreamer, natural_image):
    params = FAST.replace(steps=2, jitter=16)
    a = random_dreamer.dream(natural_image, params.replace(seed=1))
    b = random_dreamer.dream(natural_image, params.replace(seed=1))
    c = random_dreamer.dream(natural_image, params.replace(seed=2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).max() > 0
    # an explicit generator wins over params.seed, and is just as reproducible
    d = random_dreamer.dream(natural_image, params.replace(seed=1), rng=np.random.default_rng(7))
    e = random_dreamer.dream(natural_image, params.replace(seed=2), rng=np.random.default_rng(7))
    np.testing.assert_array_equal(d, e)


@pytest.mark.parametrize(
    "shape, octaves, tile",
    [
        ((50, 60), 2, 512),  # smaller than the network's 75 px: dreamed upscaled, returned at its own size
        ((97, 131), 2, 96),  # odd sizes, tiled (2x2 tiles of at most 96 px)
        ((81, 33), 1, 512),  # a thin image, one side below 75 px
    ],
)
def test_dream_returns_the_input_shape(random_dreamer, shape, octaves, tile):
    img = load_example("coffee.png", 128)
    img = np.ascontiguousarray(resize(img, shape))
    params = FAST.replace(octaves=octaves, steps=1, tile_size=tile, tile_overlap=16)
    out = random_dreamer.dream(img, params)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img.astype(int)).mean() > 1, "the image changed"


def test_dream_rejects_non_rgb_uint8(random_dreamer):
    with pytest.raises(ValueError, match="uint8 RGB"):
        random_dreamer.dream(np.zeros((80, 80), np.uint8), FAST)
    with pytest.raises(ValueError, match="uint8 RGB"):
        random_dreamer.dream(np.zeros((80, 80, 3), np.float32), FAST)


def test_tiled_gradient_peak_batch_is_bounded(random_dreamer):
    # A 4K frame is too slow for a unit test; what bounds its memory is that the network never sees more than
    # `batch` tiles of at most tile x tile pixels at once. Record what the real step function is given.
    obj = Objective.parse(OBJ)
    step = random_dreamer.step_fn(obj)
    seen: list[tuple[int, ...]] = []

    def recording_step(tiles, weights):
        seen.append(tiles.shape)
        return step(tiles, weights)

    img = to_unit(np.ascontiguousarray(load_example("chelsea.png")[:, :400]))
    assert img.shape == (300, 400, 3)
    g, loss = tiled_gradient(img, recording_step, obj.weights, tile=128, overlap=32, batch=4)
    ys, th = tile_starts(300, 128, 32)
    xs, tw = tile_starts(400, 128, 32)
    assert g.shape == img.shape and np.isfinite(g).all() and math.isfinite(loss)
    assert max(s[0] for s in seen) == 4
    assert sum(s[0] for s in seen) == len(ys) * len(xs) > 4
    assert all(s[1:] == (th, tw, 3) for s in seen)
    assert th <= 128 and tw <= 128


def test_step_fn_is_built_once_per_layer_structure(random_dreamer):
    a = random_dreamer.step_fn(Objective.parse("mixed3:1"))
    b = random_dreamer.step_fn(Objective.parse("mixed3:2.5"))  # weights are call arguments: no new step
    assert a is b


# ---- the network: trained weights -----------------------------------------------------------------------------

def test_steps_raise_the_objective_with_trained_weights(dreamer, natural_image):
    infos: list[StepInfo] = []
    before = dreamer.objective_value(natural_image, FAST)
    out = dreamer.dream(natural_image, FAST, callback=infos.append)
    after = dreamer.objective_value(out, FAST)
    assert after > 1.05 * before
    assert len(infos) == FAST.steps
    assert infos[-1].loss > infos[0].loss


def _far_from_seams(n: int, starts: list[int], length: int, margin: int) -> np.ndarray:
    """1-D mask of positions at least ``margin`` px from every tile edge inside the axis (the seams)."""
    edges = [s for s in starts[1:]] + [s + length for s in starts[:-1]]
    pos = np.arange(n)
    return np.all([np.abs(pos - e) >= margin for e in edges], axis=0)


def test_tiled_gradient_matches_the_untiled_one_away_from_seams(dreamer, natural_image):
    obj = Objective.parse(OBJ)
    step = dreamer.step_fn(obj)
    n, tile, overlap = 224, 128, 32
    x = to_unit(np.ascontiguousarray(resize(load_example("chelsea.png", 2 * n), (n, n))))
    ys, th = tile_starts(n, tile, overlap)
    assert len(ys) == 2 and ys[0] + th > ys[1], "2x2 tiles with overlap"

    full, _ = step(x[None], obj.weights)
    full = full[0]
    tiled, _ = tiled_gradient(x, step, obj.weights, tile=tile, overlap=overlap, batch=4)
    assert tiled.shape == full.shape

    m1 = _far_from_seams(n, ys, th, 16)
    mask = m1[:, None] & m1[None, :]
    assert mask.mean() > 0.2
    a = full[mask].ravel() / full[mask].std()
    b = tiled[mask].ravel() / tiled[mask].std()
    corr = float(np.corrcoef(a, b)[0, 1])
    assert corr > 0.95, f"tiled vs untiled gradient correlation {corr:.3f} away from seams"
    # and over the whole image the two still agree in direction
    assert float(np.corrcoef(full.ravel(), tiled.ravel())[0, 1]) > 0.8


def test_lysergic_preset_dreams_a_natural_image(dreamer):
    """The flagship preset, on real weights and a real photo, must raise mixed3/mixed5 a lot and show it."""
    img = load_example("chelsea.png", 160)  # (106, 160)
    cfg = resolve(presets.load("lysergic"), preset="lysergic")
    params = cfg.dream.replace(octaves=2, steps=20)  # the preset's layers, step size and jitter; fewer octaves
    probe = DreamParams(layers=parse_layers("mixed3:1,mixed5:1"))
    before = dreamer.objective_value(img, probe)
    out = dreamer.dream(img, params)
    after = dreamer.objective_value(out, probe)
    factor = after / before
    change = float(np.abs(out.astype(np.float64) - img).mean())
    print(f"lysergic: mixed3+mixed5 objective x{factor:.2f}, mean abs change {change:.1f}/255")
    assert out.shape == img.shape
    assert factor >= 1.5, f"objective rose only x{factor:.2f}"
    assert change > 10, f"mean abs change only {change:.1f}/255"


def test_objective_of_a_frame_smaller_than_the_network_minimum(dreamer, natural_image):
    # The report's dream_gain measures mixed3+mixed5 on every tenth frame; at --max-side 48 the frame is smaller
    # than mixed5's pooling allows and TensorFlow raised. It is measured at the size it is dreamed at instead.
    probe = FAST.replace(layers=parse_layers("mixed3:1,mixed5:1"))
    small = resize(natural_image.astype(np.float32), (36, 48)).clip(0, 255).astype(np.uint8)
    value = dreamer.objective_value(small, probe)
    assert math.isfinite(value) and value > 0


def test_two_threads_sharing_a_fresh_dreamer_build_each_program_once_and_dream_what_one_thread_does():
    """The UI's preview and render threads share one Dreamer: its programs are built by one thread each, and a
    dream from two threads at once equals the same dream alone."""
    import threading
    import time

    from dreamvid.dream import Dreamer

    img = load_example("chelsea.png", 96)
    a = FAST.replace(layers=parse_layers("mixed2:1"))
    b = FAST.replace(layers=parse_layers("mixed2:1,mixed1:0.5"))
    alone = Dreamer(weights="random", seed=3)
    want = {id(p): alone.dream(img, p, rng=np.random.default_rng(1)) for p in (a, b)}
    shared = Dreamer(weights="random", seed=3)
    builds = []
    make_step = shared._backend.make_step

    def counting(*args, **kwargs):  # a slow build: both threads ask while it is under way
        builds.append(1)
        time.sleep(0.5)
        return make_step(*args, **kwargs)

    shared._backend = type("Counting", (), {"__getattr__": lambda self, n: getattr(alone._backend, n),
                                            "make_step": staticmethod(counting)})()
    got, errors = {}, []
    start = threading.Barrier(4)

    def run(p, slot):
        try:
            start.wait()
            got[slot] = shared.dream(img, p, rng=np.random.default_rng(1))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p, i)) for i, p in enumerate((a, a, b, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(builds) == 2  # one program per objective, though two threads asked for each at once
    for i, p in enumerate((a, a, b, b)):
        assert np.array_equal(got[i], want[id(p)]), i
