"""The training configuration: TrainConfig (every option, its default and its check) and the
named presets. Saved whole into config.json and every checkpoint."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sirst5k.errors import TrainError
from sirst5k.store import check_file, store_id
from trainer.checkpoint import read_checkpoint
from trainer.data import ALPHA_RANGE, FLIPS, KINDS
from trainer.losses import NEG_MODES
from trainer.registry import model_config, model_stride

OPTIMIZERS = ("adagrad", "adam")
DEFAULT_LR = {"adagrad": 0.05, "adam": 5e-4}

ALPHA_WITHOUT_FLY = (
    "--alpha-range draws the alpha of on-the-fly negatives: give --on-the-fly with it (the "
    "store's negatives have the alpha sirst5k synth gave them)"
)

# Named recipes; explicit options override them. Measured figures: docs/training.md.
PRESETS = {
    "paper": {},  # the paper's IV-C settings: the TrainConfig defaults
    # NUDT-SIRST on a 2-core CPU in about 30 minutes, synth and eval included. The whole store,
    # L_Neg off: at batch 16 the paper's L_Neg and its grouped batches cost 16-18 points of test
    # IoU on the two seeds of three that learned at all; warm-up guards against that Adagrad
    # collapse. Crop 96 and no flips (the images as they are): the best validation mean of the
    # 30-minute variants (until 2026-12-06: crop 64, 28 minutes, 8 orientations; then 2 for a
    # day; docs/experiments/2026-12-07-no-flips.md)
    "cpu30": dict(
        epochs=25, batch_size=16, crop=96, max_minutes=26.0, neg_loss="off", warmup=50,
        fit_budget=True, flips="none", model=dict(widths=[8, 16, 32, 64, 128], blocks=1),
    ),
    # the demo store in minutes on a CPU: cpu30's model, loss and warm-up
    "demo": dict(
        epochs=8, batch_size=16, crop=64, neg_loss="off", warmup=20,
        model=dict(widths=[8, 16, 32, 64, 128], blocks=1),
    ),
    # paper-scale model and batch on one H100 in about 10 minutes
    # (warm-up: without it Adagrad's first full-lr steps often collapse every output to
    # background for several epochs on batch 64; measured in docs/training.md)
    "gpu10": dict(epochs=60, batch_size=64, crop=256, workers=8, max_minutes=10.0, warmup=50),
}  # fmt: skip


@dataclass
class DataConfig:
    """What is trained on: the store, its rows, the crops and their augmentation."""

    store: str = ""  # the SIRST-5K store written by `sirst5k synth`
    store_id: str = ""  # the id of the store trained on (set by train): --resume refuses another
    # the store's rows to train on: original, negative (Eq. 4), implant and background (the
    # deployment frames of synth --backgrounds); validation is always held-out originals
    kinds: tuple[str, ...] = ("original", "negative", "implant", "background")
    originals_only: bool = False  # train on the original images only (no synthesized negatives)
    on_the_fly: bool = False  # synthesize a fresh negative per sample from the originals
    alpha_range: tuple[float, float] = ALPHA_RANGE  # on the fly: Eq. 3's alpha drawn from this
    # on the fly, with a store built with synth --backgrounds: the share of the items that are
    # its background crops with fresh targets implanted, and as they are (the rest: originals
    # with fresh negatives)
    implant_share: float = 0.0
    background_share: float = 0.0
    crop: int = 256  # training crop side in px, a multiple of 16; 0 = the whole canvas
    flips: str = "d4"  # training flips (trainer.data.FLIPS): d4 (8 orientations), hv, h, none
    scale_range: tuple[float, float] = (1.0, 1.0)  # zoom of each crop, log-uniform (1,1 = none)
    photometric: bool = False  # vary gamma, gain, blur and noise of each crop (image only)
    val_fraction: float = 0.1  # of the training source images, held out (originals) to validate


@dataclass
class OptimConfig:
    """The optimisation: schedule, optimizer, loss and budget."""

    epochs: int = 1500  # paper IV-C
    batch_size: int = 256  # paper IV-C; global over all processes under torchrun
    optimizer: str = "adagrad"  # paper IV-C; "adam" (BasicIRSTD's DNA-Net recipe) as an option
    lr: float = 0.05  # Adagrad, paper IV-C (adam: 5e-4 unless given)
    min_lr: float = 1e-5  # CosineAnnealingLR eta_min
    warmup: int = 0  # linear lr warm-up over the first N steps of epoch 1 (0 = none, paper)
    # weight EMA: validation, best.pt and last.pt's "model" are the exponential moving average
    # of the weights (BatchNorm statistics too), this decay per step; 0 = off (paper)
    ema: float = 0.0
    neg_loss: str = "sum"  # L_Neg: "sum" (Eq. 9), "min" (Algorithm 2) or "off"
    neg_weight: float = 1.0  # total = L_main + neg_weight * L_Neg
    max_minutes: float = 0.0  # stop after the epoch that passes this budget; 0 = no budget
    # after each epoch, epochs = as many as fit in max_minutes at the mean pace so far (the
    # cosine then spans the budget on any machine); an explicit epochs turns it off
    fit_budget: bool = False


@dataclass
class RuntimeConfig:
    """Where and how it runs: output, seed, device, loading, validation cadence."""

    out: str = "runs/train"  # run directory: config.json, log.csv, best.pt, last.pt, summary.json
    seed: int = 42  # init, validation split, sampling, augmentation
    device: str = "auto"  # auto | cpu | cuda
    workers: int = -1  # DataLoader workers; -1 = auto (0 on the CPU, up to 8 on CUDA)
    in_memory: str = "auto"  # auto | memory | stream
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True  # the channels_last layout (CUDA and CPU: 1.4x on 2 CPU cores)
    compile: bool = False  # torch.compile the training step's model (falls back to eager)
    val_every: int = 1  # validate every N epochs (and after the last one)
    val_batch_size: int = 16


PARTS = {"data": DataConfig, "optim": OptimConfig, "runtime": RuntimeConfig}
PART_OF = {f.name: part for part, cls in PARTS.items() for f in fields(cls)}  # option -> part


@dataclass
class TrainConfig:
    """Every training option, in parts; the options' names are unique across the parts, and
    make_config, the presets, the CLI and config.json's older flat form name them flat. Checked
    here, in __post_init__, as a whole (several checks span parts)."""

    # the model: "name" (trainer.registry.MODELS; absent = "aff-unet") and that model's options
    model: dict = field(default_factory=model_config)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    preset: str = ""  # the PRESETS entry this config started from

    def __post_init__(self):
        def bad(msg):
            raise TrainError(msg)

        d, o, r = self.data, self.optim, self.runtime
        if o.epochs < 1:
            bad(f"--epochs {o.epochs}: must be >= 1")
        if r.val_every < 1:
            bad(f"--val-every {r.val_every}: must be >= 1")
        if o.batch_size < 1 or r.val_batch_size < 1:
            bad(f"--batch-size {o.batch_size}: must be >= 1")
        if o.neg_loss not in NEG_MODES:
            bad(f"--neg-loss {o.neg_loss!r}: choose one of {', '.join(NEG_MODES)}")
        d.alpha_range = tuple(float(a) for a in d.alpha_range)
        if len(d.alpha_range) != 2 or not 0 <= d.alpha_range[0] <= d.alpha_range[1] <= 1:
            bad(f"--alpha-range {d.alpha_range}: give LO,HI with 0 <= LO <= HI <= 1")
        d.scale_range = tuple(float(a) for a in d.scale_range)
        lo, hi = (d.scale_range + (0.0, 0.0))[:2]
        if len(d.scale_range) != 2 or not 0.125 <= lo <= hi <= 8:
            bad(f"--scale-range {d.scale_range}: give LO,HI with 0.125 <= LO <= HI <= 8")
        if d.alpha_range != ALPHA_RANGE and not d.on_the_fly:  # the CLI: even the default
            bad(ALPHA_WITHOUT_FLY)
        if d.flips not in FLIPS:
            bad(f"--flips {d.flips!r}: choose one of {', '.join(FLIPS)}")
        if o.fit_budget and o.max_minutes <= 0:
            bad("--fit-budget fits --epochs to --max-minutes: give --max-minutes > 0")
        d.kinds = tuple(d.kinds)
        if not d.kinds or set(d.kinds) - set(KINDS):
            bad(f"--kinds {','.join(d.kinds)}: choose among {', '.join(KINDS)}")
        shares = (d.implant_share, d.background_share)
        if not all(0 <= v <= 1 for v in shares) or sum(shares) > 1:
            bad(f"--implant-share {shares[0]}, --background-share {shares[1]}: each in [0, 1], "
                "their sum <= 1")  # fmt: skip
        if sum(shares) > 0 and not d.on_the_fly:
            bad("--implant-share and --background-share draw on-the-fly items: give --on-the-fly")
        if d.on_the_fly and d.originals_only:
            bad("--on-the-fly and --originals-only exclude each other: choose one")
        for option in NO_OPS:  # options that would do nothing with the others
            if self.get(option) != DEFAULTS[option] and (why := self.no_op(option)):
                bad(why)
        if o.neg_loss != "off" and self.groups_used and o.batch_size < 4:
            bad(f"--batch-size {o.batch_size}: L_Neg needs >= 4 (a whole group of 4 rotations)")
        if not 0 <= d.val_fraction < 1:
            bad(f"--val-fraction {d.val_fraction}: must be in [0, 1)")
        if r.device not in ("auto", "cpu", "cuda") and not r.device.startswith("cuda:"):
            bad(f"--device {r.device!r}: choose auto, cpu or cuda")
        if r.in_memory not in ("auto", "memory", "stream"):
            bad(f"in_memory {r.in_memory!r}: choose auto, memory or stream")
        if o.optimizer not in OPTIMIZERS:
            bad(f"--optimizer {o.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        for name in ("lr", "min_lr", "neg_weight", "max_minutes"):  # nan and inf too
            value = getattr(o, name)
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                flag = "--" + name.replace("_", "-")
                bad(f"{flag} {value}: must be a finite number >= 0" + (" and > 0" * (name == "lr")))
        if not 0 <= r.seed < 2**32:
            bad(f"--seed {r.seed}: choose 0 <= seed < 2**32")
        if o.warmup < 0:
            bad(f"--warmup {o.warmup}: must be >= 0")
        if not 0 <= o.ema < 1:
            bad(f"--ema {o.ema}: a decay per step in [0, 1), such as 0.999; 0 = off")
        try:
            self.model = model_config(self.model)
        except (TypeError, ValueError) as e:
            bad(f"model options: {e}")
        stride = model_stride(self.model)
        if d.crop < 0 or d.crop % stride:
            bad(f"--crop {d.crop}: use a multiple of {stride} (the model's stride), or 0 for whole")

    def get(self, option: str) -> Any:
        """An option's value by its flat name (a field of one of the parts)."""
        return getattr(getattr(self, PART_OF[option]), option)

    def no_op(self, option: str) -> str:
        """Why `option` (a flat name) does nothing in this config, or "" when it does act."""
        value = self.get(option)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        d = self.data
        without = "--originals-only" if d.originals_only else "--on-the-fly"
        if option == "neg_loss" and value != "off" and (d.originals_only or d.on_the_fly):
            return (
                f"--neg-loss {shown}: L_Neg compares the store's 4 rotated negatives of a "
                f"target, which {without} does not train on; drop --neg-loss"
            )
        if option == "neg_weight" and not self.groups_used:
            why = "--neg-loss off" if self.optim.neg_loss == "off" else without
            return f"--neg-weight {shown}: weighs L_Neg, which {why} turns off; drop --neg-weight"
        if option == "kinds" and d.originals_only:
            return (
                f"--kinds {shown} and --originals-only both choose the rows to train on "
                "(--originals-only is --kinds original): give one"
            )
        if option == "scale_range" and d.crop == 0:
            return "--scale-range zooms crops: give a --crop > 0 with it"
        if option == "val_every" and d.val_fraction == 0:
            return f"--val-every {shown}: --val-fraction 0 leaves nothing to validate; drop it"
        return ""

    @property
    def groups_used(self) -> bool:
        """Whether L_Neg applies: the store's groups, not the originals alone or fresh samples."""
        d = self.data
        return self.optim.neg_loss != "off" and not d.originals_only and not d.on_the_fly

    def to_dict(self) -> dict:
        """The config as config.json and every checkpoint hold it: one dict per part."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A config from config.json or a checkpoint: grouped, or flat as runs saved it before
        the options were grouped (read the same way; unknown names are ignored)."""
        flat = flatten(d)
        parts = {part: {} for part in PARTS}
        for name, value in flat.items():
            if name in PART_OF:
                parts[PART_OF[name]][name] = value
        top = {k: flat[k] for k in ("model", "preset") if k in flat}
        return cls(**top, **{part: PARTS[part](**values) for part, values in parts.items()})


