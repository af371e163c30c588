"""The SIRST-5K store: one HDF5 file written by `sirst5k synth`, read by train and eval.

This module is the contract between synthesis, training and evaluation (docs/store.md).
It holds the schema constants, a writer (atomic, through sirst5k.files) and a validating
reader; it imports no torch.

Layout (schema version 1), N images per group, every image padded into one H x W canvas:

    /            attrs: format, schema_version, params (JSON), seed, source, versions (JSON),
                        created, canvas (H, W)
    /sources/name        (S,)  str     stem of every source image (train and test)
    /train/image         (N, H, W) uint8   grey image, real pixels at [:h, :w], zero padding
    /train/mask          (N, H, W) uint8   0/1 target mask, same padding
    /train/size          (N, 2) int32      real (h, w)
    /train/source        (N,) int32        index into /sources/name of the image it came from
    /train/kind          (N,) uint8        KIND_ORIGINAL or KIND_NEGATIVE
    /train/target        (N,) int32        target index in the source image, -1 for originals
    /train/rotation      (N,) int16        0/90/180/270 degrees, -1 for originals
    /train/group         (N,) int32        id shared by the 4 rotations of one target, -1 originals
    /train/noise_source  (N,) int32        /sources index of the noise cell's image, -1 if none
    /test/image, /test/mask, /test/size, /test/source   as in /train, copied unchanged

Image datasets are chunked one image per chunk, with the fletcher32 checksum filter.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sirst5k.errors import StoreError
from sirst5k.files import atomic_path

FORMAT = "sirst5k-store"
SCHEMA_VERSION = 1
KIND_ORIGINAL = 0
KIND_NEGATIVE = 1
GROUPS = ("train", "test")
IMAGE_KEYS = ("image", "mask")
# Per-sample columns of each group, with their dtypes; the test group has the first two only.
COLUMNS = {
    "size": np.int32,
    "source": np.int32,
    "kind": np.uint8,
    "target": np.int32,
    "rotation": np.int16,
    "group": np.int32,
    "noise_source": np.int32,
}
TEST_COLUMNS = ("size", "source")


@dataclass
class Split:
    """One group of the store held in memory: padded arrays plus per-sample columns."""

    image: np.ndarray  # (N, H, W) uint8
    mask: np.ndarray  # (N, H, W) uint8, 0/1
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.image)

    @property
    def size(self) -> np.ndarray:  # (N, 2) real (h, w)
        return self.columns["size"]


def create_split(f: h5py.File, name: str, n: int, canvas: tuple[int, int]) -> h5py.Group:
    """Create the datasets of one group, empty, ready to be filled image by image."""
    g = f.create_group(name)
    h, w = canvas
    for key in IMAGE_KEYS:
        g.create_dataset(key, (n, h, w), np.uint8, chunks=(1, h, w), fletcher32=True)
    cols = TEST_COLUMNS if name == "test" else tuple(COLUMNS)
    for key in cols:
        shape = (n, 2) if key == "size" else (n,)
        g.create_dataset(key, shape, COLUMNS[key], fletcher32=True)
    return g


def write_attrs(f: h5py.File, params: dict, seed: int, source: str, canvas: tuple[int, int]):
    """Write the root attributes: format, schema, synthesis parameters and library versions."""
    import cv2

    f.attrs["format"] = FORMAT
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["params"] = json.dumps(params, sort_keys=True)
    f.attrs["seed"] = int(seed)
    f.attrs["source"] = str(source)
    f.attrs["canvas"] = np.asarray(canvas, np.int32)
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
) -> Path:
    """Write a whole store from in-memory splits, atomically. Handy for tests and small sets."""
    canvas = tuple(train.image.shape[1:])
    if tuple(test.image.shape[1:]) != canvas:
        raise StoreError(f"train canvas {canvas} and test canvas {test.image.shape[1:]} differ")
    with atomic_path(dest, force) as tmp, h5py.File(tmp, "w") as f:
        write_attrs(f, params, seed, source, canvas)
        write_sources(f, sources)
        for name, split in (("train", train), ("test", test)):
            g = create_split(f, name, len(split), canvas)
            g["image"][...] = split.image
            g["mask"][...] = split.mask
            for key in g:
                if key not in IMAGE_KEYS:
                    g[key][...] = split.columns[key]
    return Path(dest)


def check_file(path: str | os.PathLike) -> h5py.File:
    """Open a store read-only and check format and schema version; raise StoreError if not."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such file; build one with `sirst5k synth SOURCE -o {path}`")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not an HDF5 file ({e}); rebuild it with `sirst5k synth`") from e
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        f.close()
        raise StoreError(f"{path}: not a SIRST-5K store (format={fmt!r}); build one with synth")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        f.close()
        raise StoreError(
            f"{path}: schema version {version}, this sirst5k reads {SCHEMA_VERSION}; "
            "rebuild the store with this version's `sirst5k synth`"
        )
    return f


def store_id(f: h5py.File) -> str:
    """The id synth wrote into the store ("" for stores written before ids existed)."""
    v = f.attrs.get("store_id", "")
    return v.decode() if isinstance(v, bytes) else str(v)


def require_group(f: h5py.File, name: str) -> h5py.Group:
    """The group `name` of an open store, checked against the schema, or StoreError: every
    dataset present, with its dtype and shape, images in one-image chunks with fletcher32."""
    fix = "rebuild the store with `sirst5k synth`"
    if name not in f:
        raise StoreError(f"{f.filename}: the store has no '{name}' group; {fix}")
    g = f[name]
    keys = IMAGE_KEYS + (TEST_COLUMNS if name == "test" else tuple(COLUMNS))
    missing = [k for k in keys if k not in g]
    if missing:
        raise StoreError(f"{f.filename}: '{name}' lacks {', '.join(missing)}; {fix}")
    n = g["image"].shape[0]
    canvas = tuple(int(v) for v in f.attrs.get("canvas", g["image"].shape[1:]))
    for key in keys:
        d = g[key]
        dtype = np.uint8 if key in IMAGE_KEYS else COLUMNS[key]
        shape = (n, *canvas) if key in IMAGE_KEYS else (n, 2) if key == "size" else (n,)
        if d.dtype != dtype or d.shape != shape:
            raise StoreError(
                f"{f.filename}: /{name}/{key} is {d.dtype} {d.shape}, the schema says "
                f"{np.dtype(dtype)} {shape}; {fix}"
            )
        if key in IMAGE_KEYS and (d.chunks != (1, *canvas) or not d.fletcher32):
            raise StoreError(f"{f.filename}: /{name}/{key} lacks one-image chunks with fletcher32")
    return g


def read_split(path: str | os.PathLike, name: str) -> Split:
    """Read one group ("train" or "test") into memory, checksums verified by HDF5."""
    with check_file(path) as f:
        g = require_group(f, name)
        try:
            image, mask = g["image"][...], g["mask"][...]
            columns = {k: g[k][...] for k in g if k not in IMAGE_KEYS}
        except OSError as e:  # fletcher32 mismatch or truncated file
            raise StoreError(f"{path}: '{name}' is damaged ({e}); rebuild the store") from e
    return Split(image, mask, columns)


def read_attrs(path: str | os.PathLike) -> dict:
    """Root attributes, with params and versions decoded from JSON."""
    with check_file(path) as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        names = [s.decode() if isinstance(s, bytes) else s for s in f["sources/name"][...]]
    attrs["params"] = json.loads(attrs["params"])
    attrs["versions"] = json.loads(attrs["versions"])
    attrs["canvas"] = tuple(int(v) for v in attrs["canvas"])
    attrs["sources"] = names
    return attrs
