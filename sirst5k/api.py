"""The Python API: what each `sirst5k` command does, as one function call.

    import sirst5k

    sirst5k.synthesize("path/to/NUDT-SIRST", "data/nudt.h5")                   # sirst5k synth
    summary = sirst5k.train("data/nudt.h5", "runs/nudt", preset="cpu30")       # sirst5k train
    report = sirst5k.evaluate("path/to/NUDT-SIRST", checkpoint="runs/nudt/best.pt")  # eval
    model = sirst5k.load_model("runs/nudt/best.pt")                            # a torch module

The commands are thin wrappers over these functions: the same defaults, the same checks, the
same errors (sirst5k.errors.SirstError, whose message is the one line the CLI prints). The
modules that import torch (trainer, sirst5k.evaluation, sirst5k.inference) are imported inside
the functions that need them, so `import sirst5k` and the CLI start fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sirst5k.errors import UserError
from sirst5k.inference.bundled import BUNDLED, resolve
from sirst5k.io import IMAGE_DIRS, MASK_DIRS, split_args
from sirst5k.store import check_file
from sirst5k.synth import SynthConfig, build_store

PathLike = str | os.PathLike


def synthesize(
    source: PathLike,
    out: PathLike,
    *,
    split: PathLike | Sequence[PathLike] | None = None,
    force: bool = False,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    compress: str = "none",
    **options: Any,
) -> dict[str, Any]:
    """Build the SIRST-5K store OUT from the labelled dataset SOURCE; return its summary.

    `options` are sirst5k.synth.SynthConfig's fields, with its defaults and checks (a name not
    among them is a TypeError): the paper's alpha (Eq. 3), s (Eq. 4), grid, sigma and mu
    (Eq. 1), resize, label and seed (docs/synthesis.md). For the deployment sensor:
    `backgrounds`, a folder of its target-free frames, adds `implants` crops of `bg_crop` px
    with `per_frame` training targets implanted (signal over local background times a `gain`,
    zoomed by `zoom`, `margin` px of background cut around each; `mask_level`: masks where the
    signal is at least that fraction of the peak, not the labels) and `bg_negatives` crops left
    as they are; `noise_from`, a folder of its frames, is where Eq. 1's noise cells come from.

    `split`: None (split files found in SOURCE), a folder or one file (like `--split X`), or
    [train_file, test_file] (like `--split TRAIN --split TEST`). The summary names the split
    files used (train_split, test_split) and lists `warnings`. `compress`: the images'
    lossless filter, "none", "lzf" or "gzip-1".."gzip-9" (docs/store.md).

    OUT may not be one of the inputs, even with `force`: a file in SOURCE's images or masks,
    in `backgrounds` or `noise_from`, or a split file.
    """
    folders = {k: os.fspath(options[k]) for k in ("backgrounds", "noise_from") if options.get(k)}
    _refuse_input_as_out(out, source, split, folders.values())
    cfg = SynthConfig(**options | folders)
    return build_store(source, out, cfg, split, force, skip_bad, progress, compress=compress)


def _refuse_input_as_out(out, source, split, folders) -> None:
    """synth's OUT inside a folder it reads (SOURCE's images and masks, --backgrounds,
    --noise-from) or on a split file: refused, so that no input is ever replaced."""
    dest = Path(out).resolve()
    reads = [Path(source) / d for d in (*IMAGE_DIRS, *MASK_DIRS)] + [Path(f) for f in folders if f]
    for folder in reads:
        if dest == folder.resolve() or folder.resolve() in dest.parents:
            raise UserError(
                f"-o {out}: inside {folder}, which synth reads; write the store elsewhere, "
                "e.g. data/NAME.h5"
            )
    for path in split_args(split):
        if dest == path.resolve():
            raise UserError(f"-o {out}: the split file synth reads; choose another -o")


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
    model=dict(name="acm") trains a peer of trainer.registry.MODELS instead (its own defaults; the
    checkpoint records the name, so evaluate/predict/load_model need nothing more).
    """
    from trainer.config import train_config
    from trainer.train import train as run_training

    cfg, ckpt = train_config(store, out, preset=preset, resume=resume, **options)
    check_file(cfg.data.store).close()
    return run_training(cfg, resume=ckpt, force=force, hooks=hooks)


