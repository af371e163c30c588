"""Classical (non-learned) detectors for `sirst5k eval/predict --method NAME`.

Each detector is a pure function: grey uint8 (H, W) image -> float32 (H, W) score map, where
bright small targets score high (ANCHORS.md section 4, the usual parameters). `detect` turns a
score map into a probability-like map through one adaptive threshold rule, so that the usual
metrics at threshold 0.5 give exactly the detector's mask:

    T = mean(score) + k * std(score)      (k per detector, `Detector.k`; --k overrides it)
    mask = score > T
    prob = clip(score / (2 T), 0, 1), nudged so that prob > 0.5 exactly where score > T

A threshold t other than 0.5 thus means score > 2 t T, which is what the ROC sweep varies.
A map with T <= 0 (a flat image) gives prob = (score > T), all zero for a flat map.

Adding a method = one function and one DETECTORS entry; eval does not change. The patch-based
low-rank methods (IPI, NRAM, RIPT, PSTNN, MSLSTIPT) build on trainer.lowrank (patch images and
tensors, folding, SVT, t-SVD, the structure-tensor priors and the solvers); their score map is
the sparse (target) part folded back to the image by the median of the overlapping patches,
negative values (dark structures) clipped to 0. docs/evaluation.md lists every method's
parameters and where it departs from its paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from sirst5k.errors import UserError
from trainer import lowrank as lr

TOPHAT_SIZE = 5  # white top-hat, 5x5 square structuring element
MAXMEDIAN_SIZE = 15  # Max-Median window (Deshpande et al. 1999)
WSLCM_SCALES = (5, 7, 9, 11)  # cell sizes (Han et al. 2021)
WSLCM_BLOCK = 3  # a cell's K = 9 largest pixels: its brightest 3 x 3 block (see wslcm)
TLLCM_CELL = 9  # 27 x 27 window of 3 x 3 cells (Han et al. 2019)
TLLCM_CORES = (3, 5, 7)  # core layer sizes inside the central cell (rest: reserve layer)


def tophat(image: np.ndarray) -> np.ndarray:
    """White top-hat: image - opening(image) with a 5x5 square (OpenCV's default border, which
    ignores outside pixels for erosion and dilation)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_SIZE, TOPHAT_SIZE))
    return cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel).astype(np.float32)


def _directional_median(padded: np.ndarray, h: int, w: int, dy: int, dx: int) -> np.ndarray:
    """Median of the 15 pixels along direction (dy, dx) centred on every pixel (vectorised)."""
    r = MAXMEDIAN_SIZE // 2
    views = [
        padded[r + i * dy : r + i * dy + h, r + i * dx : r + i * dx + w] for i in range(-r, r + 1)
    ]
    stack = np.stack(views)  # (15, H, W)
    return np.partition(stack, r, axis=0)[r]  # odd count: the middle element is the median


def maxmedian(image: np.ndarray) -> np.ndarray:
    """Max-Median: image minus the largest of the medians along the row, the column and both
    diagonals of a 15x15 window, clipped at 0. Borders are mirrored (reflect-101)."""
    h, w = image.shape
    r = MAXMEDIAN_SIZE // 2
    padded = cv2.copyMakeBorder(image, r, r, r, r, cv2.BORDER_REFLECT_101)
    medians = [
        _directional_median(padded, h, w, dy, dx) for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))
    ]
    background = np.maximum.reduce(medians).astype(np.float32)
    return np.maximum(image.astype(np.float32) - background, 0.0)


# --------------------------------------------------------------------------------------------
# Local contrast (WSLCM, TLLCM): 3 x 3 cells of size l centred on every pixel


