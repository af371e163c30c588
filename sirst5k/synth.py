"""The SIRST-5K store builder (paper section III-A/B, Algorithm 1): SynthConfig, build_store.

`build_store` reads a source dataset (sirst5k.io), computes every image's Eq. 1 noise cells and
Eq. 4 target boxes, draws one noise cell of another image for each training image (the only
randomness, from one numpy Generator seeded by SynthConfig.seed), and writes originals, their
4z negatives and the test split into one HDF5 store (sirst5k.store; docs/store.md,
docs/synthesis.md). The equations themselves are in sirst5k.ops.

For the deployment sensor (`--backgrounds DIR`, `--noise-from DIR`): crops of its target-free
frames with the training images' targets implanted (ops.cut_targets, ops.implant_all), crops
left as they are (background negatives), and Eq. 1's noise cells taken from its frames instead
of the training images. Their randomness comes from its own stream of the seed, so a store
without them is byte for byte what it was.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from sirst5k import io as ds
from sirst5k import store
from sirst5k.errors import StoreError, UserError, skipped_reason
from sirst5k.files import (
    MARGIN,
    atomic_path,
    check_free_space,
    disk_full,
    interruptible,
    is_disk_full,
)
from sirst5k.ops import (
    ROTATIONS,
    ImplantDraw,
    NoisePool,
    TargetPatch,
    build_pool,
    check_params,
    crop_cell,
    cut_targets,
    draw_crop,
    draw_implants,
    implant_all,
    mix,
    negatives,
    noise_cells,
    resize_noise,
    sample_noise,
    target_boxes,
)

SEEDS = 2**63  # seeds 0 .. 2**63 - 1: numpy's Generator and the store's int64 attribute


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
    # the deployment sensor's target-free frames (beyond the paper; docs/synthesis.md)
    backgrounds: str | None = None  # folder: crops to implant targets into, and negatives
    implants: int | None = None  # implant rows (None: 4 per background frame)
    bg_negatives: int | None = None  # background rows, all-background masks (None: 1 a frame)
    bg_crop: int = 256  # side of the crops, px
    per_frame: tuple[int, int] = (1, 3)  # targets implanted per crop, uniform in LO..HI
    gain: tuple[float, float] = (0.3, 1.0)  # signal gain, uniform
    zoom: tuple[float, float] = (1.0, 1.0)  # target zoom, log-uniform (1, 1: none)
    margin: int = 3  # px of local background cut around each target
    mask_level: float | None = None  # implanted masks: signal >= this x peak (None: the labels)
    noise_from: str | None = None  # folder: Eq. 1 cells from these frames, not the sources

    def __post_init__(self):
        p = asdict(self)
        seed = p.pop("seed")
        check_params(**{k: p[k] for k in ("alpha", "s", "grid", "sigma", "mu", "resize", "label")})
        self.per_frame = tuple(int(v) for v in self.per_frame)
        self.gain = tuple(float(v) for v in self.gain)
        self.zoom = tuple(float(v) for v in self.zoom)
        rules = [
            (len(self.per_frame) == 2 and 1 <= self.per_frame[0] <= self.per_frame[1],
             f"--per-frame {self.per_frame}: give LO,HI with 1 <= LO <= HI"),
            (len(self.gain) == 2 and 0 < self.gain[0] <= self.gain[1] <= 10,
             f"--gain {self.gain}: give LO,HI with 0 < LO <= HI <= 10"),
            (len(self.zoom) == 2 and 0.25 <= self.zoom[0] <= self.zoom[1] <= 4,
             f"--zoom {self.zoom}: give LO,HI with 0.25 <= LO <= HI <= 4"),
            (self.bg_crop >= 32, f"--bg-crop {self.bg_crop}: must be >= 32 px"),
            (self.margin >= 1, f"--margin {self.margin}: must be >= 1 px"),
            (self.mask_level is None or 0 < self.mask_level < 1,
             f"--mask-level {self.mask_level}: choose a fraction of the peak in (0, 1)"),
            (self.implants is None or self.implants >= 0, f"--implants {self.implants}: >= 0"),
            (self.bg_negatives is None or self.bg_negatives >= 0,
             f"--bg-negatives {self.bg_negatives}: must be >= 0"),
        ]  # fmt: skip
        for ok, why in rules:
            if not ok:
                raise UserError(why)
        defaults = SynthConfig.__dataclass_fields__
        ignored = [k for k in ("implants", "bg_negatives", "bg_crop", "per_frame", "gain", "zoom",
                               "margin", "mask_level")
                   if getattr(self, k) != defaults[k].default]  # fmt: skip
        if ignored and not self.backgrounds:
            names = ", ".join("--" + k.replace("_", "-") for k in ignored)
            raise UserError(f"{names}: options of --backgrounds DIR; give it, or drop them")
        if (
            isinstance(seed, bool)
            or not isinstance(seed, int | np.integer)
            or not 0 <= seed < SEEDS
        ):
            raise UserError(
                f"--seed {seed!r}: choose an integer with 0 <= seed < 2**63 (0 to {SEEDS - 1})"
            )


# ---------------------------------------------------------------- the store
@dataclass
class SourceImage:
    """One decoded source pair; for training images also its Eq. 1 cells and Eq. 4 boxes."""

    stem: str
    image: np.ndarray  # (h, w) uint8
    mask: np.ndarray  # (h, w) 0/1 uint8
    keep: np.ndarray | None = None  # (G, G) bool, None for test images or when grid/s misfit
    boxes: np.ndarray | None = None  # (z, 2)
    digest: tuple[int, int] | None = None  # crc32 of image and mask bytes (store.row_digest)


def _fits(shape: tuple[int, int], cfg: SynthConfig) -> bool:
    return cfg.s <= min(shape) and min(shape) // cfg.grid >= 2


def read_samples(
    pairs: list[ds.Pair],
    cfg: SynthConfig | None,
    skip_bad: bool,
    skipped: list[dict],
    ex: ThreadPoolExecutor,
) -> list[SourceImage]:
    """Decode pairs on a thread pool (OpenCV releases the GIL), in order; skip or raise.

    With cfg (training images) each worker also computes the noise cells and target boxes.
    """

    def one(p: ds.Pair) -> SourceImage | UserError:
        try:
            image, mask = ds.read_pair(p)
        except UserError as e:
            return e
        out = SourceImage(p.stem, image, mask, digest=store.row_digest(image, mask))
        if cfg is not None and _fits(image.shape, cfg):
            out.keep = noise_cells(image, mask, cfg.grid, cfg.sigma, cfg.mu)
            out.boxes = target_boxes(mask, cfg.s)
        return out

    samples = []
    for r in ex.map(one, pairs):
        if isinstance(r, UserError):
            if not skip_bad:
                raise r
            file, _, reason = skipped_reason(r).partition(": ")
            skipped.append({"file": file, "reason": reason})
        else:
            samples.append(r)
    return samples


def check_sizes(train: list[SourceImage], cfg: SynthConfig) -> None:
    """s and grid must fit every training image; raise UserError naming the smallest one and
    the largest value that fits them all (for s, an odd one)."""
    if not train:
        return
    small = min(train, key=lambda t: min(t.image.shape))
    h, w = small.image.shape
    side = min(h, w)
    if cfg.s > side:
        fit = side if side % 2 else side - 1
        raise UserError(
            f"--s {cfg.s}: larger than training image '{small.stem}' ({w}x{h}); choose an odd "
            f"--s <= {fit}, e.g. --s {fit}"
        )
    if side // cfg.grid < 2:
        raise UserError(
            f"--grid {cfg.grid}: training image '{small.stem}' ({w}x{h}) gives cells under "
            f"2x2 px; choose --grid <= {max(side // 2, 1)}"
        )


class RowWriter:
    """Buffers consecutive rows of a group and writes them a block at a time: each row's bytes
    appended to the flat image/mask arrays at its offset, its crc32 digests to /digest.

    h5py costs ~0.2 ms per call, so one call per row would dominate: a block is up to BLOCK
    rows or BLOCK_BYTES pixels, written with one call per array from buffers reused from block
    to block (fresh arrays per block cost page faults: a third of the write time).
    """

    BLOCK = 64
    BLOCK_BYTES = 8 << 20

    def __init__(self, g: h5py.Group, start: int, check=lambda: None):
        self.g, self.start, self.check = g, start, check
        self.offset = int(g["offset"][start]) if start < len(g["offset"]) else 0
        self.sizes = g["size"][...]
        self.image = np.empty(self.BLOCK_BYTES, np.uint8)
        self.mask = np.empty(self.BLOCK_BYTES, np.uint8)
        self.digest = np.empty((self.BLOCK, 2), np.uint32)
        self.n = self.nbytes = 0

    def add(self, image: np.ndarray, mask: np.ndarray, digest=None) -> None:
        """Queue one (h, w) pair as the next row (its size is the one planned for the row);
        digest: its store.row_digest when already computed (on a worker thread)."""
        row = self.start + self.n
        if image.shape != mask.shape or image.shape != tuple(self.sizes[row]):
            raise AssertionError(f"row {row}: {image.shape} / {mask.shape}, planned "
                                 f"{tuple(self.sizes[row])}")  # fmt: skip
        a, b = self.nbytes, self.nbytes + image.size
        if b > len(self.image):  # a block that outgrows the buffers: grow them
            for key in ("image", "mask"):
                grown = np.empty(max(b, 2 * len(self.image)), np.uint8)
                grown[:a] = getattr(self, key)[:a]
                setattr(self, key, grown)
        self.image[a:b] = image.ravel()
        self.mask[a:b] = mask.ravel()
        self.digest[self.n] = store.row_digest(image, mask) if digest is None else digest
        self.n, self.nbytes = self.n + 1, b

    def full(self) -> bool:
        return self.n == self.BLOCK or self.nbytes >= self.BLOCK_BYTES

    def flush(self) -> None:
        self.check()
        if self.n:
            sl = slice(self.offset, self.offset + self.nbytes)
            self.g["image"][sl] = self.image[: self.nbytes]
            self.g["mask"][sl] = self.mask[: self.nbytes]
            self.g["digest"][self.start : self.start + self.n] = self.digest[: self.n]
            self.start += self.n
            self.offset += self.nbytes
            self.n = self.nbytes = 0


def draw_noise(train: list[SourceImage], cfg: SynthConfig) -> tuple[NoisePool, np.ndarray]:
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


def draw_frame_noise(
    frames: list[np.ndarray], n: int, cfg: SynthConfig
) -> tuple[NoisePool, np.ndarray]:
    """`--noise-from`: pool Eq. 1's cells of the deployment frames (no targets in them) and
    draw one for each of the n training images, uniformly."""
    keep = [noise_cells(f, np.zeros_like(f), cfg.grid, cfg.sigma, cfg.mu) for f in frames]
    pool = build_pool(keep)
    if cfg.alpha == 0:
        return pool, np.full(n, -1, np.int64)
    if not len(pool):
        raise UserError(
            f"--noise-from {cfg.noise_from}: no cell of its frames passes Eq. 1 (--grid "
            f"{cfg.grid}, --sigma {cfg.sigma}, --mu {cfg.mu}); raise --sigma or --mu"
        )
    return pool, np.random.default_rng([cfg.seed, 2]).integers(len(pool), size=n)


def mixed_image(
    train: list[SourceImage], i: int, pool: NoisePool, drawn: np.ndarray, cfg, cells_of=None
) -> np.ndarray:
    """I_mix of training image i (Eq. 2-3), or the image itself when no noise was drawn.
    cells_of: the images the pool's cells are cut from (None: the training images)."""
    t = train[i]
    if drawn[i] < 0:
        return t.image
    p = drawn[i]
    owner = cells_of[pool.owner[p]] if cells_of is not None else train[pool.owner[p]].image
    cell = crop_cell(owner, cfg.grid, pool.row[p], pool.col[p])
    return mix(t.image, resize_noise(cell, t.image.shape, cfg.resize), cfg.alpha)


