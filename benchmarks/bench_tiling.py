"""How far tiled inference is from whole-frame inference for a trained model.

    python benchmarks/bench_tiling.py [--checkpoint nudt] [--source ../shared/data/NUDT-SIRST]

Builds 1024 x 1280 mosaics of 4 x 5 test images of the source (a large frame with targets),
runs the model whole, in tiles (512, 256 and 128 px, --halo of context), and whole with its
channel attention pooled over 512, 256 and 128 px cells (set_attention_window); reports the IoU
with the ground truth, the largest probability difference from the plain whole frame, the
pixels whose mask differs and their masks' IoU. The AFF U-Net's channel attention pools over
its whole input, so tiles differ from the whole frame; a network without global pooling gives
the same pixels (tests). Writes benchmarks/out/bench_tiling.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.inference.bundled import resolve
from sirst5k.inference.tiling import tiled
from sirst5k.io import load_split, read_pair
from trainer.checkpoint import load_model
from trainer.forward import predict_probs
from trainer.nets.aff_unet import set_attention_window


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="nudt")
    ap.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "NUDT-SIRST"))
    ap.add_argument("--mosaics", type=int, default=6, help="of 20 images each")
    ap.add_argument("--halo", type=int, default=128)
    ap.add_argument("--split", help="id list of the images to tile (default: the test split)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_tiling.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(resolve(args.checkpoint))
    paths = load_split(Path(args.source), "test", args.split, alone=True)
    pairs = [read_pair(p) for p in paths[: 20 * args.mosaics]]

    def mosaic(k: int) -> np.ndarray:  # (M, 1024, 1280) of image (k=0) or mask (k=1)
        return np.stack([
            np.block([[pairs[m * 20 + r * 5 + c][k] for c in range(5)] for r in range(4)])
            for m in range(args.mosaics)
        ])  # fmt: skip

    frames, truth = mosaic(0), mosaic(1) > 0

    def gt_iou(pred: np.ndarray) -> float:
        return float((pred & truth).sum() / max((pred | truth).sum(), 1))

    def run(batch: np.ndarray) -> np.ndarray:
        return predict_probs(model, torch.from_numpy(batch)[:, None]).numpy()

    rows = []
    t = time.perf_counter()
    whole = np.concatenate([run(f[None]) for f in frames])
    base_s = (time.perf_counter() - t) / len(frames)
    rows.append({"tile": 0, "attention_window": 0, "max_abs_dprob": 0.0, "mask_pixels_differing": 0,
                 "mask_iou_with_whole": 1.0, "iou_with_truth": gt_iou(whole > 0.5),
                 "s_per_frame": base_s})  # fmt: skip
    configs = [(tile, 0) for tile in (512, 256, 128)] + [(0, px) for px in (512, 256, 128)]
    for tile, window in configs:
        set_attention_window(model, window)
        go = tiled(run, tile, args.halo)
        t = time.perf_counter()
        got = np.concatenate([go(f[None]) for f in frames])
        s = (time.perf_counter() - t) / len(frames)
        a, b = got > 0.5, whole > 0.5
        rows.append({
            "tile": tile,
            "attention_window": window,
            "max_abs_dprob": float(np.abs(got - whole).max()),
            "mask_pixels_differing": int((a != b).sum()),
            "mask_iou_with_whole": float((a & b).sum() / max((a | b).sum(), 1)),
            "iou_with_truth": gt_iou(a),
            "s_per_frame": s,
        })  # fmt: skip
    out = {"date": date.today().isoformat(), "checkpoint": args.checkpoint,
           "frames": f"{len(frames)} mosaics of 4 x 5 images (1024 x 1280) of "
           f"{args.split or 'the test split'}", "halo": args.halo,
           "whole_mask_pixels": int((whole > 0.5).sum()), "threads": 1, "rows": rows}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("| tile | attention window | max abs dprob | mask pixels differing | mask IoU with "
          "whole | IoU with truth | s/frame |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tile'] or 'whole'} | {r['attention_window'] or 'whole input'} | "
              f"{r['max_abs_dprob']:.4f} | "
              f"{r['mask_pixels_differing']} | {r['mask_iou_with_whole']:.4f} | "
              f"{r['iou_with_truth']:.4f} | "
              f"{r['s_per_frame']:.2f} |")  # fmt: skip
    print(f"({out['whole_mask_pixels']} mask pixels in the whole-frame masks)")


if __name__ == "__main__":
    main()
