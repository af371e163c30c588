"""The embedded demo dataset: small, deterministic, infrared-like, in the NUDT-SIRST layout.

`generate_demo(out, DemoConfig(...))` writes OUT/images/<stem>.png (grey uint8),
OUT/masks/<stem>.png (0/255) and OUT/splits/50_50/{train,test}.txt. Each image is
1/f cloud texture + a few bright structures + an optional horizon with brighter ground
+ sensor noise + fixed-pattern (column/row) noise shared by the whole "sensor", with 0-3
small targets of 1-10 px and varied contrast. The mask of a target is its half-maximum
ellipse, so every target is one 8-connected component and targets never touch.
With `frames` > 0 it also writes OUT/frames/images/: target-free frames of another "sensor"
(its own fixed-pattern noise, twice the side), the footage a user records of their own scenes,
for `synth --backgrounds` and `--noise-from`. Same config and seed -> the same bytes (the
frames come from a stream of their own: the dataset is the same with or without them).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sirst5k.errors import UserError

SIZES = ("fixed", "mixed")
# Probability of 0, 1, 2, 3 targets in an image: most images hold at least one.
N_TARGETS_P = (0.08, 0.52, 0.25, 0.15)


@dataclass
class DemoConfig:
    n: int = 60  # number of images, split half train / half test
    size: int = 128  # side of the images (the largest side when sizes="mixed")
    seed: int = 0
    sizes: str = "fixed"  # "mixed": heights and widths drawn from 3/4*size .. size
    stem_prefix: str = "demo_"
    frames: int = 0  # target-free frames of another sensor, 2 x size a side, in OUT/frames

    def __post_init__(self):
        if self.n < 2:
            raise UserError(f"--n {self.n}: need at least 2 images (one train, one test)")
        if not 32 <= self.size <= 2048:
            raise UserError(f"--size {self.size}: choose a side between 32 and 2048 px")
        if self.sizes not in SIZES:
            raise UserError(f"--sizes {self.sizes!r}: choose one of {', '.join(SIZES)}")
        if not 0 <= self.frames <= 10000:
            raise UserError(f"--frames {self.frames}: choose 0 to 10000")


def cloud(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """1/f^beta noise field (H, W), zero mean, unit std: the cloud / clutter texture."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    spec = rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
    spec /= f**beta
    spec[0, 0] = 0.0
    field = np.fft.irfft2(spec, s=(h, w))
    return (field - field.mean()) / (field.std() + 1e-12)


