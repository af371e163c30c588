"""`sirst5k compare`: one table of runs and methods on the same data, names that tell runs apart,
every entry checked before any runs."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch  # noqa: F401 (conftest's one_torch_thread keys on it)
from click.testing import CliRunner

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
