"""Forward speed and size of every registered model (`make bench-models`).

    python benchmarks/bench_models.py [--threads N] [--size 256] [--models acm,alcnet]

For each model of trainer.registry.MODELS in its default config: the parameter count beside
BasicIRSTD's, the forward GFLOPs (torch's FLOP counter: 2 per multiply-add of convolutions and
matrix products) and forward images/s in eval mode on random 0..255 images of --size x --size at
batch 1 with --threads intra-op threads (default: all cores). The timing goes round the models
--rounds times (each time after a warm-up forward, for at least --min-seconds and --min-runs) and
reports each model's best and median round, so that a machine busy with other jobs disturbs the
comparison less. Writes benchmarks/out/bench_models.json and prints a table; the load average
before and after is recorded: on a busy machine the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.machine import describe_run
from trainer.forward import count_params
from trainer.registry import MODELS, build_model, model_class


def forward_rate(model, x: torch.Tensor, min_seconds: float, min_runs: int) -> float:
    """images/s of model(x) under inference_mode, after one warm-up forward."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        model(x)  # warm-up: allocations, cudnn autotuning
        sync()
        runs, t0 = 0, time.perf_counter()
        while runs < min_runs or time.perf_counter() - t0 < min_seconds:
            model(x)
            sync()
            runs += 1
        return runs * len(x) / (time.perf_counter() - t0)


def gflops(model, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() / 1e9


def table(rows: list[dict], args) -> str:
    lines = [
        "| model | params | BasicIRSTD | diff | GFLOPs | images/s best (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rep = "-" if r["basicirstd_params_m"] is None else f"{r['basicirstd_params_m']:.3f} M"
        diff = "-" if r["params_diff_pct"] is None else f"{r['params_diff_pct']:+.2f} %"
        lines.append(
            f"| {r['model']} | {r['params']:,} | {rep} | {diff} | {r['gflops']:.2f} | "
            f"{r['images_per_s']:.2f} ({r['images_per_s_median']:.2f}) |"
        )
    lines.append(
        f"({args.size} x {args.size}, batch 1, {args.device}, {args.threads} threads, "
        f"{args.rounds} rounds)"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated registry names")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="per model and round")
    ap.add_argument("--min-runs", type=int, default=2, help="per model and round")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_models.json"))
    args = ap.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        ap.error(f"--models {','.join(unknown)}: choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    models, inputs, rates = {}, {}, {n: [] for n in names}
    for name in names:
        torch.manual_seed(0)
        models[name] = build_model({"name": name}).to(args.device).eval()
        side = args.size + (-args.size) % models[name].stride
        inputs[name] = torch.rand(1, 1, side, side, device=args.device) * 255
    for r in range(args.rounds):
        for name in names:
            rates[name].append(
                forward_rate(models[name], inputs[name], args.min_seconds, args.min_runs)
            )
            print(f"round {r + 1}: {name:>10} {rates[name][-1]:8.2f} images/s", flush=True)
    load_after = os.getloadavg()
    rows = []
    for name in names:
        n, reported = count_params(models[name]), model_class(name).reported_m
        best, median = max(rates[name]), sorted(rates[name])[len(rates[name]) // 2]
        rows.append(
            {
                "model": name,
                "paper": model_class(name).paper,
                "params": n,
                "basicirstd_params_m": reported,
                "params_diff_pct": None if reported is None else 100 * (n / 1e6 / reported - 1),
                "input": "x".join(str(v) for v in inputs[name].shape),
                "gflops": gflops(models[name], inputs[name]),
                "images_per_s": best,
                "images_per_s_median": median,
                "images_per_s_rounds": rates[name],
                "ms_per_image": 1000 / best,
            }
        )
    result = describe_run() | {
        "device": args.device,
        "torch": torch.__version__,
        "threads": args.threads,
        "batch": 1,
        "rounds": args.rounds,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "command": "python benchmarks/bench_models.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(rows, args))
    if args.device == "cpu" and max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1):
        print(
            f"note: load average {load_before[0]:.2f} -> {load_after[0]:.2f} on "
            f"{os.cpu_count()} cores: the machine was busy with other jobs; the speeds are "
            "lower bounds (with other jobs on every core, --threads 1 is often faster)"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
