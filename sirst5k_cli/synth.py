"""SIRST-5K synthesis (paper section III-A/B, Algorithm 1): pure ops, a sampler, the store builder.

Ops (deterministic, numpy/OpenCV, no torch):
  - Eq. 1  `noise_cells`: G x G grid cells with 0 < Var < sigma and 0 < Mean < mu, away from targets
  - Eq. 2  `resize_noise`: a cell resized to the image size (bilinear by default)
  - Eq. 3  `mix`: I_mix = alpha * N_rw + (1 - alpha) * I, in float64, rounded to uint8
  - Eq. 4  `target_boxes` + `negative(s)`: the s x s box on each target's centroid, rot90 k
           times; the builder, the albumentations transform and on-the-fly training all use it
The only randomness, which cell of which other image feeds each image, is drawn by
`sample_noise(rng, ...)` from one numpy Generator. `build_store` reads a source dataset and
writes the store through store.py (docs/store.md, docs/synthesis.md). The builder lives here,
beside the ops it is the only library caller of; the module is longer than the house ~400 lines
for that reason: ops first (top half), builder second.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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


def _cell_sums(a: np.ndarray, grid: int, ch: int, cw: int) -> np.ndarray:
    """(G, G) int64 sums over cells; two reductions over contiguous axes (fast)."""
    rows = a.reshape(grid, ch, grid * cw).sum(axis=1, dtype=np.int64)  # (G, G * cw)
    return rows.reshape(grid, grid, cw).sum(axis=2)


def cell_stats(image: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of every cell, each (G, G), on the image's 0..255 scale.

    Sums are exact integers (255^2 fits uint16), so Var is exactly 0 for a constant cell.
    """
    h, w = image.shape
    ch, cw = h // grid, w // grid
    a = image[: ch * grid, : cw * grid]
    sq = a.astype(np.uint16)
    sq *= sq
    s1, s2 = _cell_sums(a, grid, ch, cw), _cell_sums(sq, grid, ch, cw)
    n = ch * cw
    return s1 / n, (n * s2 - s1 * s1) / (n * n)


def noise_cells(
    image: np.ndarray, mask: np.ndarray, grid: int, sigma: float, mu: float
) -> np.ndarray:
    """Eq. 1: boolean (G, G), True where 0 < Var < sigma and 0 < Mean < mu and no target near.

    A cell "touches" a target when it holds a pixel of the mask dilated by 1 px (8-neighbours).
    """
    mean, var = cell_stats(image, grid)
    h, w = mask.shape
    ch, cw = h // grid, w // grid
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8))[: ch * grid, : cw * grid]
    touched = near.reshape(grid, ch, grid * cw).max(axis=1).reshape(grid, grid, cw).max(axis=2) > 0
    return (var > 0) & (var < sigma) & (mean > 0) & (mean < mu) & ~touched


def crop_cell(image: np.ndarray, grid: int, row: int, col: int) -> np.ndarray:
    return cell_view(image, grid)[row, col]


