"""A hostile user's inputs: outputs that would overwrite inputs, names from data that
escape --out, half-written output sets, options that crashed in torch or numpy, NaN and
infinity, metrics without targets, misnamed causes. Each is refused with one line that names
the file or option, before anything is written."""

from __future__ import annotations

import csv
import json
import math
import shutil

import cv2
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_data import make_tiny_store

import sirst5k
from sirst5k.errors import SirstError, UserError
from sirst5k.io import read_image
from sirst5k.metrics import Metrics
from sirst5k_cli.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, code: int, *words: str) -> str:
    """The run failed with `code` and one error line (no traceback) holding every word."""
    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, r.output
    assert r.output.rstrip().endswith(lines[0]), r.output  # nothing after the error line
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def src(demo_source, tmp_path):
    """A private, editable copy of the demo source."""
    out = tmp_path / "src"
    shutil.copytree(demo_source, out)
    return out


# ------------------------------------------------------------------ 1: predict overwrites


def test_predict_never_overwrites_its_input_image(src):
    image = src / "images" / "demo_0000.png"
    before = image.read_bytes()
    for force in ([], ["--force"]):
        r = invoke("predict", image, "--method", "tophat", "-o", src / "images", *force)
        one_line_error(r, 1, str(image), "-o")
        assert image.read_bytes() == before


def test_predict_refuses_existing_outputs_without_force(src, tmp_path):
    other = tmp_path / "other" / "images"
    other.mkdir(parents=True)
    victim = other / "demo_0003.png"
    victim.write_bytes(b"another dataset's image")
    r = invoke("predict", src / "images", "--method", "tophat", "-o", other)
    one_line_error(r, 1, str(victim), "--force")
    assert victim.read_bytes() == b"another dataset's image"
    assert sorted(p.name for p in other.iterdir()) == ["demo_0003.png"]  # nothing written
    r = invoke("predict", src / "images", "--method", "tophat", "-o", other, "--force")
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(victim), cv2.IMREAD_UNCHANGED).max() in (0, 255)  # now a mask


# ------------------------------------------------------------------ 2: names from data


def test_eval_overlay_names_from_a_store_stay_inside_out(demo_store, tmp_path):
    store = tmp_path / "evil.h5"
    shutil.copy(demo_store, store)
    victim = tmp_path / "x" / "victim"
    victim.parent.mkdir()
    with h5py.File(store, "r+") as f:
        names = f["sources/name"]
        for i in range(len(names)):
            names[i] = "/" + "../" * 40 + str(victim).lstrip("/")
    out = tmp_path / "ev"
    r = invoke("eval", store, "--method", "tophat", "--out", out, "--worst", 8)
    assert r.exit_code == 0, r.output
    assert not victim.with_suffix(".png").exists() and list(victim.parent.iterdir()) == []
    written = sorted(p.name for p in (out / "overlays").iterdir())
    assert written == [f"{i:02d}-victim.png" for i in range(1, 9)]
    assert not [p for p in tmp_path.rglob("*victim*") if p.parent != out / "overlays"]


# ------------------------------------------------------------------ 3: outputs = inputs


def test_export_refuses_to_write_over_its_checkpoint(tiny_checkpoint, tmp_path):
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_checkpoint, ckpt)
    before = ckpt.read_bytes()
    r = invoke("export", ckpt, "-o", ckpt, "--force")
    one_line_error(r, 1, str(ckpt), "-o")
    r = invoke("export", ckpt.parent, "-o", ckpt, "--force")  # the run folder means its best.pt
    one_line_error(r, 1, str(ckpt), "-o")
    assert ckpt.read_bytes() == before


def test_synth_refuses_to_write_into_its_source(src):
    image = src / "images" / "demo_0000.png"
    before = image.read_bytes()
    r = invoke("synth", src, "-o", image, "--force")
    one_line_error(r, 1, str(image), "-o")
    assert image.read_bytes() == before
    r = invoke("synth", src, "-o", src / "masks" / "new.h5")
    one_line_error(r, 1, "-o")
    assert not (src / "masks" / "new.h5").exists()


# ------------------------------------------------------------------ 4: consistent output set


