"""Time every classical detector of sirst5k.detectors (seconds per 256 x 256 image), or
choose their default k on NUDT-SIRST's train split (`--choose-k`).

Timing: the score map of each registered method on the first N test images of the source
dataset (NUDT-SIRST: 256 x 256), or on generated 256 x 256 images (smooth clutter, noise and
a few small bright blobs) when the dataset is absent. One warm-up image first (patch grids are
cached per image size); then every image is timed alone, --repeat times, the fastest kept.
BLAS, OpenMP and OpenCV run on one thread unless --threads says otherwise (set before NumPy is
imported), so the numbers are per core. Writes benchmarks/out/bench_methods.json.

    python benchmarks/bench_methods.py [--source ../shared/data/NUDT-SIRST] [--images 20]

Choosing k (`--choose-k`): the score maps of every other image of the *train* split (the first
--images of them; the test split is never read), then for every k of a coarse grid the set IoU
(sirst5k.metrics, threshold 0.5 on detect's map, i.e. score > mean + k std); the k of highest
IoU is the method's default (ties: the smaller k). Writes benchmarks/out/choose_k.json.

    python benchmarks/bench_methods.py --choose-k --images 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def _threads(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


THREADS = _threads(sys.argv)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sirst5k.detectors.methods import DETECTORS, to_probability
from sirst5k.errors import UserError
from sirst5k.io import load_split, read_pair
from sirst5k.metrics import Metrics

K_GRID = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40)


def generated_images(n: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """Smooth clutter + noise + 1-3 small Gaussian blobs, grey uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        clutter = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 12)
        img = 90 + 40 * clutter / (clutter.std() + 1e-9) + rng.normal(0, 4, (size, size))
        for _ in range(rng.integers(1, 4)):
            cy, cx, s = rng.integers(10, size - 10), rng.integers(10, size - 10), rng.uniform(1, 2)
            img += rng.uniform(30, 80) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def load_images(source: str, split: str, n: int, every: int = 1) -> list | None:
    try:
        pairs = load_split(source, split)
    except UserError:
        return None
    return [read_pair(p) for p in pairs[::every][:n]]


def time_methods(images: list[np.ndarray], repeat: int) -> dict:
    """Per method: wall and CPU (this thread's) seconds per image, the best of `repeat` runs of
    each image; the CPU time is the fairer number on a machine busy with other jobs."""
    rows = {}
    for name, det in DETECTORS.items():
        det.score(images[0])  # warm-up: cached patch grids, imports
        wall, cpu = [], []
        for img in images:
            best_wall = best_cpu = float("inf")
            for _ in range(repeat):
                t, c = time.perf_counter(), time.thread_time()
                det.score(img)
                best_cpu = min(best_cpu, time.thread_time() - c)
                best_wall = min(best_wall, time.perf_counter() - t)
            wall.append(best_wall)
            cpu.append(best_cpu)
        rows[name] = {
            "description": det.description,
            "median_s": float(np.median(wall)),
            "mean_s": float(np.mean(wall)),
            "max_s": float(np.max(wall)),
            "cpu_median_s": float(np.median(cpu)),
            "cpu_mean_s": float(np.mean(cpu)),
        }
        r = rows[name]
        print(f"  {name:<10}{r['median_s']:>10.4f}{r['mean_s']:>10.4f}{r['max_s']:>10.4f}"
              f"{r['cpu_median_s']:>10.4f}{r['cpu_mean_s']:>10.4f}", flush=True)  # fmt: skip
    return rows


def choose_k(pairs: list, grid: tuple = K_GRID) -> dict:
    out = {}
    for name, det in DETECTORS.items():
        t = time.process_time()
        scores = [det.score(img) for img, _ in pairs]
        cpu = time.process_time() - t
        ious = {}
        for k in grid:
            m = Metrics()
            for s, (_, mask) in zip(scores, pairs, strict=True):
                m.update(to_probability(s, k)[None], mask[None])
            c = m.compute()
            ious[k] = {"iou": c["iou"], "pd": c["pd"], "fa": c["fa"]}
        best = max(grid, key=lambda k: (ious[k]["iou"], -k))
        out[name] = {"k": best, **ious[best], "cpu_s": cpu, "grid": ious}
        b = ious[best]
        print(f"  {name:<10} k {best:>4}  IoU {b['iou']:.4f}  Pd {b['pd']:.4f}  "
              f"Fa {b['fa'] * 1e6:8.1f}e-6  (score maps {cpu:.0f} s CPU)", flush=True)  # fmt: skip
    return out


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "cpus": os.cpu_count(),
        "threads": THREADS,
        "load_average": list(os.getloadavg()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="../shared/data/NUDT-SIRST", help="dataset folder")
    ap.add_argument("--images", type=int, default=None, help="images (20 timing, 120 k)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats per image (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/OpenCV threads")
    ap.add_argument("--choose-k", action="store_true", help="choose k on the train split")
    ap.add_argument("--out", default=None, help="JSON report")
    args = ap.parse_args()
    cv2.setNumThreads(THREADS)
    command = "python benchmarks/bench_methods.py " + " ".join(sys.argv[1:])

    if args.choose_k:
        n = args.images or 120
        pairs = load_images(args.source, "train", n, every=2)
        if pairs is None:
            raise SystemExit(f"{args.source}: no NUDT-SIRST-style train split to choose k on")
        print(f"choosing k on {len(pairs)} train images (every other) of {args.source}")
        result = choose_k(pairs)
        report = {"command": command, "source": args.source, "split": "train, every other",
                  "images": len(pairs), "k_grid": list(K_GRID), "methods": result,
                  "environment": environment()}  # fmt: skip
        out = Path(args.out or "benchmarks/out/choose_k.json")
    else:
        n = args.images or 20
        pairs = load_images(args.source, "test", n)
        if pairs is not None:
            images, kind = [img for img, _ in pairs], f"{args.source} test split"
        else:
            images, kind = generated_images(n), "generated 256 x 256 images"
        shapes = sorted({im.shape for im in images})
        print(f"timing on {len(images)} {kind} {shapes}, {THREADS} thread(s), best of "
              f"{args.repeat}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"  {'method':<10}{'median s':>10}{'mean s':>10}{'max s':>10}{'CPU med':>10}"
              f"{'CPU mean':>10}")  # fmt: skip
        rows = time_methods(images, args.repeat)
        report = {"command": command, "images": len(images), "data": kind,
                  "shapes": [list(s) for s in shapes], "repeat": args.repeat,
                  "seconds_per_image": rows, "environment": environment()}  # fmt: skip
        out = Path(args.out or "benchmarks/out/bench_methods.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
