"""With and without the synthesized negatives, several seeds (`make ablation-cpu`).

Runs `sirst5k train` for every (variant, seed), --jobs at a time on one thread each, evaluates
each best checkpoint on the source's test split with `sirst5k eval`, writes
benchmarks/out/ablation_negatives.json and prints a table of the per-variant mean and spread.
A run whose metrics.json already exists is not trained again (delete runs/ablation/NAME to redo).

    python benchmarks/ablation_negatives.py --store data/nudt.h5 --source ../shared/data/NUDT-SIRST

The variants (the cpu30 model, batch and crop, no warm-up; the same number of samples seen in
each, about 36,000):
  sum       store, L_Neg sum (Eq. 9), weight 1       (the paper's method)
  sum-w025  store, L_Neg sum, weight 0.25 (the mean of the 4 rotations)
  sum-w0    store, L_Neg weight 0: batches of whole groups as with L_Neg, no L_Neg term
  min       store, L_Neg min (Algorithm 2), weight 1
  off       store, no L_Neg: negatives as plain training samples
  orig      the originals alone (6x the epochs: same samples seen)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "sum": ["--epochs", "10", "--neg-loss", "sum"],
    "sum-w025": ["--epochs", "10", "--neg-loss", "sum", "--neg-weight", "0.25"],
    "sum-w0": ["--epochs", "10", "--neg-loss", "sum", "--neg-weight", "0"],
    "min": ["--epochs", "10", "--neg-loss", "min"],
    "off": ["--epochs", "10", "--neg-loss", "off"],
    "orig": ["--epochs", "60", "--originals-only"],
}
KEYS = ("iou", "niou", "pd", "fa")


def run_one(name: str, variant: str, seed: int, args) -> dict:
    out = Path(args.runs) / name
    metrics = out / "eval" / "metrics.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "sirst5k_cli"]
    if not metrics.exists():
        t0 = time.perf_counter()
        # the cpu30 model and batch with the paper's settings: no warm-up
        train = [*cli, "train", args.store, "--out", str(out), "--preset", "cpu30", "--warmup", "0"]
        train += [*VARIANTS[variant], "--seed", str(seed), "--max-minutes", "0"]
        train += ["--device", "cpu", "--force"]
        with open(f"{out}.log", "w") as log:
            subprocess.run(train, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
            ev = [*cli, "eval", args.source, "--checkpoint", str(out / "best.pt"), "--device"]
            subprocess.run([*ev, "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    m = json.loads(metrics.read_text())
    summary = json.loads((out / "summary.json").read_text())
    row = {k: m["metrics"][k] for k in KEYS} | {"fa_legacy": m["metrics"]["fa_legacy"]}
    return {
        "name": name,
        "variant": variant,
        "seed": seed,
        "best_epoch": summary["best"]["epoch"],
        "val_iou": summary["best"]["val_iou"],
        "train_seconds": summary.get("seconds"),
        **row,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="data/nudt.h5")
    ap.add_argument("--source", default="../shared/data/NUDT-SIRST")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    ap.add_argument("--runs", default="runs/ablation")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "ablation_negatives.json"))
    args = ap.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"error: unknown variant {v!r}: choose from {', '.join(VARIANTS)}")
    for p in (args.store, args.source):
        if not Path(p).exists():
            sys.exit(f"error: {p} not found (build the store with `make dataset`)")
    seeds = [int(s) for s in args.seeds.split(",")]
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    jobs = [(f"{v}-s{s}", v, s) for s in seeds for v in variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda j: run_one(*j, args), jobs))

    table = {}
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        table[v] = {k: [r[k] for r in rs] for k in (*KEYS, "val_iou")}
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "store": args.store,
        "source": args.source,
        "seeds": seeds,
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    def cell(xs: list[float], scale: float) -> str:
        xs = [x * scale for x in xs]
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):7.2f} ± {sd:5.2f}"

    print(f"\n{'variant':<10} {'n':>2}  {'val IoU':>15}  {'test IoU':>15}  {'nIoU':>15}  ", end="")
    print(f"{'Pd':>15}  {'Fa (1e-6)':>15}")
    for v, t in table.items():
        print(
            f"{v:<10} {len(t['iou']):>2}  {cell(t['val_iou'], 100)}  {cell(t['iou'], 100)}  ",
            end="",
        )
        print(f"{cell(t['niou'], 100)}  {cell(t['pd'], 100)}  {cell(t['fa'], 1e6)}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
