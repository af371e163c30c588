"""CLI command `train`: a thin wrapper over trainer.train (torch imported inside the body).

Options left out take the preset's value (--preset), else the paper defaults of TrainConfig.
Library errors (TrainError, StoreError, CheckpointError, a CUDA out-of-memory) become one line
and exit 1; bad option values exit 2.
"""

from __future__ import annotations

import math
import time

import click

from sirst5k.api import train
from sirst5k.files import write_error
from sirst5k.fmt import fmt
from sirst5k_cli.cli_options import (
    DEVICE,
    SEED,
    FiniteFloat,
    errors_to_click,
    parse_range,
    progress_bar,
)
from trainer.registry import MODELS

AFF_ONLY = ("widths", "blocks", "no_attention")  # options of the AFF U-Net alone


def _widths(ctx, param, value):
    if value is None:
        return None
    try:
        widths = [int(v) for v in value.split(",")]
    except ValueError:
        widths = []
    if len(widths) != 5 or min(widths) < 1:
        raise click.BadParameter(f"{value!r}: give 5 positive integers, e.g. 16,32,64,128,256")
    return widths


def _pct(v) -> str:
    """A validation fraction in %; n/a where undefined (no target in the validation images)."""
    return fmt(None if v is None else 100 * v, none="n/a")


class _Progress:
    """rich progress bar: one task per epoch, loss and samples/s in the description. Where the
    output is no terminal (a log file, a pipe), a line at the first step of each epoch and then
    every EVERY seconds instead, so that a long epoch does not look hung."""

    EVERY = 30.0

    def __init__(self, console):
        self.console = console
        self.bar = progress_bar(console)
        self.task = None
        self.said = -math.inf  # time.monotonic() of the last step line (no terminal)

    def on_start(self, info):
        self.console.print(
            f"training {info['train']} samples, validating on {info['val']} "
            f"image{'s' * (info['val'] != 1)}; "
            f"{info['params'] / 1e6:.2f} M params on {info['device']} "
            f"(x{info['world']}), crop {info['crop']}, "
            f"{'in memory' if info['in_memory'] else 'streaming'}, {info['workers']} workers"
        )
        self.bar.start()

    def on_step(self, s):
        desc = f"epoch {s['epoch'] + 1} loss {s['loss']:.4f} {s['samples_per_s']:.0f} samples/s"
        if not self.console.is_terminal:
            now = time.monotonic()
            if now - self.said >= self.EVERY or s["step"] == 1:
                self.said = now
                self.console.print(f"{desc}: step {s['step']}/{s['steps']}")
            return
        if self.task is None:
            self.task = self.bar.add_task(desc, total=s["steps"])
        self.bar.update(self.task, description=desc, completed=s["step"], total=s["steps"])

    def on_epoch(self, r):
        val = ""
        if "val_iou" in r:
            val = f" val IoU {_pct(r['val_iou'])} Pd {_pct(r['val_pd'])} "
            val += f"Fa {1e6 * r['val_fa']:.2f}e-6"
        self.console.print(
            f"epoch {r['epoch']}: loss {r['loss']:.4f} (main {r['loss_main']:.4f}, "
            f"neg {r['loss_neg']:.4f}){val} lr {r['lr']:.4g} "
            f"{r['samples_per_s']:.0f} samples/s {r['seconds']:.1f} s"
        )
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None

    def on_fit(self, epochs, pace):
        n = f"{epochs} epoch{'s' * (epochs != 1)}"
        self.console.print(f"--fit-budget: {n} in all fit --max-minutes at {pace:.1f} s an epoch")

    def stop(self):
        self.bar.stop()