# ---------------------------------------------------------------- the deployment sensor
@dataclass
class Deployment:
    """What the deployment sensor's target-free frames add to a store, all drawn up front:
    rows of implanted crops, then rows of background crops."""

    names: list[str]  # the frames' file names
    frames: list[np.ndarray]
    patches: list[TargetPatch]  # every target of the training images
    owner: np.ndarray  # (P,) training image of each patch
    index: np.ndarray  # (P,) its target index in that image (target_boxes order)
    rows: list[tuple[int, int, int, int, list[ImplantDraw]]]  # (kind, frame, y0, x0, draws)


def plan_deployment(cfg: SynthConfig, train: list[SourceImage], ex) -> Deployment:
    """Read the --backgrounds frames, cut every training target, draw every row."""
    paths = ds.find_frames(cfg.backgrounds)
    fix = f"remove it, or pass a smaller --bg-crop (<= {cfg.bg_crop})"
    frames = list(ex.map(lambda p: ds.read_frames([p], cfg.bg_crop, fix=fix)[0], paths))
    patches, owner, index = [], [], []
    cut_one = lambda t: cut_targets(t.image, t.mask, cfg.margin, cfg.mask_level)  # noqa: E731
    for i, cut in enumerate(ex.map(cut_one, train)):
        patches += cut
        owner += [i] * len(cut)
        index += list(range(len(cut)))
    if not patches:
        raise UserError("--backgrounds: the training images hold no target to implant")
    owner, index = np.array(owner, np.int64), np.array(index, np.int64)
    by_image = [np.flatnonzero(owner == i) for i in range(len(train))]
    with_targets = [i for i, b in enumerate(by_image) if len(b)]
    shapes = [p.shape for p in patches]
    n_frames = len(frames)
    n_implants = 4 * n_frames if cfg.implants is None else cfg.implants
    n_bg = n_frames if cfg.bg_negatives is None else cfg.bg_negatives
    rng = np.random.default_rng([cfg.seed, 1])  # a stream of its own: the rest is unchanged
    rows = []
    crop = (cfg.bg_crop, cfg.bg_crop)
    for r in range(n_implants + n_bg):
        f = int(rng.integers(n_frames))
        y0, x0 = draw_crop(rng, frames[f].shape, cfg.bg_crop)
        if r >= n_implants:
            rows.append((store.KIND_BACKGROUND, f, y0, x0, []))
            continue
        src = with_targets[int(rng.integers(len(with_targets)))]  # one source image a crop
        count = int(rng.integers(cfg.per_frame[0], cfg.per_frame[1] + 1))
        draws = draw_implants(rng, shapes, by_image[src], crop, count, cfg.gain, cfg.zoom)
        rows.append((store.KIND_IMPLANT, f, y0, x0, draws))
    return Deployment([p.name for p in paths], frames, patches, owner, index, rows)


