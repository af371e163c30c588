"""The Python API does what the commands do: the same files, numbers and one-line errors."""

import json

import pytest
import torch
from click.testing import CliRunner

from sirst5k import evaluate, load_model, predict, synthesize, train
from sirst5k.errors import SirstError, TrainError, UserError
from sirst5k_cli.cli import main

TINY = dict(
    epochs=2, batch_size=8, crop=32, device="cpu", model=dict(widths=[4, 4, 8, 8, 8], blocks=1)
)


@pytest.mark.slow
def test_api_pipeline_matches_the_cli(demo_source, tmp_path):
    store = tmp_path / "s.h5"
    summary = synthesize(demo_source, store)
    assert store.is_file() and summary["negatives"] == 4 * summary["targets"]
    run = train(store, tmp_path / "run", **TINY)
    assert run["status"] == "completed" and (tmp_path / "run" / "best.pt").is_file()
    report = evaluate(store, checkpoint=tmp_path / "run" / "best.pt", out=tmp_path / "ev")
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["metrics"] == on_disk["metrics"]
    # the command gives the same metrics from the same checkpoint
    r = CliRunner().invoke(
        main, ["eval", str(store), "--checkpoint", str(tmp_path / "run" / "best.pt"),
               "--out", str(tmp_path / "ev2")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    cli = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert cli["metrics"] == report["metrics"]
    model = load_model(tmp_path / "run" / "best.pt")
    assert not model.training and isinstance(model(torch.zeros(1, 1, 32, 32)), list)
    masks = predict(
        demo_source / "images", tmp_path / "pred", checkpoint=tmp_path / "run" / "best.pt"
    )
    assert masks["written"] == len(list((demo_source / "images").iterdir()))


def test_api_errors_are_the_cli_lines(demo_source, tmp_path):
    with pytest.raises(UserError, match="--alpha 2.0: must lie in") as e:
        synthesize(demo_source, tmp_path / "x.h5", alpha=2.0)
    r = CliRunner().invoke(main, ["synth", str(demo_source), "-o", str(tmp_path / "x.h5"),
                                  "--alpha", "2"])  # fmt: skip
    assert r.exit_code == 1 and str(e.value) in r.output
    with pytest.raises(TrainError, match="give STORE"):
        train()
    with pytest.raises(SirstError, match="no such file"):
        train(tmp_path / "missing.h5", tmp_path / "run")
    with pytest.raises(SirstError, match="no such checkpoint"):
        load_model(tmp_path / "none.pt")


def test_compare_is_one_table_of_the_same_evaluations(demo_source, tmp_path):
    import csv

    from sirst5k import compare

    rows = compare(demo_source, methods=["tophat", "tllcm"], out=tmp_path / "cmp")
    assert [r["name"] for r in rows] == ["tophat", "tllcm"]
    single = evaluate(demo_source, method="tllcm", out=tmp_path / "one", worst=0)
    assert rows[1]["iou"] == pytest.approx(single["paper_units"]["iou_x1e2"])
    with open(tmp_path / "cmp" / "compare.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["tophat", "tllcm"]
    assert float(table[1]["pd"]) == pytest.approx(single["paper_units"]["pd_x1e2"])
    assert "| tllcm |" in (tmp_path / "cmp" / "compare.md").read_text()
    r = CliRunner().invoke(main, ["compare", str(demo_source)])
    assert r.exit_code == 1 and "at least one run" in r.output


def test_run_options_are_one_object_and_an_unknown_name_is_a_type_error(demo_source, tmp_path):
    from sirst5k import compare
    from sirst5k.inference.predictors import Inference, MethodPredictor

    assert Inference().decision_threshold == 0.5
    assert Inference(threshold=0.3).decision_threshold == 0.3
    p = Inference(k=2.0).predictor(method="tophat")
    assert isinstance(p, MethodPredictor) and p.k == 2.0
    with pytest.raises(UserError, match="--tile is a network's option"):
        Inference(tile=64).predictor(method="tophat")
    for call in (
        lambda: evaluate(demo_source, method="tophat", tiles=64),
        lambda: predict(demo_source / "images", tmp_path / "p", method="tophat", tiles=64),
        lambda: compare(demo_source, methods=["tophat"], tiles=64),
        lambda: synthesize(demo_source, tmp_path / "s.h5", tiles=64),
    ):
        with pytest.raises(TypeError, match="tiles"):
            call()
    assert list(tmp_path.iterdir()) == []
