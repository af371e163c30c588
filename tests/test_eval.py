"""`sirst5k eval` and `sirst5k predict` through CliRunner: outputs, agreement, bad inputs."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from skimage.measure import label, regionprops

from sirst5k.errors import UserError
from sirst5k.io import load_split, read_pair
from sirst5k_cli.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def score_folder(pred_dir: Path, source: Path) -> dict:
    """Score written 0/255 masks against the source's test masks, independently of
    sirst5k.metrics: skimage labels and centroids, DNA-Net's greedy loop, corrected Fa."""
    c = dict(inter=0, union=0, targets=0, hits=0, false=0, pixels=0)
    for pair in load_split(source, "test"):
        _, gt = read_pair(pair)
        pred = cv2.imread(str(pred_dir / f"{pair.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.shape == gt.shape and set(np.unique(pred)) <= {0, 255}
        p, g = pred > 127, gt > 0
        c["inter"] += int((p & g).sum())
        c["union"] += int((p | g).sum())
        c["pixels"] += p.size
        pr, gr = regionprops(label(p, connectivity=2)), regionprops(label(g, connectivity=2))
        c["targets"] += len(gr)
        matched = 0
        for r in gr:
            for m in range(len(pr)):
                if np.hypot(*np.subtract(pr[m].centroid, r.centroid)) < 3:
                    matched += pr[m].area
                    c["hits"] += 1
                    del pr[m]
                    break
        c["false"] += int(p.sum()) - matched
    return c


def check_outputs(out: Path, n: int) -> dict:
    for name in ("metrics.json", "per_image.csv", "roc.csv", "pd_fa.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == report["images"] == n
    assert sum(int(r["hits"]) for r in rows) == report["counts"]["hits"]
    assert sum(int(r["false_pixels"]) for r in rows) == report["counts"]["false_pixels"]
    assert len(list((out / "overlays").glob("*.png"))) == min(3, n)
    return report


@pytest.mark.parametrize("method", ["tophat", "maxmedian"])
def test_method_eval_folder_store_and_predict_agree(method, demo_source, demo_store, tmp_path):
    k = ("--method", method, "--k", 3)  # the default k finds nothing on 64 px demo images
    r = invoke("eval", demo_source, *k, "--out", tmp_path / "f", "--worst", 3)
    assert r.exit_code == 0, r.output
    n = len(load_split(demo_source, "test"))
    folder = check_outputs(tmp_path / "f", n)
    assert folder["counts"]["hits"] > 0 and folder["counts"]["false_pixels"] > 0
    assert folder["k"] == 3
    # the published NUDT-SIRST rows are not set beside other data
    assert "IoU" in r.output and "DNA-Net" not in r.output and "not shown" in r.output
    assert folder["comparable_to_papers"] is False
    assert folder["paper_units"]["fa_legacy_x1e6"] is None  # demo images are not 256 x 256
    r = invoke("eval", demo_store, *k, "--out", tmp_path / "s", "--worst", 3)
    assert r.exit_code == 0, r.output
    store = check_outputs(tmp_path / "s", n)
    assert store["counts"] == folder["counts"] and store["metrics"] == folder["metrics"]
    files = [p.image for p in load_split(demo_source, "test")]
    r = invoke("predict", *files, *k, "-o", tmp_path / "p")
    assert r.exit_code == 0, r.output
    c = score_folder(tmp_path / "p", demo_source)
    got = folder["counts"]
    assert (got["inter"], got["union"], got["targets"], got["hits"]) == (
        c["inter"],
        c["union"],
        c["targets"],
        c["hits"],
    )
    assert (got["false_pixels"], got["pixels"]) == (c["false"], c["pixels"])


def test_checkpoint_eval_and_predict_agree(tiny_checkpoint, demo_source, demo_store, tmp_path):
    r = invoke("eval", demo_store, "--checkpoint", tiny_checkpoint, "--worst", 3, "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = tiny_checkpoint.parent / "eval"  # default: beside the checkpoint
    report = check_outputs(out, len(load_split(demo_source, "test")))
    assert report["params"] > 0 and report["checkpoint"] == str(tiny_checkpoint)
    assert report["counts"]["pred_pixels"] > 0  # the net predicts something to compare
    r = invoke("predict", demo_source / "images", "--checkpoint", tiny_checkpoint, "-o",
               tmp_path / "p", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "wrote 24 mask(s)" in r.output
    assert len(list((tmp_path / "p" / "overlays").glob("*.png"))) == 24
    c, got = score_folder(tmp_path / "p", demo_source), report["counts"]
    assert (got["inter"], got["union"], got["hits"], got["false_pixels"]) == (
        c["inter"],
        c["union"],
        c["hits"],
        c["false"],
    )


def test_legacy_fa_option(demo_source, tmp_path):
    # the legacy Fa divides by 256 x 256 per image: refused on other sizes
    r = invoke("eval", demo_source, "--method", "tophat", "--out", tmp_path, "--legacy-fa")
    assert r.exit_code == 1 and "256 x 256" in r.output
    from sirst5k.demo import DemoConfig, generate_demo

    generate_demo(tmp_path / "d256", DemoConfig(n=4, size=256))
    r = invoke("eval", tmp_path / "d256", "--method", "tophat", "--out", tmp_path, "--legacy-fa")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert "legacy" in report["fa_definition"]
    assert report["metrics"]["fa"] == report["metrics"]["fa_legacy"]


def test_predict_any_depth_and_colour(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    img = np.full((37, 53), 1000, np.uint16)
    img[10:12, 20:22] = 60000
    cv2.imwrite(str(tmp_path / "in" / "a16.png"), img)  # 16 bit grey
    colour = cv2.cvtColor((img // 256).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "in" / "sub" / "c.bmp"), colour)  # 8 bit colour, in a subfolder
    out = tmp_path / "o"
    r = invoke("predict", tmp_path / "in", "--method", "tophat", "-o", out, "--no-overlay")
    assert r.exit_code == 0, r.output
    for rel in ("a16.png", "sub/c.png"):
        m = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
        assert m.shape == (37, 53) and m.dtype == np.uint8 and m[10, 20] == 255
    assert not (out / "overlays").exists()


def test_bad_checkpoints(demo_store, tmp_path):
    r = invoke("eval", demo_store, "--checkpoint", tmp_path / "nope.pt")
    assert r.exit_code == 1 and "nope.pt: no such checkpoint" in r.output
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    r = invoke("eval", demo_store, "--checkpoint", tmp_path / "junk.pt")
    assert r.exit_code == 1 and "junk.pt" in r.output and "Traceback" not in r.output
    r = invoke("eval", demo_store, "--checkpoint", tmp_path / "junk.pt", "--method", "tophat")
    assert r.exit_code == 1 and "exactly one of" in r.output
    r = invoke("eval", demo_store, "--method", "nosuch")  # a usage error: the registry's names
    assert r.exit_code == 2 and "'nosuch' is not one of" in r.output and "tophat" in r.output
    r = invoke("eval", demo_store, "--method", "tophat", "--device", "gpu")
    assert r.exit_code == 2 and "cuda:N" in r.output


def test_store_without_test_group(demo_store, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(demo_store, store)
    with h5py.File(store, "a") as f:
        del f["test"]
    r = invoke("eval", store, "--method", "tophat", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no 'test' group" in r.output
    r = invoke("eval", tmp_path / "missing.h5", "--method", "tophat")
    assert r.exit_code == 1 and "missing.h5" in r.output


def test_store_with_a_damaged_test_mask_row(demo_store, tmp_path):
    """A 0x00 -> 0xFF mask byte that HDF5 cannot see: eval refuses the store in one line
    naming the file, the split and the row (the row's crc32 digest)."""
    from test_synth_store import flip_mask_byte

    msg = flip_mask_byte(demo_store, tmp_path / "bad.h5", "test", row=2)
    r = invoke("eval", tmp_path / "bad.h5", "--method", "tophat", "--out", tmp_path / "o")
    line = r.output.strip().removeprefix("Error: ")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert re.match(msg, line), line
    assert not (tmp_path / "o").exists()


def test_bad_dataset_files_and_skip_bad(demo_source, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(demo_source, src)
    pairs = load_split(src, "test")
    pairs[0].mask.unlink()  # an image without its mask
    cv2.imwrite(str(pairs[1].mask), np.zeros((5, 7), np.uint8))  # wrong size
    pairs[2].image.write_bytes(b"garbage")  # unreadable
    r = invoke("eval", src, "--method", "tophat", "--out", tmp_path / "o")
    assert r.exit_code == 1 and pairs[0].stem in r.output and len(r.output.splitlines()) == 1
    r = invoke("eval", src, "--method", "tophat", "--out", tmp_path / "o", "--skip-bad")
    assert r.exit_code == 0, r.output
    assert "skipped 3 image(s)" in r.output
    report = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert report["images"] == len(pairs) - 3 and len(report["skipped"]) == 3
    assert not any("--skip-bad" in why for why in report["skipped"])  # it was given
    assert "mask is 5x7 (h x w)" in " ".join(report["skipped"])
    r = invoke("predict", src / "images", "--method", "tophat", "-o", tmp_path / "p")
    assert r.exit_code == 1 and "cannot decode" in r.output
    again = ("--skip-bad", "--force")  # --force: the masks the failed run wrote are replaced
    r = invoke("predict", src / "images", "--method", "tophat", "-o", tmp_path / "p", *again)
    assert r.exit_code == 0 and "skipped 1 file(s)" in r.output
    r = invoke("predict", tmp_path / "none", "--method", "tophat", "-o", tmp_path / "p")
    assert r.exit_code == 1 and "no such file or folder" in r.output


def test_split_file_given_directly(demo_source, tmp_path):
    stems = [p.stem for p in load_split(demo_source, "test")[:3]]
    (tmp_path / "mine.txt").write_text("\n".join(stems) + "\n")
    out = tmp_path / "o"
    r = invoke("eval", demo_source, "--method", "tophat", "--split", tmp_path / "mine.txt",
               "--out", out, "--worst", 0)  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["images"] == 3 and report["split"] == str(tmp_path / "mine.txt")
    (tmp_path / "bad.txt").write_text("no_such_id\n")
    r = invoke("eval", demo_source, "--method", "tophat", "--split", tmp_path / "bad.txt")
    assert r.exit_code == 1 and "no_such_id" in r.output


def test_overlay_panels_colours_and_insets():
    """Hand-built: one target hit, one missed, one false alarm, on a 16 x 16 image (x32 = 512):
    title | image, ground truth, prediction | caption | insets | legend."""
    from sirst5k.plots import BLUE, ORANGE, SKY, YELLOW, overlay

    image = np.full((16, 16), 100, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[2, 2] = mask[12, 12] = 1  # two targets
    pred = np.zeros((16, 16), np.uint8)
    pred[2, 2] = 1  # hits the first target
    pred[8, 2] = 1  # 6 px away from any target: a false alarm
    out = overlay(image, pred, mask)
    s, top, panel = 32, 22, 16 * 32
    tile = 16 * 6  # the 24 px inset window is cut to the 16 px image, enlarged 6 times
    inset_row = tile + 22 + 4
    assert out.shape == (top + panel + 22 + inset_row + 20, 3 * panel + 2 * 6, 3)

    def colour_at(k, y, x):  # centre of an enlarged pixel of panel k (0 image, 1 truth, 2 pred)
        return out[top + y * s + s // 2, k * (panel + 6) + x * s + s // 2].astype(int)

    def painted(colour):  # _paint mixes 75 % colour with 25 % grey 100
        return (0.75 * np.array(colour) + 0.25 * 100).astype(np.uint8).astype(int)

    assert (colour_at(0, 2, 2) == 100).all() and (colour_at(0, 12, 12) == 100).all()
    assert (colour_at(1, 2, 2) == painted(SKY)).all() and (
        colour_at(1, 12, 12) == painted(SKY)
    ).all()
    assert (colour_at(2, 2, 2) == painted(BLUE)).all()
    assert (colour_at(2, 8, 2) == painted(ORANGE)).all()
    # a miss is outlined, not filled: its centre shows the image, its border is yellow
    assert (colour_at(2, 12, 12) == 100).all()
    assert (out[top + 12 * s, 2 * (panel + 6) + 12 * s + s // 2] == YELLOW).all()
    assert (colour_at(2, 5, 10) == 100).all()  # untouched background stays grey
    # two insets (the miss, the false alarm) side by side
    insets = out[top + panel + 22 : top + panel + 22 + inset_row]
    assert insets[:, : 2 * (tile + 4)].any() and not insets[:, 2 * (tile + 4) :].any()
    assert out[-20:].any()  # the legend strip holds text


def test_overlay_large_frame_keeps_small_targets_visible():
    """A 1024 x 1280 frame is shrunk to 512 px panels, yet a 2 x 2 false alarm still shows in
    the prediction panel (area scaling keeps any true pixel) and in its 6x inset."""
    from sirst5k.plots import ORANGE, overlay

    image = np.full((1024, 1280), 90, np.uint8)
    mask = np.zeros_like(image)
    pred = np.zeros_like(image)
    pred[600:602, 700:702] = 1
    out = overlay(image, pred, mask)
    panel_w = 512
    assert out.shape[1] == 3 * panel_w + 12
    guess = out[22 : 22 + 410, 2 * (panel_w + 6) :]
    orange = (np.abs(guess.astype(int) - (0.75 * np.array(ORANGE) + 0.25 * 90)) <= 1).all(2)
    assert orange.any()
    assert (out[22 + 410 + 22 :] != 0).any()


@pytest.mark.slow
def test_eval_again_replaces_the_worst_overlays(tmp_path, demo_store):
    out = tmp_path / "e"
    for worst in (5, 2):
        r = invoke(
            "eval", demo_store, "--method", "tophat", "--k", 3, "--out", out, "--worst", worst
        )
        assert r.exit_code == 0, r.output
    names = sorted(p.name[:3] for p in (out / "overlays").glob("*.png"))
    assert names == ["01-", "02-"]  # the first run's 03- to 05- are gone


def test_eval_and_predict_output_errors(tmp_path, demo_store, demo_source, tiny_checkpoint):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    r = invoke("eval", demo_store, "--method", "tophat", "--out", afile)
    assert r.exit_code == 2 and "is a file" in r.output
    r = invoke("predict", demo_source / "images", "--method", "tophat", "-o", afile)
    assert r.exit_code == 2 and "is a file" in r.output
    r = invoke("eval", demo_store, "--checkpoint", tiny_checkpoint, "--k", 3, "--out", tmp_path)
    assert r.exit_code == 1 and "--k" in r.output and "--method only" in r.output


def test_reference_rows_only_for_nudt_test_names():
    from sirst5k.evaluation import is_nudt_test

    assert is_nudt_test([f"{i:06d}" for i in range(1, 665)])
    assert not is_nudt_test([f"{i:06d}" for i in range(1, 664)])  # 663 images
    assert not is_nudt_test([f"img{i:03d}" for i in range(664)])


def test_legacy_fa_needs_256_images():
    from sirst5k.metrics import Metrics

    m = Metrics(legacy_fa=True)
    m.update(np.zeros((1, 30, 40)), np.zeros((1, 30, 40), np.uint8))
    with pytest.raises(UserError, match="256 x 256"):
        m.compute()
    m = Metrics()
    m.update(np.ones((2, 256, 256)), np.zeros((2, 256, 256), np.uint8))
    r = m.compute()
    assert r["fa_legacy"] == r["fa_corrected"] == 1.0  # every pixel false, both definitions


def test_predict_failing_part_way_says_what_it_wrote(tmp_path):
    """A corrupt image in the middle, no --skip-bad: one line that counts the masks written
    before it; those masks are whole PNGs, and no temporary file is left."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        img = np.full((20, 20), 50, np.uint8)
        img[8:10, 8:10] = 250
        cv2.imwrite(str(src / f"im{i}.png"), img)
    (src / "im2.png").write_bytes(b"not a png")
    out = tmp_path / "o"
    r = invoke("predict", src, "--method", "tophat", "-o", out, "--no-overlay", "--k", "3")
    assert r.exit_code == 1 and "predict stopped: 2 of 4 masks were written" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png"]
    assert all(cv2.imread(str(out / n)) is not None for n in ("im0.png", "im1.png"))


def test_eval_on_a_full_disk_is_one_line_and_leaves_no_partials(demo_store, small_disk):
    mnt = small_disk(256 * 1024, fill=256 * 1024 - 16 * 1024)
    r = invoke("eval", demo_store, "--method", "tophat", "--k", 3, "--out", mnt / "ev")
    assert r.exit_code == 1 and "No space left on device" in r.output, r.output
    assert "Traceback" not in r.output
    left = [p.name for p in (mnt / "ev").rglob("*")] if (mnt / "ev").exists() else []
    assert not [n for n in left if n.endswith(".partial")]


def test_network_options_are_refused_with_a_method(demo_source, tmp_path):
    for opt in (["--tile", "64"], ["--tile-halo", "32"], ["--attention-window", "0"],
                ["--threshold", "0.3"]):  # fmt: skip
        r = invoke("eval", demo_source, "--method", "tophat", *opt, "--out", tmp_path / "m")
        assert r.exit_code == 1, opt
        assert f"Error: {opt[0]} is a network's option: not for --method" in r.output
    assert "(a method's threshold is --k)" in r.output
    assert not (tmp_path / "m").exists()
    r = invoke("eval", demo_source, "--method", "tophat", "--k", 3, "--out", tmp_path / "m")
    assert r.exit_code == 0 and "k 3 (T = mean + k std)" in r.output
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["rule"].startswith("k 3")


def test_eval_takes_a_run_folder_and_inspect_a_folder_says_so(
    demo_source, demo_store, tiny_checkpoint, tmp_path
):
    r = invoke("eval", demo_store, "--checkpoint", tiny_checkpoint.parent, "--device", "cpu",
               "--out", tmp_path / "e", "--worst", 0)  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["checkpoint"] == str(tiny_checkpoint)
    r = invoke("inspect", demo_source)
    assert r.exit_code == 1
    assert f"{demo_source}: a folder, not a store; build one from it with" in r.output


def test_predict_on_a_dataset_folder_skips_its_masks(demo_source, tmp_path):
    r = invoke("predict", demo_source, "--method", "tophat", "--k", 3, "-o", tmp_path / "p",
               "--no-overlay")  # fmt: skip
    assert r.exit_code == 0, r.output
    n_images = len(list((demo_source / "images").glob("*.png")))
    assert f"wrote {n_images} mask(s)" in r.output
    assert not (tmp_path / "p" / "masks").exists()
    assert "k 3 (T = mean + k std)" in r.output
