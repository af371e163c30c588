"""Streaming the SIRST-5K store to the trainer: split, dataset, augmentation, batch sampler.

- StoreData reads the per-sample columns of /train once, and the images too when they fit in
  memory (`in_memory="auto"`: the store's train images and masks, at their real sizes, take
  less than half the available RAM and 16 GiB; every row is then checked against its crc32
  digest once); otherwise every sample is read from HDF5, one read of the row's bytes per flat
  array (a few 64 KiB chunks), checked against its digest, through a handle each DataLoader
  worker opens lazily on its first item (h5py handles do not survive fork). Rows come at their
  real (h, w) size: callers that need a canvas pad themselves.
- split_by_source carves the validation set from the training ORIGINALS by source image; every
  sample made from a validation image (as source or as noise source) is dropped from training.
- TrainDataset takes keys (position, seed) from GroupBatchSampler: all randomness of a sample
  (crop window, flips) comes from that seed, so an epoch is a pure function of (seed, epoch),
  whatever the number of workers, and resumes exactly. The 4 rotations of a group get the SAME
  seed and their crop window is computed from the group's first member, so they see the same
  window and the same flips and differ only by the rotated target patch.
- Crops: a --crop px window inside the real image; half of them are forced to hold a target
  pixel (BasicIRSTD's recipe); images smaller than the crop are zero padded (crop_pad).
  Flips and the transpose go through albumentations (HorizontalFlip, VerticalFlip, Transpose).
- Variation beyond the paper, off by default: scale_range zooms each crop by a factor
  drawn log-uniformly (the window is crop/scale px, resized to crop), so targets come in more
  sizes; photometric varies gamma, gain and offset, blur and sensor noise (image only). Both
  draw from the item's seed only when on, so the default items stay what they were.
"""

from __future__ import annotations

import os

import albumentations as A
import cv2
import numpy as np
import torch

from sirst5k import store
from sirst5k.errors import TrainError
from sirst5k.ops import (
    build_pool,
    crop_cell,
    cut_targets,
    draw_implants,
    implant_all,
    mix,
    negative,
    noise_cells,
    resize_noise,
    target_boxes,
)

KEEP_COLUMNS = ("size", "source", "kind", "target", "group", "noise_source")


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


