"""The SIRST-5K store: one HDF5 file written by `sirst5k synth`, read by train and eval.

This module is the contract between synthesis, training and evaluation (docs/store.md).
It holds the schema constants, a writer (atomic, through sirst5k.files) and validating
readers; it imports no torch.

Layout (schema version 3): every image and mask at its true size, the rows of a group packed
one after the other into one flat pixel array per kind; row i is h*w bytes at offset[i].

    /            attrs: format, schema_version, params (JSON), seed, source, versions (JSON),
                        created, store_id, canvas (largest h, largest w), skipped (JSON)
    /sources/name        (S,)  str     stem of every source image (train and test)
    /train/image         (P,) uint8        grey pixels of all rows, row-major, no padding
    /train/mask          (P,) uint8        0/1 target masks, same offsets as the images
    /train/offset        (N,) int64        start of row i in both flat arrays
    /train/size          (N, 2) int32      (h, w) of row i: offset[i+1] = offset[i] + h*w
    /train/digest        (N, 2) uint32     crc32 of row i's image bytes, of its mask bytes
    /train/source        (N,) int32        index into /sources/name of the image it came from
    /train/kind          (N,) uint8        KIND_ORIGINAL, _NEGATIVE, _IMPLANT or _BACKGROUND
    /train/target        (N,) int32        target index in the source image, -1 for originals
    /train/rotation      (N,) int16        0/90/180/270 degrees, -1 for originals
    /train/group         (N,) int32        id shared by the 4 rotations of one target, -1 originals
    /train/noise_source  (N,) int32        /sources index of the noise cell's image, -1 if none
    /train/background    (N,) int32        /frames/name index of an implant's or background
                                           crop's frame, -1 for originals and negatives
    /train/noise_frame   (N,) int32        /noise/name index of the frame whose Eq. 1 cell was
                                           mixed into a negative (synth --noise-from), else -1
    /frames/name, /noise/name   (F,) str   the target-free frames (synth --backgrounds,
                                           --noise-from), when given
    /frames/row, frame, y0, x0  (K,) int32 which crop of which frame each implant and
                                           background row is
    /implants/row, source, target, y, x, orient (T,) int32, /implants/zoom, gain (T,) float32:
                         every implanted target: its /train row, its source image and target
                         index (target_boxes order), its place, dihedral k, zoom and gain
    /test/image, /test/mask, /test/offset, /test/size, /test/digest, /test/source   as in /train

The flat arrays are chunked CHUNK bytes per chunk; masks are gzip-compressed (level 1: 0/1
masks shrink ~170x and read as fast), images only when asked (`synth --compress`). The small
columns carry fletcher32. Every reader checks each row it uses against its digest.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sirst5k.errors import StoreError
from sirst5k.files import atomic_path

FORMAT = "sirst5k-store"
SCHEMA_VERSION = 3
KIND_ORIGINAL = 0
KIND_NEGATIVE = 1
KIND_IMPLANT = 2  # a crop of a target-free frame with labelled targets implanted
KIND_BACKGROUND = 3  # a crop of a target-free frame as it is: every pixel background
GROUPS = ("train", "test")
IMAGE_KEYS = ("image", "mask")
# Per-sample columns of each group, with their dtypes; the test group has TEST_COLUMNS only.
COLUMNS = {
    "offset": np.int64,
    "size": np.int32,
    "digest": np.uint32,
    "source": np.int32,
    "kind": np.uint8,
    "target": np.int32,
    "rotation": np.int16,
    "group": np.int32,
    "noise_source": np.int32,
    "background": np.int32,
    "noise_frame": np.int32,
}
OPTIONAL = ("background", "noise_frame")  # write_store fills them with -1 when not given
TEST_COLUMNS = ("offset", "size", "digest", "source")
PAIR_COLUMNS = ("size", "digest")  # (N, 2); the others are (N,)
# Chunk of the flat pixel arrays, in bytes (= pixels). 64 KiB: one 256 x 256 image is exactly
# one chunk (NUDT-SIRST rows are chunk-aligned), a 1024 x 1280 row spans 20-21; the fastest
# random row reads of 16 KiB .. 1 MiB on NUDT-SIRST and on mixed sizes (docs/store.md).
CHUNK = 1 << 16
MASK_FILTER = {"compression": "gzip", "compression_opts": 1}
COMPRESS_CHOICES = ("none", "lzf", "gzip") + tuple(f"gzip-{k}" for k in range(1, 10))
FIX = "rebuild the store with this version's `sirst5k synth`"


def compression(name: str | None) -> dict:
    """h5py filter options of the image array for `synth --compress NAME` (docs/store.md)."""
    name = (name or "none").lower()
    if name not in COMPRESS_CHOICES:
        raise StoreError(f"--compress {name}: choose one of {', '.join(COMPRESS_CHOICES)}")
    if name == "none":
        return {}
    if name == "lzf":
        return {"compression": "lzf"}
    level = int(name.partition("-")[2] or 1)
    return {"compression": "gzip", "compression_opts": level}


def row_offsets(sizes: np.ndarray) -> tuple[np.ndarray, int]:
    """(offset (N,) int64, total pixels) of rows of the given (N, 2) sizes, packed in order."""
    n = np.asarray(sizes, np.int64).reshape(-1, 2).prod(1)
    offset = np.zeros(len(n), np.int64)
    np.cumsum(n[:-1], out=offset[1:])
    return offset, int(n.sum())


def crc(a: np.ndarray) -> int:
    """crc32 of an array's bytes in C order (zlib; releases the GIL on large buffers)."""
    return zlib.crc32(np.ascontiguousarray(a).data)


