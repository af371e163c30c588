"""Reading a labelled source dataset in the layouts the IRSTD field uses.

Layouts found automatically under ROOT (images: the first of images/, mixed/; masks: the first
of masks/, annotations/masks/; a mask is <stem>.EXT or <stem>_pixels0.EXT, any image extension):
  - NUDT-SIRST / BasicIRSTD: images/<stem>.png and masks/<stem>.png
  - SIRST / NUAA-SIRST: images/<stem>.png and masks/<stem>_pixels0.png, idx_427/ splits
  - SIRST-V2 (open-sirst-v2): mixed/<stem>.png and annotations/masks/<stem>_pixels0.png,
    splits/trainval_full.txt and splits/test_full.txt
Split files come as a (train, test) pair found in one folder. Folders searched, in this order,
under ROOT and then ROOT/splits: 50_50/, img_idx/, idx_*/ (the largest number first: idx_427
before idx_320), the folder itself. In a folder the first complete pair wins:
  trainval.txt + test.txt, train.txt + test.txt, train.txt + val.txt, then tagged pairs
  trainval_TAG.txt (or train_TAG.txt) + test_TAG.txt (TAG "full" first; several other tags and
  no "full" is ambiguous and refused).
trainval (train + val) is preferred to train so that every labelled training image is used;
val is never the test list beside a trainval list, which holds it. Given explicitly: --split DIR
(searched the same way), --split FILE (its name says train/trainval or test/val; the partner is
found beside it: trainval_full.txt -> test_full.txt, train.txt -> test.txt or val.txt), or
--split TRAIN --split TEST (two files, in that order, any names).

Pixel conventions (docs/store.md):
  - images become one grey uint8 array: 16-bit images are stretched linearly from their own
    min..max to 0..255; RGB/RGBA/palette become grey by OpenCV's BT.601 luma, alpha is dropped.
  - masks: any channel layout is reduced to grey; a mask must hold at most two levels, 0 for
    background and one other value (255, 1, True, 65535, ...) for target: every non-zero pixel
    is target. Anything else is reported as non-binary.
  - an image over MAX_PIXELS (50 megapixels; the environment variable SIRST5K_MAX_PIXELS
    raises it) is refused from its header, before it is decoded; so is a float image with NaN
    or infinite pixels, and a folder with two files of one id (x.png and x.bmp).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sirst5k.errors import UserError

IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
IMAGE_DIRS = ("images", "mixed")  # mixed/: SIRST-V2
MASK_DIRS = ("masks", "annotations/masks")  # annotations/masks/: SIRST-V2
TWO_FILES = "--split TRAIN.txt --split TEST.txt"
# the largest image read (its header says how large before it is decoded): 50 megapixels, a
# 7071 x 7071 frame; the environment variable raises it
MAX_PIXELS = 50_000_000
PIXELS_VAR = "SIRST5K_MAX_PIXELS"

SplitArg = str | os.PathLike | Sequence[str | os.PathLike] | None


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path | None
    mask_dir: Path | None = None  # the folder searched for the mask (None: the dataset has none)

    def mask_hint(self) -> str:
        """Where the mask was looked for, for messages."""
        if self.mask_dir is None:
            root = self.image.parent.parent
            return f"{root} has no {' or '.join(d + '/' for d in MASK_DIRS)} folder"
        return f"looked for {self.mask_dir / self.stem}.png or {self.stem}_pixels0.png"


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
    if not np.isfinite(a).all():  # a float image: NaN would become 0 and stretch nothing
        bad = int((~np.isfinite(a)).sum())
        raise UserError(
            f"{path}: {bad} pixel(s) are NaN or infinite; fill them with finite values, or "
            "pass --skip-bad"
        )
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def max_pixels() -> int:
    """The largest image read, in pixels: SIRST5K_MAX_PIXELS, else MAX_PIXELS."""
    value = os.environ.get(PIXELS_VAR, "")
    if not value:
        return MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{PIXELS_VAR}={value!r}: give a number of pixels, e.g. 100000000")
    return int(value)


def header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG, BMP, JPEG or TIFF file's header (its bytes), without decoding;
    None if unknown. struct.error for a header cut short."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:2] == b"\xff\xd8":  # JPEG: the first start-of-frame segment
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            i += 2 + length
        return None
    if data[:4] in (b"II*\x00", b"MM\x00*") and len(data) >= 8:  # TIFF: the first IFD
        e = "<" if data[0] == ord("I") else ">"
        at = struct.unpack(e + "I", data[4:8])[0]
        if at + 2 > len(data):
            return None
        size = {}
        for k in range(struct.unpack(e + "H", data[at : at + 2])[0]):
            entry = data[at + 2 + 12 * k : at + 14 + 12 * k]
            if len(entry) < 12:
                break
            tag, kind = struct.unpack(e + "HH", entry[:4])
            if tag in (256, 257):  # ImageWidth, ImageLength: a SHORT or a LONG
                fmt = e + ("H" if kind == 3 else "I")
                size[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
        return (size[256], size[257]) if len(size) == 2 else None
    return None


def too_large(path, w: int, h: int) -> UserError:
    return UserError(
        f"{path}: {w}x{h} px is {w * h / 1e6:.0f} megapixels, over the limit of "
        f"{max_pixels() / 1e6:g} (environment variable {PIXELS_VAR}); shrink or tile the image, "
        f"raise the limit (e.g. {PIXELS_VAR}={w * h}), or pass --skip-bad"
    )


def decode(path: str | Path) -> np.ndarray:
    """Decode an image file unchanged (any depth, palette expanded), or raise UserError. An
    image over max_pixels() is refused from its header, before it is decoded."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not an image file; rename or remove it")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    data = np.fromfile(path, np.uint8)
    try:
        size = header_size(memoryview(data))
    except struct.error:  # a header cut short: imdecode says so
        size = None
    if size is not None and size[0] * size[1] > max_pixels():
        raise too_large(path, *size)
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS), a broken header...
        raise UserError(
            f"{path}: OpenCV cannot decode this image (too large for it, or a broken header); "
            "replace it"
        ) from None
    if arr is None:
        raise UserError(f"{path}: cannot decode this image (corrupt or not an image); replace it")
    if arr.shape[0] * arr.shape[1] > max_pixels():  # a header that header_size cannot read
        raise too_large(path, arr.shape[1], arr.shape[0])
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
            f"{pair.image}: no mask found for '{pair.stem}' ({pair.mask_hint()}); "
            "add one or pass --skip-bad"
        )
    mask = read_mask(pair.mask)
    if mask.shape != image.shape:
        raise UserError(
            f"{pair.mask}: mask is {mask.shape[0]}x{mask.shape[1]} (h x w) but its image is "
            f"{image.shape[0]}x{image.shape[1]}; fix the mask or pass --skip-bad"
        )
    return image, mask


