"""Test-time augmentation: the 8 flips and rotations, their inverses, and the averaged
predictor, checked against results worked out by hand."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sirst5k.errors import UserError
from sirst5k.inference.predictors import TTAPredictor, dihedral, make_predictor, undo_dihedral
from sirst5k_cli.cli import main
from trainer.checkpoint import SCHEMA, save_checkpoint
from trainer.registry import build_model


class Fake:
    """A predictor given by a function of the (transformed) image."""

    name, params, device = "fake", None, "cpu"

    def __init__(self, fn):
        self.fn, self.info = fn, {"checkpoint": "fake"}

    def __call__(self, images):
        return [self.fn(im).astype(np.float32) for im in images]


def test_the_8_transforms_are_the_dihedral_group_and_undo_inverts_them():
    im = np.arange(6).reshape(2, 3)  # no symmetry: the 8 images differ
    seen = {dihedral(im, k).tobytes() + bytes(dihedral(im, k).shape) for k in range(8)}
    assert len(seen) == 8
    assert np.array_equal(dihedral(im, 1), [[2, 5], [1, 4], [0, 3]])  # a quarter turn
    assert np.array_equal(dihedral(im, 4), [[0, 3], [1, 4], [2, 5]])  # the transpose
    for k in range(8):
        assert np.array_equal(undo_dihedral(dihedral(im, k), k), im)


def test_tta_leaves_a_pointwise_predictor_alone():
    """A prediction that depends only on each pixel's value is unchanged by any of the 8."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (5, 7), dtype=np.uint8), rng.integers(0, 256, (4, 4), np.uint8)]
    base = Fake(lambda im: im / 255.0)
    for got, want in zip(TTAPredictor(base)(images), base(images), strict=True):
        assert got.shape == want.shape and np.allclose(got, want)


def test_tta_averages_an_oriented_predictor_to_its_mean():
    """A predictor that returns the column ramp x / (n - 1) of whatever it is shown: under the
    8 transforms, pixel (i, j) of an n x n image lands in columns j, n-1-j, i and n-1-i, twice
    each, so the average is (2n - 2) / 4 / (n - 1) = 0.5 everywhere."""
    n = 6
    base = Fake(lambda im: np.tile(np.arange(im.shape[1]) / (im.shape[1] - 1), (im.shape[0], 1)))
    (got,) = TTAPredictor(base)([np.zeros((n, n), np.uint8)])
    assert np.allclose(got, 0.5)
    assert TTAPredictor(base).info == {"checkpoint": "fake", "tta": 8}


def test_tta_in_eval_and_its_errors(tmp_path, demo_source):
    cfg = dict(widths=[4, 8, 8, 16, 16], blocks=1)
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint({"schema": SCHEMA, "model": build_model(cfg).state_dict(),
                     "model_config": cfg}, ckpt)  # fmt: skip
    r = CliRunner().invoke(main, ["eval", str(demo_source), "--checkpoint", str(ckpt), "--tta",
                                  "--out", str(tmp_path / "e"), "--worst", "0"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["tta"] == 8
    with pytest.raises(UserError, match="not for --method"):
        make_predictor(method="tophat", tta=True)
    r = CliRunner().invoke(main, ["eval", str(demo_source), "--method", "tophat", "--tta",
                                  "--out", str(tmp_path / "m")])  # fmt: skip
    assert r.exit_code == 1 and "not for --method" in r.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("flips", ["d4", "hv", "h", "none"])
def test_tta_views_are_the_training_flips_orientations(flips):
    """The views TTA averages are exactly the orientations the training flips produce, worked
    out with numpy's flips and transpose (the group they generate)."""
    from sirst5k.inference.predictors import TTA_VIEWS
    from trainer.data import FLIPS

    def key(a):
        return a.shape, a.tobytes()

    im = np.arange(6).reshape(2, 3)  # no symmetry: each orientation differs
    ops = {"HorizontalFlip": np.fliplr, "VerticalFlip": np.flipud, "Transpose": np.transpose}
    group = {key(im): im}
    for _ in range(3):  # closure under the generators
        for g in [ops[t.__name__] for t in FLIPS[flips]]:
            group |= {key(g(a)): g(a) for a in list(group.values())}
    views = {key(dihedral(im, k)) for k in TTA_VIEWS[flips]}
    assert views == set(group) and len(views) == {"d4": 8, "hv": 4, "h": 2, "none": 1}[flips]


def test_tta_reads_the_checkpoints_flips(tmp_path):
    """A network trained with --flips hv is averaged over its 4 orientations, never a
    transpose: a predictor that answers 1 on a view taller than wide (a transposed 4 x 6
    image) and 0 otherwise averages to 0 with these views, 0.5 with all 8."""
    cfg = dict(widths=[4, 8, 8, 16, 16], blocks=1)
    ckpt = tmp_path / "m.pt"
    save_checkpoint({"schema": SCHEMA, "model": build_model(cfg).state_dict(),
                     "model_config": cfg, "config": {"flips": "hv"}}, ckpt)  # fmt: skip
    p = make_predictor(ckpt, device="cpu", tta=True)
    assert p.views == (0, 2, 5, 7) and p.info["tta"] == 4
    tall = Fake(lambda im: np.full(im.shape, float(im.shape[0] > im.shape[1])))
    image = [np.zeros((4, 6), np.uint8)]
    assert np.allclose(TTAPredictor(tall, p.views)(image)[0], 0.0)
    assert np.allclose(TTAPredictor(tall)(image)[0], 0.5)
