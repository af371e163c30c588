"""CLI commands of synthesis: demo-data, synth, inspect. Thin wrappers over the library.

Library errors (UserError, StoreError) become click.ClickException (one line, exit 1); bad
option values are click.BadParameter (exit 2). Libraries (numpy, h5py, rich) are imported in
the command bodies so that `sirst5k --help` starts fast; torch is never imported here.
"""

from __future__ import annotations

import click

from sirst5k.api import synthesize
from sirst5k.demo import DemoConfig, generate_demo
from sirst5k.inspect_store import verify, write_gallery
from sirst5k_cli.cli_options import SEED, errors_to_click, parse_range, progress_bar


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _table(title: str, rows: list[tuple[str, str]]):
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("", style="bold")
    t.add_column("", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    return t


def _ints(value: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give two integers LO,HI, e.g. 1,3") from None
    return lo, hi


def _split_row(source: str, path: str, ids: int) -> str:
    """A split file for the summary: relative to SOURCE when inside it, with its id count."""
    from pathlib import Path

    p, root = Path(path), Path(source)
    shown = p.relative_to(root) if p.is_relative_to(root) else p
    return f"{shown} ({ids} ids)"


@click.command("demo-data", context_settings={"show_default": True})
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", default=60, type=click.IntRange(2, 100000),
              help="Number of images (half train, half test).")  # fmt: skip
@click.option("--size", default=128, type=click.IntRange(32, 2048),
              help="Image side in pixels (the largest side with --sizes mixed).")  # fmt: skip
@click.option("--sizes", default="fixed", type=click.Choice(["fixed", "mixed"]),
              help="'mixed': heights and widths vary from 3/4 x size to size.")  # fmt: skip
@click.option("--seed", default=0, type=SEED, help="Random seed (same seed, same files).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--frames", default=0, type=click.IntRange(0, 10000),
              help="Also write this many target-free frames of another sensor to OUT/frames "
              "(for synth --backgrounds and --noise-from).")  # fmt: skip
@errors_to_click(hint="; choose a folder you can write")  # a read-only or full disk, ...
def demo_data_cmd(out, n, size, sizes, seed, force, frames):
    """Generate a small labelled infrared demo dataset in the NUDT-SIRST layout at OUT."""

    cfg = DemoConfig(n=n, size=size, seed=seed, sizes=sizes, frames=frames)
    res = generate_demo(out, cfg, force=force)
    click.echo(
        f"wrote {res['images']} images ({res['train']} train, {res['test']} test, "
        f"{res['targets']} targets) to {out}"
        + (f", and {res['frames']} target-free frames to {out}/frames" if res["frames"] else "")
    )


@click.command("synth", context_settings={"show_default": True})
@click.argument("source", type=click.Path())
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Store to write (HDF5).",
)
@click.option("--alpha", default=0.1, help="Noise weight of Eq. 3, in [0, 1].")
@click.option("--s", default=3, help="Side of the rotated box on each target (Eq. 4), odd.")
@click.option("--grid", default=8, help="Noise cells: each image cut into GRID x GRID (Eq. 1).")
@click.option(
    "--sigma", default=50.0, help="Keep cells with variance below this (Eq. 1, 0..255 scale)."
)
@click.option("--mu", default=255.0, help="Keep cells with mean below this (Eq. 1).")
@click.option("--resize", default="bilinear",
              help="Interpolation resizing a noise cell to the image (Eq. 2): nearest, bilinear, "
              "bicubic or area.")  # fmt: skip
@click.option("--label", default="rotate",
              help="Negatives' masks: rotate (with the box) or unchanged (the paper's "
              "wording).")  # fmt: skip
@click.option("--seed", default=0, help="Random seed of the noise draws.")
@click.option(
    "--split",
    multiple=True,
    type=click.Path(exists=True),
    help="Split files (default: found in SOURCE): a folder holding them, one file (its partner "
    "found beside it), or the option twice: --split TRAIN.txt --split TEST.txt.",
)
@click.option("--force", is_flag=True, help="Overwrite STORE if it exists.")
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Skip unreadable images, missing/mismatched/non-binary masks; report them.",
)
@click.option(
    "--compress",
    is_flag=False,
    flag_value="gzip-1",
    default="none",
    type=click.Choice(["none", "lzf", "gzip"] + [f"gzip-{k}" for k in range(1, 10)]),
    metavar="[none|lzf|gzip-1..9]",
    help="Compress the images losslessly (alone: gzip-1): a smaller store, slower random reads "
    "(docs/store.md). Masks are always gzip-1 compressed.",
)
@click.option("--backgrounds", type=click.Path(exists=True, file_okay=False),
              help="A folder of your sensor's target-free frames: the training targets are "
              "implanted into crops of them, and crops stay as they are as background "
              "negatives.")  # fmt: skip