# ---------------------------------------------------------------- Eq. 2-3: displacement
def resize_noise(cell: np.ndarray, shape: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Eq. 2: N_rw, the cell resized to (h, w) in float32 (no rounding before mixing)."""
    h, w = shape
    return cv2.resize(cell.astype(np.float32), (w, h), interpolation=RESIZE[method])


def mix(image: np.ndarray, noise: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 3: I_mix = alpha * N + (1 - alpha) * I in float64, rounded half to even, uint8.

    OpenCV's addWeighted with a float64 result computes the same float64 expression as numpy
    (tests check it against numpy) about 6x faster. noise broadcasts to the image's shape.
    """
    n = np.ascontiguousarray(np.broadcast_to(noise, image.shape), dtype=np.float32)
    out = cv2.addWeighted(n, alpha, image.astype(np.float32), 1.0 - alpha, 0.0, dtype=cv2.CV_64F)
    out = out.reshape(image.shape)  # OpenCV drops a trailing channel axis of size 1
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


# ---------------------------------------------------------------- Eq. 4: negatives
def target_boxes(mask: np.ndarray, s: int) -> np.ndarray:
    """(z, 2) top-left (y0, x0) of the s x s box on each 8-connected target's centroid.

    Centroids are rounded half up; at the border the box is shifted to lie inside the image.
    Targets are in OpenCV's label order (raster order of each component's first pixel) within
    the mask's bounding rectangle, which is the same as over the whole mask.
    """
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.zeros((0, 2), np.int64)
    sub = np.ascontiguousarray(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    n, _, _, centroids = cv2.connectedComponentsWithStats(sub, connectivity=8)
    c = np.floor(centroids[1:] + 0.5).astype(np.int64) + [cols[0], rows[0]]  # (z, 2) as (x, y)
    y0 = np.clip(c[:, 1] - s // 2, 0, h - s)
    x0 = np.clip(c[:, 0] - s // 2, 0, w - s)
    return np.stack([y0, x0], axis=1).reshape(n - 1, 2)


def rotate_box(a: np.ndarray, y0: int, x0: int, s: int, k: int) -> np.ndarray:
    """A copy of `a` with its s x s box at (y0, x0) replaced by np.rot90(box, k) (exact)."""
    out = a.copy()
    out[y0 : y0 + s, x0 : x0 + s] = np.rot90(a[y0 : y0 + s, x0 : x0 + s], k)
    return out


def negative(
    image: np.ndarray, mask: np.ndarray, y0: int, x0: int, s: int, k: int, label: str = "rotate"
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4 for one target box and one rotation k (x 90 degrees): the (image, mask) pair.

    label "rotate" rotates the mask box with the image box; "unchanged" keeps the mask.
    """
    return rotate_box(image, y0, x0, s, k), (
        rotate_box(mask, y0, x0, s, k) if label == "rotate" else mask
    )


def negatives(
    image: np.ndarray, mask: np.ndarray, boxes: np.ndarray, s: int, label: str = "rotate"
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4: (4z, h, w) images and masks, target by target, rotations 0/90/180/270.

    The store builder writes exactly these rows (after the originals).
    """
    z = len(boxes)
    imgs = np.empty((4 * z, *image.shape), np.uint8)
    masks = np.empty((4 * z, *mask.shape), np.uint8)
    for t, (y0, x0) in enumerate(boxes):
        for k in range(4):
            imgs[4 * t + k], masks[4 * t + k] = negative(image, mask, y0, x0, s, k, label)
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
class Sample:
    """One decoded source pair; for training images also its Eq. 1 cells and Eq. 4 boxes."""

    stem: str
    image: np.ndarray  # (h, w) uint8
    mask: np.ndarray  # (h, w) 0/1 uint8
    keep: np.ndarray | None = None  # (G, G) bool, None for test images or when grid/s misfit
    boxes: np.ndarray | None = None  # (z, 2)


def _fits(shape: tuple[int, int], cfg: SynthConfig) -> bool:
    return cfg.s <= min(shape) and min(shape) // cfg.grid >= 2


def read_samples(
    pairs: list[ds.Pair],
    cfg: SynthConfig | None,
    skip_bad: bool,
    skipped: list[dict],
    ex: ThreadPoolExecutor,
) -> list[Sample]:
    """Decode pairs on a thread pool (OpenCV releases the GIL), in order; skip or raise.

    With cfg (training images) each worker also computes the noise cells and target boxes.
    """

    def one(p: ds.Pair) -> Sample | UserError:
        try:
            image, mask = ds.read_pair(p)
        except UserError as e:
            return e
        out = Sample(p.stem, image, mask)
        if cfg is not None and _fits(image.shape, cfg):
            out.keep = noise_cells(image, mask, cfg.grid, cfg.sigma, cfg.mu)
            out.boxes = target_boxes(mask, cfg.s)
        return out

    samples = []
    for r in ex.map(one, pairs):
        if isinstance(r, UserError):
            if not skip_bad:
                raise r
            file, _, reason = str(r).partition(": ")
            skipped.append({"file": file, "reason": reason})
        else:
            samples.append(r)
    return samples


def check_sizes(train: list[Sample], cfg: SynthConfig) -> None:
    """s and grid must fit every training image; raise UserError naming the first that fails."""
    for t in train:
        h, w = t.image.shape
        if cfg.s > min(h, w):
            raise UserError(
                f"--s {cfg.s}: larger than image '{t.stem}' ({w}x{h}); choose --s <= {min(h, w)}"
            )
        if min(h, w) // cfg.grid < 2:
            raise UserError(
                f"--grid {cfg.grid}: image '{t.stem}' ({w}x{h}) gives cells under 2x2 px; "
                f"choose --grid <= {min(h, w) // 2}"
            )


@contextmanager
def interruptible() -> Iterator[Callable[[], None]]:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt; yields a check() that raises it again.

    Python drops an exception raised by a signal handler while it runs a callback (weakref,
    __del__), which h5py does often; the recorded signal makes the next check() raise.
    """
    got: list[int] = []

    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    def check() -> None:
        if got:
            raise KeyboardInterrupt(f"signal {got[0]}")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals go to the main thread's handlers
            break
    try:
        yield check
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class RowWriter:
    """Buffers consecutive rows of a group's image/mask datasets; writes them BLOCK at a time.

    h5py costs ~0.2 ms per call, so one call per image would dominate; chunks stay one image.
    """

    BLOCK = 64

    def __init__(self, g: h5py.Group, start: int, canvas: tuple[int, int], check=lambda: None):
        self.g, self.start, self.canvas, self.n, self.check = g, start, canvas, 0, check
        self.image = np.zeros((self.BLOCK, *canvas), np.uint8)
        self.mask = np.zeros((self.BLOCK, *canvas), np.uint8)

    def add(self, image: np.ndarray, mask: np.ndarray) -> None:
        """Copy one (h, w) pair into the next padded row."""
        h, w = image.shape
        ri, rm = self.image[self.n], self.mask[self.n]
        if (h, w) != self.canvas:
            ri[...] = 0
            rm[...] = 0
        ri[:h, :w] = image
        rm[:h, :w] = mask
        self.n += 1

    def full(self) -> bool:
        return self.n == self.BLOCK

    def flush(self) -> None:
        self.check()
        if self.n:
            sl = slice(self.start, self.start + self.n)
            self.g["image"][sl] = self.image[: self.n]
            self.g["mask"][sl] = self.mask[: self.n]
            self.start += self.n
            self.n = 0


def draw_noise(train: list[Sample], cfg: SynthConfig) -> tuple[NoisePool, np.ndarray]:
    """Pool the kept cells and draw one from another image for each training image."""
    pool = build_pool([t.keep for t in train])
    n = len(train)
    if cfg.alpha == 0:
        return pool, np.full(n, -1, np.int64)
    avail = len(pool) - np.bincount(pool.owner, minlength=n)
    if (avail <= 0).any():
        bad = train[int(np.argmax(avail <= 0))].stem
        raise UserError(
            f"noise pool has {len(pool)} cells, none from an image other than '{bad}' "
            f"(--grid {cfg.grid}, --sigma {cfg.sigma}, --mu {cfg.mu}); loosen Eq. 1: raise "
            "--sigma or --mu, change --grid, or pass --alpha 0 for no noise"
        )
    return pool, sample_noise(np.random.default_rng(cfg.seed), pool, n)


def mixed_image(train: list[Sample], i: int, pool: NoisePool, drawn: np.ndarray, cfg) -> np.ndarray:
    """I_mix of training image i (Eq. 2-3), or the image itself when no noise was drawn."""
    t = train[i]
    if drawn[i] < 0:
        return t.image
    p = drawn[i]
    cell = crop_cell(train[pool.owner[p]].image, cfg.grid, pool.row[p], pool.col[p])
    return mix(t.image, resize_noise(cell, t.image.shape, cfg.resize), cfg.alpha)


def _columns(train: list[Sample], drawn: np.ndarray, pool: NoisePool) -> dict[str, np.ndarray]:
    """Per-row provenance of /train: originals, then 4 negatives per target, image by image."""
    n = len(train)
    z = np.array([len(t.boxes) for t in train], np.int64)
    img_of = np.repeat(np.arange(n), 4 * z)  # image index of every negative
    n_neg = len(img_of)
    target = np.concatenate([np.repeat(np.arange(k), 4) for k in z]) if n_neg else img_of
    noise = np.where(drawn >= 0, pool.owner[np.maximum(drawn, 0)] if len(pool) else -1, -1)
    sizes = np.array([t.image.shape for t in train], np.int32).reshape(n, 2)
    neg = np.full(n_neg, -1)
    return {
        "size": np.concatenate([sizes, sizes[img_of]]),
        "source": np.concatenate([np.arange(n), img_of]),
        "kind": np.repeat([store.KIND_ORIGINAL, store.KIND_NEGATIVE], [n, n_neg]),
        "target": np.concatenate([np.full(n, -1), target]),
        "rotation": np.concatenate([np.full(n, -1), np.tile(ROTATIONS, n_neg // 4)]),
        "group": np.concatenate([np.full(n, -1), np.arange(n_neg) // 4]),
        "noise_source": np.concatenate([np.full(n, -1), noise[img_of] if n_neg else neg]),
    }


@dataclass
class Plan:
    """Everything decided before the store is written: samples, noise draws, provenance."""

    cfg: SynthConfig
    source: Path
    train: list[Sample]
    test: list[Sample]
    pool: NoisePool
    drawn: np.ndarray  # (n,) pool index of each training image's noise cell, -1 for none
    cols: dict[str, np.ndarray]  # /train columns
    canvas: tuple[int, int]
    params: dict
    skipped: list[dict]


def _write_train(g, plan: Plan, ex, progress, check) -> None:
    """Originals at rows 0..n-1, negatives after them; I_mix computed on the thread pool."""
    train, cfg, canvas = plan.train, plan.cfg, plan.canvas
    n, total = len(train), len(train) + len(plan.test)
    orig, negs = RowWriter(g, 0, canvas, check), RowWriter(g, n, canvas, check)
    block = 32
    for b in range(0, n, block):
        idx = range(b, min(b + block, n))
        mixes = list(ex.map(lambda i: mixed_image(train, i, plan.pool, plan.drawn, cfg), idx))
        for i, img_mix in zip(idx, mixes, strict=True):
            t = train[i]
            orig.add(t.image, t.mask)
            if orig.full():
                orig.flush()
            imgs, masks = negatives(img_mix, t.mask, t.boxes, cfg.s, cfg.label)
            for img_neg, mask_neg in zip(imgs, masks, strict=True):
                negs.add(img_neg, mask_neg)
                if negs.full():
                    negs.flush()
            if progress:
                progress(i + 1, total)
    orig.flush()
    negs.flush()


def _write_test(g, plan: Plan, progress, check) -> None:
    test, n = plan.test, len(plan.train)
    total = n + len(test)
    rows = RowWriter(g, 0, plan.canvas, check)
    for i, t in enumerate(test):
        rows.add(t.image, t.mask)
        if rows.full():
            rows.flush()
            if progress:
                progress(n + i + 1, total)
    rows.flush()
    if progress:
        progress(total, total)
    g["size"][...] = np.array([t.image.shape for t in test], np.int32).reshape(-1, 2)
    g["source"][...] = np.arange(n, total, dtype=np.int32)


def _write_store(f: h5py.File, plan: Plan, ex, progress, check) -> None:
    """Everything inside the (temporary) HDF5 file: attrs, sources, /train, /test."""
    store.write_attrs(f, plan.params, plan.cfg.seed, str(plan.source), plan.canvas)
    f.attrs["skipped"] = json.dumps(plan.skipped)
    store.write_sources(f, [t.stem for t in plan.train + plan.test])
    g = store.create_split(f, "train", len(plan.cols["kind"]), plan.canvas)
    for key, arr in plan.cols.items():
        g[key][...] = arr.astype(store.COLUMNS[key])
    _write_train(g, plan, ex, progress, check)
    _write_test(store.create_split(f, "test", len(plan.test), plan.canvas), plan, progress, check)


def plan_store(
    source: Path, cfg: SynthConfig, split, skip_bad: bool, ex: ThreadPoolExecutor
) -> Plan:
    """Read and check everything, draw the noise: all that can fail happens here."""
    train_pairs = ds.load_split(source, "train", split)
    test_pairs = ds.load_split(source, "test", split)
    skipped: list[dict] = []
    train = read_samples(train_pairs, cfg, skip_bad, skipped, ex)
    test = read_samples(test_pairs, None, skip_bad, skipped, ex)
    if not train or not test:
        which = "training" if not train else "test"
        raise UserError(f"{source}: no usable {which} image left; see the skipped files")
    check_sizes(train, cfg)
    pool, drawn = draw_noise(train, cfg)
    cols = _columns(train, drawn, pool)
    shapes = [t.image.shape for t in train + test]
    canvas = (max(h for h, _ in shapes), max(w for _, w in shapes))
    params = asdict(cfg) | {
        "train_split": str(ds.find_split_file(source, "train", split)),
        "test_split": str(ds.find_split_file(source, "test", split)),
        "noise_pool": len(pool),
        "targets": int((cols["kind"] == store.KIND_NEGATIVE).sum() // 4),
    }
    return Plan(cfg, source, train, test, pool, drawn, cols, canvas, params, skipped)


def build_store(
    source: str | Path,
    dest: str | Path,
    cfg: SynthConfig,
    split: str | Path | None = None,
    force: bool = False,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 4,
) -> dict:
    """Synthesize the SIRST-5K store from SOURCE into DEST, atomically; return a summary dict.

    Everything is read and checked before DEST is touched; a failure, Ctrl-C or SIGTERM leaves
    no DEST (and no partial file). progress(done, total) is called as rows are written.
    """
    t0 = time.perf_counter()
    if not force and Path(dest).exists():
        raise store.StoreError(f"{dest} exists: choose another output or pass --force")
    with ThreadPoolExecutor(workers) as ex:
        plan = plan_store(Path(source), cfg, split, skip_bad, ex)
        with store.atomic_path(dest, force) as tmp, interruptible() as check:
            with h5py.File(tmp, "w") as f:
                _write_store(f, plan, ex, progress, check)
            check()  # a signal whose exception was swallowed: abort before the rename
    n = len(plan.train)
    return {
        "store": str(dest),
        "originals": n,
        "targets": plan.params["targets"],
        "negatives": len(plan.cols["kind"]) - n,
        "noise_pool": len(plan.pool),
        "test": len(plan.test),
        "canvas": plan.canvas,
        "skipped": plan.skipped,
        "seconds": time.perf_counter() - t0,
        "bytes": Path(dest).stat().st_size,
    }
