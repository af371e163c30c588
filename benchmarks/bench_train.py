"""Does the data path keep up with the model? Samples/s of each, measured separately.

- data: the training DataLoader alone (store -> crop -> flips -> collate -> pinned batches on
  the device), as `sirst5k train` builds it, for --steps batches after one warm-up batch.
- model: the train step alone (forward with bf16 autocast + channels_last on CUDA, Soft-IoU +
  L_Neg, backward, Adagrad step) on one batch of the same size held on the device.
The data path must be well above the model so that training never waits for data.
- breakdown: the seconds per step spent in forward, loss, backward and the optimizer step (on
  CUDA each phase is synchronised), the FLOPs of one forward + backward (torch's FlopCounter),
  the achieved TFLOP/s and, with --peak-tflops, the model FLOP utilisation (MFU).
- validation: seconds for one pass over the validation images at full size (as train does).
- --profile N: torch.profiler over N more train steps; the operators with the most self time
  (CUDA kernel time on a GPU, CPU time on the CPU) and the operator calls per step.
Options of the trainer that change speed: --compile, --channels-last (CPU too).

    python benchmarks/bench_train.py --store data/nudt.h5 --device cpu --batch-size 16 --crop 128
Writes benchmarks/out/bench_train.json (or --out) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sirst5k.errors import SirstError
from sirst5k.machine import describe_cpu
from trainer.data import GroupBatchSampler, StoreData, TrainDataset, split_by_source
from trainer.forward import count_params, resolve_device
from trainer.losses import SirstLoss
from trainer.registry import build_model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_data(data, rows, args, device) -> dict:
    ds = TrainDataset(data, rows, args.crop)
    sampler = GroupBatchSampler(ds.groups, args.batch_size, seed=0, keep_groups=True)
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=args.workers,
        pin_memory=cuda,
        persistent_workers=False,
        prefetch_factor=4 if args.workers else None,
    )
    n, t0, it = 0, None, iter(loader)
    for step in range(args.steps + 1):
        try:
            batch = next(it)
        except StopIteration:
            sampler.set_epoch(step)
            it = iter(loader)
            batch = next(it)
        x = batch["image"].to(device, non_blocking=True)
        if step == 0:  # warm-up: worker start-up
            sync(device)
            t0 = time.perf_counter()
            continue
        n += len(x)
    sync(device)
    sec = time.perf_counter() - t0
    return {"samples_per_s": n / sec, "seconds": sec, "samples": n}


def bench_model(args, device) -> dict:
    torch.manual_seed(0)
    cfg = {"widths": args.widths, "blocks": args.blocks}
    model = build_model(cfg).to(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
    loss_fn = SirstLoss("sum", 1.0)
    b, c = args.batch_size, args.crop
    x = (torch.rand(b, 1, c, c, device=device) * 255).contiguous(
        memory_format=torch.channels_last if cuda else torch.contiguous_format
    )
    y = (torch.rand(b, 1, c, c, device=device) > 0.999).to(torch.uint8)
    g = torch.arange(b, device=device) // 4
    g[b // 2 :] = -1

    if args.channels_last and not cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    phases = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}

    def step(timed: bool):
        t = time.perf_counter()

        def lap(name):
            nonlocal t
            if timed:
                sync(device)
                now = time.perf_counter()
                phases[name] += now - t
                t = now

        with torch.autocast(device.type, torch.bfloat16, enabled=cuda or args.bf16):
            out = net(x)
        lap("forward")
        loss, _, _ = loss_fn(out, y, g)
        lap("loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lap("backward")
        opt.step()
        lap("optimizer")

    for _ in range(args.warmup):
        step(False)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(False)
    sync(device)
    sec = time.perf_counter() - t0
    for _ in range(args.steps):  # the same steps again, each phase synchronised and timed
        step(True)
    mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    profile = profile_steps(lambda: step(False), args.profile, device) if args.profile else None
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss_fn(model(x), y, g)[0].backward()
    flops = fc.get_total_flops() / b  # per sample, forward + backward
    tflops = flops * b * args.steps / sec / 1e12
    return {
        "samples_per_s": b * args.steps / sec,
        "seconds": sec,
        "params": count_params(model),
        "max_gpu_mem_gib": mem,
        "seconds_per_step": {k: v / args.steps for k, v in phases.items()},
        "gflop_per_sample": flops / 1e9,
        "achieved_tflops": tflops,
        "mfu": tflops / args.peak_tflops if args.peak_tflops else None,
        "profile": profile,
    }


def profile_steps(step, n: int, device, top: int = 15) -> dict:
    """torch.profiler over n train steps: the operators with the most self time on the device
    (CUDA kernels' time; on the CPU, CPU time), per step, and how many operator calls a step
    makes (many small kernels show as many calls of little time)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    acts = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        sync(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events)
    ops = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return {
        "clock": "device" if cuda else "cpu",
        "ms_per_step": total / 1e3 / n,
        "calls_per_step": sum(e.count for e in events) / n,
        "top": [
            {
                "op": e.key,
                "ms_per_step": getattr(e, key) / 1e3 / n,
                "share": getattr(e, key) / total,
                "calls_per_step": e.count / n,
            }
            for e in ops
        ],  # fmt: skip
    }


def bench_validation(data, args, device) -> dict:
    """One validation pass as train runs it (full-size images, batch 16, inference mode)."""
    from sirst5k.metrics import Metrics
    from trainer.data import val_batches
    from trainer.forward import predict_probs

    _, val = split_by_source(data.columns, 0.1, 42)
    model = build_model({"widths": args.widths, "blocks": args.blocks}).to(device).eval()
    t0, metrics = time.perf_counter(), Metrics()
    for image, mask, size in val_batches(data, val, 16):
        metrics.update(predict_probs(model, image.to(device)).cpu().numpy(), mask, size)
    return {"images": len(val), "seconds": time.perf_counter() - t0}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--workers", type=int, default=-1, help="-1: 0 on CPU, 8 on CUDA")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--widths", default="16,32,64,128,256")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--stream", action="store_true", help="read HDF5 per sample, not in memory")
    p.add_argument("--skip", choices=["data", "model"], default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last on the CPU too, as the trainer (CUDA: always)")  # fmt: skip
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on the CPU too")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="the device's peak TFLOP/s for the MFU column (H100 bf16 dense: 989)",
    )
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile N more train steps (torch.profiler)")  # fmt: skip
    p.add_argument("--out", default="benchmarks/out/bench_train.json")
    args = p.parse_args()
    args.widths = [int(v) for v in args.widths.split(",")]
    try:
        device = torch.device(resolve_device(args.device))
    except SirstError as e:
        sys.exit(f"error: {e}")
    if args.workers < 0:
        args.workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0

    t = time.perf_counter()
    data = StoreData(args.store, in_memory=not args.stream)
    load_s = time.perf_counter() - t
    rows, _ = split_by_source(data.columns, 0.1, 42)
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": describe_cpu(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "store": str(args.store),
        "in_memory": data.in_memory,
        "store_load_s": load_s,
        "batch_size": args.batch_size,
        "crop": args.crop,
        "workers": args.workers,
        "widths": args.widths,
        "blocks": args.blocks,
        "steps": args.steps,
        "channels_last": args.channels_last or device.type == "cuda",
        "bf16": args.bf16 or device.type == "cuda",
        "compile": args.compile,
    }
    if args.skip != "data":
        res["data"] = bench_data(data, rows, args, device)
    if args.skip != "model":
        res["model"] = bench_model(args, device)
        res["validation"] = bench_validation(data, args, device)
    if "data" in res and "model" in res:
        res["data_over_model"] = res["data"]["samples_per_s"] / res["model"]["samples_per_s"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"bench_train on {res['device']} (batch {args.batch_size}, crop {args.crop})")
    for col in ("path", "samples/s", "seconds", "note"):
        tab.add_column(col)
    if "data" in res:
        d = res["data"]
        note = f"{'memory' if data.in_memory else 'stream'}, {args.workers} workers"
        tab.add_row("data", f"{d['samples_per_s']:.1f}", f"{d['seconds']:.2f}", note)
    if "model" in res:
        m = res["model"]
        note = f"{m['params'] / 1e6:.2f} M params"
        if m["max_gpu_mem_gib"] is not None:
            note += f", {m['max_gpu_mem_gib']:.1f} GiB"
        tab.add_row("model", f"{m['samples_per_s']:.1f}", f"{m['seconds']:.2f}", note)
    if "model" in res:
        for phase, s in res["model"]["seconds_per_step"].items():
            tab.add_row(f"  {phase}", "", f"{s * 1e3:.1f} ms/step", "")
        m = res["model"]
        mfu = f", MFU {100 * m['mfu']:.1f} %" if m["mfu"] is not None else ""
        note = f"{m['gflop_per_sample']:.2f} GFLOP/sample, {m['achieved_tflops']:.3f} TFLOP/s{mfu}"
        tab.add_row("  flops", "", "", note)
        v = res["validation"]
        tab.add_row("validation", f"{v['images'] / v['seconds']:.1f} img/s",
                    f"{v['seconds']:.2f}", f"{v['images']} images")  # fmt: skip
    Console().print(tab)
    prof = res.get("model", {}).get("profile")
    if prof:
        top = Table(title=f"torch.profiler, {prof['clock']} self time: {prof['ms_per_step']:.1f} "
                    f"ms and {prof['calls_per_step']:.0f} operator calls per step")  # fmt: skip
        for col in ("operator", "ms/step", "share", "calls/step"):
            top.add_column(col)
        for r in prof["top"]:
            top.add_row(r["op"], f"{r['ms_per_step']:.2f}", f"{100 * r['share']:.1f} %",
                        f"{r['calls_per_step']:.0f}")  # fmt: skip
        Console().print(top)
    if "data_over_model" in res:
        print(f"data / model = {res['data_over_model']:.1f}x  ->  {out}")


if __name__ == "__main__":
    main()
