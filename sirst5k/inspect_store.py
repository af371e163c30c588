"""`sirst5k inspect`: summarise a SIRST-5K store and verify its integrity (docs/store.md).

`verify(path)` returns a summary dict or raises StoreError with a one-line reason. It checks
the schema (every dataset, dtype, shape; 1-D chunked pixel arrays; offsets contiguous and
consistent with the sizes), reads every row and checks it against its crc32 digest, the pixels
(masks 0/1, sizes within the `canvas` attribute), and the provenance columns (originals first;
every group id used by exactly 4 negatives with rotations 0/90/180/270; negatives == 4 x the
8-connected targets of the originals).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np

from sirst5k import plots, store
from sirst5k.errors import StoreError

BLOCK_BYTES = 32 << 20  # pixels read per call (whole rows, at least one)


def _check_pixels(g: h5py.Group, name: str, c: dict, count_targets: int, path) -> list[int]:
    """Read every row in blocks of whole rows; check each against its digest and its mask for
    0/1; return the 8-connected target counts of the first `count_targets` rows (the
    originals: the negatives' targets are not needed)."""
    size, offset, digest = c["size"], c["offset"], c["digest"]
    ends = offset + size.astype(np.int64).prod(1)
    n, targets, i = len(size), [], 0
    while i < n:
        j = max(i + 1, int(np.searchsorted(ends, offset[i] + BLOCK_BYTES, "right")))
        a, b = int(offset[i]), int(ends[j - 1])
        try:
            imgs, masks = g["image"][a:b], g["mask"][a:b]
        except OSError as e:
            raise StoreError(f"/{name} rows {i}..{j - 1}: unreadable ({e}); the store is "
                             f"damaged: {store.FIX}") from e  # fmt: skip
        for r in range(i, j):
            h, w = (int(v) for v in size[r])
            lo = int(offset[r]) - a
            img = imgs[lo : lo + h * w].reshape(h, w)
            mask = masks[lo : lo + h * w].reshape(h, w)
            store.check_row(path, name, r, digest[r], img, mask)
            if mask.max(initial=0) > 1:
                raise StoreError(f"/{name}/mask row {r} holds values other than 0/1")
            if r < count_targets:
                targets.append(cv2.connectedComponents(mask, connectivity=8)[0] - 1)
        i = j
    return targets


def _check_columns(g: h5py.Group, n_sources: int, canvas: tuple[int, int], name: str) -> dict:
    try:
        c = {k: g[k][...] for k in g if k not in store.IMAGE_KEYS}
    except OSError as e:
        raise StoreError(f"/{name} columns unreadable ({e})") from e
    size = c["size"]
    if len(size) and ((size < 1).any() or (size > np.array(canvas)).any()):
        raise StoreError(f"/{name}/size: sizes outside 1..{canvas} (the canvas attribute)")
    source = c["source"]
    if "kind" in c:  # a background crop comes from no source image
        source = source[c["kind"] != store.KIND_BACKGROUND]
    if len(source) and ((source < 0) | (source >= n_sources)).any():
        raise StoreError(f"/{name}/source: index outside /sources/name ({n_sources})")
    return c


def _check_train(c: dict, targets: list[int], n_frames: int) -> tuple[int, int]:
    kind = c["kind"]
    n_orig = int((kind == store.KIND_ORIGINAL).sum())
    n_neg = int((kind == store.KIND_NEGATIVE).sum())
    deploy = np.isin(kind[n_orig + n_neg :], (store.KIND_IMPLANT, store.KIND_BACKGROUND))
    if (
        not (kind[:n_orig] == store.KIND_ORIGINAL).all()
        or not (kind[n_orig : n_orig + n_neg] == store.KIND_NEGATIVE).all()
        or not deploy.all()
    ):
        raise StoreError(
            "/train/kind: originals must come first, then negatives, then implanted and "
            "background crops"
        )
    for key in ("target", "rotation", "group", "noise_source", "background", "noise_frame"):
        if (c[key][:n_orig] != -1).any():
            raise StoreError(f"/train/{key}: originals must hold -1")
    bg = c["background"][n_orig + n_neg :]
    if len(bg) and ((bg < 0) | (bg >= n_frames)).any():
        raise StoreError(f"/train/background: index outside /frames/name ({n_frames})")
    z = int(sum(targets[:n_orig]))
    if n_neg != 4 * z:
        raise StoreError(f"{n_neg} negatives, expected 4 x {z} targets of the originals")
    grp = c["group"][n_orig : n_orig + n_neg]
    if n_neg:
        ids, counts = np.unique(grp, return_counts=True)
        if (counts != 4).any() or ids[0] < 0:
            raise StoreError("/train/group: every group id must be used by exactly 4 negatives")
        neg = slice(n_orig, n_orig + n_neg)
        order = np.lexsort((c["rotation"][neg], grp))
        rot = c["rotation"][neg][order].reshape(-1, 4)
        if (rot != np.array([0, 90, 180, 270])).any():
            raise StoreError("/train/rotation: a group lacks one of 0/90/180/270")
        for key in ("source", "target"):
            v = c[key][neg][order].reshape(-1, 4)
            if (v != v[:, :1]).any():
                raise StoreError(f"/train/{key}: differs within a group of 4 rotations")
    return n_orig, z


def _filters(d: h5py.Dataset) -> str:
    if d.compression is None:
        return "none"
    return d.compression + (f"-{d.compression_opts}" if d.compression_opts else "")


def verify(path: str | Path) -> dict:
    """Check the whole store; return its summary or raise StoreError (one line)."""
    path = Path(path)
    try:
        with store.check_file(path) as f:
            canvas = tuple(int(v) for v in f.attrs["canvas"])
            params = store.attr_json(f, "params")
            n_sources = len(f["sources/name"])
            n_train = len(store.require_group(f, "train")["size"])  # offsets checked here
            n_test = len(store.require_group(f, "test")["size"])
            ct = _check_columns(f["train"], n_sources, canvas, "train")
            ce = _check_columns(f["test"], n_sources, canvas, "test")
            n_orig = int((ct["kind"] == store.KIND_ORIGINAL).sum())  # originals come first
            targets = _check_pixels(f["train"], "train", ct, n_orig, path)
            _check_pixels(f["test"], "test", ce, 0, path)
            n_frames = len(f["frames/name"]) if "frames" in f else 0
            n_orig, z = _check_train(ct, targets, n_frames)
            kind = ct["kind"]
            pixels = 2 * (len(f["train/image"]) + len(f["test/image"]))
            summary = {
                "store": str(path),
                "canvas": canvas,
                "sources": n_sources,
                "train": n_train,
                "originals": n_orig,
                "targets": z,
                "negatives": int((kind == store.KIND_NEGATIVE).sum()),
                "implants": int((kind == store.KIND_IMPLANT).sum()),
                "implanted": len(f["implants/row"]) if "implants" in f else 0,
                "backgrounds": int((kind == store.KIND_BACKGROUND).sum()),
                "test": n_test,
                "seed": int(f.attrs["seed"]),
                "source": str(f.attrs["source"]),
                "created": str(f.attrs["created"]),
                "skipped": len(store.attr_json(f, "skipped", "[]")),
                "params": params,
                "versions": store.attr_json(f, "versions"),
                "MB": path.stat().st_size / 1e6,
                "pixel_MB": pixels / 1e6,  # images + masks at their real sizes, uncompressed
                "compression": _filters(f["train/image"]),
                "mask_compression": _filters(f["train/mask"]),
                "chunk": int(f["train/image"].chunks[0]),
            }
    except StoreError as e:
        msg = str(e)
        raise StoreError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from e
    except (OSError, KeyError, ValueError, TypeError) as e:  # damaged metadata, wrong types
        raise StoreError(f"{path}: damaged or not a valid store ({type(e).__name__}: {e})") from e
    return summary


def write_gallery(path: str | Path, out: str | Path, seed: int = 0) -> dict:
    """A picture of what synth made, to look at before training on it (`inspect --gallery`):
    an original and its 4 rotated negatives, implanted crops and background crops, each with
    its mask outlined and a zoomed window on a target. Returns what it shows."""
    train = store.read_split(path, "train")  # every row checked against its digest
    kind, group = train.columns["kind"], train.columns["group"]
    rng = np.random.default_rng(seed)
    names = {store.KIND_IMPLANT: "implanted", store.KIND_BACKGROUND: "background"}
    picks: list[tuple[str, int]] = []
    neg = np.flatnonzero(kind == store.KIND_NEGATIVE)
    if len(neg):
        g = int(group[neg[rng.integers(len(neg))]])
        members = np.flatnonzero(group == g)
        src = int(train.columns["source"][members[0]])
        orig = np.flatnonzero((kind == store.KIND_ORIGINAL) & (train.columns["source"] == src))
        picks += [("original", int(r)) for r in orig[:1]]
        rot = train.columns["rotation"]
        picks += [(f"negative, rotated {int(rot[r])}", int(r)) for r in members]
    else:
        orig = np.flatnonzero(kind == store.KIND_ORIGINAL)
        picks += [("original", int(r)) for r in rng.choice(orig, min(3, len(orig)), False)]
    for k, count in ((store.KIND_IMPLANT, 5), (store.KIND_BACKGROUND, 3)):
        rows = np.flatnonzero(kind == k)
        picks += [
            (names[k], int(r)) for r in np.sort(rng.choice(rows, min(count, len(rows)), False))
        ]
    tiles = []
    for title, r in picks:
        image, mask = train.row(r)
        tiles.append(plots.sample_tile(f"{title} (row {r})", image, mask))
    plots.write_png(out, plots.gallery(tiles))
    return {"gallery": str(out), "rows": [r for _, r in picks]}
