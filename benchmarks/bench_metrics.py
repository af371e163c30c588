"""Benchmark sirst5k.metrics against a straightforward per-image reference (`make bench-metrics`).

On the test masks of a source dataset (NUDT-SIRST: 664 images), predictions are derived from
the masks deterministically so that every branch of the definitions is exercised: dilated,
shifted by 1 to 3 px (around the 3 px matching radius), targets removed, false blobs added
(some of equal area: the legacy-Fa case). The reference below is written the way DNA-Net's code
computes the metrics: skimage.measure.label(connectivity=2) + regionprops centroids + Python
loops, image by image. Both must give identical counts and metrics; we report the time of each
(decoding the PNGs is outside the timed region) and the speedup (target: at least 20x).

    python benchmarks/bench_metrics.py --source ../shared/data/NUDT-SIRST
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sirst5k.io import load_split, read_pair
from sirst5k.metrics import Metrics


def derive_prediction(mask: np.ndarray, i: int) -> np.ndarray:
    """A deterministic imperfect prediction for image i."""
    m = mask.astype(np.uint8)
    kind = i % 6
    if kind == 0:  # dilated: hits, extra pixels inside matched components
        p = cv2.dilate(m, np.ones((3, 3), np.uint8))
    elif kind in (1, 2):  # shifted by 1..3 px: some matches fail at exactly 3 px
        p = np.roll(m, (i % 4, (i // 4) % 3), axis=(0, 1))
    elif kind == 3:  # every other target removed
        n, lab = cv2.connectedComponents(m, connectivity=8)
        p = np.isin(lab, np.arange(1, n, 2)).astype(np.uint8)
    else:  # false blobs added: two of equal area (legacy Fa drops them if a match shares it)
        p = m.copy()
        h, w = m.shape
        for j, side in enumerate((2, 2, 3, 1)):
            y, x = (i * 37 + j * 61) % (h - side), (i * 91 + j * 113) % (w - side)
            p[y : y + side, x : x + side] = 1
        if kind == 5:
            p = cv2.erode(p, np.ones((2, 2), np.uint8)) | (m & (i % 2))
    return p.astype(bool)


def reference(preds: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    """DNA-Net-style per-image loops with skimage; corrected and legacy Fa."""
    from skimage.measure import label, regionprops

    c = dict(inter=0, union=0, targets=0, hits=0, false_pixels=0, legacy_false_pixels=0)
    c["pixels"] = 0
    ious = []
    for p, g in zip(preds, masks, strict=True):
        inter, union = int(np.sum(p & g)), int(np.sum(p | g))
        ious.append(inter / union if union else 0.0)
        c["inter"] += inter
        c["union"] += union
        c["pixels"] += p.size
        coord_image = regionprops(label(p, connectivity=2))
        coord_label = regionprops(label(g, connectivity=2))
        total_areas = [r.area for r in coord_image]
        c["targets"] += len(coord_label)
        match_areas = []
        for r in coord_label:
            centroid_label = np.array(r.centroid)
            for m in range(len(coord_image)):
                distance = np.linalg.norm(np.array(coord_image[m].centroid) - centroid_label)
                if distance < 3:
                    match_areas.append(coord_image[m].area)
                    del coord_image[m]
                    break
        c["hits"] += len(match_areas)
        c["false_pixels"] += int(p.sum()) - int(sum(match_areas))
        c["legacy_false_pixels"] += int(sum(a for a in total_areas if a not in match_areas))
    n = len(preds)
    return {
        "iou": c["inter"] / c["union"],
        "niou": math.fsum(ious) / n,
        "pd": c["hits"] / c["targets"],
        "fa_corrected": c["false_pixels"] / c["pixels"],
        "fa_legacy": c["legacy_false_pixels"] / (256 * 256 * n),
        "counts": c,
    }


def ours(preds: np.ndarray, masks: np.ndarray, batch: int) -> dict:
    m = Metrics(0.5)
    for i in range(0, len(preds), batch):
        m.update_binary(preds[i : i + batch], masks[i : i + batch])
    r = m.compute()
    keys = ("inter", "union", "targets", "hits", "false_pixels", "legacy_false_pixels", "pixels")
    out = {k: r[k] for k in ("iou", "niou", "pd", "fa_corrected", "fa_legacy")}
    out["counts"] = {k: r[k] for k in keys}
    return out


def best_time(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best process CPU time over `repeat` runs (the machine is shared:
    CPU time is the steadier figure), and the result."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="../shared/data/NUDT-SIRST", help="dataset folder")
    ap.add_argument("--out", default="benchmarks/out/bench_metrics.json", help="JSON report")
    ap.add_argument("--batch", type=int, default=32, help="images per Metrics.update")
    ap.add_argument("--repeat", type=int, default=5, help="timing repeats (best is kept)")
    args = ap.parse_args()

    pairs = load_split(args.source, "test")
    masks = [read_pair(p)[1].astype(bool) for p in pairs]  # decoding: not timed
    shapes = {m.shape for m in masks}
    if len(shapes) != 1:
        raise SystemExit(f"{args.source}: test masks of several sizes {shapes}; need one size")
    preds = [derive_prediction(m, i) for i, m in enumerate(masks)]
    pred_arr, mask_arr = np.stack(preds), np.stack(masks)

    t_ours, c_ours, r_ours = best_time(lambda: ours(pred_arr, mask_arr, args.batch), args.repeat)
    t_ref, c_ref, r_ref = best_time(lambda: reference(preds, masks), max(1, args.repeat // 3))
    identical = r_ours == r_ref
    n = len(masks)
    report = {
        "command": "python benchmarks/bench_metrics.py " + " ".join(sys.argv[1:]),
        "source": str(args.source),
        "images": n,
        "image_size": list(shapes.pop()),
        "batch": args.batch,
        "ours_s": t_ours,
        "reference_s": t_ref,
        "ours_ms_per_image": 1e3 * t_ours / n,
        "reference_ms_per_image": 1e3 * t_ref / n,
        "speedup": t_ref / t_ours,
        "ours_cpu_s": c_ours,
        "reference_cpu_s": c_ref,
        "speedup_cpu": c_ref / c_ours,
        "load_average": list(os.getloadavg()),
        "target_speedup": 20,
        "identical": identical,
        "ours": r_ours,
        "reference": r_ref,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "cpus": os.cpu_count(),
            "opencv_threads": cv2.getNumThreads(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    c = r_ours["counts"]
    print(f"{n} masks from {args.source}; predictions derived deterministically")
    print(f"  targets {c['targets']}, hits {c['hits']}, false pixels {c['false_pixels']} "
          f"(legacy {c['legacy_false_pixels']})")  # fmt: skip
    print(f"{'implementation':<34}{'wall s':>10}{'ms/image':>10}{'CPU s':>10}")
    print(f"{'sirst5k.metrics (batch ' + str(args.batch) + ')':<34}{t_ours:>10.3f}"
          f"{1e3 * t_ours / n:>10.3f}{c_ours:>10.3f}")  # fmt: skip
    print(f"{'skimage regionprops reference':<34}{t_ref:>10.3f}{1e3 * t_ref / n:>10.3f}"
          f"{c_ref:>10.3f}")  # fmt: skip
    print(f"speedup {t_ref / t_ours:.1f}x wall, {c_ref / c_ours:.1f}x CPU (target 20x); "
          f"identical numbers: {identical}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"wrote {out}")
    if not identical:
        print("MISMATCH:", json.dumps({"ours": r_ours, "reference": r_ref}, indent=1))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
