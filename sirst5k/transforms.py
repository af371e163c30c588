"""The two SIRST-5K ops as albumentations 2.0.8 transforms (image + mask), for your own pipelines.

    NoiseDisplacement(pool, alpha=0.1)   Eq. 2-3: mix a random noise-prone cell into the image
    NegativeRotation(s=3, label="rotate") Eq. 4: rotate the s x s box on one random target
    TargetImplant(patches, count=(1, 3))  implant labelled targets into a (target-free) frame

Both follow albumentations' contract: the arguments are stored in __init__, every random choice
is drawn once in get_params_dependent_on_data from the transform's seeded generator
(`self.random_generator`), and apply / apply_to_mask call the pure functions of synth.py.
Images may be (H, W) or (H, W, C) uint8; masks (H, W) or (H, W, 1). This is the only module
that imports albumentations; the synthesis path does not need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from albumentations.core.transforms_interface import DualTransform

from sirst5k.ops import (
    TargetPatch,
    check_params,
    crop_cell,
    cut_targets,
    draw_implants,
    implant_all,
    mix,
    noise_cells,
    resize_noise,
    rotate_box,
    target_boxes,
)


def noise_pool(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    grid: int = 8,
    sigma: float = 50.0,
    mu: float = 255.0,
) -> list[np.ndarray]:
    """Eq. 1 over a list of grey uint8 images and their 0/1 masks: the kept cells, as arrays."""
    cells = []
    for img, mask in zip(images, masks, strict=True):
        keep = noise_cells(img, (mask > 0).astype(np.uint8), grid, sigma, mu)
        cells += [crop_cell(img, grid, r, c).copy() for r, c in np.argwhere(keep)]
    return cells


def _grey(mask: np.ndarray) -> np.ndarray:
    m = mask.max(axis=2) if mask.ndim == 3 else mask
    return (m > 0).astype(np.uint8)


class NoiseDisplacement(DualTransform):
    """Eq. 2-3: I_mix = alpha * Resize(cell) + (1 - alpha) * I with a cell drawn from `pool`.

    pool: noise-prone cells (grey uint8 arrays), e.g. from `noise_pool(...)` over other images.
    The mask is returned unchanged (the targets do not move).
    """

    def __init__(
        self,
        pool: list[np.ndarray],
        alpha: float = 0.1,
        resize: str = "bilinear",
        p: float = 1.0,
    ):
        super().__init__(p=p)
        if not pool:
            raise ValueError("NoiseDisplacement: empty noise pool; loosen sigma/mu or add images")
        check_params(alpha=alpha, resize=resize)
        self.pool, self.alpha, self.resize = pool, alpha, resize

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict[str, Any]:
        return {"cell": int(self.random_generator.integers(len(self.pool)))}

    def apply(self, img: np.ndarray, cell: int = 0, **params) -> np.ndarray:
        noise = resize_noise(self.pool[cell], img.shape[:2], self.resize)
        if img.ndim == 3:
            noise = noise[:, :, None]
        return mix(img, noise, self.alpha)

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return mask

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("alpha", "resize")


class NegativeRotation(DualTransform):
    """Eq. 4: rotate the s x s box centred on one random target by a random multiple of 90 degrees.

    label="rotate" rotates the mask box identically (pixel-exact labels); "unchanged" keeps the
    mask as it was (the paper's wording). No target in the mask: image and mask unchanged.
    """

    def __init__(self, s: int = 3, label: str = "rotate", p: float = 1.0):
        super().__init__(p=p)
        check_params(s=s, label=label)
        self.s, self.label = s, label

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict[str, Any]:
        mask = data.get("mask")
        if mask is None:
            raise ValueError("NegativeRotation needs the mask: call it with image=..., mask=...")
        m = _grey(mask)
        if self.s > min(m.shape):
            return {"box": None, "k": 0}
        boxes = target_boxes(m, self.s)
        if not len(boxes):
            return {"box": None, "k": 0}
        t = int(self.random_generator.integers(len(boxes)))
        k = int(self.random_generator.integers(4))
        return {"box": (int(boxes[t, 0]), int(boxes[t, 1])), "k": k}

    def apply(self, img: np.ndarray, box=None, k: int = 0, **params) -> np.ndarray:
        return img if box is None else rotate_box(img, box[0], box[1], self.s, k)

    def apply_to_mask(self, mask: np.ndarray, box=None, k: int = 0, **params) -> np.ndarray:
        if box is None or self.label == "unchanged":
            return mask
        return rotate_box(mask, box[0], box[1], self.s, k)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("s", "label")


def target_patches(
    images: list[np.ndarray], masks: list[np.ndarray], margin: int = 3
) -> list[TargetPatch]:
    """Every target of grey uint8 images and their masks, cut for TargetImplant."""
    return [p for i, m in zip(images, masks, strict=True) for p in cut_targets(i, _grey(m), margin)]


class TargetImplant(DualTransform):
    """Implant `count` (LO, HI) targets drawn from `patches` (target_patches of labelled
    images) into a grey frame, typically one of your sensor's target-free frames: each its signal
    over its local background times a gain drawn from `gain`, in one of the 8 orientations,
    zoomed by a factor drawn log-uniformly from `zoom`; the mask gets their exact components.
    The same draws as `synth --backgrounds` (ops.draw_implants, ops.implant_all)."""

    def __init__(
        self,
        patches: list[TargetPatch],
        count: tuple[int, int] = (1, 3),
        gain: tuple[float, float] = (0.3, 1.0),
        zoom: tuple[float, float] = (1.0, 1.0),
        p: float = 1.0,
    ):
        super().__init__(p=p)
        if not patches:
            raise ValueError("TargetImplant: no target patches; cut them with target_patches")
        self.patches, self.count, self.gain, self.zoom = patches, count, gain, zoom

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict[str, Any]:
        rng = self.random_generator
        n = int(rng.integers(self.count[0], self.count[1] + 1))
        shapes = [q.shape for q in self.patches]
        shape = data["image"].shape[:2]
        draws = draw_implants(rng, shapes, np.arange(len(shapes)), shape, n, self.gain, self.zoom)
        return {"draws": draws}

    def apply(self, img: np.ndarray, draws=(), **params) -> np.ndarray:
        if img.ndim == 3:  # every channel gets the same signal
            chans = [implant_all(np.ascontiguousarray(img[:, :, c]), self.patches, draws)[0]
                     for c in range(img.shape[2])]  # fmt: skip
            return np.stack(chans, axis=2)
        return implant_all(img, self.patches, draws)[0]

    def apply_to_mask(self, mask: np.ndarray, draws=(), **params) -> np.ndarray:
        blank = np.zeros(mask.shape[:2], np.uint8)
        added = implant_all(blank, self.patches, draws)[1]
        if mask.ndim == 3:
            added = added[:, :, None]
        return np.maximum(mask, added.astype(mask.dtype) * (255 if mask.max(initial=0) > 1 else 1))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("count", "gain", "zoom")
