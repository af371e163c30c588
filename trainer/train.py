"""The training loop: config, data, model, Adagrad + cosine schedule, validation, checkpoints.

Reads top to bottom (the config and its presets: trainer/config.py): set-up helpers (device
and torchrun, Ctrl-C, RNG state, run folder, log); then the loop in parts: `lr_at` (the
schedule, a pure function), `build_data` (store, validation split, sampler, loader;
trainer/data.py), `build_model_and_optimizer` (trainer/registry.py), `train_epoch` (the
batches), `end_epoch` (validation on the held-out originals at full size, log row, best.pt by
validation IoU, last.pt, all atomic; trainer/checkpoint.py) and `train` that strings them
together.

Paper recipe (IV-C): Adagrad lr 0.05, cosine annealing over the epochs (one lr per epoch; the
official code builds the scheduler but never steps it), batch 256, 1500 epochs, Xavier init.
The test split of the store is never read here: model selection uses the validation split only.

Resuming: every checkpoint holds the model, optimizer, RNG states, the epoch and the number of
batches done in it; the lr is a function of (epoch, step), so nothing else is needed. The
sampler is a pure function of (seed, epoch) and skips the done batches, so a resumed run ends
with the same weights as an uninterrupted one on the CPU. Ctrl-C is read between batches
(StopRequest), so an interrupted run saves a whole step. A loss that is not finite stops the run
before its step (check_loss): best.pt and last.pt stay those of the last good epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sirst5k.errors import CheckpointError, TrainError
from sirst5k.files import DeferredInterrupt, atomic_path, check_writable, write_error
from sirst5k.machine import describe_cpu
from sirst5k.metrics import Metrics
from sirst5k.plots import training_curves
from trainer.checkpoint import SCHEMA, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import (
    FreshDataset,
    GroupBatchSampler,
    StoreData,
    TrainDataset,
    available_memory,
    split_by_source,
    val_batches,
)
from trainer.forward import count_params, predict_probs, resolve_device
from trainer.losses import SirstLoss
from trainer.registry import build_model, model_stride

HEADS = 4  # deep-supervision heads logged (AFF U-Net: full, 1/2, 1/4, 1/8 resolution)
HEAD_FIELDS = tuple(f"p_mean_{i}" for i in range(HEADS)) + tuple(
    f"pos_frac_{i}" for i in range(HEADS)
)
LOG_FIELDS = (
    "epoch", "loss", "loss_main", "loss_neg", "val_iou", "val_niou", "val_pd", "val_fa",
    "lr", "samples_per_s", "seconds", "val_seconds", *HEAD_FIELDS,
)  # fmt: skip
RUN_FILES = ("config.json", "log.csv", "best.pt", "last.pt", "summary.json", "curves.png")


# ----------------------------------------------------------------------------- set-up helpers


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(cfg: TrainConfig) -> Dist:
    """Pick the device; init the process group when launched by torchrun (RANK, WORLD_SIZE)."""
    want = resolve_device(cfg.runtime.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if want.startswith("cuda"):
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return Dist(rank, world, device)
    return Dist(0, 1, torch.device(want))


class StopRequest(DeferredInterrupt):
    """Ctrl-C (SIGINT) asks the loop to stop at the next batch boundary, where the state saved
    is a whole number of steps and resumes exactly; a second Ctrl-C stops at once (last.pt is
    then the previous epoch's). Under DDP every rank stops after the same step."""

    message = "\nCtrl-C: saving after this batch (Ctrl-C again: stop now)"

    def now(self, ddp: Dist, device: torch.device) -> bool:
        """Whether a stop was asked for, on any rank."""
        if ddp.world == 1:
            return self.asked
        flag = torch.tensor([int(self.asked)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def rng_state() -> dict:
    """Every RNG as tensors/lists, loadable with weights_only=True."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [int(version), list(internal), gauss],
        "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }  # fmt: skip


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prepare_out(out: Path, resume: bool, force: bool) -> None:
    if resume:
        return
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not force and not {"last.pt", "best.pt"} & set(existing):
        raise TrainError(
            f"{out} holds a run that never finished its first epoch (no last.pt nor best.pt, "
            f"nothing to resume); start it again with --force, or choose another --out"
        )
    if existing and not force:
        raise TrainError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume {out} to continue "
            "it, --force to overwrite it, or another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    for f in existing:
        (out / f).unlink()


def write_log(out: Path, rows: list[dict]) -> None:
    with atomic_path(out / "log.csv", force=True) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def read_log(out: Path, upto: int) -> list[dict]:
    path = out / "log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= upto]
    return [
        {k: int(v) if k == "epoch" else float(v) for k, v in r.items() if v != ""} for r in rows
    ]


def write_json(path: Path, obj: dict) -> None:
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def run_state(out: Path) -> str:
    """What the run folder holds to resume from: the end of a message on a failed write."""
    held = []
    for name in ("last.pt", "best.pt"):
        try:
            ckpt = torch.load(out / name, map_location="cpu", weights_only=True, mmap=True)
            held.append(f"{name} (epoch {ckpt['epoch']})")
        except Exception:  # missing or unreadable: not something to resume from
            pass
    if not held:
        return f"{out} holds no checkpoint yet: once it can be written, start again with --force"
    return (
        f"{out} holds {' and '.join(held)}: once it can be written, `sirst5k train --resume "
        f"{out}` continues from {held[0].split()[0]}"
    )


@contextmanager
def saving(out: Path):
    """A failed write of the run's files (a full or read-only disk) as one TrainError that says
    why and what the run folder holds."""
    try:
        yield
    except CheckpointError as e:
        raise TrainError(f"{e}; {run_state(out)}") from None
    except OSError as e:
        raise TrainError(f"{write_error(e.filename or out, e)}; {run_state(out)}") from None


@torch.no_grad()
def head_stats(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each head's mean probability, then each head's fraction of pixels predicted positive:
    a collapse to background shows as both falling towards 0 (log.csv, curves.png)."""
    means = [torch.sigmoid(o.detach().float()).mean() for o in outputs]
    return means + [(o.detach() > 0).float().mean() for o in outputs]


def head_keys(n_heads: int) -> list[str]:
    """The log fields of head_stats for a model with n_heads outputs."""
    return [f"p_mean_{i}" for i in range(n_heads)] + [f"pos_frac_{i}" for i in range(n_heads)]


def validate(model, data: StoreData, rows: np.ndarray, cfg: TrainConfig, device) -> dict:
    """Validation IoU/nIoU/Pd/Fa on whole real-size images; puts the model back in train mode."""
    model.eval()
    metrics = Metrics()
    cuda = device.type == "cuda"
    for image, mask, size in val_batches(data, rows, cfg.runtime.val_batch_size):
        x = image.to(device, non_blocking=True)
        probs = predict_probs(model, x, cuda and cfg.runtime.amp, cfg.runtime.channels_last)
        metrics.update(probs.cpu().numpy(), mask, size)  # (B, H, W)
    model.train()
    return metrics.compute()


# ----------------------------------------------------------------------------- the loop


def lr_at(cfg: TrainConfig, epoch: int, step: int) -> float:
    """The learning rate of batch `step` of epoch `epoch` (both from 0): a pure function.

    Linear warm-up over the first cfg.optim.warmup steps of epoch 0, then the paper's cosine,
    held for a whole epoch: CosineAnnealingLR's closed form over cfg.optim.epochs epochs.
    """
    o = cfg.optim
    if epoch == 0 and step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    cos = (1 + math.cos(math.pi * epoch / o.epochs)) / 2
    return o.min_lr + (o.lr - o.min_lr) * cos


def budget_epochs(budget_s: float, spent_s: float, pace_s: float, done: int = 1) -> int:
    """Epochs in all when `done` are done, spent_s have passed, and each further one takes
    pace_s: the most that end within budget_s (at least those done)."""
    return done + max(int((budget_s - spent_s) // max(pace_s, 1e-9)), 0)


@dataclass
class Run:
    """What train() builds once and the loop's parts share; the mutable state is at the end."""

    cfg: TrainConfig
    ddp: Dist
    out: Path
    data: StoreData
    val_rows: np.ndarray
    sampler: GroupBatchSampler
    loader: torch.utils.data.DataLoader
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped by DDP under torchrun
    optimizer: torch.optim.Optimizer
    criterion: SirstLoss
    info: dict
    epoch: int = 0  # epochs completed
    step: int = 0  # batches done in epoch `epoch`
    best: dict = field(default_factory=lambda: {"epoch": -1, "val_iou": -1.0})
    rows: list = field(default_factory=list)  # log rows of the completed epochs
    partial: dict = field(default_factory=dict)  # running sums of the current epoch
    t_start: float = 0.0  # time.time() when this process started the run (--max-minutes)
    paces: list | None = None  # --fit-budget: this process's epoch seconds since it fitted
    boundary: bool = True  # the state is a whole number of steps: last.pt may be written
    ema: AveragedModel | None = None  # --ema: the averaged weights

    @property
    def scored(self) -> torch.nn.Module:
        """The weights that validation scores and checkpoints hold: the EMA's with --ema."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self) -> dict:
        extra = {}
        if self.ema is not None:  # the trained weights, for resuming, beside the averaged
            extra = {"train_model": self.model.state_dict(), "ema_steps": int(self.ema.n_averaged)}
        return extra | {
            "schema": SCHEMA,
            "model": self.scored.state_dict(),
            "model_config": dict(self.cfg.model),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "partial": dict(self.partial),
            "config": self.cfg.to_dict(),
            "rng": rng_state(),
            "best": dict(self.best),
            "params": self.info["params"],
        }


def empty_partial() -> dict:
    return {"loss": 0.0, "loss_main": 0.0, "loss_neg": 0.0, "n": 0, "samples": 0, "sec": 0.0} | {
        k: 0.0 for k in HEAD_FIELDS
    }


def build_data(cfg: TrainConfig, ddp: Dist):
    """(data, train_rows, val_rows, dataset, sampler, loader): the store, the validation split
    by source image, the training set (store rows or on-the-fly), the seeded sampler."""
    d, batch, seed = cfg.data, cfg.optim.batch_size, cfg.runtime.seed
    mode = {"auto": "auto", "memory": True, "stream": False}[cfg.runtime.in_memory]
    data = StoreData(d.store, in_memory=mode)
    train_rows, val_rows = split_by_source(
        data.columns, d.val_fraction, seed, d.originals_only, d.kinds
    )
    if len(train_rows) == 0:
        raise TrainError(f"{d.store}: no training samples left after the validation split")
    stride = model_stride(cfg.model)
    crop = d.crop or max(data.canvas) + (-max(data.canvas)) % stride
    augment = dict(scale_range=d.scale_range, photometric=d.photometric, flips=d.flips)
    if d.on_the_fly:  # as many fresh samples per epoch as the store's training rows
        dataset = FreshDataset(
            data, train_rows, crop, len(train_rows), d.alpha_range, **augment,
            implant_share=d.implant_share, background_share=d.background_share,
        )  # fmt: skip
    else:
        dataset = TrainDataset(data, train_rows, crop, group_crops=cfg.groups_used, **augment)
    if cfg.groups_used and batch // ddp.world < 4:
        raise TrainError(
            f"--batch-size {batch} over {ddp.world} processes leaves "
            f"{batch // ddp.world} per process; L_Neg needs >= 4 (a whole group)"
        )
    cuda = ddp.device.type == "cuda"
    sampler = GroupBatchSampler(
        dataset.groups, batch, seed, cfg.groups_used, ddp.rank, ddp.world,
        drop_last=cuda,  # one batch shape: cudnn autotunes once
    )  # fmt: skip
    workers = cfg.runtime.workers
    workers = workers if workers >= 0 else (min(8, os.cpu_count() or 1) if cuda else 0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_ignore_sigint if workers > 0 else None,
    )
    info = dict(train=len(train_rows), val=len(val_rows), workers=workers, crop=crop)
    return data, val_rows, sampler, loader, info


def activation_bytes(model: torch.nn.Module, crop: int) -> int:
    """Bytes of every leaf module's output for one sample at crop x crop, from a forward at
    most 64 px wide (cheap) scaled by area: what backward keeps alive, per sample."""
    side = min(crop, 64)
    side += (-side) % int(getattr(model, "stride", 16))
    total = [0]

    def hook(module, inputs, output):
        outs = output if isinstance(output, list | tuple) else [output]
        total[0] += sum(t.numel() * t.element_size() for t in outs if torch.is_tensor(t))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()  # BatchNorm's running statistics stay untouched
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, side, side, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0] * (crop / side) ** 2)


def check_memory(cfg: TrainConfig, model: torch.nn.Module, crop: int, ddp: Dist) -> None:
    """Refuse, before the first step, a batch whose activations cannot fit in memory (the
    kernel would kill the run without a word). 1.5 x the leaf outputs matched a measured peak
    (default model, batch 8, crop 256: 1.67 GB against 1.26 GB of leaf outputs)."""
    batch = cfg.optim.batch_size
    per_rank = max(batch // ddp.world, 1)
    need = 1.5 * activation_bytes(model, crop) * per_rank
    if ddp.device.type == "cuda":
        free = torch.cuda.mem_get_info(ddp.device)[0]
    else:
        free = available_memory()
    if need > 0.8 * free:
        fits = max(int(0.8 * free / (need / per_rank)), 0) * ddp.world
        hint = f"--batch-size {fits} fits" if fits >= 1 else "a smaller --crop is needed"
        raise TrainError(
            f"--batch-size {batch} at --crop {crop} needs about {need / 2**30:.1f} GiB "
            f"for activations and {ddp.device.type} has {free / 2**30:.1f} GiB free: {hint} "
            "(or --preset cpu30 on a CPU)"
        )


def build_model_and_optimizer(cfg: TrainConfig, device: torch.device):
    """The config's model (initialised from the seed: identical on every rank; the AFF U-Net
    Xavier, the peers PyTorch's defaults) and its optimizer."""
    torch.manual_seed(cfg.runtime.seed)
    model = build_model(cfg.model).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam if cfg.optim.optimizer == "adam" else torch.optim.Adagrad
    return model, opt(model.parameters(), lr=cfg.optim.lr)


def check_loss(run: Run, loss: torch.Tensor) -> None:
    """Raise TrainError at the first loss that is not finite (on any rank under DDP), before its
    step could carry it into the weights: one line naming the epoch and the likely cause."""
    bad = (~torch.isfinite(loss.detach())).to(torch.int32).reshape(1)
    if run.ddp.world > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if not bad.item():
        return
    last = run.out / "last.pt"
    kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint yet"
    raise TrainError(
        f"epoch {run.epoch + 1}, step {run.step + 1}: the loss is {loss.item()}, training "
        f"diverged: --lr {lr_at(run.cfg, run.epoch, run.step):g} is likely too high (try a "
        f"tenth of it, or --warmup), or --neg-weight {run.cfg.optim.neg_weight:g}; {kept}"
    )


def train_epoch(run: Run, stop: StopRequest, hooks) -> None:
    """The batches of epoch run.epoch from run.step on; raises KeyboardInterrupt on a stop."""
    cfg, ddp, partial = run.cfg, run.ddp, run.partial
    device = ddp.device
    cuda = device.type == "cuda"
    run.sampler.set_epoch(run.epoch, start=run.step)
    n_steps = len(run.sampler) + run.step
    t0 = time.time()
    try:
        for batch in run.loader:
            run.boundary = False
            x = batch["image"].to(device, non_blocking=True).float()  # (B, 1, c, c)
            y = batch["mask"].to(device, non_blocking=True)  # (B, 1, c, c) 0/1
            g = batch["group"].to(device, non_blocking=True)  # (B,) group id or -1
            if cfg.runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", torch.bfloat16, enabled=cuda and cfg.runtime.amp):
                outputs = run.net(x)
            loss, main, neg = run.criterion(outputs, y, g)  # float32 whatever the autocast
            check_loss(run, loss)
            for group in run.optimizer.param_groups:
                group["lr"] = lr_at(cfg, run.epoch, run.step)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            if run.ema is not None:
                run.ema.update_parameters(run.model)
            run.step += 1
            logged = outputs[:HEADS]  # a peer may have more heads (UIU-Net: 7); log the first 4
            stats = torch.stack(
                [loss.detach(), main.detach(), neg.detach(), *head_stats(logged)]
            ).tolist()
            for k, v in zip(("loss", "loss_main", "loss_neg"), stats, strict=False):
                partial[k] += v
            for k, v in zip(head_keys(len(logged)), stats[3:], strict=True):
                partial[k] += v
            partial["n"] += 1
            partial["samples"] += len(x) * ddp.world
            run.boundary = True
            if ddp.main and hooks:
                sec = partial["sec"] + time.time() - t0
                hooks.on_step(
                    dict(epoch=run.epoch, step=run.step, steps=n_steps, loss=stats[0],
                         samples_per_s=partial["samples"] / max(sec, 1e-9))
                )  # fmt: skip
            if stop.now(ddp, device):
                raise KeyboardInterrupt
    finally:
        partial["sec"] += time.time() - t0


def end_epoch(run: Run, hooks) -> None:
    """Validate (rank 0, when due), log the epoch, write best.pt and last.pt."""
    cfg, partial = run.cfg, run.partial
    row = {"epoch": run.epoch + 1, "lr": lr_at(cfg, run.epoch, max(run.step - 1, 0))}
    n = max(partial["n"], 1)
    for k in ("loss", "loss_main", "loss_neg", *head_keys(run.info["heads"])):
        row[k] = partial[k] / n
    row["samples_per_s"] = partial["samples"] / max(partial["sec"], 1e-9)
    row["seconds"] = partial["sec"]

    def validate_into(row: dict) -> None:
        if run.ddp.main and len(run.val_rows):
            t = time.time()
            m = validate(run.scored, run.data, run.val_rows, cfg, run.ddp.device)
            row.update({f"val_{k}": m[k] for k in ("iou", "niou", "pd", "fa")})
            row["val_seconds"] = time.time() - t

    if (run.epoch + 1) % cfg.runtime.val_every == 0 or run.epoch + 1 == cfg.optim.epochs:
        validate_into(row)
    run.boundary = False
    run.epoch, run.step, run.partial = run.epoch + 1, 0, empty_partial()
    # fitted after epoch 1, then again after every epoch at the mean pace so far (a VM's pace
    # drifts); before last.pt, so a resume keeps the count, and a resumed process does not refit
    if cfg.optim.fit_budget and (run.epoch == 1 or run.paces is not None):
        run.paces = (run.paces or []) + [row["seconds"] + row.get("val_seconds", 0.0)]
        fit_epochs(run, float(np.mean(run.paces)), hooks)
        if run.epoch == cfg.optim.epochs and "val_iou" not in row:  # fitted to end with this epoch
            validate_into(row)
    run.boundary = True
    if not run.ddp.main:
        return
    run.rows.append(row)
    with saving(run.out):
        write_log(run.out, run.rows)
        # best by validation IoU; without a validation split the last epoch is best
        if iou_rank(row) > iou_rank(run.best) or not len(run.val_rows):
            run.best = {"epoch": run.epoch, "val_iou": row.get("val_iou", -1.0)}
            run.best.update({k: row[k] for k in row if k.startswith("val_")})
            save_checkpoint(run.checkpoint(), run.out / "best.pt")
        save_checkpoint(run.checkpoint(), run.out / "last.pt")
    if hooks:
        hooks.on_epoch(row)


def iou_rank(row: dict) -> float:
    """A row's validation IoU for choosing best.pt: -1 unmeasured, 0 undefined (None: nothing
    is a target or predicted in the validation images)."""
    iou = row.get("val_iou", -1.0)
    return 0.0 if iou is None else iou


def fit_epochs(run: Run, pace: float, hooks) -> None:
    """Set the run's epochs to as many as fit in --max-minutes at `pace` (an epoch's training
    and validation seconds); under DDP every rank takes rank 0's count."""
    cfg = run.cfg
    spent = time.time() - run.t_start
    n = from_rank0(run, budget_epochs(60 * cfg.optim.max_minutes, spent, pace, run.epoch))
    if n == cfg.optim.epochs and run.epoch > 1:
        return
    cfg.optim.epochs = run.info["epochs"] = n
    if run.ddp.main:
        with saving(run.out):
            write_json(run.out / "config.json", cfg.to_dict())
        if hooks and hasattr(hooks, "on_fit"):
            hooks.on_fit(n, pace)


def from_rank0(run: Run, value: int) -> int:
    """Rank 0's value on every rank (under DDP; a clock or a pace differs between ranks)."""
    if run.ddp.world > 1:
        flag = torch.tensor([int(value)], device=run.ddp.device)
        dist.broadcast(flag, 0)
        value = int(flag.item())
    return value


def out_of_time(run: Run, t_start: float) -> bool:
    """Whether --max-minutes has passed; under DDP every rank follows rank 0's clock."""
    over = run.cfg.optim.max_minutes > 0 and time.time() - t_start > 60 * run.cfg.optim.max_minutes
    return bool(from_rank0(run, over))


def summarize(run: Run, stopped: str, t_start: float) -> dict:
    out, rows = run.out, run.rows
    return {
        "status": stopped,
        "epochs_done": run.epoch,
        "epochs": run.cfg.optim.epochs,
        "best": run.best,
        "last": rows[-1] if rows else None,
        "params": run.info["params"],
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in rows][-5:])) if rows else 0,
        "seconds": time.time() - t_start,
        "device": str(run.ddp.device),
        "cpu": describe_cpu(),  # the CPU's speed differs between machines of one name
        "world_size": run.ddp.world,
        "rank": run.ddp.rank,
        "train_samples": run.info["train"],
        "val_images": run.info["val"],
        "out": str(out),
        "best_pt": str(out / "best.pt"),
        "last_pt": str(out / "last.pt"),
        "curves": str(out / "curves.png"),
        "resume": f"sirst5k train --resume {out}",
    }


def train(cfg: TrainConfig, resume: dict | None = None, force: bool = False, hooks=None) -> dict:
    """Train; return the summary dict. `resume` is a checkpoint dict from last.pt.

    hooks: optional object with on_start(info), on_step(info) and on_epoch(row) methods (the
    CLI's progress bar); called on rank 0 only.
    """
    t_start = time.time()
    ddp = setup(cfg)
    out = Path(cfg.runtime.out)
    if ddp.main:  # a read-only --out is said so at once, not as a failed checkpoint later
        check_writable(out / "config.json")
    data, val_rows, sampler, loader, info = build_data(cfg, ddp)
    cfg.data.store_id = data.store_id  # in config.json and every checkpoint: --resume checks it
    model, optimizer = build_model_and_optimizer(cfg, ddp.device)
    check_memory(cfg, model, info["crop"], ddp)
    # only now, with store, options and memory checked, is an earlier run in --out replaced
    if ddp.main:
        prepare_out(out, resume is not None, force)
        with saving(out):
            write_json(out / "config.json", cfg.to_dict())
    if ddp.world > 1:
        dist.barrier()
    net = model
    if ddp.world > 1:
        ids = [ddp.device.index] if ddp.device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.runtime.compile:  # the training forward only; validation runs eager on whole images
        from torch import _dynamo

        _dynamo.config.suppress_errors = True  # a graph that fails to compile runs eager
        net = torch.compile(net)
    info |= dict(
        params=count_params(model), device=str(ddp.device), world=ddp.world,
        in_memory=data.in_memory, epochs=cfg.optim.epochs,
        heads=min(model.n_outputs, HEADS),
    )  # fmt: skip
    criterion = SirstLoss(cfg.optim.neg_loss if cfg.groups_used else "off", cfg.optim.neg_weight)
    run = Run(cfg, ddp, out, data, val_rows, sampler, loader, model, net, optimizer, criterion,
              info, partial=empty_partial(), t_start=t_start)  # fmt: skip
    if cfg.optim.ema:  # on every rank: DDP keeps the ranks' weights equal, so their averages too
        run.ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema), use_buffers=True
        )
    if resume is not None:
        model.load_state_dict(resume.get("train_model", resume["model"]))
        if run.ema is not None:
            if "train_model" not in resume:
                raise TrainError(f"{out}/last.pt holds no EMA weights for this --ema run")
            run.ema.module.load_state_dict(resume["model"])
            run.ema.n_averaged.fill_(int(resume["ema_steps"]))
        optimizer.load_state_dict(resume["optimizer"])
        run.epoch, run.step, run.best = resume["epoch"], resume.get("step", 0), resume["best"]
        run.partial |= dict(resume.get("partial") or {})
        set_rng_state(resume["rng"])
        run.rows = read_log(out, run.epoch) if ddp.main else []
    info["start_epoch"] = run.epoch
    if ddp.main and hooks:
        hooks.on_start(info)
    stopped = "completed"
    model.train()
    # Ctrl-C stays a request until the summary is written: a late one (or one that reaches this
    # rank after another rank stopped the run) cannot cut the files short
    with StopRequest(announce=ddp.main) as stop:
        try:
            while run.epoch < cfg.optim.epochs:
                train_epoch(run, stop, hooks)
                end_epoch(run, hooks)
                if stop.now(ddp, ddp.device) and run.epoch < cfg.optim.epochs:
                    raise KeyboardInterrupt
                if out_of_time(run, t_start) and run.epoch < cfg.optim.epochs:
                    budget = cfg.optim.max_minutes
                    stopped = f"stopped by --max-minutes {budget:g} after epoch {run.epoch}"
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
            if ddp.main and run.boundary:  # resume skips the batches done in this epoch
                with saving(out):
                    save_checkpoint(run.checkpoint(), out / "last.pt")
        data.close()
        summary = summarize(run, stopped, t_start)
        if ddp.main:
            with saving(out):
                write_json(out / "summary.json", summary)
                if run.rows:
                    with atomic_path(out / "curves.png", force=True) as tmp:
                        training_curves(run.rows, tmp, run.best["epoch"], f"{out.name}: {stopped}")
        if ddp.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return summary