def test_eval_killed_while_writing_leaves_no_stale_metrics(demo_store, tmp_path, monkeypatch):
    out = tmp_path / "ev"
    r = invoke("eval", demo_store, "--method", "tophat", "--k", 3, "--out", out, "--worst", 2)
    assert r.exit_code == 0, r.output
    old_rows = (out / "per_image.csv").read_text()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / "pd_fa.png"))

    monkeypatch.setattr("sirst5k.evaluation.pd_fa_curve", full_disk)
    r = invoke("eval", demo_store, "--method", "tophat", "--k", 9, "--out", out, "--worst", 2)
    one_line_error(r, 1, "No space left")
    assert (out / "per_image.csv").read_text() != old_rows  # the new run got this far
    assert not (out / "metrics.json").exists()  # so the old metrics.json must not stay


# ------------------------------------------------------------------ 8, 9: bad option values

CRASHED = [  # options that crashed inside torch or numpy, and the non-finite floats
    ("train", "--lr", "nan"),
    ("train", "--lr", "inf"),
    ("train", "--seed", "-5"),
    ("train", "--neg-weight", "nan"),
    ("train", "--neg-weight", "inf"),
    ("train", "--max-minutes", "nan"),
    ("train", "--ema", "nan"),
    ("train", "--val-fraction", "nan"),
    ("demo-data", "--seed", "-1"),
    ("export", "--opset", "100"),
    ("export", "--attention-window", "99999968"),
    ("eval", "--threshold", "nan"),
    ("eval", "--k", "nan"),
    ("eval", "--k", "inf"),
    ("predict", "--k", "-inf"),
    ("compare", "--k", "tophat=nan"),
    ("compare", "--threshold", "nan"),
]


@pytest.mark.parametrize("command,option,value", CRASHED)
def test_bad_option_values_are_refused_at_the_option(command, option, value, tmp_path,
                                                     tiny_checkpoint, demo_store):  # fmt: skip
    first = {
        "train": [demo_store, "--out", tmp_path / "run"],
        "demo-data": [tmp_path / "demo"],
        "export": [tiny_checkpoint, "-o", tmp_path / "m.onnx"],
        "eval": [demo_store, "--method", "tophat", "--out", tmp_path / "ev"],
        "predict": [demo_store.parent, "--method", "tophat", "-o", tmp_path / "p"],
        "compare": [demo_store, "--method", "tophat", "--out", tmp_path / "cmp"],
    }[command]
    r = invoke(command, *first, option, value)
    one_line_error(r, 1 if option == "--opset" else 2, option)  # opsets: the installed torch's
    assert list(tmp_path.iterdir()) == []


def test_export_attention_window_must_be_a_multiple_of_32(tiny_checkpoint, tmp_path):
    r = invoke("export", tiny_checkpoint, "-o", tmp_path / "m.onnx", "--attention-window", 100)
    one_line_error(r, 1, "--attention-window 100", "32")
    assert not (tmp_path / "m.onnx").exists()


def test_demo_data_into_an_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = invoke("demo-data", tmp_path / "afile" / "demo")
    one_line_error(r, 1, str(tmp_path / "afile"))


def test_api_refuses_non_finite_threshold_and_k(demo_store, tmp_path):
    with pytest.raises(UserError, match="--threshold nan"):
        sirst5k.evaluate(demo_store, checkpoint="nudt", threshold=math.nan, out=tmp_path / "e")
    with pytest.raises(UserError, match="--threshold 1.5"):
        sirst5k.evaluate(demo_store, checkpoint="nudt", threshold=1.5, out=tmp_path / "e")
    for k in (math.nan, math.inf):
        with pytest.raises(UserError, match=f"--k {k}"):
            sirst5k.evaluate(demo_store, method="tophat", k=k, out=tmp_path / "e")
    with pytest.raises(UserError, match="--k tophat=nan"):
        sirst5k.compare(demo_store, methods=["tophat"], k={"tophat": math.nan},
                        out=tmp_path / "c")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a training run
