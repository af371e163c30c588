"""Low-rank + sparse building blocks and solvers for the patch-based detectors of
sirst5k.detectors.methods (IPI, NRAM, RIPT, PSTNN, MSLSTIPT).

Conventions
  - Images are float64 in [0, 1] (grey uint8 / 255).
  - A patch image holds one vectorised patch per *row*, shape (P, ph * pw): the transpose of the
    papers' (ph * pw) x P patch image, which changes no singular value and no entry-wise norm.
  - A tensor is a stack of frontal slices, shape (n3, n1, n2): a patch tensor is (P, ph, pw),
    the papers' ph x pw x P with the patch index as the third mode. The t-SVD's transform along
    the third mode is then an FFT along axis 0, and NumPy's batched SVD runs over the frequency
    slices directly.

Everything is vectorised NumPy / SciPy (FFT, LAPACK); no loop runs over pixels. Solvers stop
when the relative constraint residual ||D - L - S||_F / ||D||_F falls below `tol` or after
`max_iter` iterations, whichever comes first (the caps keep one 256 x 256 image under ~0.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------
# Patches: construction and folding


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of an h x w image lie. Patch top-left corners run over 0, step, 2 step,
    ... and a last one flush with the far border, so every pixel is covered; patches larger than
    the image are clipped to it. `index[p]` holds the flat pixel indices of patch p (row-major),
    `count` how many patches cover each pixel, `slot[p, j]` the rank of patch p among the
    patches covering pixel index[p, j] (for the median fold)."""

    h: int
    w: int
    ph: int
    pw: int
    index: np.ndarray  # (P, ph * pw) int
    count: np.ndarray  # (h * w,) int
    slot: np.ndarray  # (P, ph * pw) int


def _starts(n: int, p: int, step: int) -> np.ndarray:
    s = list(range(0, n - p + 1, step))
    if s[-1] != n - p:
        s.append(n - p)
    return np.array(s)


@lru_cache(maxsize=32)
def patch_grid(h: int, w: int, patch: int, step: int) -> PatchGrid:
    ph, pw = min(patch, h), min(patch, w)
    ys, xs = _starts(h, ph, step), _starts(w, pw, step)
    corners = (ys[:, None] * w + xs[None, :]).ravel()
    offsets = (np.arange(ph)[:, None] * w + np.arange(pw)[None, :]).ravel()
    index = corners[:, None] + offsets[None, :]
    flat = index.ravel()
    count = np.bincount(flat, minlength=h * w)
    order = np.argsort(flat, kind="stable")  # patch order within each pixel's group
    group_start = np.concatenate(([0], np.cumsum(count)[:-1]))
    slot = np.empty_like(flat)
    slot[order] = np.arange(flat.size) - group_start[flat[order]]
    for a in (index, count, slot):
        a.flags.writeable = False
    return PatchGrid(h, w, ph, pw, index, count, slot.reshape(index.shape))