def flatten(config: dict) -> dict:
    """A saved config (grouped, or flat from before the grouping) as one flat dict."""
    flat = {k: v for k, v in config.items() if k not in PARTS or not isinstance(v, dict)}
    for part in PARTS:
        if isinstance(config.get(part), dict):
            flat.update(config[part])
    return flat


NO_OPS = ("neg_loss", "neg_weight", "kinds", "scale_range", "val_every")  # TrainConfig.no_op
DEFAULTS = {f.name: f.default for c in PARTS.values() for f in fields(c) if f.name in NO_OPS}


def _merge_model(base: dict, new: dict) -> dict:
    """Model options over the model dict so far; naming another model starts from its defaults
    (a preset's AFF U-Net widths do not carry over to a peer)."""
    if new.get("name", base.get("name")) != base.get("name"):
        return dict(new)
    return dict(base, **new)


def settle_fit_budget(d: dict, given: set[str]) -> None:
    """A preset's (or a saved run's) --fit-budget yields to an explicit --epochs, or to no
    --max-minutes, unless --fit-budget itself is given. d: a config dict; given: the options
    the user gave."""
    if "fit_budget" not in given and ("epochs" in given or not d["max_minutes"]):
        d["fit_budget"] = False


def make_config(preset: str = "", **overrides) -> TrainConfig:
    """A TrainConfig from a preset, then explicit overrides (None = not given)."""
    if preset and preset not in PRESETS:
        raise TrainError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    d = flatten(TrainConfig().to_dict())
    for k, v in PRESETS.get(preset, {}).items():
        d[k] = _merge_model(d["model"], v) if k == "model" else v
    for k, v in overrides.items():
        if v is None:
            continue
        d[k] = _merge_model(d["model"], v) if k == "model" else v
    settle_fit_budget(d, {k for k, v in overrides.items() if v is not None})
    if overrides.get("lr") is None and "lr" not in PRESETS.get(preset, {}):
        d["lr"] = DEFAULT_LR[d["optimizer"]] if d["optimizer"] in DEFAULT_LR else d["lr"]
    d["preset"] = preset
    if unknown := set(d) - set(PART_OF) - {"model", "preset"}:
        raise TypeError(f"unknown training option {sorted(unknown)[0]!r}")
    cfg = TrainConfig.from_dict(d)
    for option in NO_OPS:  # given, even at its default value, it would do nothing
        if overrides.get(option) is not None and (why := cfg.no_op(option)):
            raise TrainError(why)
    return cfg


