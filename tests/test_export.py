"""ONNX export: ONNX Runtime gives PyTorch's probabilities on odd sizes and batches, and the
exported file works as a predictor in eval/predict."""

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sirst5k.errors import UserError
from sirst5k.inference.export import OnnxPredictor, export_onnx, session
from sirst5k.inference.predictors import ModelPredictor, default_batch, make_predictor
from sirst5k_cli.cli import main
from trainer.checkpoint import SCHEMA, save_checkpoint
from trainer.forward import predict_probs
from trainer.nets.aff_unet import set_attention_window
from trainer.registry import build_model

pytest.importorskip("onnxruntime")
CFG = dict(widths=[4, 8, 8, 16, 16], blocks=1)

pytestmark = pytest.mark.slow  # ONNX export and ONNX Runtime: seconds each


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    model = build_model(CFG)
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint({"schema": SCHEMA, "model": model.state_dict(), "model_config": CFG}, path)
    return path


def test_onnx_matches_pytorch_on_odd_sizes(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    summary = export_onnx(checkpoint, out)
    assert out.is_file() and summary["opset"] == 17 and summary["max_abs_diff"] < 1e-5
    model = build_model(CFG)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    set_attention_window(model, 256)  # as the export (257 px: two cells)
    onnx = OnnxPredictor(out, tile=0)  # whole frames, like predict_probs below
    rng = np.random.default_rng(0)
    for h, w in ((37, 53), (100, 129), (16, 16), (257, 31)):
        images = [rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(2)]
        want = predict_probs(model, torch.from_numpy(np.stack(images))[:, None]).numpy()
        got = np.stack(onnx(images))
        assert got.shape == (2, h, w)
        assert np.abs(got - want).max() < 1e-5, (h, w)
    # a frame over 256 px: the export has eval's attention window built in (its metadata says
    # so) and gives PyTorch's windowed result; exported with 0, it tiles as PyTorch with 0
    frame = rng.integers(0, 256, (300, 40), dtype=np.uint8)
    windowed = OnnxPredictor(out)
    assert windowed.info["attention_window"] == 256 and windowed.tile == 2048
    assert np.abs(windowed([frame])[0] - ModelPredictor(checkpoint, "cpu")([frame])[0]).max() < 1e-5
    export_onnx(checkpoint, tmp_path / "w0.onnx", window=0)
    plain = OnnxPredictor(tmp_path / "w0.onnx")
    assert plain.info["attention_window"] is None and (plain.tile, plain.halo) == (256, 64)
    torch_tiled = ModelPredictor(checkpoint, "cpu", window=0)([frame])[0]
    assert np.abs(plain([frame])[0] - torch_tiled).max() < 1e-5


def test_onnx_frames_side_by_side_equal_one_at_a_time(checkpoint, tmp_path):
    """Several frames run on one-thread sessions side by side; each gives what it gives alone
    on the all-threads session (mixed shapes, one tiled), in input order."""
    out = tmp_path / "m.onnx"
    export_onnx(checkpoint, out)
    pred = OnnxPredictor(out, tile=64, halo=32)
    pred.lanes, pred.single = 3, session(out, threads=1)  # whatever this machine's threads
    rng = np.random.default_rng(2)
    shapes = [(37, 53), (100, 129), (37, 53), (16, 16), (64, 64)]
    frames = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    alone = [pred([f])[0] for f in frames]  # one frame: the all-threads session
    got = pred(frames)
    assert [g.shape for g in got] == shapes
    for a, g in zip(alone, got, strict=True):
        assert np.abs(a - g).max() < 1e-6
    assert default_batch(pred) == 3 and default_batch(ModelPredictor(checkpoint, "cpu")) == 1


def test_onnx_predictor_in_predict_and_eval(checkpoint, tmp_path, demo_source):
    onnx = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", str(checkpoint), "-o", str(onnx)])
    assert r.exit_code == 0 and "matches PyTorch" in r.output, r.output
    assert isinstance(make_predictor(onnx), OnnxPredictor)
    before = onnx.read_bytes()
    r = CliRunner().invoke(main, ["export", str(checkpoint), "-o", str(onnx), "--opset", "18"])
    assert r.exit_code == 1 and f"{onnx} exists; pass --force to replace it" in r.output
    assert onnx.read_bytes() == before
    runs = {}
    for name, ckpt in (("pt", checkpoint), ("onnx", onnx)):
        r = CliRunner().invoke(main, ["eval", str(demo_source), "--checkpoint", str(ckpt),
                                      "--out", str(tmp_path / name), "--worst", "0"])  # fmt: skip
        assert r.exit_code == 0, r.output
        with open(tmp_path / name / "per_image.csv") as f:
            runs[name] = list(csv.DictReader(f))
    # the same scores image by image, but for the odd pixel within ~1e-6 of the threshold (an
    # untrained model puts many probabilities near 0.5)
    pt, ox = runs["pt"], runs["onnx"]
    assert [(r["stem"], r["hits"], r["misses"]) for r in pt] == [
        (r["stem"], r["hits"], r["misses"]) for r in ox
    ]
    flips = sum(
        abs(int(a["false_pixels"]) - int(b["false_pixels"])) for a, b in zip(pt, ox, strict=True)
    )
    assert flips <= 1e-3 * sum(int(a["false_pixels"]) for a in pt) + 2
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        make_predictor(tmp_path / "bad.onnx")


def test_onnx_export_keeps_the_training_flips_for_tta(checkpoint, tmp_path):
    """--tta on an export averages the views of the checkpoint's --flips, as on the .pt; an
    export of a checkpoint without a training config gets all 8 (the d4 default)."""
    h = tmp_path / "h.pt"
    save_checkpoint({"schema": SCHEMA, "model": build_model(CFG).state_dict(),
                     "model_config": CFG, "config": {"flips": "h"}}, h)  # fmt: skip
    export_onnx(h, tmp_path / "h.onnx")
    export_onnx(checkpoint, tmp_path / "d4.onnx")
    assert make_predictor(tmp_path / "h.onnx", tta=True).views == (0, 7)
    assert make_predictor(tmp_path / "d4.onnx", tta=True).views == tuple(range(8))
