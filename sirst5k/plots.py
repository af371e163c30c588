"""Figures of an evaluation: the Pd-Fa curve (matplotlib, Agg) and overlay PNGs (OpenCV).

Scored overlays (`eval`, the worst images), docs/evaluation.md: a title line (image name, IoU,
targets, hits, misses, false pixels), then three panels side by side, image | ground truth |
prediction, then zoomed insets around every miss and false alarm (up to 8), so that a 3-pixel
target on a 1024 x 1280 frame can be seen. Colours are the Okabe-Ito palette (colour-blind
safe):
  blue     predicted pixels of a hit (a predicted component matched to a target)
  orange   a false alarm (predicted component matched to no target)
  yellow   a missed target: outlined, with a ring around it, so its pixels stay visible
  sky      ground-truth targets (the middle panel, and the outlines in the insets)
  magenta  predicted pixels when there is no ground truth (`sirst5k predict`)
Panels are scaled to about 512 px on their long side (enlarged by an integer factor, nearest
neighbour, or shrunk by area averaging for large frames).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sirst5k.files import atomic_path
from sirst5k.metrics import match_batch

BLUE = (178, 114, 0)  # BGR of Okabe-Ito blue (0, 114, 178)
ORANGE = (0, 159, 230)
YELLOW = (66, 228, 240)
SKY = (233, 180, 86)
MAGENTA = (167, 121, 204)  # reddish purple
WHITE = (255, 255, 255)
PANEL = 512  # long side of each panel, px
INSET, ZOOM = 24, 6  # insets: a 24 x 24 px window around the component, enlarged 6 times
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _fit(image: np.ndarray, side: int = PANEL) -> tuple[np.ndarray, float]:
    """The image scaled so that its long side is about `side`; returns (image, factor)."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        f = max(1, side // max(h, w, 1))
        return np.repeat(np.repeat(image, f, axis=0), f, axis=1), float(f)
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), f


def _paint(canvas: np.ndarray, where: np.ndarray, colour, alpha: float = 0.75) -> None:
    canvas[where] = (alpha * np.array(colour) + (1 - alpha) * canvas[where]).astype(np.uint8)


