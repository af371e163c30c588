"""IRSTD metrics as accumulators: IoU, nIoU, Pd, Fa, and a threshold sweep (ROC).

Definitions (docs/reference.md, with their sources; docs/evaluation.md):
  - A pixel is predicted target when prob > threshold (strict); with prob = sigmoid(logit) and
    threshold 0.5 this is BasicIRSTD's rule and DNA-Net's logit > 0.
  - Only the real, unpadded part [:h, :w] of each image counts: padding is cleared first.
  - IoU (the field's "mIoU"): intersections and unions summed over the whole set, divided once.
  - nIoU: mean over images of each image's IoU; an image whose union is empty counts 0.
  - Pd (DNA-Net / BasicIRSTD): ground truth and prediction are labelled with 8-connectivity in
    raster order; for each ground-truth component in label order, the first not-yet-matched
    predicted component (in label order) whose centroid lies at distance < 3 px (strict) is
    matched and leaves the pool. Pd = matched ground-truth components / all of them.
  - Fa, corrected (BasicIRSTD): predicted pixels outside the matched predicted components,
    divided by the number of real (unpadded) pixels of all images.
  - Fa, legacy (DNA-Net, used for the SIRST-5K paper's 2.735e-6): drops every predicted
    component whose area equals the area of some matched component of the same image (matched
    ones included), sums the areas of the rest, divides by 256*256*N whatever the image sizes.
    Offered only to compare with numbers printed in papers (`legacy_fa=True`).

Counts are integers accumulated over batches and reduced once in `compute`; zero division is
decided in `_div` only: a ratio over nothing is undefined, None (a set without targets has no
Pd; nothing predicted on it, no IoU either), never a 0 that would read as a miss. Components
come from one OpenCV call per batch: the rows of the batch that hold foreground are packed into
one image, runs of consecutive rows kept together with a zero row before each run (8-connected
components cannot cross it), and labelled by Wu's scan (CCL_SAUF), whose labels follow raster
order like skimage.measure.label; areas and centroids come from the foreground pixels only.
Matching loops over candidate (ground truth, prediction) pairs of the same image only, never
over pixels.
Centroid distances are compared with 3 exactly (integer arithmetic on coordinate sums) where
floating point cannot decide.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from sirst5k.errors import UserError

MATCH_DISTANCE = 3  # px, strict: a match needs distance < 3
LEGACY_PIXELS_PER_IMAGE = 256 * 256  # DNA-Net's Fa denominator, whatever the image size
# DNA-Net's ROC (0, 0.1, ..., 1 on the sigmoid) plus finer steps near 0 and 1, where a trained
# network's probabilities sit: enough points for a curve
DNA_NET_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))
DEFAULT_THRESHOLDS = tuple(
    sorted(
        {*DNA_NET_THRESHOLDS, 0.001, 0.003, 0.01, 0.02, 0.05, 0.2, 0.3, 0.7, 0.8}
        | {0.95, 0.98, 0.99, 0.997, 0.999}
    )
)
FA_CORRECTED = "corrected (BasicIRSTD): unmatched predicted pixels / real unpadded pixels"
FA_LEGACY = "legacy (DNA-Net): drops components whose area equals a matched one's / (256*256*N)"
COUNT_KEYS = (  # the integer counts `compute` returns beside the metrics
    "images",
    "pixels",
    "inter",
    "union",
    "pred_pixels",
    "gt_pixels",
    "targets",
    "hits",
    "false_pixels",
    "legacy_false_pixels",
    "legacy_pixels",
)


def _div(num: float, den: float) -> float | None:
    """The one place zero division is decided: a ratio with a zero denominator is undefined
    (None)."""
    return float(num) / float(den) if den else None


class ImageScore(NamedTuple):
    """One image's scores, as written to the per-image CSV."""

    iou: float | None  # None: nothing to find and nothing found
    hits: int
    misses: int
    false_pixels: int
    targets: int


