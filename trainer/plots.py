"""Figures of an evaluation: the Pd-Fa curve (matplotlib, Agg) and overlay PNGs (OpenCV).

Overlay legend (BGR colours, docs/evaluation.md):
  green    predicted pixels of a hit (a predicted component matched to a target)
  red      a missed target (ground-truth component no prediction matched)
  magenta  a false alarm (predicted component matched to no target)
  yellow   outline of every ground-truth target
  cyan     predicted pixels when there is no ground truth (`sirst5k predict`)
Small images are enlarged (nearest neighbour) so that 3-pixel targets stay visible.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from trainer.metrics import match_batch

GREEN = (0, 200, 0)  # BGR
RED = (0, 0, 255)
MAGENTA = (255, 0, 255)
YELLOW = (0, 255, 255)
CYAN = (255, 255, 0)
MIN_SIDE = 512  # overlays are enlarged by an integer factor up to about this size


def _scale(h: int, w: int) -> int:
    return max(1, MIN_SIDE // max(h, w, 1))


def _paint(canvas: np.ndarray, where: np.ndarray, colour, alpha: float = 0.7) -> None:
    canvas[where] = (alpha * np.array(colour) + (1 - alpha) * canvas[where]).astype(np.uint8)


def overlay(image: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """BGR uint8 overlay of a grey (H, W) image, a 0/1 prediction and (optionally) its mask.

    Without a mask, predicted pixels are cyan. With one, matched predictions are green, missed
    targets red, false alarms magenta, target outlines yellow, and a legend strip is appended.
    """
    s = _scale(*image.shape)

    def big(a: np.ndarray) -> np.ndarray:  # nearest-neighbour enlargement by s
        return np.repeat(np.repeat(a, s, axis=0), s, axis=1) if s > 1 else a

    out = cv2.cvtColor(big(image), cv2.COLOR_GRAY2BGR)
    pred = pred.astype(bool)
    if mask is None:
        _paint(out, big(pred), CYAN)
        return out
    mask = mask.astype(bool)
    m = match_batch(pred[None], mask[None], keep_labels=True)
    hit_ids = np.flatnonzero(m.pred_matched) + 1
    miss_ids = np.flatnonzero(~m.gt_hit) + 1
    hit = np.isin(m.pred_labels[0], hit_ids)
    _paint(out, big(hit), GREEN)
    _paint(out, big(pred & ~hit), MAGENTA)
    _paint(out, big(np.isin(m.gt_labels[0], miss_ids)), RED)
    contours, _ = cv2.findContours(
        big(mask.astype(np.uint8)), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(out, contours, -1, YELLOW, 1)
    return np.vstack([out, legend(out.shape[1])])


LEGEND = (("hit", GREEN), ("miss", RED), ("false alarm", MAGENTA), ("target outline", YELLOW))


def legend(width: int, height: int = 20) -> np.ndarray:
    """A black strip naming the overlay colours, appended under scored overlays."""
    strip = np.zeros((height, width, 3), np.uint8)
    x = 4
    for text, colour in LEGEND:
        cv2.putText(strip, text, (x, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
        x += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] + 12
    return strip


def write_png(path: str | Path, array: np.ndarray) -> None:
    """cv2.imwrite that works with any path (encode, then write bytes)."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf.tofile(str(path))