@click.option("--implants", type=click.IntRange(0), help="Implanted crops [default: 4 a frame].")
@click.option("--bg-negatives", type=click.IntRange(0),
              help="Background crops [default: 1 a frame].")  # fmt: skip
@click.option("--bg-crop", default=256, help="Side of the crops, px.")
@click.option("--per-frame", default="1,3", help="Targets implanted per crop: LO,HI (uniform).")
@click.option("--gain", default="0.3,1.0", callback=parse_range,
              help="Gain on each target's signal over its local background: LO,HI "
              "(uniform).")  # fmt: skip
@click.option("--zoom", default="1,1", callback=parse_range,
              help="Zoom of each implanted target: LO,HI (log-uniform).")  # fmt: skip
@click.option("--margin", default=3, help="Px of background cut around a target.")
@click.option("--mask-level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Implanted targets' masks: the pixels whose signal is at least this fraction "
              "of the peak [default: the labelled masks].")  # fmt: skip
@click.option("--noise-from", type=click.Path(exists=True, file_okay=False),
              help="Take Eq. 1's noise cells from this folder of target-free frames (your "
              "sensor's), not from the training images.")  # fmt: skip
@errors_to_click()  # an output folder that cannot be written, a full disk
def synth_cmd(source, out, split, force, skip_bad, compress, per_frame, **options):
    """Build the SIRST-5K store from a labelled SOURCE dataset (images/, masks/, split files)."""
    console = _console()
    split = list(split) if len(split) > 1 else (split[0] if split else None)
    with progress_bar(_console(stderr=True), elapsed=True) as bar:
        task = bar.add_task("synth", total=None)

        def progress(done, total):
            bar.update(task, completed=done, total=total)

        # the other options are SynthConfig's fields, passed on as they are
        res = synthesize(source, out, split=split, force=force, skip_bad=skip_bad,
                         progress=progress, compress=compress, per_frame=_ints(per_frame),
                         **options)  # fmt: skip
    rows = [
        ("train split", _split_row(source, res["train_split"], res["train_ids"])),
        ("test split", _split_row(source, res["test_split"], res["test_ids"])),
        ("originals", str(res["originals"])),
        ("targets", str(res["targets"])),
        ("negatives", str(res["negatives"])),
        ("implanted crops (targets)", f"{res['implants']} ({res['implanted']})"),
        ("background crops", str(res["backgrounds"])),
        ("noise pool (cells)", str(res["noise_pool"])),
        ("test images", str(res["test"])),
        ("largest image (h x w)", f"{res['canvas'][0]} x {res['canvas'][1]}"),
        ("skipped files", str(len(res["skipped"]))),
        ("warnings", str(len(res["warnings"]))),
        ("seconds", f"{res['seconds']:.2f}"),
        ("MB", f"{res['bytes'] / 1e6:.1f}"),
        ("pixel MB (real sizes, uncompressed)", f"{res['pixel_bytes'] / 1e6:.1f}"),
        ("image compression", res["compress"]),
    ]
    console.print(_table(f"SIRST-5K store {out}", rows))
    for sk in res["skipped"]:
        click.echo(f"skipped {sk['file']}: {sk['reason']}")
    for w in res["warnings"]:
        click.echo(f"warning: {w}")


@click.command("inspect")
@click.argument("store", type=click.Path())
@click.option(
    "--gallery",
    type=click.Path(dir_okay=False),
    help="Also write a PNG of samples: an original and its rotated negatives, implanted and "
    "background crops, masks outlined, targets zoomed.",
)
@errors_to_click("gallery", "store")
def inspect_cmd(store, gallery):
    """Summarise a store and verify it (schema, counts, masks, checksums); print OK."""

    res = verify(store)
    shown = write_gallery(store, gallery) if gallery else None
    rows = [
        (k, str(res[k]))
        for k in (
            "canvas",
            "sources",
            "train",
            "originals",
            "targets",
            "negatives",
            "implants",
            "implanted",
            "backgrounds",
            "test",
            "seed",
            "source",
            "created",
            "skipped",
        )
    ]
    rows.append(("MB", f"{res['MB']:.1f}"))
    rows.append(("pixel MB (real sizes, uncompressed)", f"{res['pixel_MB']:.1f}"))
    rows += [
        (k.replace("_", " "), str(res[k])) for k in ("compression", "mask_compression", "chunk")
    ]
    rows += [(f"param {k}", str(v)) for k, v in sorted(res["params"].items())]
    rows += [(f"version {k}", str(v)) for k, v in sorted(res["versions"].items())]
    _console().print(_table(f"SIRST-5K store {store}", rows))
    if shown:
        click.echo(f"gallery of {len(shown['rows'])} samples: {shown['gallery']}")
    click.echo("OK")