def _index(folder: Path) -> dict[str, Path]:
    """The image files of a folder by stem; two files of one stem (x.png, x.bmp) are refused."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS:
            if p.stem in found:
                raise UserError(
                    f"{found[p.stem]} and {p}: two files for the id '{p.stem}', which one is "
                    "meant is unclear; remove or rename one"
                )
            found[p.stem] = p
    return found


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def image_dir(root: str | Path) -> Path:
    """ROOT/images, or ROOT/mixed (SIRST-V2); raise UserError if there is neither."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    found = _first_dir(root, IMAGE_DIRS)
    if found is None:
        raise UserError(
            f"{root}: no images/ folder (nor mixed/); expected ROOT/images + ROOT/masks "
            "(NUDT-SIRST, NUAA-SIRST) or ROOT/mixed + ROOT/annotations/masks (SIRST-V2)"
        )
    return found


def find_pairs(root: str | Path) -> dict[str, Pair]:
    """Every image of the dataset's image folder with its mask (None where none), by stem."""
    root = Path(root)
    img_dir = image_dir(root)
    images = _index(img_dir)
    if not images:
        raise UserError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)})")
    mask_dir = _first_dir(root, MASK_DIRS)
    masks = _index(mask_dir) if mask_dir else {}
    pairs = {}
    for stem, path in images.items():
        mask = masks.get(stem) or masks.get(f"{stem}_pixels0")
        pairs[stem] = Pair(stem, path, mask, mask_dir)
    return pairs


