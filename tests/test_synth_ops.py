"""The synthesis ops (Eq. 1-4) on small arrays worked out by hand, plus hypothesis properties."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from sirst5k.errors import UserError
from sirst5k.ops import (
    NoisePool,
    build_pool,
    cell_stats,
    mix,
    negatives,
    noise_cells,
    resize_noise,
    rotate_box,
    sample_noise,
    target_boxes,
)
from sirst5k.synth import SynthConfig


# ------------------------------------------------------------------ Eq. 3 mixing
def test_mix_exact_values():
    image = np.array([[10, 200, 0, 255]], np.uint8)
    noise = np.array([[20.0, 0.0, 255.0, 255.0]], np.float32)
    # 0.1*20 + 0.9*10 = 11; 0.9*200 = 180; 0.1*255 = 25.5 -> 26 (half to even); 255
    assert mix(image, noise, 0.1).tolist() == [[11, 180, 26, 255]]


def test_mix_rounds_half_to_even_and_clips():
    image = np.array([[10, 10, 0, 0]], np.uint8)
    noise = np.array([[21.0, 19.0, 600.0, -50.0]], np.float32)
    # 0.5*21 + 5 = 15.5 -> 16; 0.5*19 + 5 = 14.5 -> 14; 300 -> 255; -25 -> 0
    assert mix(image, noise, 0.5).tolist() == [[16, 14, 255, 0]]


def test_mix_alpha_bounds_are_identity_and_noise():
    image = np.array([[3, 7]], np.uint8)
    noise = np.array([[100.0, 50.0]], np.float32)
    assert mix(image, noise, 0.0).tolist() == [[3, 7]]
    assert mix(image, noise, 1.0).tolist() == [[100, 50]]
    assert mix(image, noise, 0.1).dtype == np.uint8


# ------------------------------------------------------------------ Eq. 2 resize
def test_resize_noise_bilinear_constant_and_nearest_blocks():
    cell = np.array([[10, 20], [30, 40]], np.uint8)
    near = resize_noise(cell, (4, 6), "nearest")
    assert near.shape == (4, 6) and near.dtype == np.float32
    assert near[:2, :3].tolist() == [[10] * 3] * 2 and near[2:, 3:].tolist() == [[40] * 3] * 2
    flat = resize_noise(np.full((3, 3), 7, np.uint8), (5, 9), "bilinear")
    assert np.all(flat == 7)
    # bilinear of a 2x2 cell up to 4x4: OpenCV samples at half-pixel centres -> 10, 12.5, 17.5, 20
    bil = resize_noise(cell, (4, 4), "bilinear")
    assert bil[0].tolist() == [10.0, 12.5, 17.5, 20.0]


# ------------------------------------------------------------------ Eq. 1 noise cells
def test_cell_stats_by_hand():
    image = np.array([[0, 2, 9, 9], [4, 6, 9, 9], [1, 1, 0, 0], [1, 3, 0, 0]], np.uint8)
    mean, var = cell_stats(image, 2)
    assert mean.tolist() == [[3.0, 9.0], [1.5, 0.0]]
    # (0+4+16+36)/4 - 9 = 5;  (1+1+1+9)/4 - 2.25 = 0.75
    assert var.tolist() == [[5.0, 0.0], [0.75, 0.0]]


def test_cell_stats_ignores_remainder_pixels():
    image = np.zeros((5, 5), np.uint8)
    image[4, :] = 255
    image[:, 4] = 255  # only in the unused last row/column with grid 2 (cells 2x2)
    mean, var = cell_stats(image, 2)
    assert mean.shape == (2, 2) and not mean.any() and not var.any()


def _cells_image():
    """8x8 image, grid 2 -> four 4x4 cells: zero / constant 100 / 100,102 checker / 0,100."""
    img = np.zeros((8, 8), np.uint8)
    img[:4, 4:] = 100
    checker = (np.indices((4, 4)).sum(0) % 2).astype(np.uint8)
    img[4:, :4] = 100 + 2 * checker  # mean 101, var 1
    img[4:, 4:] = 100 * checker  # mean 50, var 2500
    return img


def test_noise_cells_thresholds():
    img, mask = _cells_image(), np.zeros((8, 8), np.uint8)
    keep = noise_cells(img, mask, 2, sigma=50, mu=255)
    assert keep.tolist() == [[False, False], [True, False]]  # only 0 < var < 50 and mean > 0
    assert noise_cells(img, mask, 2, sigma=1, mu=255).tolist() == [[False, False]] * 2  # var < 1
    assert noise_cells(img, mask, 2, sigma=50, mu=101).tolist() == [[False, False]] * 2  # strict
    assert noise_cells(img, mask, 2, sigma=3000, mu=255).tolist() == [[False, False], [True, True]]


def test_noise_cells_never_touch_a_target():
    img, mask = _cells_image(), np.zeros((8, 8), np.uint8)
    mask[3, 3] = 1  # in the top-left cell, diagonal neighbour of the bottom-left cell's (4, 4)?
    # (3, 3) dilated by 1 px reaches row 4, columns 2..4: inside the bottom-left cell
    assert noise_cells(img, mask, 2, 50, 255).tolist() == [[False, False], [False, False]]
    mask[:] = 0
    mask[2, 1] = 1  # dilation reaches row 3 only: the bottom-left cell stays a noise cell
    assert noise_cells(img, mask, 2, 50, 255).tolist() == [[False, False], [True, False]]


# ------------------------------------------------------------------ the sampler
def test_sample_noise_never_from_the_same_image():
    pool = NoisePool(np.array([0, 0, 1, 2, 2, 2]), np.zeros(6, int), np.zeros(6, int))
    for seed in range(50):
        drawn = sample_noise(np.random.default_rng(seed), pool, 3)
        assert (pool.owner[drawn] != np.arange(3)).all()
    # image 3 owns no cell: it may draw any of the 6
    assert sample_noise(np.random.default_rng(0), pool, 4).shape == (4,)


def test_sample_noise_forced_choice_and_uniformity():
    pool = NoisePool(np.array([0, 1, 1]), np.zeros(3, int), np.zeros(3, int))
    rng = np.random.default_rng(0)
    draws = np.array([sample_noise(rng, pool, 2) for _ in range(4000)])
    assert (draws[:, 1] == 0).all()  # image 1 can only take image 0's cell
    assert set(draws[:, 0]) == {1, 2} and abs((draws[:, 0] == 1).mean() - 0.5) < 0.05


def test_sample_noise_same_seed_same_draws():
    pool = build_pool([np.ones((2, 2), bool), np.eye(2, dtype=bool), np.zeros((2, 2), bool)])
    assert pool.owner.tolist() == [0, 0, 0, 0, 1, 1] and pool.col.tolist()[4:] == [0, 1]
    a = sample_noise(np.random.default_rng(7), pool, 3)
    b = sample_noise(np.random.default_rng(7), pool, 3)
    assert a.tolist() == b.tolist()


def test_sample_noise_empty_pool_raises():
    pool = build_pool([np.ones((1, 1), bool), np.zeros((1, 1), bool)])
    with pytest.raises(UserError):
        sample_noise(np.random.default_rng(0), pool, 2)  # image 0 has only its own cell


# ------------------------------------------------------------------ Eq. 4 negatives
def test_rotate_box_by_hand():
    a = np.arange(25).reshape(5, 5)
    out = rotate_box(a, 1, 1, 3, 1)  # 90 degrees counter-clockwise, like np.rot90
    expected = a.copy()
    expected[1:4, 1:4] = [[8, 13, 18], [7, 12, 17], [6, 11, 16]]
    assert out.tolist() == expected.tolist()
    assert a[1, 1] == 6  # input untouched


def test_target_boxes_centroid_and_border():
    mask = np.zeros((7, 7), np.uint8)
    mask[0, 0] = 1  # corner: box shifted inside to (0, 0)
    mask[3, 3] = 1  # centre: box (2, 2)
    mask[6, 6] = 1  # opposite corner: (4, 4)
    assert target_boxes(mask, 3).tolist() == [[0, 0], [2, 2], [4, 4]]
    mask[:] = 0
    mask[2, 2] = mask[2, 3] = 1  # centroid (y 2, x 2.5) -> x rounds half up to 3 -> box (1, 2)
    assert target_boxes(mask, 3).tolist() == [[1, 2]]
    assert target_boxes(mask, 7).tolist() == [[0, 0]]


def test_target_boxes_eight_connectivity_and_no_target():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # diagonal neighbours: one 8-connected target
    mask[4, 5] = 1
    assert len(target_boxes(mask, 1)) == 2
    assert target_boxes(mask, 1).tolist() == [[2, 2], [4, 5]]  # centroid (1.5, 1.5) -> (2, 2)
    assert target_boxes(np.zeros((6, 6), np.uint8), 3).shape == (0, 2)


def test_negatives_two_targets_rotate_and_unchanged_labels():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 1] = mask[1, 2] = 1  # target 0: centroid (1, 1.5) -> (1, 2), box (0, 1)
    mask[6, 6] = 1  # target 1: box (5, 5)
    boxes = target_boxes(mask, 3)
    assert boxes.tolist() == [[0, 1], [5, 5]]
    ni, nm = negatives(img, mask, boxes, 3, "rotate")
    assert ni.shape == (8, 8, 8) and nm.shape == (8, 8, 8)
    for t, (y0, x0) in enumerate(boxes):
        for k in range(4):
            i = 4 * t + k
            box = (slice(y0, y0 + 3), slice(x0, x0 + 3))
            assert (ni[i][box] == np.rot90(img[box], k)).all()
            assert (nm[i][box] == np.rot90(mask[box], k)).all()
            outside = np.ones((8, 8), bool)
            outside[box] = False
            assert (ni[i][outside] == img[outside]).all() and (
                nm[i][outside] == mask[outside]
            ).all()
    assert (ni[0] == img).all() and (nm[0] == mask).all()  # rotation 0 is I_mix itself
    # rot90 ccw of a 3x3 box sends local (r, c) to (2 - c, r). Target 0 is local (1, 0), (1, 1)
    # in the box at (0, 1) -> local (2, 1), (1, 1) -> global (2, 2), (1, 2).
    assert np.argwhere(nm[1]).tolist() == [[1, 2], [2, 2], [6, 6]]
    assert ni[1][1, 2] == img[1, 2] and ni[1][2, 2] == img[1, 1]  # the pixels moved with them
    _, nm_u = negatives(img, mask, boxes, 3, "unchanged")
    assert all((m == mask).all() for m in nm_u)


def test_negatives_zero_targets_gives_none():
    img = np.ones((5, 5), np.uint8)
    ni, nm = negatives(img, np.zeros((5, 5), np.uint8), np.zeros((0, 2), np.int64), 3)
    assert ni.shape == (0, 5, 5) and nm.shape == (0, 5, 5)


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "kw, word",
    [
        ({"alpha": 1.5}, "--alpha"),
        ({"alpha": -0.1}, "--alpha"),
        ({"s": 4}, "--s 4"),
        ({"s": 0}, "--s 0"),
        ({"grid": 0}, "--grid"),
        ({"sigma": 0}, "--sigma"),
        ({"resize": "lanczos"}, "lanczos"),
        ({"label": "flip"}, "flip"),
    ],
)
def test_config_rejects_bad_values(kw, word):
    with pytest.raises(UserError, match=word):
        SynthConfig(**kw)


# ------------------------------------------------------------------ properties
@st.composite
def image_and_box(draw):
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    img = draw(arrays(np.uint8, (h, w)))
    s = draw(st.sampled_from([x for x in (1, 3, 5, 7) if x <= min(h, w)]))
    y0 = draw(st.integers(0, h - s))
    x0 = draw(st.integers(0, w - s))
    return img, y0, x0, s


@settings(max_examples=150, deadline=None)
@given(image_and_box(), st.integers(0, 3))
def test_rotation_is_confined_to_the_box(args, k):
    img, y0, x0, s = args
    out = rotate_box(img, y0, x0, s, k)
    outside = np.ones(img.shape, bool)
    outside[y0 : y0 + s, x0 : x0 + s] = False
    assert (out[outside] == img[outside]).all()
    assert (out[y0 : y0 + s, x0 : x0 + s] == np.rot90(img[y0 : y0 + s, x0 : x0 + s], k)).all()
    assert sorted(out.ravel()) == sorted(img.ravel())  # a permutation of the pixels


@settings(max_examples=100, deadline=None)
@given(image_and_box(), st.integers(0, 3), st.integers(0, 3))
def test_rotations_form_a_rot90_orbit(args, k1, k2):
    img, y0, x0, s = args
    twice = rotate_box(rotate_box(img, y0, x0, s, k1), y0, x0, s, k2)
    assert (twice == rotate_box(img, y0, x0, s, (k1 + k2) % 4)).all()
    assert (rotate_box(img, y0, x0, s, 4) == img).all()


@settings(max_examples=100, deadline=None)
@given(image_and_box(), st.integers(0, 255))
def test_image_and_mask_stay_aligned(args, thr):
    img, y0, x0, s = args
    mask = (img > thr).astype(np.uint8)
    ni, nm = negatives(img, mask, np.array([[y0, x0]]), s, "rotate")
    for k in range(4):
        assert (nm[k] == (ni[k] > thr)).all()


@settings(max_examples=100, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(2, 20), st.integers(2, 20))), st.integers(1, 4))
def test_cell_stats_match_a_plain_loop(img, grid):
    h, w = img.shape
    if min(h, w) // grid < 1:
        return
    mean, var = cell_stats(img, grid)
    ch, cw = h // grid, w // grid
    for r in range(grid):
        for c in range(grid):
            cell = img[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw].astype(float)
            assert mean[r, c] == pytest.approx(cell.mean())
            assert var[r, c] == pytest.approx(cell.var(), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, (12, 12), elements=st.sampled_from([0, 0, 0, 1])), st.sampled_from([1, 3]))
def test_one_box_per_eight_connected_component(mask, s):
    _, z = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = target_boxes(mask, s)
    assert len(boxes) == z
    assert ((boxes >= 0) & (boxes <= 12 - s)).all()


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.uint8, (7, 9)),
    arrays(np.float32, (7, 9), elements=st.floats(-50, 300, width=32)),
    st.floats(0, 1),
)
@example(np.full((7, 9), 235, np.uint8), np.zeros((7, 9), np.float32), 0.7)  # 70.50000000000001
def test_mix_equals_the_float64_formula(image, noise, alpha):
    ref = alpha * noise.astype(np.float64) + (1 - alpha) * image.astype(np.float64)
    assert (mix(image, noise, alpha) == np.clip(np.rint(ref), 0, 255).astype(np.uint8)).all()


def test_mix_broadcasts_noise_over_channels():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 1] = 100
    out = mix(image, np.full((2, 3, 1), 50, np.float32), 0.5)
    assert out.shape == (2, 3, 3) and out[0, 0].tolist() == [25, 75, 25]
    assert mix(image[..., :1], np.full((2, 3, 1), 50, np.float32), 0.5).shape == (2, 3, 1)
