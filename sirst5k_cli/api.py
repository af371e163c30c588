"""The Python API: what each `sirst5k` command does, as one function call.

    from sirst5k_cli import synthesize, train, evaluate, load_model

    synthesize("path/to/NUDT-SIRST", "data/nudt.h5")                   # sirst5k synth
    summary = train("data/nudt.h5", "runs/nudt", preset="cpu30")       # sirst5k train
    report = evaluate("path/to/NUDT-SIRST", checkpoint="runs/nudt/best.pt")  # sirst5k eval
    model = load_model("runs/nudt/best.pt")                            # a torch module

The commands are thin wrappers over these functions: the same defaults, the same checks, the
same errors (sirst5k.errors.SirstError, whose message is the one line the CLI prints). Torch is
imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike

# Options that --resume may change; every other setting comes from the run's own config.
RESUME_OPTIONS = (
    "epochs", "max_minutes", "fit_budget", "device", "workers", "in_memory", "compile",
)  # fmt: skip


def synthesize(
    source: PathLike,
    out: PathLike,
    *,
    alpha: float = 0.1,
    s: int = 3,
    grid: int = 8,
    sigma: float = 50.0,
    mu: float = 255.0,
    resize: str = "bilinear",
    label: str = "rotate",
    seed: int = 0,
    split: PathLike | Sequence[PathLike] | None = None,
    force: bool = False,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    compress: str = "none",
) -> dict[str, Any]:
    """Build the SIRST-5K store OUT from the labelled dataset SOURCE; return its summary.

    The options are the paper's (alpha Eq. 3, s Eq. 4, grid/sigma/mu Eq. 1); docs/synthesis.md.
    `split`: None (split files found in SOURCE), a folder or one file (like `--split X`), or
    [train_file, test_file] (like `--split TRAIN --split TEST`). The summary names the split
    files used (train_split, test_split) and lists `warnings`. `compress`: the images'
    lossless filter, "none", "lzf" or "gzip-1".."gzip-9" (docs/store.md).
    """
    from sirst5k_cli.synth import SynthConfig, build_store

    cfg = SynthConfig(alpha, s, grid, sigma, mu, resize, label, seed)
    return build_store(source, out, cfg, split, force, skip_bad, progress, compress=compress)


def train_config(
    store: PathLike | None = None,
    out: PathLike | None = None,
    *,
    preset: str = "",
    resume: PathLike | None = None,
    **options: Any,
):
    """(TrainConfig, checkpoint dict or None): a new run's config from a preset and options, or
    the config of the run in `resume` with only RESUME_OPTIONS changed (None = not given)."""
    from sirst5k.errors import TrainError
    from trainer.model import read_checkpoint
    from trainer.train import ALPHA_WITHOUT_FLY, TrainConfig, make_config, settle_fit_budget

    if resume is None:
        if not store or not out:
            raise TrainError("give STORE and --out DIR (or --resume DIR)")
        cfg = make_config(preset, store=str(store), out=str(out), **options)
        if options.get("alpha_range") is not None and not cfg.on_the_fly:  # even the default
            raise TrainError(ALPHA_WITHOUT_FLY)
        return cfg, None
    fix = f"{resume} holds no run to resume; start one with `sirst5k train STORE --out DIR`"
    if (Path(resume) / "last.pt").exists():  # damaged from outside (it is written atomically)
        fix = (
            "the run cannot continue from it; its other files are untouched: evaluate "
            f"{resume}/best.pt, or train again into a new --out"
        )
    elif (Path(resume) / "config.json").exists():  # a run killed in its first epoch
        fix = (
            f"{resume} holds a run that never finished its first epoch (no last.pt): start it "
            f"again with `sirst5k train STORE --out {resume} --force`"
        )
    ckpt = read_checkpoint(Path(resume) / "last.pt", fix=fix)
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
    d = dict(ckpt["config"])
    given = {k for k in RESUME_OPTIONS if options.get(k) is not None}
    d.update({k: options[k] for k in given})
    settle_fit_budget(d, given)  # the epochs given (or no budget left to fit) stand
    if store:
        d["store"] = str(store)
    d["out"] = str(resume)
    return TrainConfig.from_dict(d), ckpt


def train(
    store: PathLike | None = None,
    out: PathLike | None = None,
    *,
    preset: str = "",
    resume: PathLike | None = None,
    force: bool = False,
    hooks: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Train the AFF U-Net on a store into the run folder OUT; return the run's summary.

    options are TrainConfig's fields (epochs, batch_size, neg_loss, on_the_fly, model=dict(...),
    ...; docs/training.md); a preset fills the ones not given. resume=DIR continues that run.
    model=dict(name="acm") trains a peer of trainer.peers.MODELS instead (its own defaults; the
    checkpoint records the name, so evaluate/predict/load_model need nothing more).
    """
    from sirst5k.store import check_file
    from trainer.train import train as run_training

    cfg, ckpt = train_config(store, out, preset=preset, resume=resume, **options)
    check_file(cfg.store).close()
    return run_training(cfg, resume=ckpt, force=force, hooks=hooks)