# ---------------------------------------------------------------- split files
TRAIN_RE = re.compile(r"^(trainval|train)([_-].+)?$", re.IGNORECASE)
TEST_RE = re.compile(r"^(test|val)([_-].+)?$", re.IGNORECASE)
LOOKED = (
    "50_50/train + test, img_idx/train_NAME + test_NAME, idx_*/trainval + test, "
    "trainval_full + test_full, trainval + test, train + test, under ROOT and ROOT/splits"
)


def _idx_key(d: Path) -> tuple:
    n = d.name[4:]
    return (0, -int(n), d.name) if n.isdigit() else (1, 0, d.name)


def _split_dirs(base: Path) -> list[Path]:
    """Folders that may hold split files, in search order (see the module docstring)."""
    out = []
    for b in (base, base / "splits"):
        idx = sorted((d for d in b.glob("idx_*") if d.is_dir()), key=_idx_key)
        out += [b / "50_50", b / "img_idx", *idx, b]
    return [d for d in out if d.is_dir()]


def _pair_in(d: Path) -> tuple[Path, Path] | None:
    """The (train, test) pair of split files in folder d, or None; UserError if ambiguous."""
    for train, test in (("trainval", "test"), ("train", "test"), ("train", "val")):
        if (d / f"{train}.txt").is_file() and (d / f"{test}.txt").is_file():
            return d / f"{train}.txt", d / f"{test}.txt"
    tagged = {}
    for test in sorted(d.glob("test[_-]*.txt")):
        sep_tag = test.stem[4:]  # "_full" of test_full.txt
        for t in ("trainval", "train"):
            if (d / f"{t}{sep_tag}.txt").is_file():
                tagged[sep_tag[1:]] = (d / f"{t}{sep_tag}.txt", test)
                break
    if "full" in tagged:
        return tagged["full"]
    if len(tagged) > 1:
        a, b = next(iter(tagged.values()))
        names = ", ".join(f"{t.name} + {s.name}" for t, s in tagged.values())
        raise UserError(
            f"{d}: several train/test split pairs ({names}); choose one: --split {a} --split {b}"
        )
    return next(iter(tagged.values()), None)


def _text_files(root: Path, limit: int = 6) -> str:
    """Some .txt files where split files would be, relative to root, for messages."""
    seen = []
    for d in _split_dirs(root):
        for p in sorted(d.glob("*.txt")):
            rel = str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
            if rel not in seen:
                seen.append(rel)
    more = f" and {len(seen) - limit} more" if len(seen) > limit else ""
    return ", ".join(seen[:limit]) + more


def _names_split(path: Path) -> str | None:
    """ "train" or "test" when a split file's name says which it is (trainval counts as train,
    val as test), else None."""
    stem = path.stem.lower()
    if "train" in stem:
        return "train"
    if "test" in stem or "val" in stem:
        return "test"
    return None


def _partner(path: Path, says: str) -> Path:
    """The other list of the pair a split file belongs to, found beside it, or raise UserError.

    trainval_full.txt -> test_full.txt, train.txt -> test.txt or val.txt, trainval.txt ->
    test.txt only (val is part of trainval), and the other way round.
    """
    d = path.parent
    m = (TRAIN_RE if says == "train" else TEST_RE).match(path.stem)
    kind, tag = (m.group(1).lower(), m.group(2) or "") if m else ("", "")
    if says == "train":
        others = ["test"] if kind == "trainval" else ["test", "val"]
    else:
        others = ["train"] if kind == "val" else ["trainval", "train"]
    cands = [d / f"{o}{tag}.txt" for o in others]
    for c in cands:
        if c.is_file():
            return c
    other, give = ("test", f"--split {path} --split TEST.txt")
    if says == "test":
        other, give = ("train", f"--split TRAIN.txt --split {path}")
    raise UserError(
        f"{path}: no {other} list beside it (looked for {', '.join(c.name for c in cands)}); "
        f"give both lists, train first: {give}"
    )


