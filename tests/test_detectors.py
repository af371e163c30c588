"""Classical detectors on small arrays with known answers."""

import numpy as np
import pytest

from sirst5k.detectors import lowrank as lr
from sirst5k.detectors.methods import (
    DETECTORS,
    cell_means,
    cell_top_means,
    detect,
    maxmedian,
    tllcm,
    to_probability,
    top_k_mean,
    tophat,
    wslcm,
)
from sirst5k.errors import UserError
from sirst5k.metrics import Metrics

NEW_METHODS = ["wslcm", "tllcm", "ipi", "nram", "ript", "pstnn", "mslstipt"]


def test_tophat_of_one_bright_pixel_is_its_excess():
    img = np.full((21, 21), 40, np.uint8)
    img[10, 10] = 140
    out = tophat(img)
    assert out.dtype == np.float32
    assert out[10, 10] == 100 and np.count_nonzero(out) == 1


def test_tophat_ignores_wide_structures():
    img = np.zeros((30, 30), np.uint8)
    img[5:15, 5:15] = 200  # wider than 5x5: survives the opening
    assert np.count_nonzero(tophat(img)) == 0


def test_maxmedian_of_constant_image_is_zero():
    assert not maxmedian(np.full((32, 17), 77, np.uint8)).any()


def test_maxmedian_of_a_point_and_a_line():
    img = np.full((31, 31), 10, np.uint8)
    img[15, 15] = 90  # a point: every directional median is the background
    img[:, 3] = 200  # a vertical line: the column median removes it
    out = maxmedian(img)
    assert out[15, 15] == 80
    assert out[20, 3] == 0


def test_maxmedian_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 23), dtype=np.uint8)
    pad = np.pad(img, 7, mode="reflect")
    ref = np.zeros(img.shape, np.float32)
    for y in range(20):
        for x in range(23):
            cy, cx = y + 7, x + 7
            lines = [
                pad[cy, cx - 7 : cx + 8],
                pad[cy - 7 : cy + 8, cx],
                [pad[cy + i, cx + i] for i in range(-7, 8)],
                [pad[cy + i, cx - i] for i in range(-7, 8)],
            ]
            ref[y, x] = max(0.0, float(img[y, x]) - max(np.median(v) for v in lines))
    np.testing.assert_array_equal(maxmedian(img), ref)


@pytest.mark.parametrize("k", [0.0, 1.5, 3.0])
def test_probability_reproduces_the_adaptive_mask(k):
    rng = np.random.default_rng(1)
    score = (rng.random((40, 40)) ** 4 * 50).astype(np.float32)
    t = score.astype(np.float64).mean() + k * score.astype(np.float64).std()
    prob = to_probability(score, k)
    assert prob.min() >= 0 and prob.max() <= 1
    np.testing.assert_array_equal(prob > 0.5, score > t)


def test_flat_image_gives_empty_mask_and_every_detector_runs():
    for name in DETECTORS:
        assert not (detect(name, np.full((16, 16), 9, np.uint8)) > 0.5).any()
    # 64 x 64, not smaller: a map that is the 2 x 2 target alone passes mean + k std only for
    # k < sqrt(pixels / 4) (16 at 32 x 32), and some default k are 20
    for name in DETECTORS:
        # WSLCM's 3 x 3 median prefilter (the reference's) erases a 2 x 2 target: 3 x 3 for it
        side = 3 if name == "wslcm" else 2
        img = np.full((64, 64), 20, np.uint8)
        img[10 : 10 + side, 20 : 20 + side] = 220
        mask = np.zeros_like(img)
        mask[10 : 10 + side, 20 : 20 + side] = 1
        m = Metrics()
        m.update(detect(name, img)[None], mask[None])
        assert m.compute()["pd"] == 1.0, name


def test_wslcm_median_prefilter_erases_a_2x2_target():
    # every 3 x 3 window holds at most 4 of the 4 target pixels: the median is the background
    img = np.full((40, 40), 20, np.uint8)
    img[18:20, 18:20] = 220
    assert not wslcm(img).any()


def test_unknown_method():
    with pytest.raises(UserError, match="unknown method 'nosuch'"):
        detect("nosuch", np.zeros((4, 4), np.uint8))


# --- building blocks of the patch-based methods (sirst5k.detectors.lowrank) ---------------


