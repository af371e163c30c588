"""What a new user's review of the CLI found (2026-11-25), each checked by its symptom."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
import torch  # noqa: F401 (conftest's one_torch_thread keys on it)
from click.testing import CliRunner

from sirst5k.errors import UserError
from sirst5k_cli.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_compare_names_runs_of_one_folder_name_apart(demo_source, tiny_checkpoint, tmp_path):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    for d in (a, b):
        shutil.copytree(tiny_checkpoint.parent, d, ignore=shutil.ignore_patterns("eval"))
    out = tmp_path / "cmp"
    r = invoke("compare", demo_source, a, b, "--method", "tophat", "--k", "tophat=3",
               "--out", out, "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    table = list(csv.DictReader(open(out / "compare.csv")))
    assert [t["name"] for t in table] == ["tophat", "a/run", "b/run"]
    assert (out / "a" / "run" / "metrics.json").is_file()
    assert (out / "b" / "run" / "metrics.json").is_file()
    # the same weights: the same row; --k reaches the method (as eval --k 3)
    assert table[1]["iou"] == table[2]["iou"]
    one = invoke("eval", demo_source, "--method", "tophat", "--k", 3, "--out", tmp_path / "e")
    assert one.exit_code == 0, one.output
    single = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert float(table[0]["iou"]) == pytest.approx(single["paper_units"]["iou_x1e2"])
    assert table[0]["rule"] == "k 3 (T = mean + k std)" and table[1]["rule"] == "threshold 0.5"


def test_compare_checks_every_entry_before_running_any(demo_source, tmp_path):
    bad = tmp_path / "partial"
    bad.mkdir()
    (bad / "best.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "cmp"
    r = invoke("compare", demo_source, "--method", "tophat", bad, "--out", out)
    assert r.exit_code == 1 and "best.pt: not a readable checkpoint" in r.output
    assert "evaluating" not in r.output and not out.exists()
    r = invoke("compare", demo_source, "--method", "tophat", "--k", "ipi=2", "--out", out)
    assert r.exit_code == 1 and "ipi is not among the --method given" in r.output
    r = invoke("compare", demo_source, "--method", "tophat", "--k", "tophat", "--out", out)
    assert r.exit_code == 2 and "use METHOD=K" in r.output


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


def test_onnx_refuses_a_window_other_than_its_own(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from sirst5k.inference.predictors import make_predictor

    onnx = tmp_path / "m.onnx"
    r = invoke("export", tiny_checkpoint, "-o", onnx, "--attention-window", "64")
    assert r.exit_code == 0, r.output
    assert make_predictor(onnx, window=64).info["attention_window"] == 64
    assert make_predictor(onnx).info["attention_window"] == 64
    with pytest.raises(UserError, match=r"its attention window \(64 px\) is built in"):
        make_predictor(onnx, window=0)


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


@pytest.mark.parametrize("alpha", ["0,0.3", "0,0.2"])  # 0,0.2: the default, given all the same
def test_alpha_range_needs_on_the_fly(demo_store, tmp_path, alpha):
    r = invoke("train", demo_store, "--out", tmp_path / "r", "--preset", "demo",
               "--alpha-range", alpha, "--epochs", 1)  # fmt: skip
    assert r.exit_code != 0
    assert "--alpha-range draws the alpha of on-the-fly negatives" in r.output
    assert not (tmp_path / "r").exists()


def test_resume_from_a_damaged_last_pt_does_not_advise_starting_over(demo_store, tmp_path):
    run = tmp_path / "r"
    r = invoke("train", demo_store, "--out", run, "--preset", "demo", "--epochs", 1,
               "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    r = invoke("train", "--resume", run)
    assert r.exit_code != 0
    assert "last.pt: not a readable checkpoint" in r.output
    assert "never finished" not in r.output and "--force" not in r.output
    assert f"evaluate {run}/best.pt" in r.output
    assert (run / "best.pt").is_file() and (run / "log.csv").is_file()


def test_size_mismatch_reads_h_by_w(tmp_path):
    from sirst5k.io import load_split, read_pair

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((90, 100), np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), np.zeros((100, 90), np.uint8))
    (root / "test.txt").write_text("a\n")
    with pytest.raises(UserError, match=r"mask is 100x90 \(h x w\) but its image is 90x100"):
        read_pair(load_split(root, "test")[0])