def _summary_table(s: dict):
    from rich.table import Table

    t = Table(title=f"sirst5k train: {s['status']}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    b = s["best"]
    rows = [("epochs done", f"{s['epochs_done']} / {s['epochs']}")]
    if b.get("epoch", -1) >= 0:
        rows.append(("best epoch", str(b["epoch"])))
    if "val_pd" in b:
        rows.append(
            (
                "best val IoU / nIoU / Pd / Fa",
                f"{_pct(b['val_iou'])} / {_pct(b['val_niou'])} / {_pct(b['val_pd'])} / "
                f"{1e6 * b['val_fa']:.2f}e-6",
            )
        )
    rows += [
        ("parameters", f"{s['params']:,}"),
        ("samples/s (train)", f"{s['samples_per_s']:.1f}"),
        ("time", f"{s['seconds']:.1f} s on {s['device']} x{s['world_size']}"),
        ("best / last checkpoint", f"{s['best_pt']}  {s['last_pt']}"),
        ("log, curves", f"{s['out']}/log.csv  {s['curves']}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


@click.command("train")
@click.argument("store", required=False, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (runs/NAME).")
@click.option(
    "--preset",
    type=click.Choice(["paper", "cpu30", "demo", "gpu10"]),
    help="A named recipe (docs/training.md); explicit options override it.",
)
# TrainConfig.model: the network
@click.option(
    "--model",
    "model_name",
    type=click.Choice(list(MODELS)),
    help="The network: the paper's AFF U-Net, or a peer written from its paper "
    "(docs/training.md); the checkpoint records it [aff-unet].",
)
@click.option("--no-attention", is_flag=True, default=None, help="U-Net without AFF (ablation).")
@click.option("--widths", callback=_widths, help="5 stage widths [16,32,64,128,256].")
@click.option("--blocks", type=click.IntRange(1), help="Residual blocks per stage [2].")
# TrainConfig.data: the rows trained on, the crops and their augmentation
@click.option(
    "--kinds",
    callback=lambda ctx, param, v: None if v is None else tuple(v.split(",")),
    help="The store's rows to train on, comma-separated among original, negative, implant, "
    "background [default: all].",
)
@click.option(
    "--originals-only",
    is_flag=True,
    default=None,
    help="Train on the original images only (ablation: no synthesized negatives).",
)
@click.option(
    "--on-the-fly",
    is_flag=True,
    default=None,
    help="Synthesize a fresh negative for every sample from the store's originals (new noise "
    "cell, alpha and rotation each epoch) instead of reading the store's fixed negatives.",
)
@click.option(
    "--alpha-range",
    callback=parse_range,
    help="With --on-the-fly: draw Eq. 3's alpha uniformly from LO,HI [0,0.2].",
)
@click.option(
    "--implant-share",
    type=click.FloatRange(0, 1),
    help="On the fly, from a store built with synth --backgrounds: the share of the items that "
    "are its background crops with fresh targets implanted [default: 0].",
)
@click.option(
    "--background-share",
    type=click.FloatRange(0, 1),
    help="On the fly: the share of the items that are its background crops as they are, every "
    "pixel background [default: 0].",
)
@click.option(
    "--crop",
    type=click.IntRange(0),
    help="Training crop in px, a multiple of the model's stride (16; alcnet 4, istdu-net 8, "
    "uiu-net 32) [256].",
)
@click.option(
    "--flips",
    type=click.Choice(["d4", "hv", "h", "none"]),
    help="Training flips: d4 (all 8 orientations), hv (left-right and up-down: 4), h "
    "(left-right: 2, the sky stays up), none [d4; cpu30: none].",
)
@click.option(
    "--scale-range",
    callback=parse_range,
    help="Zoom every training crop by a factor drawn log-uniformly from LO,HI, so targets come "
    "in more sizes, e.g. 0.5,2 [1,1: none].",
)
@click.option(
    "--photometric/--no-photometric",
    default=None,
    help="Vary every training crop's gamma, gain and offset, blur and sensor noise (image only) "
    "[off].",
)
@click.option(
    "--val-fraction",
    type=FiniteFloat(0, 1, max_open=True),
    help="Fraction of training source images held out for validation [0.1].",
)
# TrainConfig.optim: schedule, optimizer, loss, budget
@click.option("--epochs", type=click.IntRange(1), help="Epochs [paper: 1500].")
@click.option("--batch-size", type=click.IntRange(1), help="Global batch size [paper: 256].")
@click.option(
    "--optimizer",
    type=click.Choice(["adagrad", "adam"]),
    help="adagrad (paper) or adam (BasicIRSTD) [adagrad].",
)
@click.option(
    "--lr", type=FiniteFloat(0, min_open=True), help="Learning rate [adagrad 0.05, adam 5e-4]."
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    help="Linear lr warm-up over the first N steps (within epoch 1) [0].",
)
@click.option(
    "--ema",
    type=FiniteFloat(0, 1, max_open=True),
    help="Validate and save the weights' moving average (EMA), decay per step; 0 = off [0].",
)
@click.option(
    "--neg-loss",
    type=click.Choice(["group", "sum", "min", "off"]),
    help="L_Neg over the 4 rotations: group (one Soft-IoU over a group's pixels), sum (Eq. 9), "
    "min (Alg. 2), off [sum].",
)
@click.option("--neg-weight", type=FiniteFloat(0), help="total = main + w * L_Neg [1.0].")
@click.option(
    "--max-minutes",
    type=FiniteFloat(0),
    help="Stop cleanly after the epoch that passes this budget; 0 = none.",
)
@click.option(
    "--fit-budget/--no-fit-budget",
    default=None,
    help="After each epoch, set --epochs to as many as fit in --max-minutes at the mean pace "
    "so far, so the schedule spans the budget on any machine (the cpu30 preset; an explicit "
    "--epochs turns it off) [off].",
)
# TrainConfig.runtime
@click.option("--seed", type=SEED, help="Seed of init, split, sampling, augmentation [42].")
@click.option("--device", type=DEVICE, help="auto, cpu, cuda or cuda:N [auto].")
@click.option("--workers", type=click.IntRange(-1), help="DataLoader workers; -1 auto [-1].")
@click.option(
    "--in-memory/--stream",
    "in_memory",
    default=None,
    help="Hold the store in memory / stream it from HDF5 [auto: memory if it fits].",
)
@click.option(
    "--compile/--no-compile",
    "compile",
    default=None,
    help="torch.compile the training model: a compile of a minute or two first, faster steps "
    "after it where the machine gains from it (docs/training.md) [off].",
)
@click.option("--val-every", type=click.IntRange(1), help="Validate every N epochs [1].")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    help="Continue the run in this directory from its last.pt.",
)
@click.option("--force", is_flag=True, help="Overwrite a run already in --out.")
# an OSError: a write the trainer does not report itself (the run's own files do)
@errors_to_click("out", "resume_dir", line=write_error)
def train_cmd(store, out, preset, resume_dir, force, **opts):
    """Train the AFF U-Net (or a peer, --model) on a SIRST-5K STORE; writes --out DIR."""

    import torch
    from rich.console import Console

    console = Console(stderr=True)
    model = {}
    name = opts.pop("model_name")
    if name is not None:
        model["name"] = name
        given = [k for k in AFF_ONLY if opts[k] is not None]
        if name != "aff-unet" and given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            err = click.ClickException(f"{flags}: options of the AFF U-Net, not of --model {name}")
            err.exit_code = 2
            raise err
    if opts.pop("no_attention"):
        model["attention"] = False
    for key in ("widths", "blocks"):
        if opts[key] is not None:
            model[key] = opts[key]
        opts.pop(key)
    if opts["in_memory"] is not None:
        opts["in_memory"] = "memory" if opts["in_memory"] else "stream"
    hooks = _Progress(console)
    try:
        summary = train(store, out, preset=preset or "", resume=resume_dir, force=force,
                        hooks=hooks, model=model, **opts)  # fmt: skip
    except torch.cuda.OutOfMemoryError as e:
        raise click.ClickException(
            "CUDA out of memory: try a smaller --batch-size or --crop (docs/training.md)"
        ) from e
    finally:
        hooks.stop()
    report = summary["rank"] == 0  # under torchrun, rank 0 alone reports
    if report:
        console.print(_summary_table(summary))
    if summary["status"] == "interrupted":
        if report:
            console.print(f"interrupted: continue with `{summary['resume']}`")
        raise SystemExit(130)  # the shell's code for Ctrl-C: scripts must not read it as success
