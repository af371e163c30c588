"""Recipes for real frames: stores built with the deployment sensor's target-free frames, trained
at a CPU budget, scored on NUDT-SIRST and on the deployment validation set.

    python benchmarks/real_frames.py --recipes base,implant --seeds 42 --minutes 12

Every recipe names a store (the synth options below, built once into data/real/NAME.h5 from
NUDT-SIRST's train split and ../shared/data/SIRST-V2-backgrounds) and the train options added
to the cpu30 preset. Every run trains for --minutes (the cpu30 preset's fitted budget, on 2
threads), or for --samples training samples (as many epochs of the rows it trains on as come
closest: a budget that other work on the machine cannot change). It keeps its best epoch on
held-out NUDT-SIRST training originals (as every run does), then is scored on the NUDT-SIRST
test split, on SIRST-V2-extra's 87 target frames (IoU, nIoU, Pd) and on its 102 target-free
frames (Fa: every predicted pixel is false). SIRST-V2-extra chooses between recipes; it is
never trained on. Runs and evaluations already done are reused, and an interrupted run
resumes, so the script can be stopped and started again. Writes benchmarks/out/<--name>.json
and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import h5py
import numpy as np
from ablation_negatives import COLUMNS, collect, evals, report

from sirst5k.machine import describe_run
from trainer.data import KINDS

BG = "../shared/data/SIRST-V2-backgrounds"
STORES = {  # name -> synth options beside SOURCE -o STORE
    "nudt": [],
    "implant": ["--backgrounds", BG, "--implants", "3000", "--bg-negatives", "750"],
    "implant-noise": ["--backgrounds", BG, "--implants", "3000", "--bg-negatives", "750"]
    + ["--noise-from", BG],
    # brighter implants (real targets in the deployment validation frames peak at about 1.6x
    # NUDT-SIRST's over their local background: docs/results.md), and zoomed ones
    "implant-g2": ["--backgrounds", BG, "--implants", "3000", "--bg-negatives", "750"]
    + ["--gain", "0.5,2"],
    "implant-g2z": ["--backgrounds", BG, "--implants", "3000", "--bg-negatives", "750"]
    + ["--gain", "0.5,2", "--zoom", "0.7,1.5"],
    # masks by the signal, down to a tenth of the peak (the real annotations' extent)
    "implant-g2z-ml": ["--backgrounds", BG, "--implants", "3000", "--bg-negatives", "750"]
    + ["--gain", "0.5,2", "--zoom", "0.7,1.5", "--mask-level", "0.1"],
    "implant-ml02": ["--backgrounds", BG, "--implants", "3000", "--bg-negatives", "750"]
    + ["--mask-level", "0.2"],
    # the paper's few-labels claim: every 8th image of NUDT-SIRST's train split (83 images)
    "eighth": ["--split", "{eighth}", "--split", "{test}"],
}
RECIPES = {  # name -> (store, train options after --preset cpu30)
    "base": ("nudt", []),
    "implant": ("implant", []),
    "implant-noise": ("implant-noise", []),
    # the winner's ablation: one ingredient off at a time
    "implant-nonegs": ("implant", ["--kinds", "original,implant,background"]),
    "implant-nobg": ("implant", ["--kinds", "original,negative,implant"]),
    "implant-photo": ("implant", ["--photometric"]),
    "implant-g2": ("implant-g2", []),
    "implant-g2z": ("implant-g2z", []),
    "implant-g2z-ml": ("implant-g2z-ml", []),
    "implant-ml02": ("implant-ml02", []),
    # few labels: the store (originals + negatives) against the originals alone, same samples
    "eighth-store": ("eighth", []),
    "eighth-orig": ("eighth", ["--originals-only"]),
}


def sirst5k(*args: str, log, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "sirst5k_cli", *args]
    subprocess.run(cmd, env=env, stdout=log, stderr=log, check=True)


def eighth_split(args) -> dict[str, str]:
    """Split files of the few-labels store: every 8th id of the train split, the test split."""
    splits = Path(args.source) / "splits" / "50_50"
    ids = (splits / "train.txt").read_text().split()
    out = Path(args.data) / "splits" / "train_eighth.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(ids[::8]) + "\n")
    return {"eighth": str(out), "test": str(splits / "test.txt")}


def build_store(name: str, args) -> Path:
    path = Path(args.data) / f"{name}.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        options = [o.format(**eighth_split(args)) for o in STORES[name]]
        with open(f"{path}.log", "a") as log:
            sirst5k("synth", args.source, "-o", str(path), *options, log=log, threads=2)
    return path


def rows_of(store: Path, options: list[str]) -> int:
    """The store's /train rows of the kinds a recipe trains on (before the validation split)."""
    kinds = ["original"] if "--originals-only" in options else list(KINDS)
    if "--kinds" in options:
        kinds = options[options.index("--kinds") + 1].split(",")
    with h5py.File(store, "r") as f:
        kind = f["train/kind"][...]
    return int(np.isin(kind, [KINDS[k] for k in kinds]).sum())