def test_patch_image_of_a_tiny_array():
    img = np.arange(16.0).reshape(4, 4)
    expected = np.array([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]).T
    np.testing.assert_array_equal(lr.patch_image(img, 2, 2), expected)  # one patch per column
    # the last patch lies flush with the border: corners 0, 2, 3 on a 5 x 5 image
    grid = lr.patch_grid(5, 5, 2, 2)
    assert grid.index.shape == (9, 4) and grid.index[2].tolist() == [3, 4, 8, 9]
    assert grid.count.reshape(5, 5)[:, 3].tolist() == [2, 2, 2, 4, 2]
    assert lr.patch_tensor(img, 2, 2).shape == (4, 2, 2)
    # patches larger than the image are clipped to it
    assert lr.patch_grid(16, 16, 50, 10).index.shape == (1, 256)


@pytest.mark.parametrize("how", ["median", "mean"])
@pytest.mark.parametrize("shape, patch, step", [((37, 41), 10, 3), ((20, 20), 50, 10)])
def test_folding_the_patches_back_reproduces_the_image(how, shape, patch, step):
    img = np.random.default_rng(2).random(shape)
    grid = lr.patch_grid(*shape, patch, step)
    np.testing.assert_allclose(lr.fold(lr.patch_rows(img, grid), grid, how), img)


def test_fold_takes_the_median_of_the_overlaps():
    grid = lr.patch_grid(1, 5, 3, 1)  # patches at x = 0, 1, 2: pixel 2 lies in all three
    rows = np.array([[0.0, 0, 1], [0, 10, 0], [100, 0, 0]])
    np.testing.assert_array_equal(lr.fold(rows, grid, "median")[0], [0, 0, 10, 0, 0])
    np.testing.assert_allclose(lr.fold(rows, grid, "mean")[0], [0, 0, 37, 0, 0])
    even = lr.patch_grid(1, 3, 2, 1)  # pixel 1 in two patches: the mean of the middle two
    np.testing.assert_array_equal(lr.fold(np.array([[1.0, 2], [5, 7]]), even)[0], [1, 3.5, 7])


def test_singular_value_thresholding_on_a_diagonal_matrix():
    out, rank = lr.svt(np.diag([5.0, 3.0, 1.0]), 2.0)
    np.testing.assert_allclose(out, np.diag([3.0, 1.0, 0.0]), atol=1e-12)
    assert rank == 2
    # a rotated, rectangular one: the same singular values, both orientations
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.normal(size=(7, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(5, 3)))
    x = u @ np.diag([5.0, 3.0, 1.0]) @ v.T
    np.testing.assert_allclose(lr.svt(x, 2.0)[0], u @ np.diag([3.0, 1.0, 0]) @ v.T, atol=1e-10)
    np.testing.assert_allclose(lr.svt(x.T, 2.0)[0], (u @ np.diag([3.0, 1, 0]) @ v.T).T, atol=1e-10)
    assert lr.spectral_norm(x) == pytest.approx(5.0)


def test_gamma_norm_step_weights_by_the_previous_singular_values():
    # gamma = tau = 1: thresholds (1 + 1) * 1 / (1 + prev)^2, i.e. 2 for a new component
    x = np.diag([4.0, 0.5])
    np.testing.assert_allclose(lr.gamma_shrink(x, 1.0, 1.0, np.zeros(0))[0], np.diag([2.0, 0]))
    out, s = lr.gamma_shrink(x, 1.0, 1.0, np.array([3.0]))  # 4 - 2 / 16
    np.testing.assert_allclose(out, np.diag([3.875, 0.0]))
    np.testing.assert_allclose(s, [3.875])


def test_t_svd_of_a_tensor_with_known_slices():
    # frontal slices A = diag(3, 1), B = diag(1, 1): Fourier slices A + B, A - B
    x = np.stack([np.diag([3.0, 1.0]), np.diag([1.0, 1.0])])
    np.testing.assert_allclose(lr.t_svd_values(x), [[4, 2], [2, 0]], atol=1e-12)
    # thresholding by 1 in the Fourier domain: diag(3, 1), diag(1, 0); back: half sum / diff
    out = lr.tensor_svt(x, 1.0)
    np.testing.assert_allclose(out, [np.diag([2.0, 0.5]), np.diag([1.0, 0.5])], atol=1e-12)
    # PSTNN's partial sum with N = 1: the largest value of each slice is kept
    out = lr.tensor_svt(x, 1.0, keep=1)
    np.testing.assert_allclose(out, [np.diag([3.0, 0.5]), np.diag([1.0, 0.5])], atol=1e-12)
    assert lr.tensor_spectral_norm(x) == pytest.approx(4.0)
    y = np.random.default_rng(4).normal(size=(5, 3, 4))  # odd n3: the real FFT's halves
    np.testing.assert_allclose(lr.tensor_svt(y, 0.0), y, atol=1e-12)