def _cell_views(padded: np.ndarray, pad: int, size: int, h: int, w: int) -> np.ndarray:
    """(9, h, w): a per-pixel map of the padded image read at the 9 cell centres (y + dy size,
    x + dx size), dy, dx in (-1, 0, 1), row-major: index 4 is the central cell."""
    return np.stack(
        [
            padded[pad + dy * size : pad + dy * size + h, pad + dx * size : pad + dx * size + w]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
    )


def _pad(image: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    pad = size + size // 2  # the farthest pixel of a neighbouring cell
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101), pad


def cell_means(image: np.ndarray, size: int) -> np.ndarray:
    """(9, H, W) float32: the means of the 3 x 3 cells of size x size pixels centred on every
    pixel (index 4: the central cell), borders mirrored (reflect-101)."""
    padded, pad = _pad(image.astype(np.float32), size)
    return _cell_views(cv2.blur(padded, (size, size)), pad, size, *image.shape)


_SURROUND = [0, 1, 2, 3, 5, 6, 7, 8]


def wslcm(image: np.ndarray) -> np.ndarray:
    """Weighted strengthened local contrast measure (Han et al. 2021), our reading. The image is
    first smoothed by a 3 x 3 Gaussian (the target-matched filter), g. At each scale l in 5, 7,
    9, 11, with m_i the means of g over the 8 cells of l x l around the pixel's own cell:
        SLCM_l = g * max(0, min_i (g - m_i))          (difference contrast strengthened by g)
        RIL    = (mean of the K largest) - (mean), for every cell (regional intensity level)
        W_l    = max(0, RIL_centre - max_i RIL_i)    (the improved RIL: a peak in the central
                                                      cell only, not along an edge)
    WSLCM = max over l of SLCM_l * W_l. The mean of a cell's K = 9 largest pixels is taken as
    its brightest 3 x 3 block (a box mean, then a max filter): the same 9 pixels for a compact
    target, and far cheaper than sorting every window."""
    h, w = image.shape
    g = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0)
    out = np.zeros((h, w), np.float32)
    for size in WSLCM_SCALES:
        padded, pad = _pad(g, size)
        means = _cell_views(cv2.blur(padded, (size, size)), pad, size, h, w)
        b = WSLCM_BLOCK
        inner = np.ones((size - b + 1, size - b + 1), np.uint8)  # centres of the blocks inside
        top = _cell_views(cv2.dilate(cv2.blur(padded, (b, b)), inner), pad, size, h, w)
        slcm = g * np.maximum(g[None] - means[_SURROUND], 0.0).min(axis=0)
        ril = top - means
        weight = np.maximum(ril[4] - ril[_SURROUND].max(axis=0), 0.0)
        out = np.maximum(out, slcm * weight)
    return out


def tllcm(image: np.ndarray) -> np.ndarray:
    """Tri-layer local contrast measure (Han et al. 2019), our reading: a 27 x 27 window of
    3 x 3 cells of 9 x 9. Core layer: the centre s x s (s = 3, 5, 7) weighted by an s x s
    Gaussian (the matched filter, OpenCV's default sigma for that size), C_s; reserve layer: the
    rest of the central cell, ignored (room for targets larger than the core); surrounding
    layer: the 8 outer cells, B = the largest of their means (at least 1 grey level). Ratio and
    difference combined: TLLCM_s = C_s (C_s - B) / B; TLLCM = max(0, max over s)."""
    img = image.astype(np.float32)
    background = np.maximum(cell_means(img, TLLCM_CELL)[_SURROUND].max(axis=0), 1.0)
    out = np.zeros(img.shape, np.float32)
    for s in TLLCM_CORES:
        core = cv2.GaussianBlur(img, (s, s), 0, borderType=cv2.BORDER_REFLECT_101)
        out = np.maximum(out, core * (core - background) / background)
    return out


# --------------------------------------------------------------------------------------------
# Low-rank + sparse decompositions (solvers in trainer.lowrank)

# Patch sizes and steps are the papers'; iteration caps (max_iter) and the first penalty mu0 keep
# one 256 x 256 image near 0.5 s on one busy CPU core (docs/evaluation.md: what each changes).
IPI_PATCH, IPI_STEP, IPI_ITER = 50, 10, 15
NRAM_PATCH, NRAM_STEP, NRAM_ITER = 50, 10, 8
NRAM_GAMMA, NRAM_BETA, NRAM_ENTRY = 0.002, 300.0, 0.02
RIPT_PATCH, RIPT_STEP, RIPT_ITER, RIPT_LAMBDA_L, RIPT_H, RIPT_MU_SCALE = 30, 10, 8, 0.7, 1.0, 30.0
PSTNN_PATCH, PSTNN_STEP, PSTNN_ITER, PSTNN_LAMBDA_L, PSTNN_N = 40, 40, 30, 0.7, 1
MSL_PATCH, MSL_STEP, MSL_ITER = 40, 40, 15
PRIOR_FLOOR = 0.01  # added to the corner prior before dividing by it (flat areas)
TOL = 1e-5  # stop when ||D - L - S||_F / ||D||_F < TOL