class StoreData:
    """The /train columns of a store, and its images when held in memory.

    canvas: the store's largest (h, w) over both splits (the `canvas` attribute; train's
    `--crop 0` trains on whole images padded to it). Nothing is stored padded.
    """

    def __init__(self, path: str | os.PathLike, in_memory: str | bool = "auto"):
        try:
            self._open(path, in_memory)
        except (OSError, KeyError, ValueError) as e:  # HDF5's own errors: blame the store
            if isinstance(e, store.StoreError):
                raise
            what = str(e).splitlines()[0][:100]
            raise store.StoreError(
                f"{path}: damaged store ({type(e).__name__}: {what}); rebuild it with "
                "`sirst5k synth`"
            ) from None

    def _open(self, path: str | os.PathLike, in_memory: str | bool) -> None:
        self.path = str(path)
        with store.check_file(path) as f:
            self.store_id = store.store_id(f)
            reader = store.GroupReader(f, "train")  # schema, dtypes, shapes, offsets checked
            g = f["train"]
            self.columns = {k: g[k][...] for k in KEEP_COLUMNS}
            self.offset = reader.offset
            nbytes = 2 * g["image"].shape[0]  # images + masks at their real sizes
            self.canvas = tuple(int(v) for v in f.attrs["canvas"])
        self.params = store.read_attrs(path)["params"]
        if in_memory == "auto":
            in_memory = nbytes < min(available_memory() // 2, 16 << 30)
        self.in_memory = bool(in_memory)
        self.image = self.mask = None
        if self.in_memory:
            split = store.read_split(path, "train")  # every row checked against its digest
            self.image, self.mask = split.image, split.mask
        self._reader, self._pid = None, None
        self.s = int(self.params.get("s", 3))  # side of the rotated box of Eq. 4

    def __len__(self) -> int:
        return len(self.columns["size"])

    def __getstate__(self):  # never pickle an open h5py handle (spawned workers)
        d = self.__dict__.copy()
        d["_reader"], d["_pid"] = None, None
        return d

    def close(self) -> None:
        """Close this process's HDF5 handle (streaming mode); reads reopen it when needed."""
        if self._reader is not None:
            self._reader.file.close()
            self._reader, self._pid = None, None

    def _h5(self) -> store.GroupReader:
        """This process's reader; a store replaced since __init__ (synth --force) is refused."""
        if self._reader is None or self._pid != os.getpid():
            f = store.check_file(self.path)
            try:
                if store.store_id(f) != self.store_id:
                    raise store.StoreError(
                        f"{self.path} was replaced while it was being read (a new `sirst5k "
                        "synth --force`?); restart training on the new store, or resume on the "
                        "old one"
                    )
                self._reader = store.GroupReader(f, "train")
            except BaseException:
                f.close()
                raise
            self._pid = os.getpid()
        return self._reader

    def _view(self, flat: np.ndarray, row: int) -> np.ndarray:
        h, w = (int(v) for v in self.columns["size"][row])
        a = int(self.offset[row])
        return flat[a : a + h * w].reshape(h, w)

    def read(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask of one /train row, (h, w) uint8 each at the row's real size."""
        if self.in_memory:
            return self._view(self.image, row), self._view(self.mask, row)
        return self._h5().read(row)  # checked against the row's digest

    def read_mask(self, row: int) -> np.ndarray:
        if self.in_memory:
            return self._view(self.mask, row)
        return self._h5().read_mask(row)


KINDS = {  # the names of the store's row kinds (train --kinds)
    "original": store.KIND_ORIGINAL,
    "negative": store.KIND_NEGATIVE,
    "implant": store.KIND_IMPLANT,
    "background": store.KIND_BACKGROUND,
}


def split_by_source(
    columns: dict, val_fraction: float, seed: int, originals_only: bool = False, kinds=KINDS
) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, val_rows): validation = originals of a seeded fraction of source images;
    training = the rows of the given kinds (names of KINDS) made from none of them."""
    kind, source = columns["kind"], columns["source"]
    noise = columns.get("noise_source", np.full_like(source, -1))
    orig = kind == store.KIND_ORIGINAL
    sources = np.unique(source[orig])
    n_val = int(round(val_fraction * len(sources)))
    if val_fraction > 0 and n_val == 0 and len(sources) > 1:
        n_val = 1
    n_val = min(n_val, len(sources) - 1) if len(sources) > 1 else 0
    rng = np.random.default_rng([seed, 0x5EED])
    val_sources = np.sort(rng.choice(sources, n_val, replace=False)) if n_val else sources[:0]
    val_rows = np.flatnonzero(orig & np.isin(source, val_sources))
    leak = np.isin(source, val_sources) | np.isin(noise, val_sources)
    wanted = np.isin(kind, [KINDS[k] for k in kinds])
    train_mask = ~leak & (orig if originals_only else wanted)
    return np.flatnonzero(train_mask), val_rows


def crop_window(
    mask: np.ndarray,
    size: tuple[int, int],
    crop: int,
    rng: np.random.Generator,
    force: bool,
    box: tuple[int, int, int] | None = None,
) -> tuple[int, int]:
    """Top-left (y0, x0) of a crop x crop window inside the real h x w image.

    With box = (by, bx, s) the window holds that s x s box (a negative's rotated patch), drawn
    uniformly among the windows that do. Otherwise, with force, it holds a target pixel drawn
    at random (when the mask has one); else it is uniform.
    """
    h, w = int(size[0]), int(size[1])
    ymax, xmax = max(h - crop, 0), max(w - crop, 0)
    if box is not None:
        by, bx, s = (int(v) for v in box)
        y0 = rng.integers(min(max(0, by + s - crop), ymax), min(by, ymax) + 1)
        x0 = rng.integers(min(max(0, bx + s - crop), xmax), min(bx, xmax) + 1)
        return int(y0), int(x0)
    if force:
        ys, xs = np.nonzero(mask[:h, :w])
        if len(ys):
            k = rng.integers(len(ys))
            ty, tx = int(ys[k]), int(xs[k])
            y0 = rng.integers(max(0, ty - crop + 1), min(ty, ymax) + 1)
            x0 = rng.integers(max(0, tx - crop + 1), min(tx, xmax) + 1)
            return int(y0), int(x0)
    return int(rng.integers(ymax + 1)), int(rng.integers(xmax + 1))


def crop_pad(img: np.ndarray, y0: int, x0: int, size: tuple[int, int], crop: int) -> np.ndarray:
    """The crop x crop window at (y0, x0), pixels outside the real size set to 0."""
    h, w = int(size[0]), int(size[1])
    out = np.zeros((crop, crop), img.dtype)
    patch = img[y0 : min(y0 + crop, h), x0 : min(x0 + crop, w)]
    out[: patch.shape[0], : patch.shape[1]] = patch
    return out


def seed_each(compose: A.Compose, rng: np.random.Generator) -> None:
    """Seed every transform of compose with its own draw of rng.

    Not compose.set_random_seed(seed): albumentations 2.0.8 hands that SAME seed to every child,
    so the children's first draws (whether to apply) coincide, and three p = 0.5 flips give 2
    of the 8 orientations instead of all 8 (tests/test_data.py shows both).
    """
    for t in compose.transforms:
        t.set_random_seed(int(rng.integers(2**31)))


# the training flips: the 8 orientations of the dihedral group, the 4 of both flips (no
# transpose), the 2 of a left-right flip (a scene's sky stays up), or none
FLIPS = {
    "d4": (A.HorizontalFlip, A.VerticalFlip, A.Transpose),
    "hv": (A.HorizontalFlip, A.VerticalFlip),
    "h": (A.HorizontalFlip,),
    "none": (),
}


def make_augment(flips: str = "d4") -> A.Compose | None:
    return A.Compose([t(p=0.5) for t in FLIPS[flips]]) if FLIPS[flips] else None


def make_photometric() -> A.Compose:
    """Sensor variation on the image alone (the mask is untouched): gamma, gain and offset,
    blur, noise. Ranges fixed a priori (docs/training.md), not tuned on any evaluation set."""
    return A.Compose(
        [
            A.RandomGamma(gamma_limit=(67, 150), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.3, p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=0.25),
            A.GaussNoise(std_range=(0.005, 0.03), p=0.3),
        ]
    )


def sample_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: tuple[int, int],
    crop: int,
    rng: np.random.Generator,
    force: bool,
    box: tuple[int, int, int] | None,
    scale_range: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """The crop x crop (image, mask) of one item (crop_window's rules).

    With scale_range != (1, 1), a zoom factor z is drawn log-uniformly from it: the window is
    round(crop / z) px (a box it can no longer hold falls back to one of the box's target
    pixels), resized to crop (area for shrinking, bilinear for growing; the mask is
    thresholded at half).
    """
    side = crop
    if tuple(scale_range) != (1.0, 1.0):
        lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
        side = max(4, int(round(crop / float(np.exp(rng.uniform(lo, hi))))))
        if box is not None and side < box[2]:
            box, force = None, True
    y0, x0 = crop_window(mask, size, side, rng, force, box)
    image = crop_pad(image, y0, x0, size, side)
    mask = crop_pad(mask, y0, x0, size, side)
    if side != crop:
        how = cv2.INTER_AREA if side > crop else cv2.INTER_LINEAR
        image = cv2.resize(image, (crop, crop), interpolation=how)
        mask = (cv2.resize(mask * np.uint8(255), (crop, crop), interpolation=how) >= 128).astype(
            np.uint8
        )
    return image, mask


def negative_boxes(data: StoreData, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 2) top-left (y, x) of each negative row's rotated s x s box, -1 for originals.

    Recomputed from the source original's mask with the builder's own synth.target_boxes: the
    store's `target` column indexes that list.
    """
    cols, s = data.columns, data.s
    out = np.full((len(rows), 2), -1, np.int64)
    orig_row = {
        int(src): i
        for i, (src, kind) in enumerate(zip(cols["source"], cols["kind"], strict=True))
        if kind == store.KIND_ORIGINAL
    }
    cache: dict[int, np.ndarray] = {}
    for j, row in enumerate(np.asarray(rows).tolist()):
        if cols["kind"][row] != store.KIND_NEGATIVE:
            continue
        src = int(cols["source"][row])
        if src not in cache:
            mask = data.read_mask(orig_row[src])  # real size
            cache[src] = target_boxes(np.ascontiguousarray(mask), s)
        out[j] = cache[src][int(cols["target"][row])]
    return out


def flip_and_pack(
    image: np.ndarray, mask: np.ndarray, augment, rng, group: int, photometric=None
) -> dict:
    """Seeded flips/transpose (albumentations), the photometric variation when given, then the
    item dict of uint8 (1, c, c) tensors."""
    if augment is not None:
        seed_each(augment, rng)
        out = augment(image=image, mask=mask)
        image, mask = out["image"], out["mask"]
    if photometric is not None:
        seed_each(photometric, rng)
        image = photometric(image=image)["image"]
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image))[None],  # (1, c, c) uint8
        "mask": torch.from_numpy(np.ascontiguousarray(mask))[None],
        "group": int(group),
    }