def test_t_svd_basis_is_orthonormal_per_frequency_slice():
    y = np.random.default_rng(5).normal(size=(6, 4, 3))
    a = lr.t_svd_basis(y)
    gram = a.conj().transpose(0, 2, 1) @ a
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-12)


def _sparse_spikes(shape, rng):
    s = np.zeros(shape)
    at = rng.random(shape) < 0.05
    s[at] = rng.choice([-5.0, 5.0], at.sum())
    return s


def test_robust_pca_separates_low_rank_and_sparse():
    rng = np.random.default_rng(8)
    low = rng.normal(size=(60, 2)) @ rng.normal(size=(2, 40))
    spikes = _sparse_spikes(low.shape, rng)
    sol = lr.rpca_ialm(low + spikes, 1 / np.sqrt(60), max_iter=100, tol=1e-7)
    assert sol.iterations < 100 and sol.residual < 1e-7
    np.testing.assert_allclose(sol.low, low, atol=1e-4)
    np.testing.assert_allclose(sol.sparse, spikes, atol=1e-4)


def test_tensor_robust_pca_separates_low_tubal_rank_and_sparse():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(7, 20, 1)), rng.normal(size=(7, 1, 15))  # tubal rank 1: a * b
    low = np.fft.irfft(np.fft.rfft(a, axis=0) @ np.fft.rfft(b, axis=0), n=7, axis=0)
    spikes = _sparse_spikes(low.shape, rng)
    d = low + spikes
    # plain TNN + l1: no prior (all ones), no reweighting (eps huge), N = 0
    sol = lr.trpca_weighted(d, 1 / np.sqrt(20 * 7), np.ones_like(d), keep=0, eps=1e12,
                            max_iter=100, tol=1e-7)  # fmt: skip
    np.testing.assert_allclose(sol.low, low, atol=1e-4)
    np.testing.assert_allclose(sol.sparse, spikes, atol=1e-4)


def test_structure_tensor_of_a_ramp_and_the_priors():
    ramp = np.tile(np.arange(30.0), (30, 1))  # gradient (1, 0) everywhere
    l1, l2 = lr.structure_tensor(ramp)
    np.testing.assert_allclose(l1[8:-8, 8:-8], 1.0, atol=1e-3)
    np.testing.assert_allclose(l2, 0.0, atol=1e-9)
    img = np.zeros((40, 40))
    img[:, 30:] = 1.0  # a straight edge
    img[14:17, 9:12] = 1.0  # a small blob
    corner, edge = lr.corner_prior(img), lr.edge_prior(img)
    assert corner.max() == 1.0 and corner[20:, 25:].max() < 0.2 * corner[12:19, 7:14].max()
    assert edge[20, 29] > 0.5 > edge[15, 10]


def test_local_contrast_cells_worked_out_by_hand():
    # 9 x 9 image of 3 x 3 cells holding 0, 10, ..., 80: at the centre, the 9 cell means
    img = np.kron(np.arange(9, dtype=np.uint8).reshape(3, 3) * 10, np.ones((3, 3), np.uint8))
    np.testing.assert_array_equal(cell_means(img, 3)[:, 4, 4], np.arange(9) * 10)


def _top9_by_sorting(window: np.ndarray, k: int = 9) -> float:
    return float(np.sort(window, axis=None)[-k:].mean())


@pytest.mark.parametrize("size", [3, 5, 9, 11])
@pytest.mark.parametrize("k", [1, 4, 9])
def test_top_k_mean_matches_explicit_sorting(size, k):
    # few grey levels: many ties; zeros outside the image (MATLAB's ordfilt2)
    img = (np.random.default_rng(10).integers(0, 6, (13, 17)) * 40).astype(np.uint8)
    r = size // 2
    pad = np.pad(img.astype(float), r)
    ref = np.array(
        [[_top9_by_sorting(pad[y : y + size, x : x + size], k) for x in range(17)]
         for y in range(13)]
    )  # fmt: skip
    np.testing.assert_allclose(top_k_mean(img, size, k), ref, rtol=1e-12)