def evaluate(
    data: PathLike,
    *,
    checkpoint: PathLike | None = None,
    method: str | None = None,
    out: PathLike | None = None,
    split: PathLike | None = None,
    legacy_fa: bool = False,
    worst: int = 8,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score a checkpoint or a classical method on DATA's test images (a store or a dataset
    folder); write metrics.json, per_image.csv, roc.csv, pd_fa.png and overlays into OUT
    (default: the checkpoint's folder/eval, or runs/eval-METHOD); return metrics.json's dict.
    progress(n, total) is called as batches of n images are done.

    `options` say how the checkpoint or method runs: the fields of
    sirst5k.inference.predictors.Inference, documented there (threshold, device, k, batch_size,
    tile, tile_halo, tta, attention_window, precision), with its defaults; a name not among them
    is a TypeError, and a network's option is refused with a method."""
    from sirst5k import evaluation
    from sirst5k.inference.predictors import Inference

    run = Inference(**options)
    predictor = run.predictor(checkpoint, method)
    if out is None:  # beside the checkpoint; runs/eval-NAME for a method or a bundled model
        path = Path(predictor.info.get("checkpoint", ""))
        bundled = not checkpoint or path in BUNDLED.values()
        out = Path("runs") / f"eval-{method or path.stem}" if bundled else path.parent / "eval"
    source = evaluation.open_data(data, split, skip_bad)
    step = (lambda n: progress(n, source.n)) if progress else None
    report = evaluation.evaluate(source, predictor, Path(out), run.decision_threshold, legacy_fa,
                                 run.batch_size, worst, progress=step)  # fmt: skip
    return report | {"out": str(out)}


def predict(
    images: PathLike | list[PathLike],
    out: PathLike,
    *,
    checkpoint: PathLike | None = None,
    method: str | None = None,
    limit: int | None = None,
    overlay: bool = True,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Write OUT/<name>.png target masks (0/255, each image's size) for IMAGES (files or
    folders, searched recursively), and overlays; return a summary. No output may be an input
    image; existing files are replaced only with `force`, checked before anything runs.
    `options` are evaluate's: sirst5k.inference.predictors.Inference's fields."""
    from sirst5k import evaluation
    from sirst5k.inference.predictors import Inference

    inputs = [images] if isinstance(images, str | os.PathLike) else list(images)
    run = Inference(**options)
    return evaluation.predict(inputs, run.predictor(checkpoint, method), Path(out),
                              run.decision_threshold, limit, skip_bad, overlay, run.batch_size,
                              progress=progress, force=force)  # fmt: skip


def export(
    checkpoint: PathLike,
    out: PathLike,
    *,
    opset: int = 17,
    attention_window: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the checkpoint's model as ONNX (sirst5k/inference/export.py), the AFF U-Net's attention
    window built in; an existing OUT is replaced only with `force`, the checkpoint itself never.
    Return a summary with the largest difference from PyTorch on odd-sized inputs (None without
    ONNX Runtime)."""
    from sirst5k.inference.export import export_onnx

    ckpt = resolve(checkpoint)
    if Path(out).resolve() == Path(ckpt).resolve():
        raise UserError(
            f"-o {out}: that is the checkpoint being exported; choose another -o, e.g. "
            f"{Path(ckpt).with_suffix('.onnx')}"
        )
    if Path(out).exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it, or choose another -o")
    return export_onnx(ckpt, out, opset, attention_window)


def load_model(checkpoint: PathLike, device: str = "cpu"):
    """The trained network of a checkpoint (the AFF U-Net or the peer its model_config names),
    in eval mode on `device` (weights_only loading).

    It takes raw 0..255 grey images (B, 1, H, W) as float and returns a list of logits, the
    full-resolution one first; trainer.forward.predict_probs turns them into probabilities.
    """
    from trainer.checkpoint import load_model as load
    from trainer.forward import resolve_device

    return load(resolve(checkpoint), resolve_device(device))[0]


def compare(
    data: PathLike,
    *,
    checkpoints: list[PathLike] = (),
    methods: list[str] = (),
    out: PathLike = "runs/compare",
    split: PathLike | None = None,
    k: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Evaluate every checkpoint (a run folder means its best.pt) and classical method on the
    same DATA with the same metrics, like the paper's Table I; write OUT/compare.csv and
    OUT/compare.md and each evaluation into OUT/<name>/. `k` maps a method to its k; `options`
    are evaluate's but k (sirst5k.inference.predictors.Inference's fields: device, threshold,
    tta, tile, ...), for the networks, and batch_size for all. Every entry is loaded and
    checked before any runs. A checkpoint is named by its run folder, with as many parent
    folders as make the names unique. Returns one row per entry."""
    from sirst5k import evaluation
    from sirst5k.inference.predictors import Inference

    return evaluation.compare(data, checkpoints=checkpoints, methods=methods, out=Path(out),
                              split=split, k=k, run=Inference(**options),
                              progress=progress)  # fmt: skip
