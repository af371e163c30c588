"""SIRST-5K synthesis (paper section III-A/B, Algorithm 1): pure ops, a sampler, the store builder.

Ops (deterministic, numpy/OpenCV, no torch):
  - Eq. 1  `noise_cells`: G x G grid cells with 0 < Var < sigma and 0 < Mean < mu, away from targets
  - Eq. 2  `resize_noise`: a cell resized to the image size (bilinear by default)
  - Eq. 3  `mix`: I_mix = alpha * N_rw + (1 - alpha) * I, in float64, rounded to uint8
  - Eq. 4  `target_boxes` + `rotate_box`: the s x s box on each target's centroid, rot90 k times
The only randomness, which cell of which other image feeds each image, is drawn by
`sample_noise(rng, ...)` from one numpy Generator. `build_store` reads a source dataset and
writes the store through store.py (docs/store.md, docs/synthesis.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

from sirst5k_cli import UserError, store
from sirst5k_cli import dataset as ds

RESIZE = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
LABEL_MODES = ("rotate", "unchanged")
ROTATIONS = (0, 90, 180, 270)


@dataclass
class SynthConfig:
    alpha: float = 0.1  # noise weight of Eq. 3 (paper: 0.1)
    s: int = 3  # side of the rotated box of Eq. 4 (paper: 3); odd
    grid: int = 8  # G: each image is cut into G x G noise cells (paper: 8)
    sigma: float = 50.0  # Eq. 1 upper bound on a cell's variance (official code: 50)
    mu: float = 255.0  # Eq. 1 upper bound on a cell's mean (official code: none, i.e. 255)
    resize: str = "bilinear"  # Eq. 2 interpolation: nearest, bilinear, bicubic, area
    label: str = "rotate"  # "rotate": mask box rotated with the image; "unchanged": paper
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"--alpha {self.alpha}: must lie in [0, 1] (paper: 0.1)")
        if self.s < 1 or self.s % 2 == 0:
            raise UserError(f"--s {self.s}: must be an odd number >= 1 (paper: 3)")
        if self.grid < 1:
            raise UserError(f"--grid {self.grid}: must be >= 1 (paper: 8)")
        if self.sigma <= 0 or self.mu <= 0:
            raise UserError(f"--sigma {self.sigma} / --mu {self.mu}: both must be > 0")
        if self.resize not in RESIZE:
            raise UserError(f"--resize {self.resize!r}: choose one of {', '.join(RESIZE)}")
        if self.label not in LABEL_MODES:
            raise UserError(f"--label {self.label!r}: choose one of {', '.join(LABEL_MODES)}")


# ---------------------------------------------------------------- Eq. 1: noise-prone cells
def cell_view(a: np.ndarray, grid: int) -> np.ndarray:
    """(G, G, ch, cw) view of the cells; the h % G bottom rows and w % G right columns unused."""
    h, w = a.shape
    ch, cw = h // grid, w // grid
    return a[: ch * grid, : cw * grid].reshape(grid, ch, grid, cw).swapaxes(1, 2)


def cell_stats(image: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance of every cell, each (G, G), on the image's 0..255 scale."""
    cells = cell_view(image, grid).astype(np.float64)
    return cells.mean(axis=(2, 3)), cells.var(axis=(2, 3))


def noise_cells(
    image: np.ndarray, mask: np.ndarray, grid: int, sigma: float, mu: float
) -> np.ndarray:
    """Eq. 1: boolean (G, G), True where 0 < Var < sigma and 0 < Mean < mu and no target near.

    A cell "touches" a target when it holds a pixel of the mask dilated by 1 px (8-neighbours).
    """
    mean, var = cell_stats(image, grid)
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8)) if mask.any() else mask
    touched = cell_view(near, grid).any(axis=(2, 3))
    return (var > 0) & (var < sigma) & (mean > 0) & (mean < mu) & ~touched


def crop_cell(image: np.ndarray, grid: int, row: int, col: int) -> np.ndarray:
    return cell_view(image, grid)[row, col]


