"""Tiled inference of large frames: the same pixels as the whole frame where the context fits."""

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sirst5k.errors import UserError
from sirst5k_cli.cli import main
from trainer.evaluate import tiled
from trainer.model import build_model, predict_probs


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
    with pytest.raises(UserError, match="multiples of 32"):
        tiled(box3, tile=100, halo=32)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    r = CliRunner().invoke(main, ["predict", str(tmp_path), "-o", str(tmp_path / "o"),
                                  "--tile", "100"])  # fmt: skip
    assert r.exit_code == 1 and "multiples of 32" in r.output
    assert not (tmp_path / "o").exists()
