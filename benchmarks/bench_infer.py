"""Inference speed of `sirst5k eval/predict` on this CPU (`make bench-infer`).

    python benchmarks/bench_infer.py [--checkpoint nudt] [--threads 2]

For a checkpoint (default: the bundled cpu30 model) and its ONNX export, images/s of the
predictors eval and predict use (PyTorch in fp32 and, on a CPU with bf16 instructions, in
bf16 autocast; ONNX Runtime), on 256 x 256 images (NUDT-SIRST's size) and on 1024 x 1280
frames (real sensors'), at batch 1, 2 and 8, with --threads intra-op threads (every predictor
runs the frames of a batch side by side; eval's default batch is the number of lanes). Writes
benchmarks/out/bench_infer.json and prints a table. Time it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.inference.bundled import resolve
from sirst5k.inference.export import OnnxPredictor, export_onnx
from sirst5k.inference.predictors import ModelPredictor
from sirst5k.machine import bf16_supported, describe_cpu, describe_run

SIZES = {"256x256": (256, 256, 96), "1024x1280": (1024, 1280, 8)}  # h, w, images timed


def rate(predictor, images: list[np.ndarray], batch: int, rounds: int) -> float:
    """Images/s, the best of `rounds` passes over the images after a warm-up call."""
    predictor(images[:batch])  # warm-up (allocations, ORT's first run)
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(0, len(images), batch):
            predictor(images[i : i + batch])
        best = max(best, len(images) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="nudt")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=3, help="passes per row; the best is kept")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_infer.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = resolve(args.checkpoint)
    print(f"{describe_cpu()}, {args.threads} threads", flush=True)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "m.onnx"
        export_onnx(ckpt, onnx)
        predictors = {"torch": ModelPredictor(ckpt, "cpu")}
        if bf16_supported("cpu"):  # --precision bf16 (AVX512-BF16 or AMX)
            predictors["torch-bf16"] = ModelPredictor(ckpt, "cpu", precision="bf16")
        predictors["onnxruntime"] = OnnxPredictor(onnx)
        for size, (h, w, n) in SIZES.items():
            images = [rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(n)]
            for name, pred in predictors.items():
                for batch in (1, 2, 8):
                    r = rate(pred, images, batch, args.rounds)
                    rows.append({"size": size, "engine": name, "batch": batch, "images_per_s": r})
                    print(f"{size:>10} {name:>12} batch {batch}: {r:7.2f} images/s", flush=True)
    result = describe_run() | {
        "torch": torch.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "checkpoint": str(ckpt),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