def test_training_stops_at_the_first_non_finite_loss(tmp_path, monkeypatch):
    """The loss turns NaN in epoch 2: one line naming the epoch and --lr; last.pt stays the
    last good one (epoch 1, finite weights)."""
    import trainer.train as tt
    from trainer.checkpoint import read_checkpoint
    from trainer.losses import SirstLoss

    store = make_tiny_store(tmp_path / "tiny.h5", n_src=10)
    poisoned = {"on": False}
    end_epoch, call = tt.end_epoch, SirstLoss.__call__

    def end_then_poison(run, hooks):
        end_epoch(run, hooks)
        poisoned["on"] = True

    def loss(self, *args):
        total, main, neg = call(self, *args)
        return (total * math.nan if poisoned["on"] else total), main, neg

    monkeypatch.setattr(tt, "end_epoch", end_then_poison)
    monkeypatch.setattr(SirstLoss, "__call__", loss)
    run = tmp_path / "run"
    r = invoke("train", store, "--out", run, "--epochs", 3, "--batch-size", 8, "--crop", 16,
               "--device", "cpu", "--val-fraction", 0.2, "--widths", "4,4,8,8,8",
               "--blocks", 1)  # fmt: skip
    one_line_error(r, 1, "epoch 2", "--lr", "last.pt")
    last = read_checkpoint(run / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


# ------------------------------------------------------------------ 13: no targets


def test_metrics_without_targets_are_undefined_not_zero():
    m = Metrics()
    m.update(np.zeros((2, 8, 8), np.float32), np.zeros((2, 8, 8), np.uint8))
    r = m.compute()
    assert (r["iou"], r["niou"], r["pd"], r["precision"], r["recall"]) == (None,) * 5
    assert r["fa"] == 0.0
    m.update(np.ones((1, 8, 8), np.float32), np.zeros((1, 8, 8), np.uint8))  # false alarms
    r = m.compute()
    assert r["pd"] is None and r["recall"] is None  # still no target to find
    assert r["iou"] == 0.0 and r["fa"] == 64 / (3 * 64)


def test_split_without_targets_reports_n_a(src, tmp_path):
    for mask in (src / "masks").iterdir():
        cv2.imwrite(str(mask), np.zeros_like(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)))
    out = tmp_path / "ev"
    r = invoke("eval", src, "--method", "tophat", "--k", 1000, "--out", out)
    assert r.exit_code == 0, r.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["pd"] is None and report["metrics"]["iou"] is None
    assert report["paper_units"]["pd_x1e2"] is None and report["metrics"]["fa"] == 0.0
    row = next(ln for ln in r.output.splitlines() if ln.strip().startswith("tophat"))
    assert row.split()[1:4] == ["n/a", "n/a", "n/a"]  # IoU, nIoU, Pd
    with open(out / "per_image.csv", newline="") as f:
        assert {r["iou"] for r in csv.DictReader(f)} == {"n/a"}
    r = invoke("compare", src, "--method", "tophat", "--k", "tophat=1000", "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output
    with open(tmp_path / "c" / "compare.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert (row["iou"], row["niou"], row["pd"]) == ("n/a", "n/a", "n/a")
    md = (tmp_path / "c" / "compare.md").read_text().splitlines()[-1]
    assert md.startswith("| tophat | n/a | n/a | n/a | 0.0 |"), md


# ------------------------------------------------------------------ 21: misnamed causes


def test_predict_into_its_own_input_folder_says_so(src):
    r = invoke("predict", src / "images", "--method", "tophat", "-o", src / "images")
    one_line_error(r, 1, "output folder", "input folder")
    assert "no image files" not in r.output


def test_api_predict_without_images_says_none_given(tmp_path):
    with pytest.raises(UserError, match="no images given"):
        sirst5k.predict([], tmp_path / "p", method="tophat")


def test_a_folder_named_like_an_image_is_called_a_folder(src, tmp_path):
    stem = (src / "splits" / "50_50" / "test.txt").read_text().split()[0]
    image = src / "images" / f"{stem}.png"
    image.unlink()
    image.mkdir()
    r = invoke("eval", src, "--method", "tophat", "--out", tmp_path / "ev")
    line = one_line_error(r, 1, str(image), "folder, not an image file")
    assert "no such file" not in line
    with pytest.raises(SirstError, match="folder, not an image file"):
        read_image(image)


@pytest.mark.parametrize(
    "option,value",
    [("lr", float("nan")), ("lr", float("inf")), ("min_lr", -1.0), ("neg_weight", float("nan")),
     ("neg_weight", float("inf")), ("max_minutes", float("nan")), ("seed", -5)],
)  # fmt: skip
def test_train_config_refuses_non_finite_and_negative_values(option, value):
    from sirst5k.errors import TrainError
    from trainer.config import make_config

    flag = "--" + option.replace("_", "-")
    with pytest.raises(TrainError, match=flag):
        make_config(store="s.h5", out="o", **{option: value})


@pytest.mark.parametrize("option", ["sigma", "mu"])
def test_synth_refuses_infinite_thresholds(option):
    from sirst5k.synth import SynthConfig

    with pytest.raises(UserError, match=f"--{option} inf"):
        SynthConfig(**{option: float("inf")})


# ------------------------------------------------------------------ helpers of items 5-20

TINY = ("--epochs", 2, "--batch-size", 8, "--crop", 16, "--device", "cpu", "--widths",
        "4,4,8,8,8", "--blocks", 1, "--val-fraction", 0.2)  # fmt: skip


def png(w: int, h: int, rows: int | None = None) -> bytes:
    """A grey 8-bit PNG whose header says w x h, its pixels all 0: `rows` rows of them (None:
    all h, compressed row by row, so that a huge one costs no memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    z, row = zlib.compressobj(9), b"\0" * (w + 1)  # each row: filter byte 0, then w pixels
    data = b"".join(z.compress(row) for _ in range(h if rows is None else rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def first_id(src, split: str = "train") -> str:
    return (src / "splits" / "50_50" / f"{split}.txt").read_text().split()[0]


def fill(disk) -> None:
    """Write a filler file on the disk until it is full."""
    with open(disk / "filler", "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


# ------------------------------------------------------------------ 5: a disk that fills up

FULL_DISK_SYNTH = """
import errno, os, sys
import sirst5k.synth
from sirst5k_cli.cli import main

sirst5k.synth.check_free_space = lambda dest, nbytes: None  # it passed; then the disk filled
if sys.argv[3] == "cannot-reserve":  # a file system without fallocate: HDF5 meets the full disk
    def cannot(*args):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    os.posix_fallocate = cannot
main(["synth", sys.argv[1], "-o", sys.argv[2]])
"""


@pytest.mark.parametrize("size", [100_000, 400_000])  # full while writing rows; while closing
@pytest.mark.parametrize("how", ["reserve", "cannot-reserve"])
def test_synth_on_a_disk_that_fills_up_ends_in_one_line(demo_source, small_disk, size, how):
    """HDF5 segfaulted (139) after hundreds of "Exception ignored" lines, leaving a .partial."""
    import subprocess
    import sys

    disk = small_disk(size)
    cmd = [sys.executable, "-c", FULL_DISK_SYNTH, demo_source, disk / "s.h5", how]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 1, (r.returncode, lines[-4:])
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines[:4]
    assert str(disk) in lines[0] and "is full" in lines[0], lines[0]
    assert list(disk.iterdir()) == []  # no partial file


# ------------------------------------------------------------------ 6, 16: oversized images


def test_an_image_too_large_is_refused_from_its_header(src, tmp_path, monkeypatch):
    """A 177-byte PNG that says 100000 x 100000: cv2.error in synth and predict, --skip-bad too."""
    bomb = src / "images" / f"{first_id(src)}.png"
    bomb.write_bytes(png(100_000, 100_000, rows=1))
    assert bomb.stat().st_size < 200
    r = invoke("synth", src, "-o", tmp_path / "s.h5")
    one_line_error(r, 1, str(bomb), "100000x100000", "SIRST5K_MAX_PIXELS")
    assert not (tmp_path / "s.h5").exists()
    r = invoke("synth", src, "-o", tmp_path / "s.h5", "--skip-bad")
    assert r.exit_code == 0, r.output
    assert f"skipped {bomb}: 100000x100000" in r.output
    r = invoke("predict", src / "images", "--method", "tophat", "-o", tmp_path / "p")
    one_line_error(r, 1, str(bomb), "SIRST5K_MAX_PIXELS")
    r = invoke("predict", src / "images", "--method", "tophat", "-o", tmp_path / "q", "--skip-bad")
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in (tmp_path / "q").glob("*.png"))
    assert len(written) == 23 and bomb.name not in written
    monkeypatch.setenv("SIRST5K_MAX_PIXELS", str(10**10))  # raised: OpenCV's own limit, 1 line
    r = invoke("predict", bomb, "--method", "tophat", "-o", tmp_path / "r")
    one_line_error(r, 1, str(bomb), "OpenCV cannot decode")
    monkeypatch.setenv("SIRST5K_MAX_PIXELS", "-1")
    with pytest.raises(UserError, match="SIRST5K_MAX_PIXELS='-1': give a number of pixels"):
        read_image(bomb)


def test_a_huge_test_image_makes_no_huge_store(src, tmp_path):
    """A real 8000 x 7000 PNG of 56 kB (56 megapixels, over the default 50) in the test split:
    synth made a store of its pixels without a word (30000 x 30000: 906 MB), eval decoded it."""
    stem = first_id(src, "test")
    big = src / "images" / f"{stem}.png"
    big.write_bytes(png(8000, 7000))
    (src / "masks" / f"{stem}.png").write_bytes(png(8000, 7000))
    assert big.stat().st_size < 100_000 and cv2.imread(str(big)).shape[:2] == (7000, 8000)
    r = invoke("synth", src, "-o", tmp_path / "s.h5")
    one_line_error(r, 1, str(big), "56 megapixels", "limit of 50", "SIRST5K_MAX_PIXELS")
    assert not (tmp_path / "s.h5").exists()
    r = invoke("eval", src, "--method", "tophat", "--out", tmp_path / "ev")
    one_line_error(r, 1, str(big), "SIRST5K_MAX_PIXELS")


# ------------------------------------------------------------------ 12: nothing to train on


def test_a_float_image_with_nan_is_refused(src, tmp_path):
    stem = first_id(src)
    image = src / "images" / f"{stem}.png"
    grey = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    grey[3, 4] = np.nan
    image.unlink()
    tiff = image.with_suffix(".tiff")
    assert cv2.imwrite(str(tiff), grey)
    with pytest.raises(UserError, match="1 pixel.* NaN or infinite"):
        read_image(tiff)
    r = invoke("synth", src, "-o", tmp_path / "s.h5")
    one_line_error(r, 1, str(tiff), "NaN")
    assert not (tmp_path / "s.h5").exists()


def test_a_dataset_without_any_target_makes_no_store(src, tmp_path):
    for mask in (src / "masks").iterdir():
        cv2.imwrite(str(mask), np.zeros_like(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)))
    for skip in ([], ["--skip-bad"]):
        r = invoke("synth", src, "-o", tmp_path / "s.h5", *skip)
        one_line_error(r, 1, "no target in any training mask", "train.txt")
        assert not (tmp_path / "s.h5").exists()


# ------------------------------------------------------------------ 14: one id, two files


def test_two_files_of_one_id_are_refused_by_synth_too(src, tmp_path):
    image = src / "images" / f"{first_id(src)}.png"
    twin = image.with_suffix(".bmp")
    cv2.imwrite(str(twin), cv2.imread(str(image)))
    r = invoke("synth", src, "-o", tmp_path / "s.h5")
    one_line_error(r, 1, str(image), str(twin))
    assert not (tmp_path / "s.h5").exists()


# ------------------------------------------------------------------ 10, 11: train options


@pytest.mark.slow  # a training run
def test_resume_on_another_store_is_refused(tmp_path):
    a = make_tiny_store(tmp_path / "a.h5", n_src=10)
    b = make_tiny_store(tmp_path / "b.h5", n_src=10, seed=1)
    run = tmp_path / "run"
    r = invoke("train", a, "--out", run, *TINY[:1], 1, *TINY[2:])
    assert r.exit_code == 0, r.output
    config = (run / "config.json").read_text()
    assert json.loads(config)["data"]["store_id"]
    r = invoke("train", b, "--resume", run, "--epochs", 2)
    one_line_error(r, 1, str(b), str(a), "another store")
    shutil.copy(b, a)  # the same path, another store in it
    r = invoke("train", "--resume", run, "--epochs", 2)
    one_line_error(r, 1, str(a), "another store")
    assert (run / "config.json").read_text() == config


NO_OPS = [
    (("--originals-only", "--neg-loss", "sum"), "--neg-loss sum"),
    (("--on-the-fly", "--neg-loss", "min"), "--neg-loss min"),
    (("--originals-only", "--kinds", "original,negative"), "--kinds original,negative"),
    (("--neg-loss", "off", "--neg-weight", "2"), "--neg-weight 2"),
    (("--preset", "cpu30", "--neg-weight", "1"), "--neg-weight 1"),
    (("--originals-only", "--neg-weight", "0.5"), "--neg-weight 0.5"),
    (("--crop", 0, "--scale-range", "1,1"), "--scale-range"),
    (("--val-fraction", 0, "--val-every", 2), "--val-every 2"),
]


@pytest.mark.parametrize("args,flag", NO_OPS)
def test_options_that_would_do_nothing_are_refused(demo_store, tmp_path, args, flag):
    run = tmp_path / "run"
    r = invoke("train", demo_store, "--out", run, *args, "--epochs", 1, "--device", "cpu",
               "--widths", "4,4,8,8,8", "--blocks", 1)  # fmt: skip
    one_line_error(r, 1, flag)
    assert not run.exists()


def test_every_preset_is_still_a_valid_config():
    from trainer.config import PRESETS, make_config

    for preset in PRESETS:
        make_config(preset, store="s.h5", out="o")
        make_config(preset, store="s.h5", out="o", originals_only=True)
        make_config(preset, store="s.h5", out="o", on_the_fly=True)


# ------------------------------------------------------------------ 17-20: disks


@pytest.fixture
def read_only_disk(tmp_path):
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)]
    if subprocess.run(cmd, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_disk_is_called_read_only(demo_source, demo_store, read_only_disk):
    r = invoke("synth", demo_source, "-o", read_only_disk / "s.h5")
    line = one_line_error(r, 1, str(read_only_disk), "read-only")
    assert "MB free" not in line
    r = invoke("train", demo_store, "--out", read_only_disk / "run", *TINY)
    line = one_line_error(r, 1, str(read_only_disk), "read-only")
    assert "free" not in line and "checkpoint" not in line


@pytest.mark.slow  # a training run
def test_a_disk_full_at_last_pt_says_what_is_kept_and_resumes_from_best_pt(
    tmp_path, small_disk, monkeypatch
):
    import trainer.train as tt

    store = make_tiny_store(tmp_path / "tiny.h5", n_src=10)
    disk = small_disk(8 << 20)
    run = disk / "run"
    save = tt.save_checkpoint

    def fill_then_save(ckpt, path):
        if path.name == "last.pt":
            fill(disk)
        save(ckpt, path)

    monkeypatch.setattr(tt, "save_checkpoint", fill_then_save)
    r = invoke("train", store, "--out", run, *TINY)
    line = one_line_error(r, 1, f"{run}/last.pt", f"{disk} is full", "no last.pt exists",
                          "best.pt (epoch 1)", f"--resume {run}")  # fmt: skip
    assert "previous" not in line
    monkeypatch.undo()
    (disk / "filler").unlink()
    r = invoke("train", "--resume", run)
    assert r.exit_code == 0, r.output
    with open(run / "log.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]


def test_predict_on_a_full_disk_says_so_and_counts_the_masks(src, small_disk):
    disk = small_disk(48 * 1024)
    out = disk / "p"
    r = invoke("predict", src / "images", "--method", "tophat", "-o", out)
    line = one_line_error(r, 1, str(out), "is full", "MB free")
    masks = list(out.glob("*.png"))
    assert f"{len(masks)} of 24 masks were written" in line
    assert "requested" not in line
    assert not list(disk.rglob("*.partial"))


def test_the_free_space_margin_is_stated(tmp_path, monkeypatch):
    from collections import namedtuple

    from sirst5k import files

    usage = namedtuple("usage", "total used free")(10**9, 560_000_000, 440_000_000)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: usage)
    with pytest.raises(SirstError, match=r"about 423 MB plus a 5% margin \(444 MB\).* 440 MB"):
        files.check_free_space(tmp_path / "s.h5", 423_000_000)


# ------------------------------------------------------------------ training progress


@pytest.mark.slow  # training runs
def test_train_prints_a_line_now_and_then_where_output_is_no_terminal(tmp_path, monkeypatch):
    """Not a terminal (CliRunner, a log file): the first step of each epoch, then a line every
    _Progress.EVERY seconds."""
    from sirst5k_cli.cli_train import _Progress

    store = make_tiny_store(tmp_path / "tiny.h5", n_src=10)
    r = invoke("train", store, "--out", tmp_path / "a", *TINY)
    assert r.exit_code == 0, r.output
    steps = [ln for ln in r.output.splitlines() if ": step " in ln]
    assert [ln.split()[:2] for ln in steps] == [["epoch", "1"], ["epoch", "2"]], r.output
    assert " loss " in steps[0] and "samples/s: step 1/" in steps[0]
    monkeypatch.setattr(_Progress, "EVERY", 0.0)
    r = invoke("train", store, "--out", tmp_path / "b", *TINY)
    assert r.exit_code == 0, r.output
    steps = [ln for ln in r.output.splitlines() if ": step " in ln]
    n = int(steps[0].rsplit("/", 1)[1])
    assert len(steps) == 2 * n and steps[-1].endswith(f"step {n}/{n}")