class TrainDataset(torch.utils.data.Dataset):
    """Random crops + flips of the training rows; items are addressed by (position, seed).

    Crop windows: half of them are forced onto a target (BasicIRSTD), a negative's onto its own
    rotated box. With group_crops (L_Neg on) every negative's window holds its box, and the 4
    members of a group, which share a seed, get the same window and flips: they differ only by
    the rotation of the box, as the paper's "identical except for the target" asks.
    """

    def __init__(
        self,
        data: StoreData,
        rows: np.ndarray,
        crop: int,
        flips: str = "d4",
        group_crops: bool = False,
        scale_range: tuple[float, float] = (1.0, 1.0),
        photometric: bool = False,
    ):
        self.data, self.rows, self.crop = data, np.asarray(rows), int(crop)
        self.augment = make_augment(flips)
        self.scale_range = tuple(scale_range)
        self.photometric = make_photometric() if photometric else None
        self.groups = data.columns["group"][self.rows]
        self.boxes = negative_boxes(data, self.rows)
        self.group_crops = group_crops

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        pos, seed = key
        row = int(self.rows[pos])
        image, mask = self.data.read(row)
        size = self.data.columns["size"][row]
        rng = np.random.default_rng(seed)
        force = bool(rng.random() < 0.5)
        by, bx = self.boxes[pos]
        box = (by, bx, self.data.s) if by >= 0 and (force or self.group_crops) else None
        image, mask = sample_crop(image, mask, size, self.crop, rng, force, box, self.scale_range)
        return flip_and_pack(image, mask, self.augment, rng, self.groups[pos], self.photometric)