def evaluate(
    data: PathLike,
    *,
    checkpoint: PathLike | None = None,
    method: str | None = None,
    out: PathLike | None = None,
    split: PathLike | None = None,
    threshold: float | None = None,
    device: str = "auto",
    k: float | None = None,
    batch_size: int | None = None,
    tile: int | None = None,
    tile_halo: int | None = None,
    tta: bool = False,
    attention_window: int | None = None,
    precision: str | None = None,
    legacy_fa: bool = False,
    worst: int = 8,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score a checkpoint or a classical method on DATA's test images (a store or a dataset
    folder); write metrics.json, per_image.csv, roc.csv, pd_fa.png and overlays into OUT
    (default: the checkpoint's folder/eval, or runs/eval-METHOD); return metrics.json's dict.
    progress(n, total) is called as batches of n images are done. A network runs frames with a
    side over `tile` px in tiles with `tile_halo` px of context (trainer.evaluate.tiled; None:
    the defaults there); the AFF U-Net's channel attention pools over `attention_window` px
    cells (None: trainer.evaluate.WINDOW; 0: the whole input); `tta` averages a network
    over the 8 flips and rotations of each image (those it was trained on, for --flips
    hv/h); `precision` "bf16" runs a .pt network in bf16 autocast (None: "fp32"); a pixel
    is target when the network's probability is > `threshold` (None: 0.5). Network options
    are refused with a method."""
    from trainer import evaluate as ev
    from trainer.bundled import BUNDLED

    predictor = ev.make_predictor(
        checkpoint, method, device, k, tile, tile_halo, attention_window, tta, threshold, precision
    )
    threshold = 0.5 if threshold is None else threshold
    if out is None:  # beside the checkpoint; runs/eval-NAME for a method or a bundled model
        path = Path(predictor.info.get("checkpoint", ""))
        bundled = not checkpoint or path in BUNDLED.values()
        out = Path("runs") / f"eval-{method or path.stem}" if bundled else path.parent / "eval"
    source = ev.open_data(data, split, skip_bad)
    step = (lambda n: progress(n, source.n)) if progress else None
    report = ev.evaluate(source, predictor, Path(out), threshold, legacy_fa, batch_size, worst,
                         progress=step)  # fmt: skip
    return report | {"out": str(out)}


def predict(
    images: PathLike | list[PathLike],
    out: PathLike,
    *,
    checkpoint: PathLike | None = None,
    method: str | None = None,
    threshold: float | None = None,
    device: str = "auto",
    k: float | None = None,
    batch_size: int | None = None,
    tile: int | None = None,
    tile_halo: int | None = None,
    tta: bool = False,
    attention_window: int | None = None,
    precision: str | None = None,
    limit: int | None = None,
    overlay: bool = True,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write OUT/<name>.png target masks (0/255, each image's size) for IMAGES (files or
    folders, searched recursively), and overlays; return a summary."""
    from trainer import evaluate as ev

    inputs = [images] if isinstance(images, str | os.PathLike) else list(images)
    predictor = ev.make_predictor(
        checkpoint, method, device, k, tile, tile_halo, attention_window, tta, threshold, precision
    )
    threshold = 0.5 if threshold is None else threshold
    return ev.predict(inputs, predictor, Path(out), threshold, limit, skip_bad, overlay,
                      batch_size, progress=progress)  # fmt: skip


def export(
    checkpoint: PathLike,
    out: PathLike,
    *,
    opset: int = 17,
    attention_window: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the checkpoint's model as ONNX (trainer/export.py), the AFF U-Net's attention
    window built in; an existing OUT is replaced only with `force`. Return a summary with the
    largest difference from PyTorch on odd-sized inputs (None without ONNX Runtime)."""
    from sirst5k.errors import UserError
    from trainer.bundled import resolve
    from trainer.export import export_onnx

    if Path(out).exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it, or choose another -o")
    return export_onnx(resolve(checkpoint), out, opset, attention_window)


def load_model(checkpoint: PathLike, device: str = "cpu"):
    """The trained network of a checkpoint (the AFF U-Net or the peer its model_config names),
    in eval mode on `device` (weights_only loading).

    It takes raw 0..255 grey images (B, 1, H, W) as float and returns a list of logits, the
    full-resolution one first; trainer.model.predict_probs turns them into probabilities.
    """
    from trainer.bundled import resolve
    from trainer.model import load_model as load
    from trainer.model import resolve_device

    return load(resolve(checkpoint), resolve_device(device))[0]


def compare(
    data: PathLike,
    *,
    checkpoints: list[PathLike] = (),
    methods: list[str] = (),
    out: PathLike = "runs/compare",
    split: PathLike | None = None,
    device: str = "auto",
    k: dict[str, float] | None = None,
    threshold: float | None = None,
    tta: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every checkpoint (a run folder means its best.pt) and classical method on the
    same DATA with the same metrics, like the paper's Table I; write OUT/compare.csv and
    OUT/compare.md and each evaluation into OUT/<name>/. `k` maps a method to its k, `threshold`
    and `tta` apply to the networks. Every entry is loaded and checked before any runs. A
    checkpoint is named by its run folder, with as many parent folders as make the names
    unique. Returns one row per entry."""
    import csv

    from sirst5k.errors import UserError
    from trainer import evaluate as ev
    from trainer.bundled import resolve

    k = dict(k or {})
    if unknown := sorted(set(k) - set(methods)):
        raise UserError(f"--k {unknown[0]}=...: {unknown[0]} is not among the --method given")
    paths = [resolve(c) for c in checkpoints]  # a run folder: its best.pt
    if len(set(map(Path.resolve, paths))) < len(paths):
        raise UserError("compare: a checkpoint is given twice")
    names = list(methods) + _unique_names(paths)
    if not names:
        raise UserError("compare: give at least one run, checkpoint or --method")
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"compare: two entries are named {clash[0]!r}; rename the run folder")
    predictors = [ev.make_predictor(method=m, k=k.get(m)) for m in methods]
    predictors += [ev.make_predictor(p, None, device, None, None, None, None, tta, threshold)
                   for p in paths]  # fmt: skip
    threshold = 0.5 if threshold is None else threshold
    out = Path(out)
    rows = []
    for name, predictor in zip(names, predictors, strict=True):
        if progress:
            progress(name)
        source = ev.open_data(data, split, False)
        r = ev.evaluate(source, predictor, out / name, threshold, worst=0)
        pu = r["paper_units"]
        rows.append({
            "name": name, "iou": pu["iou_x1e2"], "niou": pu["niou_x1e2"], "pd": pu["pd_x1e2"],
            "fa": pu["fa_x1e6"], "params_m": r["params"] / 1e6 if r["params"] else None,
            "images_per_s": r["timing"]["images_per_s"], "images": r["images"],
            "rule": r["rule"] + (", tta 8" if r.get("tta") else ""),
        })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)

    def fmt(v, digits=2):
        return "-" if v is None else f"{v:.{digits}f}"

    md = [
        f"Data: {data} ({rows[0]['images']} images). IoU, nIoU, Pd x1e2; Fa x1e6 (corrected).",
        "",
        "| method | IoU | nIoU | Pd | Fa | params (M) | images/s | rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [fmt(r["iou"]), fmt(r["niou"]), fmt(r["pd"]), fmt(r["fa"], 1)]
        cells += [fmt(r["params_m"]), fmt(r["images_per_s"], 1), r["rule"]]
        md.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    (out / "compare.md").write_text("\n".join(md) + "\n")
    return rows


def _unique_names(paths: list[Path]) -> list[str]:
    """Each checkpoint's name: its run folder (best.pt) or file stem, with as many parent
    folders in front as make the names unique ("a/run", "b/run")."""

    def name(p: Path, depth: int) -> str:
        parts = (p.parent if p.name == "best.pt" else p.with_suffix("")).resolve().parts
        return "/".join(parts[-depth:])

    depth = {p: 1 for p in paths}
    while True:
        names = [name(p, depth[p]) for p in paths]
        clash = {n for n in names if names.count(n) > 1}
        if not clash:
            return names
        grown = False
        for p, n in zip(paths, names, strict=True):
            if n in clash and depth[p] < len(p.resolve().parts):
                depth[p] += 1
                grown = True
        if not grown:
            return names
