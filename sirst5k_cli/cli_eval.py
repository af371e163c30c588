"""CLI commands `eval` and `predict`: thin wrappers over sirst5k.evaluation.

Library errors (sirst5k.errors.SirstError and its kinds: one line naming the
file and the fix) become click.ClickException (exit 1). torch is imported only inside the
commands, through sirst5k.evaluation, so `sirst5k --help` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from sirst5k.api import compare, evaluate, export, predict
from sirst5k.fmt import fmt
from sirst5k.inference import PRECISIONS
from sirst5k.inference.tiling import WINDOW_MAX
from sirst5k.io import collect_images
from sirst5k.reference import REFERENCE_ROWS
from sirst5k_cli.cli_options import (
    DEVICE,
    FiniteFloat,
    errors_to_click,
    method_choice,
    progress_bar,
)


def _predictor_options(f):
    """--checkpoint/--method/--k/--threshold/--device/--batch-size/--tile/--tile-halo/--tta/
    --attention-window/--precision/--skip-bad, shared by eval and predict: their keyword
    arguments of sirst5k.evaluate and sirst5k.predict (checkpoint, method, skip_bad and the
    fields of sirst5k.inference.predictors.Inference), passed on as they are (**options)."""
    options = [
        click.option(
            "--checkpoint",
            help="A trained .pt file or run folder (its best.pt), an exported .onnx, or a "
            "bundled model's name: real (for real frames of other sensors) or nudt "
            "(NUDT-SIRST alone) [real, unless --method is given].",
        ),
        click.option("--method", type=method_choice(), help="A classical detector instead."),
        click.option(
            "--k",
            type=FiniteFloat(),
            default=None,
            help="Method only: adaptive threshold T = mean + k*std of the score map "
            "(default: the method's own, see docs/evaluation.md).",
        ),
        click.option(
            "--threshold",
            type=FiniteFloat(0, 1),
            default=None,
            help="A network's pixel is target when its probability is > this [0.5].",
        ),
        click.option(
            "--device",
            type=DEVICE,
            default="auto",
            show_default=True,
            help="Where the network runs (auto: cuda if available); methods run on the CPU.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1),
            default=None,
            help="Images per call (on CUDA one forward pass [16]; on the CPU a network runs "
            "them side by side [a .pt model: the thread count, at most 4; an .onnx model: the "
            "thread count]; a method: 1).",
        ),
        click.option(
            "--tile",
            type=click.IntRange(0),
            default=None,
            help="A network runs frames with a side over N px as N x N tiles; a multiple of "
            "32, 0 = never [2048, a memory bound, for the AFF U-Net with its attention "
            "window; 256, the input size it was chosen at, for a network that pools over its "
            "whole input] (docs/evaluation.md).",
        ),
        click.option(
            "--tile-halo",
            type=click.IntRange(0),
            default=None,
            help="Px of context around each tile, a multiple of 32 [256 with the window, 64].",
        ),
        click.option(
            "--tta",
            is_flag=True,
            help="Test-time augmentation: average a network over the 8 flips and rotations "
            "of each image (8x the time; what it gains: docs/results.md); "
            "a network trained with --flips hv or h: over those 4 or 2 only; none: the plain eval.",
        ),
        click.option(
            "--attention-window",
            type=click.IntRange(0, WINDOW_MAX),
            default=None,
            help="The AFF U-Net's channel attention pools over N x N px cells of a frame, not "
            "the whole frame: large frames run whole as the 256 x 256 images it was chosen on; "
            "0 = the whole input (Eq. 5) [256]. An .onnx export has its own built in.",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default=None,
            help="A .pt network's arithmetic: fp32, or bf16 autocast (a CPU with AVX512-BF16 "
            "or AMX, or CUDA; refused where it would run slower) [fp32]. Speed and accuracy: "
            "docs/results.md.",
        ),
        click.option(
            "--skip-bad",
            is_flag=True,
            help="Skip unreadable images (eval: also missing masks and size mismatches), "
            "listed in the summary, instead of stopping at the first.",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _print_table(report: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    pu, legacy = report["paper_units"], "legacy" in report["fa_definition"]
    t = Table(title=f"{report['data']} ({report['images']} images, {report['rule']})",
              box=box.SIMPLE_HEAD, pad_edge=False)  # fmt: skip
    for col in ("method", "IoU", "nIoU", "Pd", "Fa x1e6", "Fa", "params M", "img/s"):
        left = col in ("method", "Fa")
        t.add_column(col, justify="left" if left else "right", no_wrap=True)
    params = report["params"] / 1e6 if report["params"] else None
    t.add_row(
        f"[bold]{report['predictor']}[/bold]",
        fmt(pu["iou_x1e2"], none="n/a"),  # undefined: a split without targets
        fmt(pu["niou_x1e2"], none="n/a"),
        fmt(pu["pd_x1e2"], none="n/a"),
        fmt(pu["fa_x1e6"], 3),
        "legacy" if legacy else "corr.",
        fmt(params),
        fmt(report["timing"]["images_per_s"], 1),
    )
    other = pu["fa_corrected_x1e6"] if legacy else pu["fa_legacy_x1e6"]
    other = fmt(other, 3, "n/a (not 256 x 256)")
    t.add_row("  (other Fa)", "", "", "", other, "corr." if legacy else "legacy")
    note = (
        "Reference rows: NUDT-SIRST 50/50 test split (664 images) as published; IoU, Pd x1e2, "
        "Fa x1e6. [B] BasicIRSTD retrain, [T1] SIRST-5K paper Table I (Fa definition not "
        "stated). corr. = corrected Fa (BasicIRSTD), legacy = DNA-Net's."
    )
    if report.get("comparable_to_papers"):
        t.add_section()
        for name, iou, pd, fa, par, fa_def in REFERENCE_ROWS:
            t.add_row(name, fmt(iou), "-", fmt(pd), fmt(fa, 3), fa_def, fmt(par), "-",
                      style="dim")  # fmt: skip
    else:
        note = (
            "The published rows are not shown: they were measured on NUDT-SIRST's 664-image "
            "test split, and this is other data."
        )
    # wide enough for every column even in a pipe or a log (rich would cut numbers at 80)
    console = Console(width=None if Console().is_terminal else 120)
    console.print(t)
    console.print(f"[dim]{note}[/dim]")


@click.command("eval")
@click.argument("data", type=click.Path(path_type=Path))
@_predictor_options
@click.option(
    "--split", type=click.Path(path_type=Path), help="Test split file or folder (dataset only)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: CKPT's folder/eval, or runs/eval-METHOD).",
)
@click.option("--legacy-fa", is_flag=True, help="Report DNA-Net's legacy Fa as 'fa' (papers).")
@click.option("--worst", type=click.IntRange(0), default=8, show_default=True,
              help="Overlay PNGs for this many worst images.")  # fmt: skip
@errors_to_click()  # an output folder that cannot be written, a full disk
def eval_cmd(data, split, out, legacy_fa, worst, **options):
    """Evaluate a checkpoint or a classical method on DATA's test images.

    DATA is a store (its test group) or a dataset folder (its test split, any layout sirst5k
    reads). Prints IoU, nIoU, Pd, Fa in the papers' units beside the papers' rows and writes
    metrics.json, per_image.csv, roc.csv, pd_fa.png and overlays/ into --out.
    """

    with progress_bar(quiet=True) as bar:
        task = bar.add_task("eval", total=None)
        report = evaluate(
            data, out=out, split=split, legacy_fa=legacy_fa, worst=worst,
            progress=lambda n, total: bar.update(task, advance=n, total=total), **options,
        )  # fmt: skip
    _print_table(report)
    if report["skipped"]:
        click.echo(f"skipped {len(report['skipped'])} image(s):")
        for line in report["skipped"]:
            click.echo(f"  {line}")
    click.echo(f"wrote {report['out']}/metrics.json, per_image.csv, roc.csv, pd_fa.png, overlays/")


@click.command("predict")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_predictor_options
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: <name>.png masks (0/255) and overlays/.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1), help="Only the first N images.")
@click.option("--overlay/--no-overlay", default=True, show_default=True,
              help="Also write overlays/<name>.png (magenta: predicted pixels).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace existing files in OUT (never an input).")
@errors_to_click()
def predict_cmd(images, out, limit, overlay, force, **options):
    """Predict target masks for IMAGES (files or folders, searched recursively; a dataset
    folder's masks/ are skipped).

    Any size, 8 or 16 bit, grey or colour. Writes OUT/<name>.png (0/255, the image's size);
    an existing file there only with --force, an input image never.
    """

    n = len(collect_images(images, out)[: limit or None])
    with progress_bar(quiet=True) as bar:
        task = bar.add_task("predict", total=n)
        s = predict(
            list(images), out, limit=limit, overlay=overlay, force=force,
            progress=lambda n: bar.advance(task, n), **options,
        )  # fmt: skip
    rate = s["written"] / s["predict_s"] if s["predict_s"] > 0 else 0.0
    click.echo(
        f"wrote {s['written']} mask(s) to {out} ({s['detections']} detections, "
        f"{s['rule']}, {rate:.1f} images/s)"
    )
    if s["skipped"]:
        click.echo(f"skipped {len(s['skipped'])} file(s):")
        for line in s["skipped"]:
            click.echo(f"  {line}")


@click.command("export")
@click.argument("checkpoint")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .onnx file to write.")  # fmt: skip
@click.option("--opset", type=click.IntRange(13), default=17, show_default=True)
@click.option("--attention-window", type=click.IntRange(0, WINDOW_MAX), default=256,
              show_default=True,
              help="Built into the graph: the AFF U-Net's channel attention pools over N x N "
              "px cells (as eval's default); 0 = the whole input.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing OUT.")
@errors_to_click()
def export_cmd(checkpoint, out, opset, attention_window, force):
    """Export CHECKPOINT as ONNX: raw grey 0..255 (B, 1, H, W) in, probabilities out.

    Dynamic batch, height and width; normalisation, padding and sigmoid inside the graph. Use the
    file as `--checkpoint model.onnx` in eval and predict (ONNX Runtime on the CPU).
    """

    s = export(checkpoint, out, opset=opset, attention_window=attention_window, force=force)
    check = (
        f"ONNX Runtime matches PyTorch to {s['max_abs_diff']:.1e} on odd-sized inputs"
        if s["max_abs_diff"] is not None
        else "not checked: pip install 'sirst5k[onnx]' for ONNX Runtime"
    )
    window = f"attention window {s['attention_window']} px" if s["attention_window"] else ""
    click.echo(f"wrote {out} (opset {opset}, {s['params']:,} parameters{', ' * bool(window)}"
               f"{window}); {check}")  # fmt: skip


def _parse_k(ctx, param, values) -> dict[str, float]:
    """--k METHOD=K, repeated, as {method: k}."""
    ks = {}
    for v in values:
        name, _, k = v.partition("=")
        try:
            ks[name] = float(k)
        except ValueError:
            raise click.BadParameter(f"{v!r}: use METHOD=K, e.g. tophat=3") from None
        if not math.isfinite(ks[name]):
            raise click.BadParameter(f"{v!r}: give a finite K, e.g. {name}=3")
    return ks


@click.command("compare")
@click.argument("data", type=click.Path(path_type=Path))
@click.argument("runs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--method", "methods", multiple=True, type=method_choice(),
              help="A classical method to add (repeat the option for several).")  # fmt: skip
@click.option("--split", type=click.Path(path_type=Path), help="Test split file (folders only).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/compare"), show_default=True)  # fmt: skip
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--k", "ks", multiple=True, metavar="METHOD=K", callback=_parse_k,
              help="A method's k (T = mean + k std), e.g. --k tophat=3.")  # fmt: skip
@click.option("--threshold", type=FiniteFloat(0, 1), default=None,
              help="The networks' probability threshold [0.5].")  # fmt: skip
@click.option(
    "--tta",
    is_flag=True,
    help="Average the networks over the flips and rotations they were trained on (8 by default).",
)
@errors_to_click()
def compare_cmd(data, runs, methods, split, out, device, ks, threshold, tta):
    """One table of RUNS (run folders or checkpoints) and --method detectors on DATA.

    The same test images and metrics for all, as the paper's Table I reads; writes
    OUT/compare.csv, OUT/compare.md and each evaluation in OUT/NAME/.
    """
    from rich.table import Table

    rows = compare(data, checkpoints=list(runs), methods=list(methods), out=out, split=split,
                   device=device, k=ks, threshold=threshold, tta=tta,
                   progress=lambda n: click.echo(f"evaluating {n} ...", err=True))  # fmt: skip
    t = Table(title=f"{data} ({rows[0]['images']} images)")
    for col in ("method", "IoU", "nIoU", "Pd", "Fa x1e6", "params M", "img/s", "rule"):
        left = col in ("method", "rule")
        t.add_column(col, justify="left" if left else "right", no_wrap=True)
    for r in rows:
        scores = [fmt(r[k], 1 if k == "fa" else 2, "n/a") for k in ("iou", "niou", "pd", "fa")]
        t.add_row(r["name"], *scores, fmt(r["params_m"]), fmt(r["images_per_s"], 1),
                  r["rule"])  # fmt: skip
    from rich.console import Console

    Console(width=None if Console().is_terminal else 120).print(t)
    click.echo(f"wrote {out}/compare.csv and {out}/compare.md")
