"""Classical (non-learned) detectors for `sirst5k eval/predict --method NAME`.

Each detector is a pure function: grey uint8 (H, W) image -> float32 (H, W) score map, where
bright small targets score high (ANCHORS.md section 4, the usual parameters). `detect` turns a
score map into a probability-like map through one adaptive threshold rule, so that the usual
metrics at threshold 0.5 give exactly the detector's mask:

    T = mean(score) + k * std(score)      (k per detector, `Detector.k`; --k overrides it)
    mask = score > T
    prob = clip(score / (2 T), 0, 1), nudged so that prob > 0.5 exactly where score > T

A threshold t other than 0.5 thus means score > 2 t T, which is what the ROC sweep varies.
A map with T <= 0 (a flat image) gives prob = (score > T), all zero for a flat map.

Adding a method (IPI, PSTNN, ...) = one function and one DETECTORS entry; eval does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from sirst5k.errors import UserError

TOPHAT_SIZE = 5  # white top-hat, 5x5 square structuring element
MAXMEDIAN_SIZE = 15  # Max-Median window (Deshpande et al. 1999)


def tophat(image: np.ndarray) -> np.ndarray:
    """White top-hat: image - opening(image) with a 5x5 square (OpenCV's default border, which
    ignores outside pixels for erosion and dilation)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_SIZE, TOPHAT_SIZE))
    return cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel).astype(np.float32)


def _directional_median(padded: np.ndarray, h: int, w: int, dy: int, dx: int) -> np.ndarray:
    """Median of the 15 pixels along direction (dy, dx) centred on every pixel (vectorised)."""
    r = MAXMEDIAN_SIZE // 2
    views = [
        padded[r + i * dy : r + i * dy + h, r + i * dx : r + i * dx + w] for i in range(-r, r + 1)
    ]
    stack = np.stack(views)  # (15, H, W)
    return np.partition(stack, r, axis=0)[r]  # odd count: the middle element is the median


def maxmedian(image: np.ndarray) -> np.ndarray:
    """Max-Median: image minus the largest of the medians along the row, the column and both
    diagonals of a 15x15 window, clipped at 0. Borders are mirrored (reflect-101)."""
    h, w = image.shape
    r = MAXMEDIAN_SIZE // 2
    padded = cv2.copyMakeBorder(image, r, r, r, r, cv2.BORDER_REFLECT_101)
    medians = [
        _directional_median(padded, h, w, dy, dx) for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))
    ]
    background = np.maximum.reduce(medians).astype(np.float32)
    return np.maximum(image.astype(np.float32) - background, 0.0)


@dataclass(frozen=True)
class Detector:
    name: str
    score: Callable[[np.ndarray], np.ndarray]
    # adaptive threshold T = mean + k * std of the score map. The defaults were chosen on
    # NUDT-SIRST's *train* split (every other image, k in 8..25) as the k of highest IoU; the
    # test split was never used to choose them (docs/evaluation.md).
    k: float
    description: str


DETECTORS: dict[str, Detector] = {
    "tophat": Detector("tophat", tophat, 12.0, "Top-Hat, white top-hat with a 5x5 square"),
    "maxmedian": Detector("maxmedian", maxmedian, 15.0, "Max-Median, 15x15 window, 4 directions"),
}


def get_detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise UserError(f"unknown method '{name}'; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name]


def to_probability(score: np.ndarray, k: float) -> np.ndarray:
    """Adaptive threshold as a probability-like map (module docstring): > 0.5 iff score > T."""
    score = score.astype(np.float64)
    t = float(score.mean() + k * score.std())
    if t <= 0:
        return (score > t).astype(np.float32)
    above = score > t
    prob = np.clip(score / (2 * t), 0.0, 1.0).astype(np.float32)
    half_up = np.nextafter(np.float32(0.5), np.float32(1))
    prob[above] = np.maximum(prob[above], half_up)
    prob[~above] = np.minimum(prob[~above], np.float32(0.5))
    return prob


def detect(name: str, image: np.ndarray, k: float | None = None) -> np.ndarray:
    """Run detector `name` on a grey uint8 (H, W) image; float32 probability-like map."""
    det = get_detector(name)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(
            f"detectors take grey uint8 (H, W) images, got {image.dtype} {image.shape}"
        )
    return to_probability(det.score(image), det.k if k is None else k)