def background(rng: np.random.Generator, h: int, w: int, fpn: np.ndarray) -> np.ndarray:
    """Float background (H, W) on the 0..255 scale, without targets."""
    level = rng.uniform(60, 140)
    img = level + rng.uniform(8, 30) * cloud(rng, h, w, rng.uniform(1.6, 2.4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for _ in range(rng.integers(0, 4)):  # bright structures: broad warm blobs or a ridge
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sy, sx = rng.uniform(3, h / 5), rng.uniform(3, w / 5)
        img += rng.uniform(15, 60) * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    if rng.random() < 0.5:  # horizon: brighter, more textured ground below a tilted line
        row = rng.uniform(0.5, 0.85) * h + rng.uniform(-0.1, 0.1) * (xx - w / 2)
        ground = rng.uniform(20, 50) + rng.uniform(5, 15) * cloud(rng, h, w, 1.2)
        img += ground / (1.0 + np.exp(-(yy - row) / 1.5))
    img += rng.uniform(1.0, 4.0) * rng.standard_normal((h, w))  # temporal sensor noise
    return img + fpn[:h, :w]


def add_targets(
    rng: np.random.Generator, img: np.ndarray, n_targets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add n small targets (1-10 px across) to a float image; return it and the 0/1 mask."""
    h, w = img.shape
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    placed = 0
    for _ in range(50 * n_targets):
        if placed == n_targets:
            break
        ry, rx = rng.uniform(0.5, 5.0, size=2)  # half-maximum radii: 1..10 px across
        cy = int(rng.integers(0, h))
        cx = int(rng.integers(0, w))
        r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        blob = r2 <= 1.0
        # keep targets apart: no mask pixel within 2 px of another target
        near = cv2.dilate(mask, np.ones((5, 5), np.uint8))
        if (near & blob).any():
            continue
        contrast = rng.uniform(12, 90)
        img += contrast * np.exp(-np.log(2.0) * r2)  # exactly half the peak on the mask border
        mask |= blob.astype(np.uint8)
        placed += 1
    return img, mask


def image_sizes(rng: np.random.Generator, cfg: DemoConfig) -> list[tuple[int, int]]:
    if cfg.sizes == "fixed":
        return [(cfg.size, cfg.size)] * cfg.n
    lo = (3 * cfg.size) // 4
    hw = rng.integers(lo // 4, cfg.size // 4 + 1, size=(cfg.n, 2)) * 4
    hw[0] = cfg.size  # the first image is full size so the canvas is size x size
    return [(int(h), int(w)) for h, w in hw]


def make_sample(
    rng: np.random.Generator, h: int, w: int, fpn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8, mask 0/1 uint8) pair."""
    img = background(rng, h, w, fpn)
    n_targets = int(rng.choice(len(N_TARGETS_P), p=N_TARGETS_P))
    img, mask = add_targets(rng, img, n_targets)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


MARKER = ".sirst5k-demo"  # marks a folder written by generate_demo, so --force may replace it


def generate_demo(out: str | Path, cfg: DemoConfig, force: bool = False) -> dict:
    """Write the demo dataset to OUT; return counts. OUT must not exist unless force."""
    out = Path(out)
    if out.exists():
        if not force:
            raise UserError(f"{out} exists: choose another folder or pass --force to replace it")
        if not (out / MARKER).is_file():  # --force replaces a demo set, never other folders
            raise UserError(
                f"{out} exists and is not a demo set made by `sirst5k demo-data` "
                f"(no {MARKER}); choose another folder or remove it yourself"
            )
    rng = np.random.default_rng(cfg.seed)
    side = cfg.size + cfg.size // 4
    fpn = rng.normal(0, 1.5, (1, side)) + rng.normal(0, 0.7, (side, 1))  # column + row offsets
    sizes = image_sizes(rng, cfg)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    (tmp / "splits" / "50_50").mkdir(parents=True)
    stems, n_targets = [], 0
    try:
        for i, (h, w) in enumerate(sizes):
            img, mask = make_sample(rng, h, w, fpn)
            stem = f"{cfg.stem_prefix}{i:04d}"
            cv2.imwrite(str(tmp / "images" / f"{stem}.png"), img)
            cv2.imwrite(str(tmp / "masks" / f"{stem}.png"), mask * 255)
            n_targets += cv2.connectedComponents(mask, connectivity=8)[0] - 1
            stems.append(stem)
        order = rng.permutation(cfg.n)
        n_train = cfg.n // 2
        train = sorted(stems[j] for j in order[:n_train])
        test = sorted(stems[j] for j in order[n_train:])
        (tmp / "splits" / "50_50" / "train.txt").write_text("\n".join(train) + "\n")
        (tmp / "splits" / "50_50" / "test.txt").write_text("\n".join(test) + "\n")
        write_frames(tmp / "frames" / "images", cfg)
        (tmp / MARKER).write_text(f"sirst5k demo-data, seed {cfg.seed}\n")
        # the old set goes only once the new one is complete
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images": cfg.n, "train": len(train), "test": len(test), "targets": n_targets,
            "frames": cfg.frames}  # fmt: skip


def write_frames(folder: Path, cfg: DemoConfig) -> None:
    """cfg.frames target-free frames of another sensor: 2 x size a side, a stronger fixed
    pattern of its own; from the seed's own stream [seed, 1]."""
    if not cfg.frames:
        return
    folder.mkdir(parents=True)
    rng = np.random.default_rng([cfg.seed, 1])
    side = 2 * cfg.size
    fpn = rng.normal(0, 3.0, (1, side)) + rng.normal(0, 1.5, (side, 1))
    for i in range(cfg.frames):
        frame = np.clip(np.rint(background(rng, side, side, fpn)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), frame)