def patch_rows(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(P, ph * pw): one vectorised patch per row."""
    return image.reshape(-1)[grid.index]


def patch_image(image: np.ndarray, patch: int, step: int) -> np.ndarray:
    """The papers' patch image (IPI): one vectorised patch (row-major) per column."""
    grid = patch_grid(*image.shape, patch, step)
    return patch_rows(image, grid).T


def patch_tensor(image: np.ndarray, patch: int, step: int) -> np.ndarray:
    """Patch tensor as a stack of frontal slices, (P, ph, pw)."""
    grid = patch_grid(*image.shape, patch, step)
    return patch_rows(image, grid).reshape(-1, grid.ph, grid.pw)


def fold(rows: np.ndarray, grid: PatchGrid, how: str = "median") -> np.ndarray:
    """Image from patch rows (P, ph * pw) or a patch tensor: every pixel gets the median (or the
    mean) of the values the overlapping patches give it. The median is vectorised: the values
    of each pixel are placed in its slots of an (h * w, max overlap) array padded with NaN,
    sorted (NaN last) and read at the middle of that pixel's count."""
    values = rows.reshape(grid.index.shape)
    flat = grid.index.ravel()
    if how == "mean":
        return (np.bincount(flat, values.ravel(), grid.h * grid.w) / grid.count).reshape(
            grid.h, grid.w
        )
    if how != "median":
        raise ValueError(f"fold: how must be 'median' or 'mean', not {how!r}")
    stack = np.full((grid.h * grid.w, int(grid.count.max())), np.nan, dtype=values.dtype)
    stack[flat, grid.slot.ravel()] = values.ravel()
    stack.sort(axis=1)
    lo = np.take_along_axis(stack, ((grid.count - 1) // 2)[:, None], axis=1)
    hi = np.take_along_axis(stack, (grid.count // 2)[:, None], axis=1)
    return ((lo + hi) / 2).reshape(grid.h, grid.w)


# --------------------------------------------------------------------------------------------
# Proximal operators


def soft(x: np.ndarray, t) -> np.ndarray:
    """Entry-wise soft thresholding sign(x) max(|x| - t, 0) (t scalar or array), computed as
    x - clip(x, -t, t): two passes over the data instead of four."""
    return x - np.clip(x, -t, t)


def _gram(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """The smaller Gram matrix of x (in float64 for the eigensolver) and whether it is x x^T
    (x wide) rather than x^T x."""
    wide = x.shape[0] < x.shape[1]
    return (x @ x.T if wide else x.T @ x).astype(np.float64), wide


def _eig_top(gram: np.ndarray, floor: float = 0.0, count: int | None = None, full=False):
    """Eigenpairs of a Gram matrix, largest first: those above floor^2 (count None; LAPACK's
    MRRR computes only these) or the `count` largest. `full`: one divide-and-conquer call for
    all, faster when many are wanted."""
    import scipy.linalg  # here, not at the top: `sirst5k --help` lists the methods without it

    n = gram.shape[0]
    if full:
        w, v = scipy.linalg.eigh(gram, driver="evd", check_finite=False)
        keep = w > floor**2 if count is None else np.arange(n) >= n - count
        w, v = w[keep], v[:, keep]
    elif count is None:
        w, v = scipy.linalg.eigh(
            gram, subset_by_value=(floor**2, np.inf), driver="evr", check_finite=False
        )
    else:
        w, v = scipy.linalg.eigh(
            gram, subset_by_index=(n - count, n - 1), driver="evr", check_finite=False
        )
    return np.sqrt(np.maximum(w[::-1], 0.0)), v[:, ::-1]


def _rebuild(x: np.ndarray, v: np.ndarray, scale: np.ndarray, wide: bool) -> np.ndarray:
    """U diag(s * scale) V^T from the eigenvectors v of the Gram matrix: x V diag(scale) V^T
    (or U diag(scale) U^T x for a wide x), no SVD needed."""
    v = v.astype(x.dtype)
    scale = scale.astype(x.dtype)
    if wide:
        return v @ (scale[:, None] * (v.T @ x))
    return ((x @ v) * scale) @ v.T


def svt(x: np.ndarray, tau: float, many: bool = False) -> tuple[np.ndarray, int]:
    """Singular value thresholding U diag(max(s - tau, 0)) V^T (the prox of tau ||.||_*) and
    the rank of the result. Only the singular values above tau are computed, from the smaller
    Gram matrix (`many`: expect many of them, decompose it all at once)."""
    gram, wide = _gram(x)
    s, v = _eig_top(gram, tau, full=many)
    s, v = s[s > tau], v[:, s > tau]
    if s.size == 0:
        return np.zeros_like(x), 0
    return _rebuild(x, v, (s - tau) / s, wide), s.size


def spectral_norm(x: np.ndarray) -> float:
    """Largest singular value (through the largest eigenvalue of the smaller Gram matrix)."""
    return float(_eig_top(_gram(x)[0], count=1)[0][0])


def gamma_shrink(
    x: np.ndarray, tau: float, gamma: float, prev: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One DC-programming step for tau ||.||_gamma, NRAM's non-convex rank surrogate (Kang et
    al.'s gamma norm sum (1 + gamma) s / (gamma + s)): its concave part is linearised at the
    singular values `prev` of the previous iterate (descending; missing ones are 0), giving a
    weighted SVT with thresholds t_i = tau (1 + gamma) gamma / (gamma + prev_i)^2 (non-
    decreasing in i, so it is the exact prox of the weighted nuclear norm). A component new
    to the iterate needs s > tau (1 + gamma) / gamma. Returns the result and its singular
    values. Only the leading pairs are computed (2 len(prev) + 8, doubled while the last one
    could still pass; all at once beyond n / 8)."""
    gram, wide = _gram(x)
    n = gram.shape[0]
    entry = tau * (1 + gamma) / gamma
    count = min(n, 2 * prev.size + 8)
    while True:
        s, v = _eig_top(gram, count=count, full=count > n // 8)
        if count == n or s[-1] <= entry:
            break
        count = min(n, 2 * count)
    padded = np.zeros(count)
    padded[: prev.size] = prev[:count]
    new = np.maximum(s - tau * (1 + gamma) * gamma / (gamma + padded) ** 2, 0.0)
    keep = new > 0
    if not keep.any():
        return np.zeros_like(x), new[:0]
    return _rebuild(x, v[:, keep], new[keep] / s[keep], wide), new[keep]


# --------------------------------------------------------------------------------------------
# Tensors: t-SVD by FFT along the third mode (axis 0 here)


def t_svd_values(x: np.ndarray) -> np.ndarray:
    """Singular values of every frequency slice of x (n3, n1, n2): (n3, min(n1, n2))."""
    return np.linalg.svd(np.fft.fft(x, axis=0), compute_uv=False)


def _svt_slices(f: np.ndarray, tau: float, keep: int = 0) -> np.ndarray:
    """SVT of a batch of (complex) matrices (k, n1, n2); the `keep` largest singular values of
    each are left alone."""
    u, s, vh = np.linalg.svd(f, full_matrices=False)
    shrunk = np.maximum(s - tau, 0.0)
    shrunk[:, :keep] = s[:, :keep]
    return (u * shrunk[:, None, :]) @ vh


def tensor_svt(x: np.ndarray, tau: float, keep: int = 0) -> np.ndarray:
    """Prox of tau * TNN (TNN = (1/n3) sum over frequency slices of the nuclear norm): each
    frequency slice's singular values after the `keep` largest are soft-thresholded by tau, the
    `keep` largest are left alone (keep = N: PSTNN's partial sum). Real input: only the
    n3 // 2 + 1 slices of the real FFT are decomposed, the others being their conjugates."""
    return np.fft.irfft(_svt_slices(np.fft.rfft(x, axis=0), tau, keep), n=x.shape[0], axis=0)


def tensor_spectral_norm(x: np.ndarray) -> float:
    """Largest singular value over the frequency slices (the dual norm of TNN)."""
    return float(np.linalg.svd(np.fft.rfft(x, axis=0), compute_uv=False).max())


# --------------------------------------------------------------------------------------------
# Local structure prior (RIPT, PSTNN, MSLSTIPT)


def structure_tensor(image: np.ndarray, sigma: float = 1.0, rho: float = 2.0):
    """Eigenvalues (l1 >= l2) of the structure tensor J = G_rho * (grad I_sigma grad I_sigma^T):
    the image smoothed by a Gaussian of sigma, central differences (Sobel / 8), products
    smoothed by a Gaussian of rho (OpenCV, reflect-101 borders)."""
    img = image.astype(np.float64)
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3) / 8
    jxx, jyy, jxy = (cv2.GaussianBlur(g, (0, 0), rho) for g in (gx * gx, gy * gy, gx * gy))
    half_trace = (jxx + jyy) / 2
    root = np.sqrt(((jxx - jyy) / 2) ** 2 + jxy**2)
    return half_trace + root, np.maximum(half_trace - root, 0.0)


def _normalise(a: np.ndarray) -> np.ndarray:
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def edge_prior(image: np.ndarray) -> np.ndarray:
    """RIPT's local structure weight (our reading): the edge indicator l1 - l2, min-max
    normalised to [0, 1]; exp(h * it) multiplies the l1 weight of the target, so that edges
    are penalised up to e^h times more than flat areas or blobs."""
    l1, l2 = structure_tensor(image)
    return _normalise(l1 - l2)


def corner_prior(image: np.ndarray) -> np.ndarray:
    """PSTNN's local prior (our reading): the corner strength l1 l2 / (l1 + l2) (large only
    where the grey level changes in every direction: blobs, small targets, corners), min-max
    normalised to [0, 1]."""
    l1, l2 = structure_tensor(image)
    return _normalise(l1 * l2 / (l1 + l2 + 1e-12))


def reweight(s: np.ndarray, eps: float) -> np.ndarray:
    """Candes-Wakin-Boyd reweighting of an l1 term, scaled to 1 at zero: eps / (|s| + eps)."""
    return eps / (np.abs(s) + eps)


# --------------------------------------------------------------------------------------------
# Solvers


@dataclass
class Solution:
    low: np.ndarray
    sparse: np.ndarray
    iterations: int
    residual: float


def _dual_ascent(y: np.ndarray, z: np.ndarray, mu: float) -> float:
    """The augmented Lagrangian's multiplier step Y += mu Z (in place) for the constraint's
    residual Z = D - L - S; returns ||Z||."""
    y += mu * z
    return float(np.linalg.norm(z))


def rpca_ialm(
    d: np.ndarray, lam: float, max_iter: int = 30, tol: float = 1e-5, rho: float = 1.5
) -> Solution:
    """Robust PCA  min ||L||_* + lam ||S||_1  s.t.  D = L + S  by the inexact augmented
    Lagrange multiplier method (Lin, Chen & Ma 2010): mu0 = 1.25 / ||D||_2, mu *= rho, the dual
    variable started at D / max(||D||_2, ||D||_inf / lam)."""
    lam, norm_fro = float(lam), float(np.linalg.norm(d))
    if norm_fro == 0:
        return Solution(np.zeros_like(d), np.zeros_like(d), 0, 0.0)
    norm_two = spectral_norm(d)
    y = d / max(norm_two, np.abs(d).max() / lam)
    mu = 1.25 / norm_two
    s = np.zeros_like(d)
    residual, it, rank = 1.0, 0, 0
    while it < max_iter:
        it += 1
        low, rank = svt(d - s + y / mu, 1 / mu, many=rank > min(d.shape) // 8)
        s = soft(d - low + y / mu, lam / mu)
        residual = _dual_ascent(y, d - low - s, mu) / norm_fro
        mu *= rho
        if residual < tol:
            break
    return Solution(low, s, it, residual)


def nram(
    d: np.ndarray,
    lam: float,
    beta: float,
    gamma: float = 0.002,
    c: float = 1.0,
    eps: float = 0.01,
    max_iter: int = 30,
    tol: float = 1e-5,
    rho: float = 1.5,
    entry: float = 1.0,
) -> Solution:
    """NRAM:  min ||B||_gamma + lam ||W . T||_1 + beta ||E||_2,1  s.t.  D = B + T + E, by ADMM
    with one DC-programming step per B update (`gamma_shrink`, linearised at the previous B),
    W = c / (|T| + eps) (reweighted l1, started at T = 0 and recomputed after every T update),
    and shrinkage of E's rows (one row = one patch: structured residuals such as strong edges).
    A singular component new to B needs s > (1 + gamma) / (gamma mu): mu0 = (1 + gamma) /
    (gamma entry ||D||_2) lets those above entry ||D||_2 in at the first step (the background's
    leading components at once, instead of one by one over the first iterations); mu *= rho."""
    lam, norm_fro = float(lam), float(np.linalg.norm(d))
    if norm_fro == 0:
        return Solution(np.zeros_like(d), np.zeros_like(d), 0, 0.0)
    c, beta = float(c), float(beta)
    norm_two = spectral_norm(d)
    mu = (1 + gamma) / (gamma * entry * norm_two)
    u = np.zeros_like(d)  # the scaled dual variable Y / mu
    b, t, e = np.zeros_like(d), np.zeros_like(d), np.zeros_like(d)
    weight = np.full_like(d, c / eps)
    sv = np.zeros(0)
    residual, it = 1.0, 0
    while it < max_iter:
        it += 1
        q = d + u
        b, sv = gamma_shrink(q - t - e, 1 / mu, gamma, sv)
        r = q - b - e
        t = soft(r, (lam / mu) * weight)
        weight = c / (np.abs(t) + eps)
        g = r + e - t
        norms = np.linalg.norm(g, axis=1, keepdims=True)
        e = g * (np.maximum(norms - beta / mu, 0.0) / np.maximum(norms, 1e-12))
        z = g - e - u  # = D - B - T - E
        u = (u + z) / rho  # Y += mu Z, then mu *= rho
        mu *= rho
        residual = float(np.linalg.norm(z)) / norm_fro
        if residual < tol:
            break
    return Solution(b, t, it, residual)


def _unfold(x: np.ndarray, mode: int) -> np.ndarray:
    """Mode-n unfolding of a (n3, n1, n2) tensor with modes numbered as the papers' (1, 2, 3)
    = axes (1, 2, 0); the column order does not matter for the nuclear norm."""
    axis = (1, 2, 0)[mode]
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _fold(m: np.ndarray, mode: int, shape: tuple[int, ...]) -> np.ndarray:
    axis = (1, 2, 0)[mode]
    moved = (shape[axis],) + tuple(n for i, n in enumerate(shape) if i != axis)
    return np.moveaxis(m.reshape(moved), 0, axis)


def snn_rpca(
    d: np.ndarray,
    lam: float,
    prior: np.ndarray,
    eps: float = 0.01,
    alpha: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_iter: int = 20,
    tol: float = 1e-5,
    rho: float = 1.5,
    mu_scale: float = 1.0,
) -> Solution:
    """RIPT's tensor RPCA:  min sum_i alpha_i ||L_(i)||_* + lam ||W . S||_1  s.t.  D = L + S,
    with W = prior . eps / (|S| + eps) (reweighted after every S update). ADMM on three copies
    L_i = L (one per unfolding, Goldfarb & Qin's splitting): L_i = fold_i(SVT(unfold_i(D - S +
    Y_i / mu), alpha_i / mu)); S = soft-threshold of the mean of D - L_i + Y_i / mu by
    lam W / (3 mu); Y_i += mu (D - L_i - S); L = mean of the L_i."""
    lam, norm_fro = float(lam), float(np.linalg.norm(d))
    if norm_fro == 0:
        return Solution(np.zeros_like(d), np.zeros_like(d), 0, 0.0)
    norm_two = max(spectral_norm(_unfold(d, m)) for m in range(3))
    ys = [d / max(norm_two, np.abs(d).max() / lam) for _ in range(3)]
    mu = 1.25 * mu_scale / norm_two
    s, weight = np.zeros_like(d), prior.astype(d.dtype)
    lows = [np.zeros_like(d) for _ in range(3)]
    ranks = [0, 0, 0]
    residual, it = 1.0, 0
    while it < max_iter:
        it += 1
        for m in range(3):
            x = _unfold(d - s + ys[m] / mu, m)
            low, ranks[m] = svt(x, alpha[m] / mu, many=ranks[m] > min(x.shape) // 8)
            lows[m] = _fold(low, m, d.shape)
        mean = sum(d - low + y / mu for low, y in zip(lows, ys, strict=True)) / 3
        s = soft(mean, lam * weight / (3 * mu))
        weight = prior * reweight(s, eps)
        residual = max(_dual_ascent(y, d - low - s, mu) for y, low in zip(ys, lows, strict=True))
        residual /= norm_fro
        mu *= rho
        if residual < tol:
            break
    return Solution(sum(lows) / 3, s, it, residual)


def trpca_weighted(
    d: np.ndarray,
    lam: float,
    prior_inv: np.ndarray,
    keep: int = 1,
    eps: float = 0.01,
    max_iter: int = 40,
    tol: float = 1e-5,
    rho: float = 1.5,
    basis: np.ndarray | None = None,
    mu_scale: float = 1.0,
) -> Solution:
    """Tensor RPCA with a t-SVD rank term, used by PSTNN and MSLSTIPT:
        min ||Z||_PSTNN(keep) + lam ||W . S||_1  s.t.  D = A * Z + S,   L = A * Z
    with W = prior_inv . eps / (|S| + eps) (reweighted after every S update). Without a basis
    A is the identity (PSTNN: L = Z). With one (`basis`: the Fourier-domain slices of A, each
    with orthonormal columns, from `t_svd_basis`: tensor low-rank representation), the Z update
    is the prox of the rank term at A^T * (D - S + Y / mu), slice by slice in the Fourier
    domain. ALM with mu0 = 1.25 / ||D|| (tensor spectral norm), mu *= rho."""
    lam, norm_fro = float(lam), float(np.linalg.norm(d))
    if norm_fro == 0:
        return Solution(np.zeros_like(d), np.zeros_like(d), 0, 0.0)
    norm_two = tensor_spectral_norm(d)
    y = d / max(norm_two, np.abs(d).max() / lam)
    mu = 1.25 * mu_scale / norm_two
    s, weight = np.zeros_like(d), prior_inv.astype(d.dtype)
    n3 = d.shape[0]
    basis_h = None if basis is None else basis.conj().transpose(0, 2, 1)
    residual, it = 1.0, 0
    while it < max_iter:
        it += 1
        target = d - s + y / mu
        if basis is None:
            low = tensor_svt(target, 1 / mu, keep)
        else:
            f = basis_h @ np.fft.rfft(target, axis=0)
            low = np.fft.irfft(basis @ _svt_slices(f, 1 / mu, keep), n=n3, axis=0)
        s = soft(d - low + y / mu, lam * weight / mu)
        weight = prior_inv * reweight(s, eps)
        residual = _dual_ascent(y, d - low - s, mu) / norm_fro
        mu *= rho
        if residual < tol:
            break
    return Solution(low, s, it, residual)


def t_svd_basis(x: np.ndarray, rel: float = 1e-3) -> np.ndarray:
    """Orthonormal dictionary from a tensor (n3, n1, n2), in the Fourier domain along the third
    mode: for each of the n3 // 2 + 1 real-FFT slices, its left singular vectors whose singular
    values exceed rel times the largest one of the tensor (the other columns set to 0)."""
    u, s, _ = np.linalg.svd(np.fft.rfft(x, axis=0), full_matrices=False)
    return u * (s > rel * s.max())[:, None, :]