def row_digest(image: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    return crc(image), crc(mask)


def damaged(path, name: str, row: int, what: str) -> StoreError:
    """The one-line error of a row whose bytes are not those synth wrote."""
    return StoreError(f"{path}: /{name} row {row}: {what}; the store is damaged: {FIX}")


def check_row(path, name: str, row: int, digest, image=None, mask=None) -> None:
    """Raise StoreError unless the given image/mask bytes match the row's (2,) digest."""
    for which, a, want in (("image", image, digest[0]), ("mask", mask, digest[1])):
        if a is not None and crc(a) != int(want):
            raise damaged(path, name, row, f"{which} bytes do not match their crc32 digest")


@dataclass
class Split:
    """One group of the store held in memory: flat pixel arrays plus per-row columns."""

    image: np.ndarray  # (P,) uint8, row i at [offset[i], offset[i] + h*w)
    mask: np.ndarray  # (P,) uint8, 0/1, same offsets
    columns: dict[str, np.ndarray]  # offset, size, digest, source, ...

    def __len__(self) -> int:
        return len(self.columns["size"])

    @property
    def size(self) -> np.ndarray:  # (N, 2) real (h, w)
        return self.columns["size"]

    @property
    def offset(self) -> np.ndarray:  # (N,) int64
        return self.columns["offset"]

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask of row i, (h, w) views into the flat arrays."""
        h, w = (int(v) for v in self.size[i])
        a = int(self.offset[i])
        return self.image[a : a + h * w].reshape(h, w), self.mask[a : a + h * w].reshape(h, w)

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) zero-padded copies of all rows (H x W the largest size): small sets only."""
        hw = self.size.max(0) if len(self) else (0, 0)
        image = np.zeros((len(self), *hw), np.uint8)
        mask = np.zeros_like(image)
        for i in range(len(self)):
            im, m = self.row(i)
            image[i, : im.shape[0], : im.shape[1]] = im
            mask[i, : m.shape[0], : m.shape[1]] = m
        return image, mask

    def verify(self, path, name: str) -> None:
        """Check every row against its digest (StoreError naming the first bad row)."""
        for i in range(len(self)):
            check_row(path, name, i, self.columns["digest"][i], *self.row(i))

    @classmethod
    def from_rows(cls, images, masks, columns: dict | None = None) -> Split:
        """Pack (h, w) images and masks; size, offset and digest computed, other columns kept."""
        sizes = np.array([im.shape for im in images], np.int32).reshape(-1, 2)
        if [m.shape for m in masks] != [im.shape for im in images]:
            raise StoreError("every mask must have the shape of its image")
        offset, _ = row_offsets(sizes)
        flat = [np.concatenate([np.ravel(a) for a in arrs] or [np.zeros(0)]).astype(np.uint8)
                for arrs in (images, masks)]  # fmt: skip
        digest = np.array([row_digest(i, m) for i, m in zip(images, masks, strict=True)],
                          np.uint32).reshape(-1, 2)  # fmt: skip
        cols = dict(columns or {}) | {"offset": offset, "size": sizes, "digest": digest}
        return cls(flat[0], flat[1], cols)


def create_split(
    f: h5py.File, name: str, sizes: np.ndarray, compress: str | None = None
) -> h5py.Group:
    """Create the datasets of one group for rows of the given (N, 2) sizes: offset and size
    written, pixels and digests empty, ready to be filled row block by row block."""
    g = f.create_group(name)
    sizes = np.asarray(sizes, np.int32).reshape(-1, 2)
    offset, total = row_offsets(sizes)
    chunks = (CHUNK,)  # maxshape None: a chunk may exceed a short (or empty) array
    g.create_dataset("image", (total,), np.uint8, chunks=chunks, maxshape=(None,),
                     **compression(compress))  # fmt: skip
    g.create_dataset("mask", (total,), np.uint8, chunks=chunks, maxshape=(None,), **MASK_FILTER)
    cols = TEST_COLUMNS if name == "test" else tuple(COLUMNS)
    n = len(sizes)
    for key in cols:
        shape = (n, 2) if key in PAIR_COLUMNS else (n,)
        g.create_dataset(key, shape, COLUMNS[key], fletcher32=True)
    g["size"][...] = sizes
    g["offset"][...] = offset
    return g


def canvas_of(*size_arrays: np.ndarray) -> tuple[int, int]:
    """(largest h, largest w) over the given (N, 2) size arrays."""
    sizes = np.concatenate([np.asarray(s).reshape(-1, 2) for s in size_arrays])
    return (int(sizes[:, 0].max()), int(sizes[:, 1].max())) if len(sizes) else (0, 0)


def write_attrs(f: h5py.File, params: dict, seed: int, source: str, canvas: tuple[int, int]):
    """Write the root attributes: format, schema, synthesis parameters and library versions."""
    import cv2

    f.attrs["format"] = FORMAT
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["params"] = json.dumps(params, sort_keys=True)
    f.attrs["seed"] = int(seed)
    f.attrs["source"] = str(source)
    f.attrs["canvas"] = np.asarray(canvas, np.int32)  # largest (h, w): nothing is padded to it
    f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    f.attrs["store_id"] = uuid.uuid4().hex  # readers notice a store replaced under them
    versions = {"numpy": np.__version__, "h5py": h5py.__version__, "opencv": cv2.__version__}
    f.attrs["versions"] = json.dumps(versions, sort_keys=True)


def write_sources(f: h5py.File, names: list[str]) -> None:
    f.create_dataset("sources/name", data=np.array(names, dtype=h5py.string_dtype()))


def write_store(
    dest: str | os.PathLike,
    train: Split,
    test: Split,
    sources: list[str],
    params: dict,
    seed: int,
    source: str,
    force: bool = False,
    compress: str | None = None,
) -> Path:
    """Write a whole store from in-memory splits, atomically. Handy for tests and small sets."""
    compression(compress)  # a bad name fails before anything is written
    with atomic_path(dest, force) as tmp, h5py.File(tmp, "w") as f:
        write_attrs(f, params, seed, source, canvas_of(train.size, test.size))
        write_sources(f, sources)
        for name, split in (("train", train), ("test", test)):
            g = create_split(f, name, split.size, compress)
            if not np.array_equal(split.offset, g["offset"][...]):
                raise StoreError(f"'{name}': offsets are not the packed sizes; use from_rows")
            g["image"][...] = split.image
            g["mask"][...] = split.mask
            for key in g:
                if key in OPTIONAL and key not in split.columns:
                    g[key][...] = -1
                elif key not in IMAGE_KEYS + ("size", "offset"):
                    g[key][...] = split.columns[key]
    return Path(dest)


def attr_json(f: h5py.File, key: str, default: str | None = None):
    """A root attribute holding JSON, decoded; damaged or hostile JSON (nested thousands deep)
    is a one-line StoreError."""
    try:
        value = f.attrs[key] if default is None else f.attrs.get(key, default)
        return json.loads(value)
    except (KeyError, OSError, ValueError, TypeError, RecursionError) as e:
        what = type(e).__name__
        raise StoreError(f"{f.filename}: damaged store metadata ('{key}': {what}); {FIX}") from None


def check_links(f: h5py.File) -> None:
    """Refuse, before any data is read, a store holding anything but plain objects: a soft or
    external link, a dataset whose bytes live in another file (external raw storage) or that is
    assembled from others (virtual). synth writes none of these; they would make a reader take
    another file's bytes (even a system file's) for the store's."""

    def walk(g: h5py.Group) -> None:
        for name in g:
            link = g.get(name, getlink=True)
            where = f"{g.name.rstrip('/')}/{name}"
            if not isinstance(link, h5py.HardLink):
                kind = type(link).__name__
                raise StoreError(f"{f.filename}: {where} is a {kind}, not data of this file; {FIX}")
            obj = g[name]
            if isinstance(obj, h5py.Group):
                walk(obj)
            elif obj.external or obj.is_virtual:
                raise StoreError(
                    f"{f.filename}: {where} keeps its bytes outside this file (external or "
                    f"virtual dataset); {FIX}"
                )

    walk(f)


def check_file(path: str | os.PathLike) -> h5py.File:
    """Open a store read-only and check format, schema version and that it holds only its own
    data (check_links); raise StoreError if not."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(
            f"{path}: a folder, not a store; build one from it with `sirst5k synth {path} -o "
            f"data/{path.name}.h5`"
        )
    if not path.is_file():
        raise StoreError(f"{path}: no such file; build one with `sirst5k synth SOURCE -o {path}`")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not an HDF5 file ({e}); rebuild it with `sirst5k synth`") from e
    try:
        fmt = f.attrs.get("format")
        version = int(f.attrs.get("schema_version", -1))
    except (OSError, KeyError, ValueError, TypeError) as e:  # damaged root metadata
        f.close()
        what = str(e).splitlines()[0][:100]
        raise StoreError(
            f"{path}: damaged store metadata ({type(e).__name__}: {what}); rebuild it with "
            "`sirst5k synth`"
        ) from None
    if fmt != FORMAT:
        f.close()
        raise StoreError(f"{path}: not a SIRST-5K store (format={fmt!r}); build one with synth")
    if version != SCHEMA_VERSION:
        f.close()
        raise StoreError(
            f"{path}: schema version {version}, this sirst5k reads {SCHEMA_VERSION}; "
            "rebuild the store with this version's `sirst5k synth`"
        )
    try:
        check_links(f)
    except BaseException:
        f.close()
        raise
    return f


def store_id(f: h5py.File) -> str:
    """The id synth wrote into the store ("" for stores written before ids existed)."""
    v = f.attrs.get("store_id", "")
    return v.decode() if isinstance(v, bytes) else str(v)


def require_group(f: h5py.File, name: str) -> h5py.Group:
    """The group `name` of an open store, checked against the schema, or StoreError: every
    dataset present with its dtype and shape, 1-D chunked pixel arrays of one length, sizes
    >= 1 and offsets packing the rows back to back (all cheap: no pixel is read)."""
    where = f"{f.filename}: /{name}"
    if name not in f:
        raise StoreError(f"{f.filename}: the store has no '{name}' group; {FIX}")
    g = f[name]
    keys = IMAGE_KEYS + (TEST_COLUMNS if name == "test" else tuple(COLUMNS))
    missing = [k for k in keys if k not in g]
    if missing:
        raise StoreError(f"{where} lacks {', '.join(missing)}; {FIX}")
    off = g["offset"]
    n = off.shape[0] if off.ndim == 1 else g["size"].shape[0] if g["size"].ndim else -1

    def require(key: str, dtype, shape: tuple) -> None:
        d = g[key]
        if d.dtype != dtype or d.shape != shape:
            raise StoreError(
                f"{where}/{key} is {d.dtype} {d.shape}, the schema says {np.dtype(dtype)} "
                f"{shape}; {FIX}"
            )

    for key in keys[len(IMAGE_KEYS) :]:  # the columns first: the pixel count follows from them
        require(key, COLUMNS[key], (n, 2) if key in PAIR_COLUMNS else (n,))
    try:
        size, offset = g["size"][...], off[...]
    except OSError as e:  # fletcher32 mismatch or truncated file
        raise StoreError(f"{where}: size/offset columns unreadable ({e}); {FIX}") from e
    if n and (size < 1).any():
        raise StoreError(f"{where}/size: row {int(np.argmax((size < 1).any(1)))} is empty; {FIX}")
    want, total = row_offsets(size)
    if not np.array_equal(offset, want):
        raise StoreError(
            f"{where}/offset: row {int(np.argmax(offset != want))} does not start where the "
            f"rows before it end (offsets must pack the sizes back to back); {FIX}"
        )
    for key in IMAGE_KEYS:
        require(key, np.uint8, (total,))
        if g[key].chunks is None or len(g[key].chunks) != 1:
            raise StoreError(f"{where}/{key} is not a chunked 1-D pixel array; {FIX}")
    return g


class GroupReader:
    """Random access to the rows of one group of an open store, each checked against its
    digest: one read per flat array, of the row's bytes only (few chunks)."""

    def __init__(self, f: h5py.File, name: str):
        g = require_group(f, name)
        self.file, self.path, self.name = f, f.filename, name
        self._image, self._mask = g["image"], g["mask"]
        try:
            self.offset, self.size = g["offset"][...], g["size"][...]
            self.digest = g["digest"][...]
        except OSError as e:
            raise StoreError(f"{self.path}: /{name} columns unreadable ({e}); {FIX}") from e

    def __len__(self) -> int:
        return len(self.size)

    def _read(self, d: h5py.Dataset, row: int) -> np.ndarray:
        h, w = (int(v) for v in self.size[row])
        a = int(self.offset[row])
        try:
            return d[a : a + h * w].reshape(h, w)
        except OSError as e:  # a compressed chunk that no longer decodes, a truncated file
            raise damaged(self.path, self.name, row, f"{d.name} unreadable ({e})") from e

    def read(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask) of one row, (h, w) uint8 each; StoreError if damaged."""
        image, mask = self._read(self._image, row), self._read(self._mask, row)
        check_row(self.path, self.name, row, self.digest[row], image, mask)
        return image, mask

    def read_mask(self, row: int) -> np.ndarray:
        mask = self._read(self._mask, row)
        check_row(self.path, self.name, row, self.digest[row], mask=mask)
        return mask


def read_split(path: str | os.PathLike, name: str) -> Split:
    """Read one group ("train" or "test") into memory; every row checked against its digest."""
    with check_file(path) as f:
        g = require_group(f, name)
        try:
            columns = {k: g[k][...] for k in g if k not in IMAGE_KEYS}
        except OSError as e:  # fletcher32 mismatch of a column, a truncated file
            raise StoreError(f"{path}: /{name} columns unreadable ({e}); {FIX}") from e
        try:
            image, mask = g["image"][...], g["mask"][...]
        except OSError as e:  # a compressed chunk that no longer decodes, a truncated file
            reader = GroupReader(f, name)
            for row in range(len(reader)):  # name the first row that cannot be read
                reader.read(row)
            raise StoreError(f"{path}: /{name} is damaged ({e}); {FIX}") from e
    split = Split(image, mask, columns)
    split.verify(path, name)
    return split


def read_attrs(path: str | os.PathLike) -> dict:
    """Root attributes, with params and versions decoded from JSON; damaged or missing
    metadata is a one-line StoreError, never a traceback."""
    with check_file(path) as f:
        try:
            attrs = {k: f.attrs[k] for k in f.attrs}
            names = [s.decode() if isinstance(s, bytes) else s for s in f["sources/name"][...]]
            attrs["params"] = attr_json(f, "params")
            attrs["versions"] = attr_json(f, "versions")
            attrs["canvas"] = tuple(int(v) for v in attrs["canvas"])
        except (KeyError, OSError, ValueError, TypeError) as e:
            what = str(e).splitlines()[0][:100]
            raise StoreError(
                f"{path}: damaged store metadata ({type(e).__name__}: {what}); rebuild it with "
                "`sirst5k synth`"
            ) from None
    attrs["sources"] = names
    return attrs