def deployment_row(dep: Deployment, r: int, crop: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """On a worker: (image, mask, digest) of deployment row r."""
    _, f, y0, x0, draws = dep.rows[r]
    frame = dep.frames[f][y0 : y0 + crop, x0 : x0 + crop]
    image, mask = implant_all(frame, dep.patches, draws)
    return image, mask, store.row_digest(image, mask)


def deployment_columns(dep: Deployment, crop: int) -> dict[str, np.ndarray]:
    """The /train columns of the deployment rows (appended after the negatives)."""
    k = len(dep.rows)
    kind = np.array([r[0] for r in dep.rows], np.int64)
    source = np.array([dep.owner[r[4][0].patch] if r[4] else -1 for r in dep.rows], np.int64)
    minus = np.full(k, -1)
    return {
        "size": np.full((k, 2), crop, np.int32),
        "source": source,
        "kind": kind,
        "target": minus,
        "rotation": minus,
        "group": minus,
        "noise_source": minus,
        "background": np.array([r[1] for r in dep.rows], np.int64),
        "noise_frame": minus,
    }


def write_provenance(f: h5py.File, dep: Deployment, first_row: int) -> None:
    """/frames (the frames and which crop each row is) and /implants (every target)."""
    f.create_dataset("frames/name", data=np.array(dep.names, dtype=h5py.string_dtype()))
    rows = np.arange(first_row, first_row + len(dep.rows))
    for key, col in zip(("frame", "y0", "x0"), zip(*[r[1:4] for r in dep.rows], strict=True),
                        strict=True):  # fmt: skip
        f.create_dataset(f"frames/{key}", data=np.array(col, np.int32))
    f.create_dataset("frames/row", data=rows.astype(np.int32))
    t = [(row, d) for row, r in zip(rows, dep.rows, strict=True) for d in r[4]]
    cols = {
        "row": [row for row, _ in t],
        "source": [dep.owner[d.patch] for _, d in t],
        "target": [dep.index[d.patch] for _, d in t],
        "y": [d.y for _, d in t],
        "x": [d.x for _, d in t],
        "orient": [d.orient for _, d in t],
    }
    for key, v in cols.items():
        f.create_dataset(f"implants/{key}", data=np.array(v, np.int32))
    f.create_dataset("implants/zoom", data=np.array([d.zoom for _, d in t], np.float32))
    f.create_dataset("implants/gain", data=np.array([d.gain for _, d in t], np.float32))


def _columns(
    train: list[SourceImage], drawn: np.ndarray, pool: NoisePool, from_frames: bool = False
) -> dict[str, np.ndarray]:
    """Per-row provenance of /train: originals, then 4 negatives per target, image by image.
    from_frames: the noise cells come from --noise-from frames (noise_frame), not sources."""
    n = len(train)
    z = np.array([len(t.boxes) for t in train], np.int64)
    img_of = np.repeat(np.arange(n), 4 * z)  # image index of every negative
    n_neg = len(img_of)
    target = np.concatenate([np.repeat(np.arange(k), 4) for k in z]) if n_neg else img_of
    noise = np.where(drawn >= 0, pool.owner[np.maximum(drawn, 0)] if len(pool) else -1, -1)
    noise_frame = noise if from_frames else np.full(n, -1)
    noise = np.full(n, -1) if from_frames else noise
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
        "background": np.full(n + n_neg, -1),
        "noise_frame": np.concatenate([np.full(n, -1), noise_frame[img_of] if n_neg else neg]),
    }