def _unit(image: np.ndarray) -> np.ndarray:
    """Grey levels scaled to [0, 1], float32 (the solvers' precision; eigensolvers run in
    float64 on the small Gram matrices)."""
    return image.astype(np.float32) / np.float32(255)


def _target(sparse: np.ndarray, grid: lr.PatchGrid) -> np.ndarray:
    """Target image: the sparse part folded back (median of the overlaps), clipped at 0."""
    return np.maximum(lr.fold(sparse, grid, "median"), 0.0).astype(np.float32)


def _tensor(a: np.ndarray, grid: lr.PatchGrid) -> np.ndarray:
    """Patch tensor (P, ph, pw) of an image-sized map."""
    return lr.patch_rows(a, grid).reshape(-1, grid.ph, grid.pw)


def ipi(image: np.ndarray) -> np.ndarray:
    """Infrared patch image (Gao et al. 2013): 50 x 50 patches at step 10; robust PCA
    min ||B||_* + lambda ||T||_1 s.t. D = B + T, lambda = 1 / sqrt(max(m, n)), by inexact ALM
    (at most 15 iterations)."""
    grid = lr.patch_grid(*image.shape, IPI_PATCH, IPI_STEP)
    d = lr.patch_rows(_unit(image), grid)
    sol = lr.rpca_ialm(d, 1 / np.sqrt(max(d.shape)), max_iter=IPI_ITER, tol=TOL)
    return _target(sol.sparse, grid)


def nram(image: np.ndarray) -> np.ndarray:
    """Non-convex rank approximation minimisation (Zhang et al. 2018): the IPI patch image;
    min ||B||_gamma + lambda ||W . T||_1 + beta ||E||_2,1 s.t. D = B + T + E with gamma =
    0.002, lambda = 1 / sqrt(max(m, n)), W = C / (|T| + 0.01), C = sqrt(min(m, n)) / 2.5,
    beta = 300 (image in [0, 1]); ADMM + DC programming, at most 8 iterations."""
    grid = lr.patch_grid(*image.shape, NRAM_PATCH, NRAM_STEP)
    d = lr.patch_rows(_unit(image), grid)
    lam, c = 1 / np.sqrt(max(d.shape)), np.sqrt(min(d.shape)) / 2.5
    sol = lr.nram(d, lam, NRAM_BETA, NRAM_GAMMA, c, max_iter=NRAM_ITER, tol=TOL, entry=NRAM_ENTRY)
    return _target(sol.sparse, grid)


def ript(image: np.ndarray) -> np.ndarray:
    """Reweighted infrared patch tensor (Dai & Wu 2017): 30 x 30 patches at step 10 stacked
    into a tensor; min sum_i ||L_(i)||_* + lambda ||W . S||_1 s.t. D = L + S, lambda =
    0.7 / sqrt(min(n1, n2, n3)), W = exp(h * edge indicator) (h = 1) times the reweighting;
    ADMM, at most 8 iterations."""
    unit = _unit(image)
    grid = lr.patch_grid(*image.shape, RIPT_PATCH, RIPT_STEP)
    d = _tensor(unit, grid)
    prior = np.exp(RIPT_H * _tensor(lr.edge_prior(unit).astype(np.float32), grid))
    lam = RIPT_LAMBDA_L / np.sqrt(min(d.shape))
    sol = lr.snn_rpca(d, lam, prior, max_iter=RIPT_ITER, tol=TOL, mu_scale=RIPT_MU_SCALE)
    return _target(sol.sparse, grid)


def _corner_weight(unit: np.ndarray, grid: lr.PatchGrid) -> np.ndarray:
    """1 / (corner prior + floor) as a patch tensor: the target's l1 weight is low on blobs."""
    return 1 / (_tensor(lr.corner_prior(unit).astype(np.float32), grid) + PRIOR_FLOOR)


def pstnn(image: np.ndarray) -> np.ndarray:
    """Partial sum of the tensor nuclear norm (Zhang & Peng 2019): 40 x 40 patches at step 40
    stacked into a tensor; min ||B||_PSTNN + lambda ||W . T||_1 s.t. D = B + T with the t-SVD
    along the patch mode (FFT), the N = 1 largest singular value of every frequency slice left
    out of the sum, lambda = 0.7 / sqrt(max(n1, n2) n3), W = reweighting / corner prior; ALM,
    at most 30 iterations."""
    unit = _unit(image)
    grid = lr.patch_grid(*image.shape, PSTNN_PATCH, PSTNN_STEP)
    d = _tensor(unit, grid)
    lam = PSTNN_LAMBDA_L / np.sqrt(max(d.shape[1:]) * d.shape[0])
    weight = _corner_weight(unit, grid)
    sol = lr.trpca_weighted(d, lam, weight, keep=PSTNN_N, max_iter=PSTNN_ITER, tol=TOL)
    return _target(sol.sparse, grid)