def split_args(split: SplitArg) -> list[Path]:
    """--split as a list of 0, 1 or 2 paths (None, one path, or a sequence of them)."""
    if split is None:
        return []
    if isinstance(split, str | os.PathLike):
        return [Path(split)]
    return [Path(s) for s in split]


def _find_pair(where: Path) -> tuple[Path, Path] | None:
    for d in _split_dirs(where):
        pair = _pair_in(d)
        if pair is not None:
            return pair
    return None


def find_split_files(root: str | Path, split: SplitArg = None) -> tuple[Path, Path]:
    """(train list, test list) of a dataset, or raise UserError (see the module docstring).

    `split`: None (found under ROOT), one folder (searched like ROOT), one file (its name says
    which list it is; the other is found beside it), or two files: the train list, then the
    test list.
    """
    root = Path(root)
    paths = split_args(split)
    if len(paths) > 2:
        raise UserError(
            f"--split given {len(paths)} times; give one folder or file, or two files: {TWO_FILES}"
        )
    for p in paths:
        if not p.exists():
            raise UserError(f"--split {p}: no such file or folder")
    if len(paths) == 2:
        train, test = paths
        for p in paths:
            if not p.is_file():
                raise UserError(f"--split {p}: given twice, --split takes two files: {TWO_FILES}")
        if train.resolve() == test.resolve():
            raise UserError(
                f"--split {train} --split {test}: the train and the test list are the same "
                f"file; give two different files: {TWO_FILES}"
            )
        return train, test
    if paths and paths[0].is_file():
        path = paths[0]
        says = _names_split(path)
        if says is None:
            raise UserError(
                f"--split {path}: its name says neither train nor test; give both lists, train "
                f"first: {TWO_FILES} (e.g. --split {path} --split TEST.txt)"
            )
        other = _partner(path, says)
        return (path, other) if says == "train" else (other, path)
    where = paths[0] if paths else root
    if not where.is_dir():
        raise UserError(f"{where}: no such dataset folder")
    pair = _find_pair(where)
    if pair is None:
        found = _text_files(where)
        found = f"; text files there: {found}" if found else ""
        raise UserError(
            f"{where}: no train/test split files found (looked for {LOOKED}){found}; "
            f"give the two id lists (one id per line): {TWO_FILES}"
        )
    return pair


def _single_candidates(base: Path, name: str) -> list[Path]:
    """Lone lists of split `name` under base, in search order (tag "full" first)."""
    names = ("trainval", "train") if name == "train" else ("test", "val")
    cands = []
    for d in _split_dirs(base):
        cands += [d / f"{n}.txt" for n in names]
        for n in names:
            tagged = d.glob(f"{n}[_-]*.txt")
            cands += sorted(tagged, key=lambda p, k=len(n) + 1: (p.stem[k:] != "full", p.name))
    return cands