class Matching(NamedTuple):
    """Components of a batch and how they matched (used for counts and for overlays)."""

    gt_image: np.ndarray  # (G,) image index of each ground-truth component, label order
    gt_area: np.ndarray  # (G,)
    gt_hit: np.ndarray  # (G,) bool
    pred_image: np.ndarray  # (P,)
    pred_area: np.ndarray  # (P,)
    pred_matched: np.ndarray  # (P,) bool
    gt_labels: np.ndarray | None  # (B, H, W) int32 labels 1.. per image, or None
    pred_labels: np.ndarray | None
    pred_rows: np.ndarray  # (R,) global rows b * H + y holding a predicted pixel


def as_batch(x, name: str = "array") -> np.ndarray:
    """(B, H, W) numpy view of a numpy array or torch tensor of shape (H, W), (B, H, W) or
    (B, 1, H, W)."""
    if hasattr(x, "detach"):  # a torch tensor; no torch import needed here
        x = x.detach().float().cpu().numpy() if x.dtype.is_floating_point else x.cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected (B, H, W) or (B, 1, H, W), got shape {x.shape}")
    return x


def _check_sizes(shape: tuple[int, int, int], sizes) -> np.ndarray:
    """(B, 2) int64 real (h, w) per image, checked against the arrays' (B, H, W)."""
    b, h, w = shape
    sizes = np.asarray(sizes, np.int64).reshape(b, 2)
    if (sizes[:, 0] > h).any() or (sizes[:, 1] > w).any() or (sizes < 0).any():
        raise ValueError(f"sizes {sizes.tolist()} do not fit arrays of {h}x{w}")
    return sizes


class _Packed(NamedTuple):
    """The rows of a (B, H, W) batch that hold a foreground pixel, in order, as one image."""

    image: np.ndarray  # (R', W) uint8: runs of consecutive rows, a zero row before each run
    rows: np.ndarray  # (R,) global row index b * H + y of each kept row
    pos: np.ndarray  # (R,) where each kept row sits in `image`


def _pack_rows(binary: np.ndarray) -> _Packed:
    """Targets are small: labelling only the rows that hold foreground is ~30x less work than
    labelling whole images. Runs of consecutive rows of one image stay adjacent; a zero row
    before every run keeps runs (and images) apart, so no component changes."""
    b, h, w = binary.shape
    flat = np.ascontiguousarray(binary, dtype=bool).reshape(b * h, w)
    if w % 8 == 0:  # 8 pixels at a time: about twice as fast as any() on bools
        rows = np.flatnonzero(np.bitwise_or.reduce(flat.view(np.uint64), axis=1))
    else:
        rows = np.flatnonzero(flat.any(axis=1))
    new_run = np.ones(len(rows), bool)
    new_run[1:] = (np.diff(rows) != 1) | (rows[1:] % h == 0)
    pos = np.arange(len(rows)) + np.cumsum(new_run)
    image = np.zeros((len(rows) + int(new_run.sum()), w), np.uint8)
    image[pos] = flat[rows]
    return _Packed(image, rows, pos)


