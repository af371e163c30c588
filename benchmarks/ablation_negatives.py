"""Does the SIRST-5K store pay off? Variants x seeds, scored on NUDT-SIRST and on real frames.

Trains `sirst5k train` for every (variant, seed), on one thread each unless --threads says
more, --jobs at a time, then scores each best checkpoint (chosen on the validation split) on
the NUDT-SIRST test split and on ../shared/data/SIRST-V2-extra: IoU, nIoU and Pd on its 87
target frames, Fa (x1e6; every predicted pixel is false) on its 102 target-free frames.
Writes benchmarks/out/<--name>.json and prints a table of the per-variant mean and spread.

A run whose summary.json says completed is not trained again, an interrupted one (a last.pt,
no completed summary) is resumed exactly, an evaluation whose metrics.json exists is not run
again; several instances may share --runs (a lock folder per run holding its instance's pid; a
lock whose process is gone is taken over), so a long ablation can be resumed another day,
or run on two lanes started at different times.

    python benchmarks/ablation_negatives.py --variants orig,off,group,fresh --seeds 42,43,44

The negatives' gate (`make ablation-cpu`): the cpu30 recipe (0.52 M parameters, batch 16, crop
64, Adagrad 0.05 with a 50-step warm-up, cosine), the same number of training samples in every
run (about 90,000: 25 epochs of the store's ~3590 training rows, or 150 of the ~597 originals):
  orig      the originals alone (150 epochs, validated every 6th: 25 validations too)
  off       the store as plain data, no L_Neg
  group     the store, L_Neg "group" (one Soft-IoU over each group's 4 members), weight 1
  sum       the store, L_Neg "sum" (the paper's Eq. 9), weight 1
  fresh     on-the-fly synthesis: a new negative per sample (alpha in [0, 0.2])
  scale     fresh, every crop zoomed by a factor in [0.5, 2] (log-uniform)
  vary      scale, plus photometric variation (gamma, gain and offset, blur, noise)
  photo     fresh with the photometric variation alone (no zoom)
  off-h     off, with left-right flips only (2 orientations; the others use all 8)
  off-none  off, with no flips
  cpu30     the cpu30 preset of 2026-12-04 to 12-06 (crop 64, 8 orientations): `off`, fitted to
            its 28 minutes (--fit-budget), so its samples depend on the machine's speed (run it
            alone; --budget does not apply)
  cpu30-w12 the model sweep, each cpu30 with one change, also fitted: widths 12..192 (-w12),
  cpu30-b2  2 residual blocks per stage (-b2), crop 96 (-c96), no AFF attention (-na: plain
  cpu30-c96 U-Net skips)
  cpu30-na
  cpu30-c96-x2  -c96 with twice the budget (56 minutes): how far is the target?
  cpu30-c96-26  -c96 in 26 minutes, which leaves the recipe's 30 the time for a --tta eval
  cpu30-c128-26 the same with crop 128
  cpu30-c96-26-ema  -c96-26 with a weight EMA (--ema 0.999)
  cpu30-c96-26-hv   -c96-26 with --flips hv (4 orientations)
  cpu30-c96-26-h    -c96-26 with --flips h (2 orientations: left-right): the cpu30 preset on
                    2026-12-06
  cpu30-c96-26-none -c96-26 with --flips none (no flips: 1 orientation): the cpu30 preset since
                    2026-12-07
  cpu30-c96-28-none -c96-26-none in 28 minutes: the time the dropped TTA eval used
--tta adds a test-time-augmented NUDT-SIRST eval (`sirst5k eval --tta`) to every run.
--budget short gives the older 10-epoch (36,000 samples) runs without warm-up, --budget long
twice the gate's samples (does the store's value grow with the budget?). --model trains a
peer with the same budget: `--model acm --variants orig,off --runs runs/peers-acm`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.machine import describe_run

STORE_EPOCHS = {"gate": 25, "short": 10, "long": 50}
# every run starts from the cpu30 preset as the measurements of docs/results.md had it until
# 2026-12-06, so that their commands still mean the same runs (a later option wins)
BASE = ["--preset", "cpu30", "--crop", "64", "--max-minutes", "28", "--flips", "d4"]
VARIANTS = {  # {E}: the store epochs of the budget; originals-only runs take 6x
    "orig": ["--originals-only", "--epochs", "{E6}", "--val-every", "6"],
    "off": ["--epochs", "{E}", "--neg-loss", "off"],
    "group": ["--epochs", "{E}", "--neg-loss", "group"],
    "sum": ["--epochs", "{E}", "--neg-loss", "sum"],
    "min": ["--epochs", "{E}", "--neg-loss", "min"],
    "sum-w0": ["--epochs", "{E}", "--neg-loss", "sum", "--neg-weight", "0"],
    "fresh": ["--epochs", "{E}", "--on-the-fly", "--neg-loss", "off"],
    "scale": ["--epochs", "{E}", "--on-the-fly", "--neg-loss", "off", "--scale-range", "0.5,2"],
    "vary": ["--epochs", "{E}", "--on-the-fly", "--neg-loss", "off", "--scale-range", "0.5,2"]
    + ["--photometric"],
    "photo": ["--epochs", "{E}", "--on-the-fly", "--neg-loss", "off", "--photometric"],
    "off-h": ["--epochs", "{E}", "--neg-loss", "off", "--flips", "h"],
    "off-none": ["--epochs", "{E}", "--neg-loss", "off", "--flips", "none"],
    "cpu30": [],
    # the model sweep at the cpu30 budget: one change to the preset each
    "cpu30-w12": ["--widths", "12,24,48,96,192"],
    "cpu30-b2": ["--blocks", "2"],
    "cpu30-c96": ["--crop", "96"],
    "cpu30-na": ["--no-attention"],
    # what would reach the target: the best setting of the sweep with twice the budget
    "cpu30-c96-x2": ["--crop", "96", "--max-minutes", "56"],
    "cpu30-c96-26": ["--crop", "96", "--max-minutes", "26"],
    # the next crop up in the same 26 minutes: fewer epochs, more whole targets per crop
    "cpu30-c128-26": ["--crop", "128", "--max-minutes", "26"],
    # -c96-26 with an exponential moving average of the weights (PyTorch's usual 0.999)
    "cpu30-c96-26-ema": ["--crop", "96", "--max-minutes", "26", "--ema", "0.999"],
    # -c96-26 with horizontal and vertical flips only (4 orientations, not 8)
    "cpu30-c96-26-hv": ["--crop", "96", "--max-minutes", "26", "--flips", "hv"],
    # the same with left-right flips only (2 orientations): does the trend go on?
    "cpu30-c96-26-h": ["--crop", "96", "--max-minutes", "26", "--flips", "h"],
    # and with no flips at all (1 orientation): the end of the trend
    "cpu30-c96-26-none": ["--crop", "96", "--max-minutes", "26", "--flips", "none"],
    # the same in 28 minutes: the recipe's 30 less synth and eval, now that TTA is dropped
    "cpu30-c96-28-none": ["--crop", "96", "--max-minutes", "28", "--flips", "none"],
}
# variants that keep the preset's time budget (the others fix the samples)
FITTED = {v for v in VARIANTS if v.startswith("cpu30")}
KEYS = ("iou", "niou", "pd", "fa")


def evals(args) -> dict[str, list[str]]:
    """Evaluation name -> the `sirst5k eval` arguments before --checkpoint."""
    out = {"nudt": [args.source]}
    if args.tta:
        out["nudt-tta"] = [args.source, "--tta"]
    v2 = Path(args.real)
    if v2.exists():
        out["v2-targets"] = [str(v2), "--split", str(v2 / "splits" / "targets.txt")]
        out["v2-bg"] = [str(v2), "--split", str(v2 / "splits" / "background.txt")]
    return out


def run_one(name: str, variant: str, seed: int, args) -> dict | None:
    """Train and score one run; None when another instance holds it."""
    out = Path(args.runs) / name
    lock = Path(args.runs) / f"{name}.lock"
    try:
        lock.mkdir()
    except FileExistsError:
        owner = (lock / "pid").read_text().strip() if (lock / "pid").exists() else ""
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            return None  # another instance is on it
        shutil.rmtree(lock, ignore_errors=True)  # its instance is gone
        lock.mkdir()
    (lock / "pid").write_text(str(os.getpid()))
    try:
        n = str(args.threads)
        env = {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
        cli = [sys.executable, "-m", "sirst5k_cli"]
        summary = out / "summary.json"
        status = json.loads(summary.read_text())["status"] if summary.exists() else ""
        # a run its --max-minutes stopped is finished too (resuming would give it a new budget)
        done = status == "completed" or status.startswith("stopped by --max-minutes")
        t0 = time.perf_counter()
        with open(f"{out}.log", "a") as log:
            if not done and (out / "last.pt").exists():
                # an interrupted run (Ctrl-C, kill, a shutdown): continue it exactly
                cmd = [*cli, "train", args.store, "--resume", str(out)]
                subprocess.run(cmd, env=env, stdout=log, stderr=log, check=True)
            elif not done:
                e = STORE_EPOCHS[args.budget]
                opts = [o.format(E=e, E6=6 * e) for o in VARIANTS[variant]]
                cmd = [*cli, "train", args.store, "--out", str(out), *BASE]
                cmd += [*opts, "--seed", str(seed), "--device", "cpu"]
                cmd += [] if variant in FITTED else ["--max-minutes", "0"]
                cmd += ["--model", args.model]
                cmd += ["--warmup", "0"] if args.budget == "short" else []
                subprocess.run([*cmd, "--force"], env=env, stdout=log, stderr=log, check=True)
            for ev, ev_args in evals(args).items():
                if not (out / f"eval-{ev}" / "metrics.json").exists():
                    cmd = [*cli, "eval", *ev_args, "--checkpoint", str(out / "best.pt")]
                    cmd += ["--out", str(out / f"eval-{ev}"), "--worst", "0", "--device", "cpu"]
                    cmd += ["--tile", "0", "--attention-window", "0"] if args.whole else []
                    subprocess.run(cmd, env=env, stdout=log, stderr=log, check=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(lock, ignore_errors=True)
    return collect(name, variant, seed, args)


def collect(name: str, variant: str, seed: int, args) -> dict | None:
    out = Path(args.runs) / name
    if not (out / "summary.json").exists():
        return None
    summary = json.loads((out / "summary.json").read_text())
    row = {"name": name, "variant": variant, "seed": seed, "best_epoch": summary["best"]["epoch"]}
    row |= {"epochs": summary["epochs_done"], "val_iou": summary["best"]["val_iou"]}
    row["train_seconds"] = summary.get("seconds")
    for ev in evals(args):
        path = out / f"eval-{ev}" / "metrics.json"
        if path.exists():
            m = json.loads(path.read_text())["metrics"]
            row |= {f"{ev}_{k}": m[k] for k in (*KEYS, "fa_legacy")}
    return row


# table columns: (row key, header, scale)
COLUMNS = [
    ("val_iou", "val IoU", 100),
    ("nudt_iou", "test IoU", 100),
    ("nudt_niou", "nIoU", 100),
    ("nudt_pd", "Pd", 100),
    ("nudt_fa", "Fa", 1e6),
    ("v2-targets_iou", "real IoU", 100),
    ("v2-targets_niou", "real nIoU", 100),
    ("v2-targets_pd", "real Pd", 100),
    ("v2-bg_fa", "real bg Fa", 1e6),
]


TTA_COLUMNS = [  # with --tta
    ("nudt-tta_iou", "TTA IoU", 100),
    ("nudt-tta_pd", "TTA Pd", 100),
    ("nudt-tta_fa", "TTA Fa", 1e6),
]


def table(rows: list[dict], variants: list[str], columns: list[tuple]) -> str:
    def cell(xs: list[float], scale: float) -> str:
        xs = [x * scale for x in xs if x is not None]  # None: undefined (no targets)
        if not xs:
            return "-"
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):.2f} ± {sd:.2f}"

    head = ["variant", "n", *(c[1] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        rs = [r for r in rs if all(k in r for k, _, _ in columns)]  # fully evaluated runs only
        cells = [cell([r[k] for r in rs], s) for k, _, s in columns]
        lines.append("| " + " | ".join([v, str(len(rs)), *cells]) + " |")
    return "\n".join(lines)


def run_table(rows: list[dict], columns: list[tuple]) -> str:
    """One markdown row per run: best epoch, then the columns."""
    head = ["run", "best epoch", *(c[1] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r[k] * s:.2f}" if k in r else "-" for k, _, s in columns]
        lines.append("| " + " | ".join([r["name"], str(r["best_epoch"]), *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="data/nudt.h5")
    ap.add_argument("--source", default="../shared/data/NUDT-SIRST")
    ap.add_argument("--real", default="../shared/data/SIRST-V2-extra", help="evaluation only")
    ap.add_argument("--variants", default="orig,off,group,fresh")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--budget", choices=list(STORE_EPOCHS), default="gate")
    ap.add_argument("--model", default="aff-unet", help="the network (sirst5k train --model)")
    whole = "score whole frames with attention over all of it (as runs/gate and runs/gate2)"
    ap.add_argument("--whole", action="store_true", help=whole)
    ap.add_argument("--tta", action="store_true", help="also score NUDT-SIRST with eval --tta")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    ap.add_argument("--threads", type=int, default=1, help="threads per training and eval")
    ap.add_argument("--runs", default="runs/gate")
    ap.add_argument("--name", default="ablation_negatives", help="benchmarks/out/NAME.json")
    ap.add_argument("--report", action="store_true", help="only tabulate the finished runs")
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
    if not args.report:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda j: run_one(*j, args), jobs))
    rows = [r for r in (collect(*j, args) for j in jobs) if r is not None]
    result = describe_run() | {
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "store": args.store,
        "source": args.source,
        "real": args.real,
        "budget": args.budget,
        "model": args.model,
        "seeds": seeds,
        "runs": rows,
    }
    report(args.name, result, variants, COLUMNS + (TTA_COLUMNS if args.tta else []))


def report(name: str, result: dict, variants: list[str], columns: list) -> None:
    """Write benchmarks/out/NAME.json and print the tables of variants and of runs."""
    out = ROOT / "benchmarks" / "out" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result["runs"], variants, columns))
    print()
    print(run_table(result["runs"], columns))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