@dataclass
class Plan:
    """Everything decided before the store is written: samples, noise draws, provenance."""

    cfg: SynthConfig
    source: Path
    train: list[SourceImage]
    test: list[SourceImage]
    pool: NoisePool
    drawn: np.ndarray  # (n,) pool index of each training image's noise cell, -1 for none
    cols: dict[str, np.ndarray]  # /train columns (provenance and size)
    canvas: tuple[int, int]  # largest (h, w) of both splits (an attribute: nothing is padded)
    params: dict
    skipped: list[dict]
    ids: tuple[int, int] = (0, 0)  # ids listed in the train and the test split file
    warnings: list[str] = field(default_factory=list)
    noise_frames: list[np.ndarray] | None = None  # --noise-from: the frames the cells are from
    noise_names: list[str] = field(default_factory=list)
    deploy: Deployment | None = None  # --backgrounds: the rows after the negatives


def _negatives_of(plan: Plan, i: int) -> tuple[np.ndarray, np.ndarray, list]:
    """On a worker: I_mix of training image i, its 4z negatives (Eq. 4), their digests."""
    t, cfg = plan.train[i], plan.cfg
    img_mix = mixed_image(plan.train, i, plan.pool, plan.drawn, cfg, plan.noise_frames)
    imgs, masks = negatives(img_mix, t.mask, t.boxes, cfg.s, cfg.label)
    return imgs, masks, [store.row_digest(a, m) for a, m in zip(imgs, masks, strict=True)]