def test_cell_top_means_worked_out_by_hand():
    # 27 x 27 of 9 x 9 cells, background 10; the top-left cell also holds 9 scattered pixels
    # of 90 (top-9 mean 90, cell mean 18.9), the right cell 3 of 70 (top-9: (3 70 + 6 10) / 9
    # = 30), the central cell a single 200 (top-9: (200 + 8 10) / 9)
    img = np.full((27, 27), 10, np.uint8)
    img[[0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 3, 6, 1, 4, 7, 2, 5, 8]] = 90
    img[[10, 13, 16], [20, 23, 26]] = 70
    img[13, 13] = 200
    expected = [90, 10, 10, 10, 280 / 9, 30, 10, 10, 10]
    np.testing.assert_allclose(cell_top_means(img, (9,))[9][:, 13, 13], expected)
    assert cell_means(img, 9)[0, 13, 13] == pytest.approx((9 * 90 + 72 * 10) / 81)


def test_tllcm_worked_out_by_hand():
    # 27 x 27 window: background 20, 9 scattered pixels of 60 in the top-left 9 x 9 cell, a
    # 3 x 3 core of 100. C = [1 2 1]/16 Gaussian at the centre = 100; B = max of the 8 cells'
    # top-9 means = 60 (a cell mean would give 24.4); TLLCM = 100 (100 - 60) / 60
    img = np.full((27, 27), 20, np.uint8)
    img[[0, 1, 2, 3, 4, 5, 6, 7, 8], [8, 1, 6, 3, 4, 5, 2, 7, 0]] = 60
    img[12:15, 12:15] = 100
    assert tllcm(img)[13, 13] == pytest.approx(100 * 40 / 60)
    # one pixel left: C = 100 3/4 + 20 1/4 = 80; the cells move left with it, and the 60 at
    # (0, 8) leaves the top-left cell: B = (8 60 + 20) / 9 = 500 / 9; TLLCM = C (C - B) / B
    b = 500 / 9
    assert tllcm(img)[13, 12] == pytest.approx(80 * (80 - b) / b)


def test_wslcm_worked_out_by_hand():
    # 35 x 35, background 10, a 3 x 3 target of 100 at the centre. The 3 x 3 median keeps its
    # plus (centre and 4 edge neighbours: 5 or 6 of 9 pixels bright), drops its corners (4 of
    # 9). g at the centre = (4 100 + 4 2 100 + 4 1 10) / 16 = 77.5. Every surrounding cell is
    # flat 10: M_i = 10 = BE, RIL_i = 0, WB = max(5, std 0) = 5; SLCM = 77.5^2 / 10 - 77.5.
    # Central cell: top-9 = (5 100 + 4 10) / 9 = 60; its mean (500 + 10 (l^2 - 5)) / l^2;
    # W_l = RIL_0 (RIL_0 - 0) / 5. The largest cell l = 11 wins (smallest mean). (35, not 33:
    # the median's zero padding darkens the image corners, which 33 x 33 cells would reach.)
    img = np.full((35, 35), 10, np.uint8)
    img[16:19, 16:19] = 100
    slcm = 77.5**2 / 10 - 77.5
    scores = []
    for size in (5, 7, 9, 11):
        ril0 = 60 - (500 + 10 * (size * size - 5)) / size**2
        scores.append(ril0 * ril0 / 5 * slcm)
    assert scores[-1] == max(scores)
    assert wslcm(img)[17, 17] == pytest.approx(scores[-1], rel=1e-6)


