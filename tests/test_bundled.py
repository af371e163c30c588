"""The bundled models, `real` (the default of eval and predict) and `nudt`: each loads with
weights_only=True, and eval on the generated fixture gives exactly the metrics its card
recorded."""

import json

import pytest
import torch
from click.testing import CliRunner

from sirst5k.demo import DemoConfig, generate_demo
from sirst5k.inference.bundled import BUNDLED, FIXTURE, resolve
from sirst5k_cli.cli import main
from trainer.checkpoint import read_checkpoint


@pytest.mark.parametrize("name", ["real", "nudt"])
def test_bundled_model_loads_and_has_a_card(name):
    path = BUNDLED[name]
    assert path.is_file() and path.stat().st_size < 2e6  # shipped in the package, small
    ckpt = read_checkpoint(path)  # torch.load(weights_only=True) inside
    assert all(v.dtype in (torch.float16, torch.int64) for v in ckpt["model"].values())
    card = ckpt["card"]
    assert card["name"] == name and set(card["metrics"]) >= {"fixture"}
    assert resolve(name) == path and str(resolve(f"x/{name}")) == f"x/{name}"


@pytest.mark.parametrize("name", ["real", "nudt"])
def test_eval_reproduces_the_recorded_fixture_metrics(tmp_path, name):
    path = BUNDLED[name]
    card = read_checkpoint(path)["card"]
    generate_demo(tmp_path / "fixture", DemoConfig(**FIXTURE))
    # no --checkpoint: `real` is the default
    given = [] if name == "real" else ["--checkpoint", name]
    r = CliRunner().invoke(
        main,
        ["eval", str(tmp_path / "fixture"), "--out", str(tmp_path / "ev"), "--device", "cpu"]
        + given,
    )
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert got["checkpoint"] == str(path)
    want = card["metrics"]["fixture"]
    assert got["images"] == want["images"]
    for k in ("iou", "niou", "pd", "fa"):
        assert got["metrics"][k] == pytest.approx(want[k], abs=1e-9), k


def test_predict_with_the_bundled_name(tmp_path):
    generate_demo(tmp_path / "d", DemoConfig(n=4, size=64))
    r = CliRunner().invoke(
        main, ["predict", str(tmp_path / "d" / "images"), "--checkpoint", "nudt",
               "-o", str(tmp_path / "p"), "--device", "cpu"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "p").glob("*.png"))) == 4


def test_the_default_is_the_real_frames_model_when_shipped(tmp_path, monkeypatch):
    from sirst5k.inference import bundled

    real, nudt = tmp_path / "real.pt", tmp_path / "nudt.pt"
    monkeypatch.setattr(bundled, "BUNDLED", {"real": real, "nudt": nudt})
    assert bundled.default_checkpoint() is None
    nudt.write_bytes(b"x")
    assert bundled.default_checkpoint() == nudt
    real.write_bytes(b"x")
    assert bundled.default_checkpoint() == real
    assert bundled.resolve("nudt") == nudt  # both names stay available