def mslstipt(image: np.ndarray) -> np.ndarray:
    """Multi-subspace learning + patch tensor (Sun et al. 2020), one frame: 40 x 40 patches at
    step 40. A first tensor RPCA (TNN) gives a background estimate; the Fourier-domain left
    singular vectors of its every frequency slice form the dictionary A (one subspace per
    slice). Then min ||Z||_TNN + lambda ||W . T||_1 s.t. D = A * Z + T (tensor low-rank
    representation), lambda = 1 / sqrt(max(n1, n2) n3), W = reweighting / corner prior; at
    most 15 + 15 iterations."""
    unit = _unit(image)
    grid = lr.patch_grid(*image.shape, MSL_PATCH, MSL_STEP)
    d = _tensor(unit, grid)
    lam = 1 / np.sqrt(max(d.shape[1:]) * d.shape[0])
    weight = _corner_weight(unit, grid)
    first = lr.trpca_weighted(d, lam, weight, keep=0, max_iter=MSL_ITER, tol=TOL)
    basis = lr.t_svd_basis(first.low)
    sol = lr.trpca_weighted(d, lam, weight, max_iter=MSL_ITER, tol=TOL, basis=basis)
    return _target(sol.sparse, grid)


@dataclass(frozen=True)
class Detector:
    name: str
    score: Callable[[np.ndarray], np.ndarray]
    # adaptive threshold T = mean + k * std of the score map. The defaults were chosen on
    # NUDT-SIRST's *train* split as the k of highest IoU (tophat, maxmedian: every other image,
    # k in 8..25; the others: the first 120 of every other image, k in 2..40,
    # `benchmarks/bench_methods.py --choose-k`); the test split was never used to choose them
    # (docs/evaluation.md).
    k: float
    description: str


DETECTORS: dict[str, Detector] = {
    "tophat": Detector("tophat", tophat, 12.0, "Top-Hat, white top-hat with a 5x5 square"),
    "maxmedian": Detector("maxmedian", maxmedian, 15.0, "Max-Median, 15x15 window, 4 directions"),
    "wslcm": Detector("wslcm", wslcm, 15.0, "WSLCM, cells 5/7/9/11, K = 9"),
    "tllcm": Detector("tllcm", tllcm, 15.0, "TLLCM, 27x27 window of 9x9 cells, cores 3/5/7"),
    "ipi": Detector("ipi", ipi, 15.0, "IPI, 50x50 patches step 10, RPCA by inexact ALM"),
    "nram": Detector("nram", nram, 20.0, "NRAM, 50x50 patches step 10, gamma norm + l2,1"),
    "ript": Detector("ript", ript, 15.0, "RIPT, 30x30 patch tensor step 10, SNN, h = 1"),
    "pstnn": Detector("pstnn", pstnn, 20.0, "PSTNN, 40x40 patch tensor step 40, N = 1"),
    "mslstipt": Detector("mslstipt", mslstipt, 20.0, "MSLSTIPT (one frame), 40x40 step 40"),
}


def get_detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise UserError(f"unknown method '{name}'; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name]


def to_probability(score: np.ndarray, k: float) -> np.ndarray:
    """Adaptive threshold as a probability-like map (module docstring): > 0.5 iff score > T."""
    score = score.astype(np.float64)
    t = float(score.mean() + k * score.std())
    if t <= 0:
        return (score > t).astype(np.float32)
    above = score > t
    prob = np.clip(score / (2 * t), 0.0, 1.0).astype(np.float32)
    half_up = np.nextafter(np.float32(0.5), np.float32(1))
    prob[above] = np.maximum(prob[above], half_up)
    prob[~above] = np.minimum(prob[~above], np.float32(0.5))
    return prob


def detect(name: str, image: np.ndarray, k: float | None = None) -> np.ndarray:
    """Run detector `name` on a grey uint8 (H, W) image; float32 probability-like map."""
    det = get_detector(name)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(
            f"detectors take grey uint8 (H, W) images, got {image.dtype} {image.shape}"
        )
    return to_probability(det.score(image), det.k if k is None else k)