def pd_fa_curve(rows: list[dict], path: str | Path, threshold: float, title: str) -> None:
    """Pd (x1e2) against corrected Fa (x1e6) over the sweep's thresholds, and pixel
    precision/recall; the operating threshold is circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # thresholds 0 (every pixel is target) and 1 (none is) are trivial corners that squash the
    # informative part of the curve; roc.csv keeps them
    inner = [r for r in rows if 0 < r["threshold"] < 1 or r["threshold"] == threshold]
    rows = inner if len(inner) >= 2 else rows
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    fa = [r["fa"] * 1e6 for r in rows]
    pd = [r["pd"] * 1e2 for r in rows]
    ax1.plot(fa, pd, "o-", ms=4)
    log_x = min(fa) > 0 and max(fa) / min(fa) > 10  # log only where Fa spans over a decade
    if log_x:
        ax1.set_xscale("log")
    xs = np.log10(fa) if log_x else np.asarray(fa, float)

    def frac(v: np.ndarray) -> np.ndarray:  # positions as fractions of the axis span
        return (v - v.min()) / ((v.max() - v.min()) or 1.0)

    fx, fy = frac(xs), frac(np.asarray(pd, float))
    shown: list[tuple[float, float]] = []  # label a point only where no label sits near it
    for r, x, y, px, py in zip(rows, fa, pd, fx, fy, strict=True):
        if all(abs(px - qx) > 0.06 or abs(py - qy) > 0.06 for qx, qy in shown):
            ax1.annotate(f"{r['threshold']:g}", (x, y), textcoords="offset points", xytext=(4, -10))
            shown.append((px, py))
        if r["threshold"] == threshold:
            ax1.plot([x], [y], "o", ms=11, mfc="none", mec="red", label=f"threshold {threshold:g}")
    ax1.set_xlabel("Fa (x1e-6, corrected)")
    ax1.set_ylabel("Pd (%)")
    ax1.set_title("Pd vs Fa")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower right")
    ax2.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "s-", ms=4)
    ax2.set_xlabel("pixel recall")
    ax2.set_ylabel("pixel precision")
    ax2.set_xlim(0, 1.02)
    ax2.set_ylim(0, 1.02)
    ax2.set_title("precision vs recall")
    ax2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(rows: list[dict], path: str | Path, best_epoch: int, title: str) -> None:
    """Loss (total, main, L_Neg), validation IoU/nIoU/Pd (%) with Fa (x1e-6, right axis), and
    each head's mean probability and positive fraction on the training batches, per epoch,
    from the rows of a run's log.csv; the best epoch is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    epochs = [r["epoch"] for r in rows]
    for key, style in (("loss", "k-"), ("loss_main", "b--"), ("loss_neg", "r:")):
        ax1.plot(epochs, [r.get(key, np.nan) for r in rows], style, label=key)
    ax1.set_xlabel("epoch")
    ax1.set_title("training loss")
    ax1.grid(alpha=0.3)
    ax1.legend()
    val = [r for r in rows if "val_iou" in r]
    if val:
        ve = [r["epoch"] for r in val]
        for key, style, name in (("val_iou", "o-", "IoU"), ("val_niou", "s--", "nIoU"),
                                 ("val_pd", "^:", "Pd")):  # fmt: skip
            ax2.plot(ve, [100 * r[key] for r in val], style, ms=3, label=name)
        ax2.set_ylabel("%")
        fa = ax2.twinx()
        fa.plot(ve, [1e6 * r["val_fa"] for r in val], "m-", alpha=0.5, label="Fa")
        fa.set_ylabel("Fa (x1e-6)", color="m")
        if best_epoch in ve:
            ax2.axvline(best_epoch, color="g", alpha=0.5, label=f"best (epoch {best_epoch})")
        ax2.legend(loc="lower right", fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no validation", ha="center", transform=ax2.transAxes)
    ax2.set_xlabel("epoch")
    ax2.set_title("validation")
    ax2.grid(alpha=0.3)
    heads = [i for i in range(4) if any(f"p_mean_{i}" in r for r in rows)]
    for i, color in zip(heads, "kbgr", strict=False):
        label = "full" if i == 0 else f"1/{2**i}"
        ax3.plot(epochs, [r.get(f"p_mean_{i}", np.nan) for r in rows], "-", color=color,
                 label=f"mean p, {label}")  # fmt: skip
        ax3.plot(epochs, [r.get(f"pos_frac_{i}", np.nan) for r in rows], ":", color=color,
                 label=f"p > 0.5, {label}")  # fmt: skip
    if heads:
        ax3.set_yscale("log")
        ax3.legend(fontsize=7, ncol=2)
    ax3.set_xlabel("epoch")
    ax3.set_title("training heads (a collapse falls to 0)")
    ax3.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # path may be a .partial file
    plt.close(fig)
