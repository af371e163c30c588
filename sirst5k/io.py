"""Reading a labelled source dataset in the layouts the IRSTD field uses.

Layouts found automatically under ROOT:
  - NUDT-SIRST / BasicIRSTD: images/<stem>.png and masks/<stem>.png (any image extension)
  - SIRST / NUAA-SIRST: images/<stem>.png and masks/<stem>_pixels0.png
Split files, searched in this order unless given explicitly (--split FILE or DIR):
  splits/50_50/{train,test}.txt, 50_50/{train,test}.txt, img_idx/{train,test}_<name>.txt,
  idx_*/{trainval,test}.txt, {trainval,test}.txt, {train,test}.txt (under ROOT or ROOT/splits).

Pixel conventions (docs/store.md):
  - images become one grey uint8 array: 16-bit images are stretched linearly from their own
    min..max to 0..255; RGB/RGBA/palette become grey by OpenCV's BT.601 luma, alpha is dropped.
  - masks: any channel layout is reduced to grey; a mask must hold at most two levels, 0 for
    background and one other value (255, 1, True, 65535, ...) for target: every non-zero pixel
    is target. Anything else is reported as non-binary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sirst5k.errors import UserError

IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path | None


def to_grey_uint8(arr: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Convert a decoded image of any depth and channel count to one (H, W) uint8 array."""
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] in (3, 4):
            arr = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2GRAY)
        else:
            raise UserError(f"{path}: {arr.shape[2]} channels; expected grey, RGB or RGBA")
    elif arr.ndim != 2:
        raise UserError(f"{path}: array of shape {arr.shape} is not an image")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def decode(path: str | Path) -> np.ndarray:
    """Decode an image file unchanged (any depth, palette expanded), or raise UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    data = np.fromfile(path, np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise UserError(f"{path}: cannot decode this image (corrupt or not an image); replace it")
    return arr


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as grey uint8 (H, W)."""
    return to_grey_uint8(decode(path), path)


def binarise_mask(arr: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Reduce a decoded mask to 0/1 uint8; raise UserError if it holds more than two levels."""
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    levels = np.unique(arr)
    if len(levels) > 2 or (len(levels) == 2 and levels[0] != 0):
        raise UserError(
            f"{path}: mask is not binary ({len(levels)} levels from {levels[0]} to {levels[-1]}); "
            "save it with values 0 and 255, or pass --skip-bad"
        )
    return (arr != 0).astype(np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    return binarise_mask(decode(path), path)


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read (image, mask) as grey uint8 and 0/1 uint8 of the same size, or raise UserError."""
    image = read_image(pair.image)
    if pair.mask is None:
        raise UserError(
            f"{pair.image}: no mask found for '{pair.stem}' in masks/; add one or pass --skip-bad"
        )
    mask = read_mask(pair.mask)
    if mask.shape != image.shape:
        raise UserError(
            f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}; fix the mask or pass --skip-bad"
        )
    return image, mask


def _index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS}


def find_pairs(root: str | Path) -> dict[str, Pair]:
    """Every image under ROOT/images with its mask (None where none is found), by stem."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir():
        raise UserError(f"{root}: no images/ folder; expected ROOT/images and ROOT/masks")
    images = _index(img_dir)
    if not images:
        raise UserError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)})")
    masks = _index(mask_dir) if mask_dir.is_dir() else {}
    pairs = {}
    for stem, path in images.items():
        mask = masks.get(stem) or masks.get(f"{stem}_pixels0")
        pairs[stem] = Pair(stem, path, mask)
    return pairs


def _split_candidates(root: Path, name: str) -> list[Path]:
    alt = {"train": ["train", "trainval"], "test": ["test", "val"]}[name]
    cands = []
    for base in (root, root / "splits"):
        for a in alt:
            cands.append(base / "50_50" / f"{a}.txt")
        cands += sorted((base / "img_idx").glob(f"{alt[0]}_*.txt"))
        for d in sorted(base.glob("idx_*")):
            cands += [d / f"{a}.txt" for a in alt]
        cands += [base / f"{a}.txt" for a in alt]
    return cands


def _names_split(path: Path) -> str | None:
    """ "train" or "test" when a split file's name says which it is (trainval counts as train,
    val as test), else None."""
    stem = path.stem.lower()
    if "train" in stem:
        return "train"
    if "test" in stem or "val" in stem:
        return "test"
    return None


def find_split_file(
    root: str | Path, name: str, split: str | Path | None = None, alone: bool = False
) -> Path:
    """Locate the id list of split `name` ("train" or "test"), or raise UserError.

    A file given as `split` must say in its name which split it is (train..., test..., val...),
    so that one list can never serve as both; `alone=True` (a caller that reads this one split
    only, like eval) accepts any name.
    """
    root = Path(root)
    if split is not None:
        split = Path(split)
        if split.is_file() and alone:
            return split
        if split.is_file():
            says = _names_split(split)
            if says is None:
                raise UserError(
                    f"{split}: its name says neither train nor test; name it train.txt / "
                    "test.txt (or give the folder that holds both) so the splits cannot mix"
                )
            if says == name:
                return split
            split = split.parent  # the other split's file given: look for a sibling beside it
        for cand in _split_candidates(split, name) + [split / f"{name}.txt"]:
            if cand.is_file():
                return cand
        raise UserError(f"{split}: no {name} split file found there; give --split DIR")
    for cand in _split_candidates(root, name):
        if cand.is_file():
            return cand
    raise UserError(
        f"{root}: no {name} split file (looked for splits/50_50/{name}.txt, {name}.txt, ...); "
        "give one with --split"
    )


def read_ids(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read this split file ({e}); give a text file") from e
    ids = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not ids:
        raise UserError(f"{path}: split file is empty")
    return [Path(i).stem if Path(i).suffix.lower() in IMAGE_EXTS else i for i in ids]


def load_split(
    root: str | Path, name: str, split: str | Path | None = None, alone: bool = False
) -> list[Pair]:
    """The pairs of split `name`, in the split file's order; missing ids raise UserError."""
    pairs = find_pairs(root)
    path = find_split_file(root, name, split, alone)
    out = []
    for stem in read_ids(path):
        if stem not in pairs:
            raise UserError(f"{path}: id '{stem}' has no image in {Path(root) / 'images'}")
        out.append(pairs[stem])
    return out
