"""Large frames: tiled inference gives the same pixels as the whole frame where the context
fits; the AFF U-Net's windowed channel attention gates each cell by that cell alone."""

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sirst5k.errors import UserError
from sirst5k.inference.predictors import ModelPredictor, make_predictor
from sirst5k.inference.tiling import tiled
from sirst5k_cli.cli import main
from trainer.checkpoint import SCHEMA, save_checkpoint
from trainer.forward import predict_probs
from trainer.nets.aff_unet import ChannelAttention, set_attention_window
from trainer.registry import build_model


def box3(batch: np.ndarray) -> np.ndarray:
    """A 3 x 3 mean with zero padding, by shifted sums (receptive field 1 px)."""
    b, h, w = batch.shape
    pad = np.zeros((b, h + 2, w + 2), np.float32)
    pad[:, 1:-1, 1:-1] = batch
    return sum(pad[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9


def test_tiles_cover_every_pixel_once_with_a_local_filter():
    """A 1-px filter through tiles with a 32 px halo gives the whole-frame result exactly, on
    frame sides that are and are not multiples of the tile; a frame that fits runs once."""
    rng = np.random.default_rng(0)
    calls = []

    def run(batch):
        calls.append(batch.shape)
        return box3(batch)

    for h, w in [(200, 330), (128, 256), (65, 97)]:
        frames = rng.integers(0, 256, (2, h, w)).astype(np.uint8)
        calls.clear()
        got = tiled(run, tile=64, halo=32)(frames)
        assert np.array_equal(got, box3(frames))
        tiles = -(-h // 64) * -(-w // 64)
        assert len(calls) == tiles and all(c[1] <= 128 and c[2] <= 128 for c in calls)
    calls.clear()
    frames = rng.integers(0, 256, (1, 60, 64)).astype(np.uint8)
    assert np.array_equal(tiled(run, tile=64, halo=32)(frames), box3(frames))
    assert calls == [(1, 60, 64)]  # fits: the whole frame, once


def test_tiled_network_equals_whole_frame_where_its_context_fits():
    """A U-Net without attention sees 110 px around a pixel (measured below by the input
    gradient of one output pixel); with a 128 px halo its tiled probabilities are the
    whole-frame ones up to float rounding, and so are its masks."""
    torch.manual_seed(0)
    model = build_model(dict(widths=[4, 4, 8, 8, 8], blocks=1, attention=False)).eval()
    x = (torch.rand(1, 1, 512, 512) * 255).requires_grad_(True)
    model(x)[0][0, 0, 256, 256].backward()
    ys, xs = np.nonzero(x.grad[0, 0].abs().numpy() > 0)
    reach = max(256 - ys.min(), ys.max() - 256, 256 - xs.min(), xs.max() - 256)
    assert reach <= 128

    def run(batch):
        return predict_probs(model, torch.from_numpy(batch)[:, None]).numpy()

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (1, 400, 530)).astype(np.uint8)
    whole = run(frames)
    got = tiled(run, tile=128, halo=128)(frames)
    assert np.abs(got - whole).max() < 1e-5
    assert np.array_equal(got > 0.5, whole > 0.5)
    # too little context: the tiles' edges differ (the check above can fail)
    short = tiled(run, tile=128, halo=32)(frames)
    assert np.abs(short - whole).max() > 1e-4


def test_bad_tiling_is_one_line(tmp_path):
    with pytest.raises(UserError, match="--tile 100: use a multiple of 32"):
        tiled(box3, tile=100, halo=32)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    r = CliRunner().invoke(main, ["predict", str(tmp_path), "-o", str(tmp_path / "o"),
                                  "--tile", "100"])  # fmt: skip
    assert r.exit_code == 1 and "--tile 100: use a multiple of 32" in r.output
    assert not (tmp_path / "o").exists()
    # only the option given is named (the review found a halo error blaming a --tile 256 default)
    r = CliRunner().invoke(main, ["predict", str(tmp_path), "-o", str(tmp_path / "o"),
                                  "--tile-halo", "10"])  # fmt: skip
    assert r.exit_code == 1 and "Error: --tile-halo 10: use a multiple of 32" in r.output
    assert "--tile 256" not in r.output


def test_windowed_channel_attention_gates_each_cell_by_itself():
    """With a 32 px window, channel attention on a 40 x 70 map equals Eq. 5 (global pools) run
    on each cell alone, the partial cells at the bottom and right included."""
    torch.manual_seed(0)
    attn = ChannelAttention(8).eval()
    x = torch.randn(2, 8, 40, 70)
    attn.window = 32
    with torch.no_grad():
        got = attn(x)
        attn.window = 0
        want = torch.empty_like(x)
        for y0 in (0, 32):
            for x0 in (0, 32, 64):
                want[..., y0 : y0 + 32, x0 : x0 + 32] = attn(x[..., y0 : y0 + 32, x0 : x0 + 32])
        assert torch.allclose(got, want, atol=1e-6)
        assert (got - attn(x)).abs().max() > 1e-3  # and it is not the global gate


def test_attention_window_levels_and_small_inputs():
    """Each decoder level pools over its share of the window (256 px: 256, 128, 64, 32); an
    input that fits in one cell gives Eq. 5's result; a larger one does not."""
    torch.manual_seed(1)
    model = build_model(dict(widths=[4, 8, 8, 16, 16], blocks=1)).eval()
    x = torch.rand(1, 1, 96, 160) * 255
    big = torch.rand(1, 1, 320, 192) * 255
    whole, whole_big = predict_probs(model, x), predict_probs(model, big)
    assert set_attention_window(model, 256)
    assert [d.aff.channel.window for d in model.decoder] == [256, 128, 64, 32]
    assert torch.allclose(predict_probs(model, x), whole, atol=1e-6)
    assert (predict_probs(model, big) - whole_big).abs().max() > 1e-4
    with pytest.raises(UserError, match="multiple of 8"):
        set_attention_window(model, 100)
    plain = build_model(dict(widths=[4, 8, 8, 16, 16], blocks=1, attention=False))
    assert not set_attention_window(plain, 256)


def test_predictor_defaults_follow_the_window(tmp_path):
    """The AFF U-Net with its window runs frames whole up to 2048 px; with --attention-window 0,
    or for a network without that attention, frames over 256 px run in 256 px tiles."""
    cfgs = {"aff": dict(widths=[4, 8, 8, 16, 16], blocks=1), "plain": dict(attention=False)}
    paths = {}
    for name, cfg in cfgs.items():
        cfg = {**cfgs["aff"], **cfg}
        paths[name] = tmp_path / f"{name}.pt"
        state = {"schema": SCHEMA, "model": build_model(cfg).state_dict(), "model_config": cfg}
        save_checkpoint(state, paths[name])
    p = ModelPredictor(paths["aff"], "cpu")
    assert (p.tile, p.halo, p.info["attention_window"]) == (2048, 256, 256)
    p = ModelPredictor(paths["aff"], "cpu", window=0)
    assert (p.tile, p.halo, p.info["attention_window"]) == (256, 64, None)
    p = ModelPredictor(paths["plain"], "cpu", tile=512)
    assert (p.tile, p.halo, p.info["attention_window"]) == (512, 64, None)
    with pytest.raises(UserError, match="--attention-window 100"):
        make_predictor(paths["aff"], window=100)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    args = ["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]
    args += ["--checkpoint", str(paths["aff"]), "--attention-window", "40"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "multiple of 32" in r.output
    assert not (tmp_path / "o").exists()


def test_onnx_refuses_a_window_other_than_its_own(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    onnx = tmp_path / "m.onnx"
    args = ["export", str(tiny_checkpoint), "-o", str(onnx), "--attention-window", "64"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert make_predictor(onnx, window=64).info["attention_window"] == 64
    assert make_predictor(onnx).info["attention_window"] == 64
    with pytest.raises(UserError, match=r"its attention window \(64 px\) is built in"):
        make_predictor(onnx, window=0)
