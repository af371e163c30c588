"""Where does a checkpoint lose IoU? Its test-split errors grouped by target size.

    python benchmarks/error_by_size.py RUN/best.pt [RUN2/best.pt ...] [--data DIR] [--tta]

Runs each checkpoint on the test split of --data (whole frames, attention over the whole
frame, as `sirst5k eval --tile 0 --attention-window 0`), thresholds at 0.5, and sorts each
image by the area of its largest 8-connected target into bins. Per bin: images, target
pixels, IoU (intersections and unions summed over the bin), missed target pixels (FN), false
pixels (FP), and the bin's share of the set's lost pixels (union - intersection). The set's IoU
is the eval's. Writes benchmarks/out/error_by_size.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.evaluation import open_data
from sirst5k.inference.predictors import make_predictor
from sirst5k.machine import describe_cpu

BINS = ((0, 10), (10, 30), (30, 80), (80, 200), (200, 10**9))  # px of the largest target


def largest_target(mask: np.ndarray) -> int:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def score(checkpoint: str, data: str, tta: bool) -> dict:
    images = list(open_data(data))
    predict = make_predictor(checkpoint, device="cpu", tile=0, window=0, tta=tta)
    sums = {b: dict(images=0, target_px=0, inter=0, union=0, fn=0, fp=0) for b in BINS}
    for i in range(0, len(images), 8):
        chunk = images[i : i + 8]
        for item, prob in zip(chunk, predict([e.image for e in chunk]), strict=True):
            gt, pred = item.mask > 0, prob > 0.5
            area = largest_target(gt)
            s = next(sums[b] for b in BINS if b[0] <= area < b[1])
            inter, union = int((gt & pred).sum()), int((gt | pred).sum())
            s["images"] += 1
            s["target_px"] += int(gt.sum())
            s["inter"] += inter
            s["union"] += union
            s["fn"] += int(gt.sum()) - inter
            s["fp"] += union - int(gt.sum())
    lost = sum(s["union"] - s["inter"] for s in sums.values())
    inter, union = (sum(s[k] for s in sums.values()) for k in ("inter", "union"))
    rows = []
    for (lo, hi), s in sums.items():
        rows.append(
            dict(bin=f"{lo}-{hi if hi < 10**9 else 'inf'}", **s,
                 iou=s["inter"] / s["union"] if s["union"] else None,
                 share_of_lost=(s["union"] - s["inter"]) / lost if lost else 0.0)
        )  # fmt: skip
    return dict(checkpoint=checkpoint, tta=tta, iou=inter / union, lost_px=lost, bins=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/NUDT-SIRST"))
    ap.add_argument("--tta", action="store_true", help="average the 8 flips and rotations")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/error_by_size.json"))
    args = ap.parse_args()
    results = [score(c, args.data, args.tta) for c in args.checkpoints]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(dict(data=args.data, cpu=describe_cpu(), results=results), indent=1) + "\n"
    )
    print(f"{'checkpoint':40} {'bin px':>9} {'images':>6} {'target px':>9} {'IoU':>6} "
          f"{'FN':>5} {'FP':>5} {'share':>6}")  # fmt: skip
    for r in results:
        for b in r["bins"]:
            iou = f"{100 * b['iou']:.1f}" if b["iou"] is not None else "-"
            print(f"{r['checkpoint'][-40:]:40} {b['bin']:>9} {b['images']:>6} "
                  f"{b['target_px']:>9} {iou:>6} {b['fn']:>5} {b['fp']:>5} "
                  f"{100 * b['share_of_lost']:>5.1f}%")  # fmt: skip
        print(f"{'':40} {'all':>9} {'':>6} {'':>9} {100 * r['iou']:>6.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