def _bgr(grey: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _outline(canvas: np.ndarray, region: np.ndarray, colour, width: int = 1) -> None:
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(canvas, contours, -1, colour, width)


def _label_area(canvas: np.ndarray, region: np.ndarray, colour, fill: bool) -> None:
    """Fill (hits, false alarms) or outline (misses) a region already at the canvas' scale."""
    if fill:
        _paint(canvas, region, colour)
    else:
        _outline(canvas, region, colour, 2)


def _scaled(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean map resized to shape (h, w), keeping every true pixel visible."""
    h, w = shape
    if a.shape == (h, w):
        return a
    if h >= a.shape[0]:  # enlarged by an integer factor
        f = h // a.shape[0]
        return np.repeat(np.repeat(a, f, axis=0), f, axis=1)
    return cv2.resize(a.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA) > 0


def overlay(image: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """BGR uint8 figure of a grey (H, W) image and a 0/1 prediction.

    Without a mask (`predict`): the image with the predicted pixels in magenta. With one
    (`eval`): title line, image | ground truth | prediction panels, insets, legend (module
    docstring).
    """
    pred = pred.astype(bool)
    if mask is None:
        big, _ = _fit(image)
        out = _bgr(big)
        _paint(out, _scaled(pred, big.shape), MAGENTA)
        return out
    mask = mask.astype(bool)
    m = match_batch(pred[None], mask[None], keep_labels=True)
    gl, pl = m.gt_labels[0], m.pred_labels[0]
    hit = np.isin(pl, np.flatnonzero(m.pred_matched) + 1)
    false = pred & ~hit
    miss = np.isin(gl, np.flatnonzero(~m.gt_hit) + 1)
    big, f = _fit(image)
    shape = big.shape
    raw = _bgr(big)
    truth = raw.copy()
    _paint(truth, _scaled(mask, shape), SKY)
    guess = raw.copy()
    _label_area(guess, _scaled(hit, shape), BLUE, True)
    _label_area(guess, _scaled(false, shape), ORANGE, True)
    _label_area(guess, _scaled(miss, shape), YELLOW, False)
    # a ring around each miss and each false alarm: visible at any scale
    rings = [(gl == lab, YELLOW) for lab in np.flatnonzero(~m.gt_hit) + 1]
    rings += [(pl == lab, ORANGE) for lab in np.flatnonzero(~m.pred_matched) + 1]
    for region, colour in rings:
        ys, xs = np.nonzero(region)
        cy, cx = (ys.mean() + 0.5) * f, (xs.mean() + 0.5) * f
        cv2.circle(guess, (int(cx), int(cy)), int(max(10, 3 * f)), colour, 1, cv2.LINE_AA)
    gap = np.zeros((shape[0], 6, 3), np.uint8)
    panels = np.hstack([raw, gap, truth, gap, guess])
    inter, union = int((pred & mask).sum()), int((pred | mask).sum())
    iou = inter / union if union else 1.0
    line = (
        f"IoU {iou:.2f} | targets {int(m.gt_hit.size)}, hits {int(m.gt_hit.sum())}, "
        f"misses {int((~m.gt_hit).sum())} | false pixels {int(false.sum())}"
    )
    rows = [_text_strip(panels.shape[1], line), panels]
    rows += [_text_strip(panels.shape[1], "image  |  ground truth  |  prediction")]
    insets = _insets(image, mask, hit, false, miss, gl, pl, m)
    if insets is not None:
        rows.append(_pad_to(insets, panels.shape[1]))
    rows.append(legend(panels.shape[1]))
    return np.vstack([_pad_to(r, panels.shape[1]) for r in rows])


def _insets(image, mask, hit, false, miss, gl, pl, m, most: int = 8) -> np.ndarray | None:
    """Zoomed windows around every miss, then every false alarm (up to `most`), in rows."""
    spots = [("miss", gl == lab) for lab in np.flatnonzero(~m.gt_hit) + 1]
    spots += [("false alarm", pl == lab) for lab in np.flatnonzero(~m.pred_matched) + 1]
    if not spots:
        return None
    tiles = []
    h, w = image.shape
    for name, region in spots[:most]:
        ys, xs = np.nonzero(region)
        cy, cx = int(ys.mean()), int(xs.mean())
        y0 = min(max(cy - INSET // 2, 0), max(h - INSET, 0))
        x0 = min(max(cx - INSET // 2, 0), max(w - INSET, 0))
        win = (slice(y0, y0 + INSET), slice(x0, x0 + INSET))

        def zoom(a: np.ndarray, win=win) -> np.ndarray:
            return np.repeat(np.repeat(a[win], ZOOM, axis=0), ZOOM, axis=1)

        tile = _bgr(zoom(image))
        _label_area(tile, zoom(hit), BLUE, True)
        _label_area(tile, zoom(false), ORANGE, True)
        _outline(tile, zoom(mask), SKY, 1)
        _label_area(tile, zoom(miss), YELLOW, False)
        label = f"{name} ({cx},{cy})"
        tile = np.vstack([_text_strip(tile.shape[1], label, 0.35), tile])
        tiles.append(np.pad(tile, ((0, 4), (0, 4), (0, 0))))
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    return np.hstack(tiles)


def _text_strip(width: int, text: str, scale: float = 0.45, height: int = 22) -> np.ndarray:
    strip = np.zeros((height, width, 3), np.uint8)
    cv2.putText(strip, text, (4, height - 7), FONT, scale, WHITE, 1, cv2.LINE_AA)
    return strip


def _pad_to(a: np.ndarray, width: int) -> np.ndarray:
    """Pad (or, for a too wide row of insets, cut) a BGR row to `width`."""
    if a.shape[1] >= width:
        return a[:, :width]
    return np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)))


LEGEND = (("hit", BLUE), ("false alarm", ORANGE), ("miss (outlined)", YELLOW), ("target", SKY))


def legend(width: int, height: int = 20) -> np.ndarray:
    """A black strip naming the overlay colours, appended under scored overlays."""
    strip = np.zeros((height, width, 3), np.uint8)
    x = 4
    for text, colour in LEGEND:
        cv2.putText(strip, text, (x, height - 6), FONT, 0.4, colour, 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, FONT, 0.4, 1)[0][0] + 12
    return strip


TILE = 256  # px of each gallery tile's long side


def sample_tile(title: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A gallery tile: the title, the image with its mask outlined, and beside it a zoomed
    window on its first target (or a note that it holds none)."""
    big, f = _fit(image, TILE)
    panel = _bgr(big)
    _outline(panel, _scaled(mask.astype(bool), big.shape), SKY, 1)
    ys, xs = np.nonzero(mask)
    side = INSET * ZOOM
    if len(ys):
        h, w = image.shape
        y0 = min(max(int(ys[0]) - INSET // 2, 0), max(h - INSET, 0))
        x0 = min(max(int(xs[0]) - INSET // 2, 0), max(w - INSET, 0))
        win = (slice(y0, y0 + INSET), slice(x0, x0 + INSET))
        zoom = _bgr(np.repeat(np.repeat(image[win], ZOOM, axis=0), ZOOM, axis=1))
        _outline(zoom, np.repeat(np.repeat(mask[win], ZOOM, axis=0), ZOOM, axis=1), SKY, 1)
        cv2.rectangle(panel, (int(x0 * f), int(y0 * f)),
                      (int((x0 + INSET) * f), int((y0 + INSET) * f)), YELLOW, 1)  # fmt: skip
    else:
        zoom = np.zeros((side, side, 3), np.uint8)
        cv2.putText(zoom, "no target", (8, side // 2), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    zoom = np.pad(zoom, ((0, max(0, side - zoom.shape[0])), (0, max(0, side - zoom.shape[1])),
                         (0, 0)))  # fmt: skip
    height = max(panel.shape[0], zoom.shape[0])
    cells = [np.pad(a, ((0, height - a.shape[0]), (0, 4), (0, 0))) for a in (panel, zoom)]
    body = np.hstack(cells)
    return np.vstack([_text_strip(body.shape[1], title, 0.4), body])


def gallery(tiles: list[np.ndarray], columns: int = 3) -> np.ndarray:
    """Tiles (sample_tile) in rows of `columns`, padded to a common size."""
    h = max(t.shape[0] for t in tiles) + 6
    w = max(t.shape[1] for t in tiles) + 6
    padded = [np.pad(t, ((0, h - t.shape[0]), (0, w - t.shape[1]), (0, 0))) for t in tiles]
    padded += [np.zeros((h, w, 3), np.uint8)] * (-len(padded) % columns)
    rows = [np.hstack(padded[i : i + columns]) for i in range(0, len(padded), columns)]
    return np.vstack(rows)


def _times(v: float | None, scale: float) -> float:
    """v * scale for a plot; nan (not drawn) where a metric is undefined (None)."""
    return np.nan if v is None else v * scale


def write_png(path: str | Path, array: np.ndarray) -> None:
    """cv2.imwrite that works with any path, atomically (encode, write beside, rename)."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    with atomic_path(path, force=True) as tmp:
        tmp.write_bytes(buf.tobytes())  # a full disk: OSError ENOSPC (tofile does not say)


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
    pd = [_times(r["pd"], 1e2) for r in rows]  # undefined without targets: not drawn
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
    recall, precision = ([_times(r[k], 1) for r in rows] for k in ("recall", "precision"))
    ax2.plot(recall, precision, "s-", ms=4)
    ax2.set_xlabel("pixel recall")
    ax2.set_ylabel("pixel precision")
    ax2.set_xlim(0, 1.02)
    ax2.set_ylim(0, 1.02)
    ax2.set_title("precision vs recall")
    ax2.grid(alpha=0.3)
    ts = [r["threshold"] for r in rows]
    ax3.plot(ts, [_times(r["iou"], 1e2) for r in rows], "o-", ms=3, label="IoU")
    ax3.plot(ts, pd, "^:", ms=3, label="Pd")
    ax3.axvline(threshold, color="red", alpha=0.5, label=f"threshold {threshold:g}")
    ax3.set_xlabel("threshold on the probability")
    ax3.set_ylabel("%")
    ax3.set_title("IoU and Pd by threshold")
    ax3.grid(alpha=0.3)
    ax3.legend(loc="lower left", fontsize=8)
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
            ax2.plot(ve, [_times(r.get(key), 100) for r in val], style, ms=3, label=name)
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