def _label(image: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected labels by Wu's scan, sequentially: on the small packed image OpenCV's parallel
    version gives the same labels in the same wall time for twice the CPU time (measured), so
    its thread pool is set to 1 around the call and restored after. (Two Python threads
    labelling at once could restore each other's 1; only speed would suffer.)"""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return cv2.connectedComponentsWithAlgorithm(image, 8, cv2.CV_32S, cv2.CCL_SAUF)
    finally:
        cv2.setNumThreads(threads)


def _components(binary: np.ndarray, keep_labels: bool):
    """8-connected components of every image of a (B, H, W) bool batch, in one OpenCV call.

    Returns image index, area, exact coordinate sums (y, x) of each component in raster label
    order, the packed rows, and the (B, H, W) label maps (numbered from 1 within each image) if
    asked."""
    b, h, w = binary.shape
    packed = _pack_rows(binary)
    empty = np.zeros(0, np.int64)
    if not len(packed.rows):
        labels = np.zeros(binary.shape, np.int32) if keep_labels else None
        return empty, empty, empty, empty, packed, labels
    # Wu's scan (SAUF): labels in raster order of each component's first pixel, as skimage.
    # OpenCV's own stats pass visits every pixel and is slow: gather the few foreground ones.
    n, lab = _label(packed.image)
    idx = np.flatnonzero(packed.image)
    pix_label = lab.ravel()[idx]
    row_of = np.zeros(len(packed.image), np.int64)
    row_of[packed.pos] = packed.rows
    pix_row = row_of[idx // w]  # global row b * H + y of every foreground pixel
    area = np.bincount(pix_label, minlength=n)[1:].astype(np.int64)
    # every pixel of a component is in one image: the mean of its image index is exact
    image = (np.bincount(pix_label, pix_row // h, minlength=n)[1:] // area).astype(np.int64)
    sum_y = np.bincount(pix_label, pix_row % h, minlength=n)[1:].astype(np.int64)  # exact
    sum_x = np.bincount(pix_label, idx % w, minlength=n)[1:].astype(np.int64)
    local = None
    if keep_labels:
        full = np.zeros((b * h, w), np.int32)
        full[packed.rows] = lab[packed.pos]
        full = full.reshape(b, h, w)
        first = np.searchsorted(image, np.arange(b))  # labels before each image's first
        local = np.where(full > 0, full - first[:, None, None], 0).astype(np.int32)
    return image, area, sum_y, sum_x, packed, local


def _close(gy, gx, ga, py, px, pa) -> np.ndarray:
    """distance(centroid g, centroid p) < 3 for arrays of pairs, decided exactly."""
    dy = gy / ga - py / pa
    dx = gx / ga - px / pa
    d2 = dy * dy + dx * dx
    limit = MATCH_DISTANCE * MATCH_DISTANCE
    close = d2 < limit
    tie = np.flatnonzero(np.abs(d2 - limit) < 1e-6)
    for i in tie.tolist():  # rare: redo in Python integers (exact rational comparison)
        a, b = int(ga[i]), int(pa[i])
        ny = int(gy[i]) * b - int(py[i]) * a
        nx = int(gx[i]) * b - int(px[i]) * a
        close[i] = ny * ny + nx * nx < limit * (a * b) ** 2
    return close


def match_batch(pred: np.ndarray, mask: np.ndarray, keep_labels: bool = False) -> Matching:
    """Label pred and mask ((B, H, W) bool) and match components greedily (module docstring)."""
    b = pred.shape[0]
    g_img, g_area, g_sy, g_sx, g_rows, g_lab = _components(mask, keep_labels)
    p_img, p_area, p_sy, p_sx, p_rows, p_lab = _components(pred, keep_labels)
    gt_hit = np.zeros(len(g_img), bool)
    pred_matched = np.zeros(len(p_img), bool)
    if len(g_img) and len(p_img):
        # candidate pairs: every (gt, pred) of the same image, in (gt, pred) label order
        p_count = np.bincount(p_img, minlength=b)
        p_start = np.concatenate([[0], np.cumsum(p_count)[:-1]])
        per_gt = p_count[g_img]
        g = np.repeat(np.arange(len(g_img)), per_gt)
        offset = np.arange(len(g)) - np.repeat(np.cumsum(per_gt) - per_gt, per_gt)
        p = p_start[g_img[g]] + offset
        ok = _close(g_sy[g], g_sx[g], g_area[g], p_sy[p], p_sx[p], p_area[p])
        used: set[int] = set()
        # greedy: pairs come in (gt, pred) label order, so the first free candidate wins
        for gi, pi in zip(g[ok].tolist(), p[ok].tolist(), strict=True):
            if gt_hit[gi] or pi in used:
                continue
            gt_hit[gi] = True
            used.add(pi)
        pred_matched[list(used)] = True
    return Matching(g_img, g_area, gt_hit, p_img, p_area, pred_matched, g_lab, p_lab, p_rows.rows)


def _batch_counts(pred: np.ndarray, mask: np.ndarray, sizes) -> dict:
    """Per-image integer counts of one batch ((B,) arrays). Pixel counts come from component
    areas and from the packed rows only, never from full-image passes."""
    b, h, w = pred.shape
    if sizes is not None:
        sizes = _check_sizes(pred.shape, sizes)
        pixels = sizes[:, 0] * sizes[:, 1]
        if (pixels != h * w).any():  # clear the padding of a copy
            pred, mask = pred.copy(), mask.copy()
            for i, (sh, sw) in enumerate(sizes.tolist()):
                pred[i, sh:], pred[i, :, sw:], mask[i, sh:], mask[i, :, sw:] = 0, 0, 0, 0
    else:
        pixels = np.full(b, h * w, np.int64)
    m = match_batch(pred, mask)
    rows = m.pred_rows  # intersections lie in rows holding a prediction
    row_inter = np.count_nonzero(
        pred.reshape(b * h, w)[rows] & mask.reshape(b * h, w)[rows], axis=1
    )
    inter = np.bincount(rows // h, row_inter, minlength=b).astype(np.int64)
    pred_pixels = np.bincount(m.pred_image, m.pred_area, minlength=b).astype(np.int64)
    gt_pixels = np.bincount(m.gt_image, m.gt_area, minlength=b).astype(np.int64)
    matched_px = np.bincount(
        m.pred_image[m.pred_matched], m.pred_area[m.pred_matched], minlength=b
    ).astype(np.int64)
    # legacy: drop every component whose area equals a matched component's area (same image)
    key = m.pred_image * (h * w + 1) + m.pred_area
    kept = ~np.isin(key, key[m.pred_matched])
    legacy_false = np.bincount(m.pred_image[kept], m.pred_area[kept], minlength=b)
    return {
        "pixels": pixels.astype(np.int64),
        "inter": inter,
        "union": pred_pixels + gt_pixels - inter,
        "pred_pixels": pred_pixels,
        "gt_pixels": gt_pixels,
        "targets": np.bincount(m.gt_image, minlength=b).astype(np.int64),
        "hits": np.bincount(m.gt_image[m.gt_hit], minlength=b).astype(np.int64),
        "false_pixels": pred_pixels - matched_px,
        "legacy_false_pixels": legacy_false.astype(np.int64),
    }


class Metrics:
    """Accumulate IoU, nIoU, Pd and Fa over batches; `compute` reduces once.

    update(probs, masks, sizes=None): probs (B, H, W) floats in [0, 1] (numpy or torch; a pixel
    is target when prob > threshold), masks (B, H, W) 0/1, sizes (B, 2) real (h, w) or None.
    """

    def __init__(self, threshold: float = 0.5, legacy_fa: bool = False):
        self.threshold = float(threshold)
        self.legacy_fa = bool(legacy_fa)
        self.reset()

    def reset(self) -> None:
        self._parts: list[dict] = []

    def update(self, probs, masks, sizes=None) -> None:
        probs = as_batch(probs, "probs")
        masks = as_batch(masks, "masks")
        if probs.shape != masks.shape:
            raise ValueError(f"probs {probs.shape} and masks {masks.shape} differ in shape")
        pred = probs > self.threshold
        self.update_binary(pred, masks != 0, sizes)

    def update_binary(self, pred: np.ndarray, mask: np.ndarray, sizes=None) -> None:
        """As `update`, for already thresholded (B, H, W) predictions (bool, or nonzero = 1)."""
        pred, mask = as_batch(pred, "pred"), as_batch(mask, "mask")
        pred = pred if pred.dtype == bool else pred != 0
        mask = mask if mask.dtype == bool else mask != 0
        if pred.shape != mask.shape:
            raise ValueError(f"predictions {pred.shape} and masks {mask.shape} differ in shape")
        self._parts.append(_batch_counts(pred, mask, sizes))

    def merge(self, other: Metrics) -> None:
        """Add the images another accumulator (same definitions) has seen."""
        if (other.threshold, other.legacy_fa) != (self.threshold, self.legacy_fa):
            raise ValueError("cannot merge metrics of another threshold or Fa definition")
        self._parts.extend(other._parts)

    def _column(self, key: str) -> np.ndarray:
        if not self._parts:
            return np.zeros(0, np.int64)
        return np.concatenate([p[key] for p in self._parts])

    def per_image(self) -> list[ImageScore]:
        """Scores of every image seen, in update order."""
        inter, union = self._column("inter"), self._column("union")
        targets, hits = self._column("targets"), self._column("hits")
        false = self._column("false_pixels")
        return [
            ImageScore(_div(i, u), int(h), int(t - h), int(f), int(t))
            for i, u, t, h, f in zip(inter, union, targets, hits, false, strict=True)
        ]

    _keys = COUNT_KEYS[1:-1]  # those kept per image; images and legacy_pixels are derived

    def counts(self) -> dict:
        c = {k: int(self._column(k).sum()) for k in COUNT_KEYS if k in self._keys}
        c["images"] = len(self._column("pixels"))
        c["legacy_pixels"] = LEGACY_PIXELS_PER_IMAGE * c["images"]
        return c

    def compute(self) -> dict:
        """Metrics as fractions (not scaled), plus the integer counts they come from. Undefined
        ones are None: iou and niou when nothing is a target or predicted, pd and recall
        without targets, precision without predictions."""
        c = self.counts()
        inter, union = self._column("inter"), self._column("union")
        ious = [_div(i, u) or 0.0 for i, u in zip(inter, union, strict=True)]  # empty: 0
        fa = _div(c["false_pixels"], c["pixels"])
        # the legacy Fa divides by 256*256 per image: meaningful only when every image is that
        legacy_ok = bool((self._column("pixels") == LEGACY_PIXELS_PER_IMAGE).all())
        fa_legacy = _div(c["legacy_false_pixels"], c["legacy_pixels"]) if legacy_ok else None
        if self.legacy_fa and not legacy_ok:
            raise UserError(
                "--legacy-fa: DNA-Net's legacy Fa assumes 256 x 256 images and these have other "
                "sizes; drop --legacy-fa (the corrected Fa is defined for any size)"
            )
        return {
            "iou": _div(c["inter"], c["union"]),
            "niou": _div(math.fsum(ious), len(ious)) if c["union"] else None,
            "pd": _div(c["hits"], c["targets"]),
            "fa": fa_legacy if self.legacy_fa else fa,
            "fa_corrected": fa,
            "fa_legacy": fa_legacy,
            "precision": _div(c["inter"], c["pred_pixels"]),
            "recall": _div(c["inter"], c["gt_pixels"]),
            "fa_definition": FA_LEGACY if self.legacy_fa else FA_CORRECTED,
            "threshold": self.threshold,
            **c,
        }


def score_image(prob, mask, threshold: float = 0.5) -> ImageScore:
    """Scores of a single (H, W) probability map (or 0/1 prediction) against its mask."""
    m = Metrics(threshold)
    m.update(np.asarray(prob, np.float32)[None], np.asarray(mask)[None])
    return m.per_image()[0]


class RocSweep:
    """Pd, Fa, IoU, pixel precision and recall at several thresholds (DNA-Net's ROC: 0..1 by
    0.1 on the sigmoid, plus the operating threshold)."""

    def __init__(self, thresholds=DEFAULT_THRESHOLDS, extra: float | None = 0.5):
        ts = set(float(t) for t in thresholds)
        if extra is not None:
            ts.add(float(extra))
        self.thresholds = sorted(ts)
        self._metrics = [Metrics(t) for t in self.thresholds]

    def reset(self) -> None:
        for m in self._metrics:
            m.reset()

    def update(self, probs, masks, sizes=None) -> None:
        probs = as_batch(probs, "probs")
        masks = as_batch(masks, "masks") != 0
        for m in self._metrics:
            m.update_binary(probs > m.threshold, masks, sizes)

    def compute(self) -> list[dict]:
        """One row per threshold (fractions, not scaled)."""
        rows = []
        for m in self._metrics:
            r = m.compute()
            rows.append(
                {
                    "threshold": m.threshold,
                    "pd": r["pd"],
                    "fa": r["fa_corrected"],
                    "fa_legacy": r["fa_legacy"],
                    "iou": r["iou"],
                    "precision": r["precision"],
                    "recall": r["recall"],
                }
            )
        return rows

    def write_csv(self, path) -> None:
        import csv

        rows = self.compute()
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