ALPHA_RANGE = (0.0, 0.2)  # on-the-fly synthesis: Eq. 3's alpha drawn uniformly from this


class FreshDataset(torch.utils.data.Dataset):
    """On-the-fly synthesis: every item is a new negative made from a training original.

    The same ops as the store (sirst5k.synth): a noise-prone cell (Eq. 1) of another training
    image drawn afresh, mixed in with alpha drawn from alpha_range (Eq. 2-3), then the s x s box
    of one random target rotated by a random multiple of 90 degrees, mask box rotated with it
    (Eq. 4; k = 0 keeps the mixed image as it is). Then the usual crop (half forced onto the
    rotated box) and flips. All of it is drawn from the item's seed, so an epoch is a pure
    function of (seed, epoch) and resumes exactly. Position i uses original i % n, so an epoch
    of `length` items visits the originals evenly.

    With a store built with `synth --backgrounds`, a share of the items come from the
    deployment sensor's frames instead (beyond the paper): `background_share` of them are its
    background crops as they are (every pixel background), `implant_share` of them are such a
    crop with targets of the training originals implanted afresh (ops.draw_implants with the
    store's --per-frame, --gain and --zoom; patches cut with its --margin).
    """

    def __init__(
        self,
        data: StoreData,
        rows: np.ndarray,
        crop: int,
        length: int,
        alpha_range: tuple[float, float] = ALPHA_RANGE,
        flips: str = "d4",
        scale_range: tuple[float, float] = (1.0, 1.0),
        photometric: bool = False,
        implant_share: float = 0.0,
        background_share: float = 0.0,
    ):
        p = data.params
        self.grid, self.s = int(p.get("grid", 8)), data.s
        self.resize = p.get("resize", "bilinear")
        orig = data.columns["kind"][rows] == store.KIND_ORIGINAL
        self.rows = np.asarray(rows)[orig]
        if len(self.rows) < 2:
            raise TrainError(
                f"{data.path}: on-the-fly synthesis needs >= 2 training originals "
                f"(the store has {len(self.rows)} after the validation split)"
            )
        self.crop, self.length, self.alpha_range = int(crop), int(length), alpha_range
        self.augment = make_augment(flips)
        self.scale_range = tuple(scale_range)
        self.photometric = make_photometric() if photometric else None
        sizes = data.columns["size"][self.rows]
        self.size = [(int(h), int(w)) for h, w in sizes]
        self.image, self.mask = [], []
        for r in self.rows.tolist():
            image, mask = data.read(r)  # real size
            self.image.append(image.copy())
            self.mask.append(mask.copy())
        self.boxes = [target_boxes(m, self.s) for m in self.mask]
        keep = [
            noise_cells(i, m, self.grid, float(p.get("sigma", 50.0)), float(p.get("mu", 255.0)))
            for i, m in zip(self.image, self.mask, strict=True)
        ]
        self.pool = build_pool(keep)
        self.counts = np.bincount(self.pool.owner, minlength=len(self.rows))
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.groups = np.full(self.length, -1)
        self.shares = (float(background_share), float(implant_share))
        if sum(self.shares) > 0:
            self._frames(data, rows, p)

    def _frames(self, data: StoreData, rows: np.ndarray, p: dict) -> None:
        """The store's background crops (those of the training rows) and every target of the
        training originals, for the items made from the deployment frames."""
        bg = np.asarray(rows)[data.columns["kind"][rows] == store.KIND_BACKGROUND]
        if not len(bg):
            raise TrainError(
                f"{data.path}: --implant-share and --background-share need background crops; "
                "build the store with `sirst5k synth SOURCE --backgrounds FRAMES`"
            )
        self.backgrounds = [data.read(int(r))[0].copy() for r in bg]
        self.patches = [q for i, m in zip(self.image, self.mask, strict=True)
                        for q in cut_targets(i, m, int(p.get("margin", 3)),
                                             p.get("mask_level"))]  # fmt: skip
        if not self.patches:
            raise TrainError(f"{data.path}: the training originals hold no target to implant")
        self.per_frame = tuple(p.get("per_frame", (1, 3)))
        self.gain, self.zoom = tuple(p.get("gain", (0.3, 1.0))), tuple(p.get("zoom", (1, 1)))

    def from_frames(self, kind: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A background crop as it is (kind 0), or with fresh targets implanted (kind 1)."""
        frame = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        if kind == 0:
            return frame, np.zeros_like(frame)
        count = int(rng.integers(self.per_frame[0], self.per_frame[1] + 1))
        shapes = [q.shape for q in self.patches]
        choices = np.arange(len(self.patches))
        draws = draw_implants(rng, shapes, choices, frame.shape, count, self.gain, self.zoom)
        return implant_all(frame, self.patches, draws)

    def __len__(self) -> int:
        return self.length

    def synthesize(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(image, mask, box) of a fresh negative of original i; box (y, x, s) or None."""
        image, mask = self.image[i], self.mask[i]
        alpha = float(rng.uniform(*self.alpha_range))
        avail = len(self.pool) - self.counts[i]
        if avail > 0 and alpha > 0:  # a cell of another image: skip image i's run of the pool
            j = int(rng.integers(avail))
            j = j if j < self.starts[i] else j + int(self.counts[i])
            cell = crop_cell(
                self.image[self.pool.owner[j]], self.grid, self.pool.row[j], self.pool.col[j]
            )
            image = mix(image, resize_noise(cell, image.shape, self.resize), alpha)
        box = None
        if len(self.boxes[i]):
            by, bx = self.boxes[i][int(rng.integers(len(self.boxes[i])))]
            image, mask = negative(image, mask, by, bx, self.s, int(rng.integers(4)))
            box = (int(by), int(bx), self.s)
        return image, mask, box

    def __getitem__(self, key: tuple[int, int]) -> dict:
        pos, seed = key
        i = pos % len(self.rows)
        rng = np.random.default_rng(seed)
        u = rng.random() if sum(self.shares) > 0 else 1.0  # drawn only when asked for
        if u < sum(self.shares):  # from the deployment frames
            image, mask = self.from_frames(int(u >= self.shares[0]), rng)
            size, box = image.shape, None
        else:
            image, mask, box = self.synthesize(i, rng)
            size = self.size[i]
        force = bool(rng.random() < 0.5)
        box = box if force else None
        image, mask = sample_crop(image, mask, size, self.crop, rng, force, box, self.scale_range)
        return flip_and_pack(image, mask, self.augment, rng, -1, self.photometric)


class GroupBatchSampler(torch.utils.data.Sampler):
    """Batches of (position, seed) keys; every position once per epoch, seeded by (seed, epoch).

    keep_groups: the members of a group (group id >= 0) are one unit, never split across
    batches, and share one augmentation seed; originals fill the remaining places.
    batch_size is the global batch; with world_size > 1 each rank gets batch_size // world_size
    per step and every world_size-th batch of the same global list (DistributedSampler-like; the
    list is padded by wrapping so that every rank takes the same number of steps).
    drop_last drops a short last batch (on CUDA: one batch shape for the whole run).
    """

    def __init__(
        self,
        groups: np.ndarray,
        batch_size: int,
        seed: int = 0,
        keep_groups: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        self.groups = np.asarray(groups)
        self.per_rank = max(batch_size // world_size, 1)
        self.seed, self.keep_groups = int(seed), keep_groups
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; skip its first `start` batches (resuming in the middle)."""
        self.epoch, self.start = int(epoch), int(start)

    def units(self) -> list[list[int]]:
        if not self.keep_groups:
            return [[i] for i in range(len(self.groups))]
        members: dict[int, list[int]] = {}
        units = []
        for i, g in enumerate(self.groups.tolist()):
            if g < 0:
                units.append([i])
            else:
                members.setdefault(g, []).append(i)
        return units + list(members.values())

    def all_batches(self) -> list[list[tuple[int, int]]]:
        """Every batch of this epoch, all ranks together.

        Exact sizes (one batch shape: cudnn autotunes once): the N // batch full batches get
        the groups spread evenly over them (in a seeded random order), then singles fill each
        to exactly per_rank; what is left (a few singles, groups that fit nowhere) forms the
        short tail batch(es). Batch order and contents are a pure function of (seed, epoch).
        """
        rng = np.random.default_rng([self.seed, self.epoch])
        units = self.units()
        order = rng.permutation(len(units))
        seeds = rng.integers(2**31, size=len(units))
        keyed = [[(i, int(sd)) for i in units[u]] for u, sd in zip(order, seeds, strict=True)]
        singles = [k[0] for k in keyed if len(k) == 1]
        size = self.per_rank
        n_full = sum(len(k) for k in keyed) // size
        full: list[list[tuple[int, int]]] = [[] for _ in range(n_full)]
        rest = []  # units for the tail
        for j, keys in enumerate(k for k in keyed if len(k) > 1):
            for t in range(n_full):  # batch j % n_full, else the next one with room
                b = full[(j + t) % n_full]
                if len(b) + len(keys) <= size:
                    b.extend(keys)
                    break
            else:
                rest.append(keys)
        used = 0
        for b in full:
            take = min(size - len(b), len(singles) - used)
            b.extend(singles[used : used + take])
            used += take
        rest += [[k] for k in singles[used:]]
        tail, cur = [], []
        for keys in rest:  # units stay whole
            if cur and len(cur) + len(keys) > size:
                tail.append(cur)
                cur = []
            cur = cur + keys
        batches = [b for b in full if b] + tail + ([cur] if cur else [])
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.per_rank:
            batches.pop()
        # BatchNorm cannot train on one sample: a lone sample joins its neighbour batch
        for i in reversed(range(len(batches))):
            if len(batches[i]) == 1 and len(batches) > 1:
                lone = batches.pop(i)
                batches[i - 1 if i > 0 else 0] += lone
        return batches

    def batches(self) -> list[list[tuple[int, int]]]:
        """This rank's batches of this epoch, before skipping `start`."""
        allb = self.all_batches()
        n = -(-len(allb) // self.world_size) * self.world_size
        allb = allb + allb[: n - len(allb)]
        return allb[self.rank :: self.world_size]

    def __iter__(self):
        yield from self.batches()[self.start :]

    def __len__(self) -> int:
        return len(self.batches()) - self.start


def val_batches(data: StoreData, rows: np.ndarray, batch_size: int):
    """Yield (image (B, 1, H, W) uint8 tensor, mask (B, H, W) uint8 numpy, size (B, 2)).

    H x W is the largest size in the batch, each image zero-padded at the bottom/right to it
    (the model pads further to its stride itself); metrics ignore everything outside each
    image's real size.
    """
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        sizes = data.columns["size"][chunk]
        hw = sizes.max(0)
        image = np.zeros((len(chunk), 1, *hw), np.uint8)
        mask = np.zeros((len(chunk), *hw), np.uint8)
        for j, row in enumerate(chunk.tolist()):
            im, m = data.read(row)
            image[j, 0, : im.shape[0], : im.shape[1]] = im
            mask[j, : m.shape[0], : m.shape[1]] = m
        yield torch.from_numpy(image), mask, sizes