# ---------------------------------------------------------------- Eq. 2-3: displacement
def resize_noise(cell: np.ndarray, shape: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Eq. 2: N_rw, the cell resized to (h, w) in float32 (no rounding before mixing)."""
    h, w = shape
    return cv2.resize(cell.astype(np.float32), (w, h), interpolation=RESIZE[method])


def mix(image: np.ndarray, noise: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 3: I_mix = alpha * N + (1 - alpha) * I in float64, rounded half to even, uint8."""
    out = alpha * noise.astype(np.float64) + (1.0 - alpha) * image.astype(np.float64)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- Eq. 4: negatives
def target_boxes(mask: np.ndarray, s: int) -> np.ndarray:
    """(z, 2) top-left (y0, x0) of the s x s box on each 8-connected target's centroid.

    Centroids are rounded half up; at the border the box is shifted to lie inside the image.
    Targets are in OpenCV's label order (raster order of each component's first pixel).
    """
    h, w = mask.shape
    n, _, _, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    c = np.floor(centroids[1:] + 0.5).astype(np.int64)  # (z, 2) as (x, y)
    y0 = np.clip(c[:, 1] - s // 2, 0, h - s)
    x0 = np.clip(c[:, 0] - s // 2, 0, w - s)
    return np.stack([y0, x0], axis=1).reshape(n - 1, 2)


def rotate_box(a: np.ndarray, y0: int, x0: int, s: int, k: int) -> np.ndarray:
    """A copy of `a` with its s x s box at (y0, x0) replaced by np.rot90(box, k) (exact)."""
    out = a.copy()
    out[y0 : y0 + s, x0 : x0 + s] = np.rot90(a[y0 : y0 + s, x0 : x0 + s], k)
    return out


def negatives(
    image: np.ndarray, mask: np.ndarray, boxes: np.ndarray, s: int, label: str = "rotate"
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4: (4z, h, w) images and masks, target by target, rotations 0/90/180/270."""
    z = len(boxes)
    imgs = np.empty((4 * z, *image.shape), np.uint8)
    masks = np.empty((4 * z, *mask.shape), np.uint8)
    for t, (y0, x0) in enumerate(boxes):
        for k in range(4):
            imgs[4 * t + k] = rotate_box(image, y0, x0, s, k)
            masks[4 * t + k] = rotate_box(mask, y0, x0, s, k) if label == "rotate" else mask
    return imgs, masks


# ---------------------------------------------------------------- sampler
@dataclass
class NoisePool:
    """The kept cells of all training images, sorted by owner image (Eq. 1)."""

    owner: np.ndarray  # (P,) index of the image each cell comes from
    row: np.ndarray  # (P,) grid row
    col: np.ndarray  # (P,) grid column

    def __len__(self) -> int:
        return len(self.owner)


def build_pool(keep: list[np.ndarray]) -> NoisePool:
    """Pool from each image's (G, G) keep map, in image then raster order."""
    owner, row, col = [], [], []
    for i, k in enumerate(keep):
        r, c = np.nonzero(k)
        owner.append(np.full(len(r), i, np.int64))
        row.append(r)
        col.append(c)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
    return NoisePool(cat(owner), cat(row), cat(col))


def sample_noise(rng: np.random.Generator, pool: NoisePool, n_images: int) -> np.ndarray:
    """For each image i, the pool index of a cell drawn uniformly among OTHER images' cells.

    One vectorised draw: image i's own cells are a contiguous run [start_i, end_i) of the
    sorted pool, so a uniform j in [0, P - n_i) skips that run.
    """
    counts = np.bincount(pool.owner, minlength=n_images)
    avail = len(pool) - counts
    if (avail <= 0).any():
        raise UserError("no noise cell")  # caller checks first and gives a useful message
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = rng.integers(0, avail)
    return np.where(j < start, j, j + counts)


# ---------------------------------------------------------------- the store
@dataclass
class Loaded:
    stems: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)


def read_pairs(
    pairs: list[ds.Pair], skip_bad: bool, skipped: list[dict], workers: int = 4
) -> Loaded:
    """Decode pairs on a thread pool (OpenCV releases the GIL); keep order; skip or raise."""

    def one(p):
        try:
            return ds.read_pair(p)
        except UserError as e:
            return e

    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(one, pairs))
    out = Loaded()
    for p, r in zip(pairs, results, strict=True):
        if isinstance(r, UserError):
            if not skip_bad:
                raise r
            msg = str(r)
            skipped.append({"file": msg.split(": ", 1)[0], "reason": msg.split(": ", 1)[-1]})
            continue
        out.stems.append(p.stem)
        out.images.append(r[0])
        out.masks.append(r[1])
    return out


def check_sizes(train: Loaded, cfg: SynthConfig) -> None:
    """s and grid must fit every training image; raise UserError naming the first that fails."""
    for stem, img in zip(train.stems, train.images, strict=True):
        h, w = img.shape
        if cfg.s > min(h, w):
            raise UserError(
                f"--s {cfg.s}: larger than image '{stem}' ({w}x{h}); choose --s <= {min(h, w)}"
            )
        if min(h, w) // cfg.grid < 2:
            raise UserError(
                f"--grid {cfg.grid}: image '{stem}' ({w}x{h}) gives cells under 2x2 px; "
                f"choose --grid <= {min(h, w) // 2}"
            )


def _pad(a: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    out = np.zeros((len(a), *canvas), np.uint8)
    out[:, : a.shape[1], : a.shape[2]] = a
    return out


def build_store(
    source: str | Path,
    dest: str | Path,
    cfg: SynthConfig,
    split: str | Path | None = None,
    force: bool = False,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Synthesize the SIRST-5K store from SOURCE into DEST, atomically; return a summary dict.

    progress(done, total) is called after each training image and each test block.
    """
    t0 = time.perf_counter()
    source = Path(source)
    train_pairs = ds.load_split(source, "train", split)
    test_pairs = ds.load_split(source, "test", split)
    skipped: list[dict] = []
    train = read_pairs(train_pairs, skip_bad, skipped)
    test = read_pairs(test_pairs, skip_bad, skipped)
    if not train.images:
        raise UserError(f"{source}: no usable training image left; see the skipped files")
    if not test.images:
        raise UserError(f"{source}: no usable test image left; see the skipped files")
    check_sizes(train, cfg)
    n = len(train.images)

    keep = [
        noise_cells(im, m, cfg.grid, cfg.sigma, cfg.mu)
        for im, m in zip(train.images, train.masks, strict=True)
    ]
    pool = build_pool(keep)
    if cfg.alpha > 0:
        avail = len(pool) - np.bincount(pool.owner, minlength=n)
        if (avail <= 0).any():
            bad = train.stems[int(np.argmax(avail <= 0))]
            raise UserError(
                f"noise pool has {len(pool)} cells, none from an image other than '{bad}' "
                f"(--grid {cfg.grid}, --sigma {cfg.sigma}, --mu {cfg.mu}); loosen Eq. 1: raise "
                "--sigma or --mu, change --grid, or pass --alpha 0 for no noise"
            )
        rng = np.random.default_rng(cfg.seed)
        drawn = sample_noise(rng, pool, n)
    else:
        drawn = np.full(n, -1, np.int64)

    boxes = [target_boxes(m, cfg.s) for m in train.masks]
    z = np.array([len(b) for b in boxes], np.int64)
    n_neg = int(4 * z.sum())
    all_imgs = train.images + test.images
    canvas = (max(a.shape[0] for a in all_imgs), max(a.shape[1] for a in all_imgs))
    names = train.stems + test.stems
    params = asdict(cfg) | {
        "train_split": str(ds.find_split_file(source, "train", split)),
        "test_split": str(ds.find_split_file(source, "test", split)),
        "noise_pool": len(pool),
        "targets": int(z.sum()),
    }
    total = n + len(test.images)
    with store.atomic_path(dest, force) as tmp, h5py.File(tmp, "w") as f:
        store.write_attrs(f, params, cfg.seed, str(source), canvas)
        f.attrs["skipped"] = json.dumps(skipped)
        store.write_sources(f, names)
        g = store.create_split(f, "train", n + n_neg, canvas)
        cols = {k: np.full(n + n_neg, -1, dt) for k, dt in store.COLUMNS.items() if k != "kind"}
        cols["size"] = np.zeros((n + n_neg, 2), np.int32)
        cols["kind"] = np.full(n + n_neg, store.KIND_ORIGINAL, np.uint8)
        row = n
        for i in range(n):
            img, mask = train.images[i], train.masks[i]
            h, w = img.shape
            g["image"][i : i + 1] = _pad(img[None], canvas)
            g["mask"][i : i + 1] = _pad(mask[None], canvas)
            cols["size"][i] = (h, w)
            cols["source"][i] = i
            if z[i]:
                if drawn[i] >= 0:
                    p = drawn[i]
                    cell = crop_cell(
                        train.images[pool.owner[p]], cfg.grid, pool.row[p], pool.col[p]
                    )
                    img_mix = mix(img, resize_noise(cell, (h, w), cfg.resize), cfg.alpha)
                    noise_src = int(pool.owner[p])
                else:
                    img_mix, noise_src = img, -1
                ni, nm = negatives(img_mix, mask, boxes[i], cfg.s, cfg.label)
                sl = slice(row, row + len(ni))
                g["image"][sl] = _pad(ni, canvas)
                g["mask"][sl] = _pad(nm, canvas)
                cols["size"][sl] = (h, w)
                cols["source"][sl] = i
                cols["kind"][sl] = store.KIND_NEGATIVE
                cols["target"][sl] = np.repeat(np.arange(z[i]), 4)
                cols["rotation"][sl] = np.tile(ROTATIONS, z[i])
                cols["group"][sl] = np.repeat(np.arange(z[i]), 4) + (row - n) // 4
                cols["noise_source"][sl] = noise_src
                row += len(ni)
            if progress:
                progress(i + 1, total)
        for key, arr in cols.items():
            g[key][...] = arr
        gt = store.create_split(f, "test", len(test.images), canvas)
        block = 64
        for b in range(0, len(test.images), block):
            ims = test.images[b : b + block]
            ms = test.masks[b : b + block]
            gt["image"][b : b + len(ims)] = np.stack([_pad(a[None], canvas)[0] for a in ims])
            gt["mask"][b : b + len(ms)] = np.stack([_pad(a[None], canvas)[0] for a in ms])
            if progress:
                progress(n + b + len(ims), total)
        gt["size"][...] = np.array([a.shape for a in test.images], np.int32).reshape(-1, 2)
        gt["source"][...] = np.arange(n, n + len(test.images), dtype=np.int32)
    return {
        "store": str(dest),
        "originals": n,
        "targets": int(z.sum()),
        "negatives": n_neg,
        "noise_pool": len(pool),
        "test": len(test.images),
        "canvas": canvas,
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
        "bytes": Path(dest).stat().st_size,
    }