def _wslcm_loop(img: np.ndarray) -> np.ndarray:
    """run_WSLCM.m pixel by pixel: medfilt2 (zeros outside), imfilter 'replicate', ordfilt2
    (zeros outside) over the 8 + 1 cells, sample std, floor 5, max over the scales."""
    h, w = img.shape
    zp = np.pad(img.astype(float), 1)
    f = np.array([[np.median(zp[y : y + 3, x : x + 3]) for x in range(w)] for y in range(h)])
    ep = np.pad(f, 1, mode="edge")
    kern = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    g = np.array([[(ep[y : y + 3, x : x + 3] * kern).sum() for x in range(w)] for y in range(h)])
    out = np.full((h, w), -np.inf)
    sur = [0, 1, 2, 3, 5, 6, 7, 8]
    for size in (5, 7, 9, 11):
        p, r = size + size // 2, size // 2
        fz, fe = np.pad(f, p), np.pad(f, p, mode="edge")
        for y in range(h):
            for x in range(w):
                top, mean = [], []
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        cy, cx = y + p + dy * size, x + p + dx * size
                        top.append(_top9_by_sorting(fz[cy - r : cy + r + 1, cx - r : cx + r + 1]))
                        mean.append(fe[cy - r : cy + r + 1, cx - r : cx + r + 1].mean())
                top = np.array(top)
                ril = top - np.array(mean)
                be = top[sur].max()
                slcm = max(0.0, g[y, x] ** 2 / be - g[y, x]) if be > 0 else 0.0
                wd = max(0.0, ril[4] - ril[sur].max())
                wb = max(float(np.std(ril[sur], ddof=1)), 5.0)
                out[y, x] = max(out[y, x], ril[4] * wd / wb * slcm)
    return out


def _tllcm_loop(img: np.ndarray) -> np.ndarray:
    """run_TLLCM.m pixel by pixel."""
    h, w = img.shape
    ep = np.pad(img.astype(float), 1, mode="edge")
    kern = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    zp = np.pad(img.astype(float), 13)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            c = (ep[y : y + 3, x : x + 3] * kern).sum()
            b = max(
                _top9_by_sorting(zp[y + 9 * i : y + 9 * i + 9, x + 9 * j : x + 9 * j + 9])
                for i in range(3)
                for j in range(3)
                if (i, j) != (1, 1)
            )
            out[y, x] = max(0.0, c * c / b - c) if b > 0 else 0.0
    return out


def _clutter(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Noise on a slope, a dark corner of zeros, a 3 x 3 target and a bright bar low down."""
    rng = np.random.default_rng(seed)
    img = rng.normal(60, 12, shape) + np.arange(shape[1]) * 1.5
    img[:4, :4] = 0
    img[10:13, 11:14] += 90
    img[-3, 15:] += 70
    return np.clip(img, 0, 255).astype(np.uint8)


def test_wslcm_matches_a_loop_reference():
    img = _clutter(11, (22, 25))
    ref = _wslcm_loop(img)
    assert (ref > 0).sum() > 10 and ref.max() > 1000  # not a trivial map
    np.testing.assert_allclose(wslcm(img), ref, rtol=1e-5, atol=1e-3)


def test_tllcm_matches_a_loop_reference():
    img = _clutter(12, (30, 34))
    ref = _tllcm_loop(img)
    assert (ref > 0).sum() > 5 and ref.argmax() == np.ravel_multi_index((11, 12), img.shape)
    np.testing.assert_allclose(tllcm(img), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fn", [wslcm, tllcm])
def test_local_contrast_is_zero_on_flat_areas_and_straight_edges(fn):
    assert not fn(np.full((40, 40), 77, np.uint8)).any()
    edge = np.full((40, 40), 30, np.uint8)
    edge[:, 20:] = 120
    assert not fn(edge).any()


# --- every method on small synthetic images --------------------------------------------------


def synthetic(seed: int, target: bool) -> np.ndarray:
    """64 x 64: a gentle slope + Gaussian noise (sd 4), optionally a 3 x 3 target (+60) at
    (40, 22)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    img = 70 + 0.3 * xx + 0.2 * yy + rng.normal(0, 4, (64, 64))
    if target:
        img[39:42, 21:24] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_each_method_finds_a_point_target_and_little_in_noise(name):
    det = DETECTORS[name]
    score = det.score(synthetic(6, target=True))
    assert score.dtype == np.float32 and score.shape == (64, 64)
    y, x = np.unravel_index(np.argmax(score), score.shape)
    assert max(abs(y - 40), abs(x - 22)) <= 2, (name, y, x)
    mask = detect(name, synthetic(7, target=False)) > 0.5
    assert mask.sum() <= 20, (name, mask.sum())  # under 0.5 % of the pixels