# Options that --resume may change; every other setting comes from the run's own config.
RESUME_OPTIONS = (
    "epochs", "max_minutes", "fit_budget", "device", "workers", "in_memory", "compile",
)  # fmt: skip


def train_config(
    store: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    preset: str = "",
    resume: str | os.PathLike | None = None,
    **options: Any,
):
    """(TrainConfig, checkpoint dict or None): a new run's config from a preset and options, or
    the config of the run in `resume` with only RESUME_OPTIONS changed (None = not given)."""
    if resume is None:
        if not store or not out:
            raise TrainError("give STORE and --out DIR (or --resume DIR)")
        cfg = make_config(preset, store=str(store), out=str(out), **options)
        if options.get("alpha_range") is not None and not cfg.data.on_the_fly:  # even the default
            raise TrainError(ALPHA_WITHOUT_FLY)
        return cfg, None
    fix = f"{resume} holds no run to resume; start one with `sirst5k train STORE --out DIR`"
    last = Path(resume) / "last.pt"
    if not last.exists() and (Path(resume) / "best.pt").exists():  # last.pt failed (full disk)
        last = Path(resume) / "best.pt"  # the same state, as of the best epoch
    if last.exists():  # damaged from outside (it is written atomically)
        fix = (
            "the run cannot continue from it; its other files are untouched: evaluate "
            f"{resume}/best.pt, or train again into a new --out"
        )
    elif (Path(resume) / "config.json").exists():  # a run killed in its first epoch
        fix = (
            f"{resume} holds a run that never finished its first epoch (no last.pt nor "
            f"best.pt): start it again with `sirst5k train STORE --out {resume} --force`"
        )
    ckpt = read_checkpoint(last, fix=fix)
    if "optimizer" not in ckpt or "rng" not in ckpt:
        raise TrainError(f"{last}: not a checkpoint of a training run (no optimizer state); {fix}")
    ignored = [
        k for k, v in options.items() if v not in (None, False, {}) and k not in RESUME_OPTIONS
    ]
    ignored += ["preset"] * bool(preset) + ["out"] * bool(out)
    if ignored:
        names = ", ".join("--" + k.replace("_", "-") for k in ignored)
        raise TrainError(
            f"--resume continues the run with its saved settings; drop {names} "
            "(only --epochs, --max-minutes, --fit-budget, --device, --workers, --in-memory, "
            "--compile may change)"
        )
    d = flatten(ckpt["config"])
    given = {k for k in RESUME_OPTIONS if options.get(k) is not None}
    d.update({k: options[k] for k in given})
    settle_fit_budget(d, given)  # the epochs given (or no budget left to fit) stand
    trained_on = d.get("store", "")
    if store:
        d["store"] = str(store)
    if d.get("store_id"):  # runs before store ids were recorded: not checked
        with check_file(d["store"]) as f:
            now = store_id(f)
        if now != d["store_id"]:
            raise TrainError(
                f"{d['store']}: another store than the one the run {resume} trained on "
                f"({trained_on}, store id {d['store_id'][:8]}, this one {now[:8] or 'none'}); "
                "resume with that store, or start a new run with another --out"
            )
    d["out"] = str(resume)
    return TrainConfig.from_dict(d), ckpt