def _write_train(g, plan: Plan, ex, progress, check, ahead: int = 32) -> None:
    """Originals at rows 0..n-1, negatives after them. The negatives of up to `ahead` images
    are computed on the thread pool while this thread writes (numpy, OpenCV and zlib release
    the GIL); rows stay in order. Fewer ahead for large images: about 512 MB of queued rows
    at most (a target's 4 rotations, image and mask, of the largest training image)."""
    train = plan.train
    n, total = len(train), len(train) + len(plan.test)
    largest = max((t.image.size for t in train), default=1)
    ahead = max(2, min(ahead, (512 << 20) // (8 * largest)))
    orig, negs = RowWriter(g, 0, check), RowWriter(g, n, check)
    pending = deque(ex.submit(_negatives_of, plan, i) for i in range(min(ahead, n)))
    try:
        for i in range(n):
            if i + ahead < n:
                pending.append(ex.submit(_negatives_of, plan, i + ahead))
            t = train[i]
            orig.add(t.image, t.mask, t.digest)
            if orig.full():
                orig.flush()
            for img_neg, mask_neg, digest in zip(*pending.popleft().result(), strict=True):
                negs.add(img_neg, mask_neg, digest)
                if negs.full():
                    negs.flush()
            if progress:
                progress(i + 1, total)
    finally:
        for fut in pending:  # an error or Ctrl-C: drop the queued work
            fut.cancel()
    orig.flush()
    negs.flush()
    if plan.deploy is not None:
        _write_deployment(g, plan, ex, check, int(len(plan.cols["kind"]) - len(plan.deploy.rows)))


def _write_deployment(g, plan: Plan, ex, check, first: int, ahead: int = 64) -> None:
    """The implant and background rows, computed on the thread pool, written in order."""
    dep, crop = plan.deploy, plan.cfg.bg_crop
    rows = RowWriter(g, first, check)
    k = len(dep.rows)
    pending = deque(ex.submit(deployment_row, dep, r, crop) for r in range(min(ahead, k)))
    try:
        for r in range(k):
            if r + ahead < k:
                pending.append(ex.submit(deployment_row, dep, r + ahead, crop))
            rows.add(*pending.popleft().result())
            if rows.full():
                rows.flush()
    finally:
        for fut in pending:
            fut.cancel()
    rows.flush()


def _write_test(g, plan: Plan, progress, check) -> None:
    test, n = plan.test, len(plan.train)
    total = n + len(test)
    rows = RowWriter(g, 0, check)
    for i, t in enumerate(test):
        rows.add(t.image, t.mask, t.digest)
        if rows.full():
            rows.flush()
            if progress:
                progress(n + i + 1, total)
    rows.flush()
    if progress:
        progress(total, total)
    g["source"][...] = np.arange(n, total, dtype=np.int32)


def sizes_of_test(plan: Plan) -> np.ndarray:
    return np.array([t.image.shape for t in plan.test], np.int32).reshape(-1, 2)


def _write_store(f: h5py.File, plan: Plan, ex, progress, check, compress=None) -> None:
    """Everything inside the (temporary) HDF5 file: attrs, sources, /train, /test."""
    store.write_attrs(f, plan.params, plan.cfg.seed, str(plan.source), plan.canvas)
    f.attrs["skipped"] = json.dumps(plan.skipped)
    store.write_sources(f, [t.stem for t in plan.train + plan.test])
    if plan.noise_frames is not None:
        f.create_dataset("noise/name", data=np.array(plan.noise_names, dtype=h5py.string_dtype()))
    if plan.deploy is not None:
        write_provenance(f, plan.deploy, len(plan.cols["kind"]) - len(plan.deploy.rows))
    g = store.create_split(f, "train", plan.cols["size"], compress)
    for key, arr in plan.cols.items():
        if key != "size":  # written by create_split with the offsets
            g[key][...] = arr.astype(store.COLUMNS[key])
    _write_train(g, plan, ex, progress, check)
    g = store.create_split(f, "test", sizes_of_test(plan), compress)
    _write_test(g, plan, progress, check)


def write_file(tmp: Path, dest, plan: Plan, ex, progress, check, compress, reserve: int) -> None:
    """The store into tmp, with `reserve` bytes of disk allocated to it first.

    HDF5 cannot recover from a write that fails half-way (a disk that fills up after
    check_free_space): its objects, freed later, print "Exception ignored" by the hundred and
    then crash Python. So the space is reserved up front (posix_fallocate: a full disk fails
    here, cleanly; HDF5 writes into the reserved blocks and truncates the file to its end on
    close), and a write that fails anyway (a reserve too small, a file system that cannot
    reserve) empties the partial file, so that HDF5 can close it, and raises one line. No chunk
    cache (rdcc_nbytes=0): a failed write raises in the call that made it, not when HDF5 frees
    an object later and cannot report it (as fast: rows are written in large blocks)."""
    h5py.File(tmp, "w").close()  # the superblock: HDF5 reopens it, its blocks reserved after it
    try:
        with open(tmp, "r+b") as fd:
            os.posix_fallocate(fd.fileno(), 0, reserve)
    except OSError as e:
        if is_disk_full(e):
            raise UserError(
                f"{disk_full(dest)}: the store needs about {reserve / 1e6:.0f} MB; "
                "nothing was written: free some space or write elsewhere"
            ) from None
    f = h5py.File(tmp, "r+", rdcc_nbytes=0)
    try:
        _write_store(f, plan, ex, progress, check, compress)
        f.close()  # flushes the metadata: a full disk may show only here
    except BaseException as e:
        os.truncate(tmp, 0)  # HDF5's last writes on closing go to a sparse, empty file
        try:
            f.close()
        except Exception:
            pass
        if is_disk_full(e):
            raise UserError(
                f"{disk_full(dest)}: it filled up while the store was written; the partial "
                "store was removed: free some space or write elsewhere"
            ) from None
        raise


def _few(skipped: list[dict], n: int = 3) -> str:
    """The first n skipped files with their reasons, on one line."""
    parts = [f"{sk['file']}: {sk['reason']}" for sk in skipped[:n]]
    more = f"; and {len(skipped) - n} more" if len(skipped) > n else ""
    return "; ".join(parts) + more


def check_masks(train: list[ds.Pair], test: list[ds.Pair]) -> None:
    """Without --skip-bad, a listed image without mask stops synth: name the first, count them
    all, and suggest --skip-bad only where it would leave images of both splits."""
    missing = [p for p in train + test if p.mask is None]
    if not missing:
        return
    first = missing[0]
    count = ""
    if len(missing) > 1:
        count = f"; {len(missing)} of {len(train) + len(test)} listed images have none"
    where = first.mask_dir or first.image.parent.parent / ds.MASK_DIRS[0]
    for which, pairs in (("training", train), ("test", test)):
        if all(p.mask is None for p in pairs):
            raise UserError(
                f"{first.image}: no mask found for '{first.stem}' ({first.mask_hint()}){count}, "
                f"and no {which} image has one; put the masks in {where} as <id>.png or "
                "<id>_pixels0.png"
            )
    raise UserError(
        f"{first.image}: no mask found for '{first.stem}' ({first.mask_hint()}){count}; add "
        "the missing masks, or pass --skip-bad to leave those images out"
    )


def source_warnings(
    train: list[SourceImage], test: list[SourceImage], pairs: dict[str, ds.Pair], files
) -> list[str]:
    """Things that are legal but probably wrong: masks that are target everywhere (inverted or
    placeholder masks), ids in both split files, ids listed twice in one."""
    out = []
    full = [str(pairs[t.stem].mask) for t in train + test if t.mask.size and t.mask.all()]
    if full:
        more = f" and {len(full) - 3} more" if len(full) > 3 else ""
        out.append(
            f"{len(full)} mask(s) mark every pixel as target, so the whole image counts as one "
            f"target: {', '.join(full[:3])}{more}; check that they are not inverted"
        )
    both = sorted({t.stem for t in train} & {t.stem for t in test})
    if both:
        out.append(
            f"{len(both)} id(s) are in both {files[0]} and {files[1]} (e.g. '{both[0]}'): the "
            "test images are also trained on"
        )
    for images, file in zip((train, test), files, strict=True):
        stems = [t.stem for t in images]
        if twice := sorted({s for s in stems if stems.count(s) > 1}):
            out.append(
                f"{len(twice)} id(s) are listed more than once in {file} (e.g. '{twice[0]}'): "
                "each copy is stored, so those images weigh more"
            )
    return out


def plan_store(
    source: Path, cfg: SynthConfig, split, skip_bad: bool, ex: ThreadPoolExecutor
) -> Plan:
    """Read and check everything, draw the noise: all that can fail happens here."""
    pairs = ds.find_pairs(source)
    files = ds.find_split_files(source, split)
    train_pairs, test_pairs = (ds.split_pairs(source, f, pairs) for f in files)
    if not skip_bad:
        check_masks(train_pairs, test_pairs)
    skipped_train: list[dict] = []
    skipped_test: list[dict] = []
    train = read_samples(train_pairs, cfg, skip_bad, skipped_train, ex)
    test = read_samples(test_pairs, None, skip_bad, skipped_test, ex)
    for which, kept, sk, f in (("training", train, skipped_train, files[0]),
                               ("test", test, skipped_test, files[1])):  # fmt: skip
        if not kept:
            raise UserError(
                f"{source}: no usable {which} image left, all {len(sk)} of {f.name} skipped "
                f"({_few(sk)}); fix those files"
            )
    if not any(t.mask.any() for t in train):  # --skip-bad too: nothing to learn a target from
        raise UserError(
            f"{source}: no target in any training mask (the {len(train)} training images of "
            f"{files[0].name}); a store without a target cannot train a detector: check that "
            "the masks mark the targets with non-zero pixels"
        )
    check_sizes(train, cfg)
    noise_frames, noise_names = None, []
    if cfg.noise_from:
        paths = ds.find_frames(cfg.noise_from, "--noise-from")
        noise_frames = list(ex.map(lambda p: ds.read_frames([p], cfg.grid * 2, "--noise-from",
                                                            "remove it")[0], paths))  # fmt: skip
        noise_names = [p.name for p in paths]
        pool, drawn = draw_frame_noise(noise_frames, len(train), cfg)
    else:
        pool, drawn = draw_noise(train, cfg)
    cols = _columns(train, drawn, pool, from_frames=noise_frames is not None)
    deploy = plan_deployment(cfg, train, ex) if cfg.backgrounds else None
    if deploy is not None:
        extra = deployment_columns(deploy, cfg.bg_crop)
        cols = {k: np.concatenate([v, extra[k]]) for k, v in cols.items()}
    shapes = [t.image.shape for t in train + test]
    canvas = (max(h for h, _ in shapes), max(w for _, w in shapes))
    params = asdict(cfg) | {
        "train_split": str(files[0]),
        "test_split": str(files[1]),
        "noise_pool": len(pool),
        "targets": int((cols["kind"] == store.KIND_NEGATIVE).sum() // 4),
        "implanted": sum(len(r[4]) for r in deploy.rows) if deploy else 0,
    }
    warnings = source_warnings(train, test, pairs, files)
    ids = (len(train_pairs), len(test_pairs))
    return Plan(cfg, source, train, test, pool, drawn, cols, canvas, params,
                skipped_train + skipped_test, ids, warnings, noise_frames, noise_names,
                deploy)  # fmt: skip


def build_store(
    source: str | Path,
    dest: str | Path,
    cfg: SynthConfig,
    split: ds.SplitArg = None,
    force: bool = False,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 4,
    compress: str | None = None,
) -> dict:
    """Synthesize the SIRST-5K store from SOURCE into DEST, atomically; return a summary dict.

    Everything is read and checked before DEST is touched; a failure, Ctrl-C or SIGTERM leaves
    no DEST (and no partial file). progress(done, total) is called as rows are written.
    compress: the image array's filter, "none" (default), "lzf", "gzip" or "gzip-N"
    (store.compression; masks are always gzip level 1).
    """
    t0 = time.perf_counter()
    store.compression(compress)  # a bad name fails first
    if not force and Path(dest).exists():
        raise StoreError(f"{dest} exists: choose another output or pass --force")
    with ThreadPoolExecutor(workers) as ex:
        plan = plan_store(Path(source), cfg, split, skip_bad, ex)
        # HDF5 crashes (not raises) on a write that fails half-way: refuse before writing,
        # and reserve the space (write_file).
        # Upper bound: every pixel of images and masks uncompressed, plus the columns.
        rows = len(plan.cols["kind"]) + len(plan.test)
        pixels = int(plan.cols["size"].astype(np.int64).prod(1).sum() + sizes_of_test(plan).astype(
            np.int64).prod(1).sum())  # fmt: skip
        need = 2 * pixels + 48 * rows + 2**20
        check_free_space(dest, need)
        with atomic_path(dest, force) as tmp, interruptible() as check:
            write_file(tmp, dest, plan, ex, progress, check, compress, int(need * (1 + MARGIN)))
            check()  # a signal whose exception was swallowed: abort before the rename
    n = len(plan.train)
    kind = plan.cols["kind"]
    return {
        "store": str(dest),
        "originals": n,
        "targets": plan.params["targets"],
        "negatives": int((kind == store.KIND_NEGATIVE).sum()),
        "implants": int((kind == store.KIND_IMPLANT).sum()),
        "implanted": plan.params["implanted"],
        "backgrounds": int((kind == store.KIND_BACKGROUND).sum()),
        "noise_pool": len(plan.pool),
        "test": len(plan.test),
        "canvas": plan.canvas,
        "skipped": plan.skipped,
        "train_split": plan.params["train_split"],
        "test_split": plan.params["test_split"],
        "train_ids": plan.ids[0],
        "test_ids": plan.ids[1],
        "warnings": plan.warnings,
        "seconds": time.perf_counter() - t0,
        "bytes": Path(dest).stat().st_size,
        "pixel_bytes": 2 * pixels,  # images + masks at their real sizes, uncompressed
        "compress": compress or "none",
    }