def run(recipe: str, seed: int, args) -> dict:
    store_name, options = RECIPES[recipe]
    store = build_store(store_name, args)
    out = Path(args.runs) / f"{recipe}-s{seed}"
    summary = out / "summary.json"
    status = json.loads(summary.read_text())["status"] if summary.exists() else ""
    t0 = time.perf_counter()
    with open(f"{out}.log", "a") as log:
        if not (status == "completed" or status.startswith("stopped by --max-minutes")):
            if (out / "last.pt").exists():
                sirst5k("train", str(store), "--resume", str(out), log=log, threads=args.threads)
            else:
                budget = ["--max-minutes", str(args.minutes)]
                if args.samples:
                    epochs = max(1, round(args.samples / rows_of(store, options)))
                    budget = ["--epochs", str(epochs), "--max-minutes", "0"]
                sirst5k("train", str(store), "--out", str(out), "--preset", "cpu30", *budget,
                        "--seed", str(seed), "--device", "cpu", *options, "--force", log=log,
                        threads=args.threads)  # fmt: skip
        for ev, ev_args in evals(args).items():
            if not (out / f"eval-{ev}" / "metrics.json").exists():
                sirst5k("eval", *ev_args, "--checkpoint", str(out / "best.pt"), "--out",
                        str(out / f"eval-{ev}"), "--worst", "0", "--device", "cpu", log=log,
                        threads=args.threads)  # fmt: skip
    print(f"{out.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    row = collect(out.name, recipe, seed, args) | {"store": store_name}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default="base,implant")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--minutes", type=float, default=26.0, help="training budget of each run")
    ap.add_argument("--samples", type=int, help="a budget in samples instead of minutes")
    ap.add_argument("--source", default="../shared/data/NUDT-SIRST")
    ap.add_argument("--real", default="../shared/data/SIRST-V2-extra", help="evaluation only")
    ap.add_argument("--data", default="data/real", help="where the stores are built")
    ap.add_argument("--runs", default="runs/real")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="real_frames", help="benchmarks/out/NAME.json")
    args = ap.parse_args()
    args.tta = False  # evals(): no TTA evaluation
    recipes = args.recipes.split(",")
    if unknown := [r for r in recipes if r not in RECIPES]:
        sys.exit(f"error: unknown recipe {unknown[0]!r}: choose from {', '.join(RECIPES)}")
    for p in (args.source, BG, args.real):
        if not Path(p).exists():
            sys.exit(f"error: {p} not found")
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [run(r, s, args) for s in seeds for r in recipes]
    result = describe_run() | {
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "minutes": None if args.samples else args.minutes,
        "samples": args.samples,
        "recipes": {r: RECIPES[r] for r in recipes},
        "stores": {RECIPES[r][0]: STORES[RECIPES[r][0]] for r in recipes},
        "runs": rows,
    }
    report(args.name, result, recipes, COLUMNS)


if __name__ == "__main__":
    main()