def find_split_file(
    root: str | Path, name: str, split: SplitArg = None, alone: bool = False
) -> Path:
    """Locate the id list of split `name` ("train" or "test"), or raise UserError.

    Its list of the pair find_split_files finds; failing any pair, a lone list of that name
    (for a caller that reads one split only). A single file given as `split` must say in its
    name which split it is, so that one list can never serve as both; `alone=True` (a caller
    that reads this one split only, like eval) accepts any name.
    """
    root = Path(root)
    paths = split_args(split)
    k = 0 if name == "train" else 1
    if alone and len(paths) == 1 and paths[0].is_file():
        return paths[0]
    if len(paths) > 1 or (paths and not paths[0].is_dir()):
        return find_split_files(root, paths)[k]
    where = paths[0] if paths else root
    if not where.is_dir():
        raise UserError(f"{where}: no such dataset folder")
    pair = _find_pair(where)
    if pair is not None:
        return pair[k]
    for cand in _single_candidates(where, name):
        if cand.is_file():
            return cand
    give = "--split FILE" if alone else TWO_FILES
    raise UserError(
        f"{where}: no {name} split file found (looked for {LOOKED}); give it with {give}"
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


def split_pairs(
    root: str | Path, path: str | Path, pairs: dict[str, Pair] | None = None
) -> list[Pair]:
    """The pairs listed in split file `path`, in its order; an id without image raises."""
    pairs = find_pairs(root) if pairs is None else pairs
    out = []
    for stem in read_ids(path):
        if stem not in pairs:
            raise UserError(f"{path}: id '{stem}' has no image in {image_dir(root)}")
        out.append(pairs[stem])
    return out


def load_split(
    root: str | Path, name: str, split: SplitArg = None, alone: bool = False
) -> list[Pair]:
    """The pairs of split `name`, in the split file's order; missing ids raise UserError."""
    pairs = find_pairs(root)
    return split_pairs(root, find_split_file(root, name, split, alone), pairs)


def collect_images(inputs: list[str | Path], out: Path) -> list[tuple[Path, Path]]:
    """(image path, output path relative to OUT) for files and folders (recursively, image
    extensions only, never inside an OUT within the folder, nor in a dataset folder's masks/ or
    annotations/masks/); no inputs, OUT the input folder itself, and two inputs with one output
    name are errors."""
    if not inputs:
        raise UserError("no images given: name image files or folders")
    found: list[tuple[Path, Path]] = []
    out_abs = out.resolve()
    for item in map(Path, inputs):
        if item.is_dir() and item.resolve() == out_abs:
            raise UserError(
                f"-o {out}: the output folder is the input folder {item}; the masks would "
                "replace the images: choose another -o"
            )
        if item.is_dir():
            skip = [(item / d).resolve() for d in MASK_DIRS if (item / d).is_dir()]
            if item.resolve() in out_abs.parents:  # OUT inside the folder: not an input
                skip.append(out_abs)
            for p in sorted(item.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                    if any(d in p.resolve().parents for d in skip):
                        continue
                    found.append((p, p.relative_to(item).with_suffix(".png")))
        elif item.is_file():
            found.append((item, Path(item.stem + ".png")))
        else:
            raise UserError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for src, rel in found:
        if rel in seen:
            raise UserError(
                f"{src} and {seen[rel]} would both be written to {out / rel}; rename one"
            )
        seen[rel] = src
    if not found:
        raise UserError(
            f"no image files ({', '.join(IMAGE_EXTS)}) in {', '.join(map(str, inputs))}"
        )
    return found


def find_frames(root: str | Path, option: str = "--backgrounds") -> list[Path]:
    """The image files of a folder of target-free frames: ROOT/images/ (or mixed/) when there
    is one, else ROOT itself; sorted, not recursive. Refused: a missing or empty folder, and a
    folder whose masks mark targets (these frames must hold none)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{option} {root}: no such folder of target-free frames")
    folder = _first_dir(root, IMAGE_DIRS) or root
    frames = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not frames:
        raise UserError(
            f"{option} {root}: no frames ({', '.join(IMAGE_EXTS)}) in {folder}; give a folder "
            "of target-free frames of your sensor"
        )
    mask_dir = _first_dir(root, MASK_DIRS)
    for mask in sorted(mask_dir.iterdir()) if mask_dir else []:
        if mask.suffix.lower() in IMAGE_EXTS and read_mask(mask).any():
            raise UserError(
                f"{option} {root}: {mask} marks targets, but these frames must hold none; give "
                "a folder of target-free frames (the labelled ones are the SOURCE)"
            )
    return frames


def read_frames(
    paths: list[Path], min_side: int = 0, option: str = "--backgrounds", fix: str = ""
) -> list[np.ndarray]:
    """Decode frames as grey uint8 (16-bit and RGB converted as for sources); refuse one whose
    shorter side is under min_side px, naming it and the fix."""
    frames = []
    for p in paths:
        frame = read_image(p)
        if min(frame.shape) < min_side:
            h, w = frame.shape
            raise UserError(
                f"{p}: {w}x{h}, smaller than the {min_side} px crops of {option}; "
                f"{fix or 'remove it from the folder'}"
            )
        frames.append(frame)
    return frames
