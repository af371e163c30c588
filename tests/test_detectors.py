"""Classical detectors on small arrays with known answers."""

import numpy as np
import pytest

from sirst5k.errors import UserError
from trainer.detectors import DETECTORS, detect, maxmedian, to_probability, tophat
from trainer.metrics import Metrics


def test_tophat_of_one_bright_pixel_is_its_excess():
    img = np.full((21, 21), 40, np.uint8)
    img[10, 10] = 140
    out = tophat(img)
    assert out.dtype == np.float32
    assert out[10, 10] == 100 and np.count_nonzero(out) == 1


def test_tophat_ignores_wide_structures():
    img = np.zeros((30, 30), np.uint8)
    img[5:15, 5:15] = 200  # wider than 5x5: survives the opening
    assert np.count_nonzero(tophat(img)) == 0


def test_maxmedian_of_constant_image_is_zero():
    assert not maxmedian(np.full((32, 17), 77, np.uint8)).any()


def test_maxmedian_of_a_point_and_a_line():
    img = np.full((31, 31), 10, np.uint8)
    img[15, 15] = 90  # a point: every directional median is the background
    img[:, 3] = 200  # a vertical line: the column median removes it
    out = maxmedian(img)
    assert out[15, 15] == 80
    assert out[20, 3] == 0


def test_maxmedian_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 23), dtype=np.uint8)
    pad = np.pad(img, 7, mode="reflect")
    ref = np.zeros(img.shape, np.float32)
    for y in range(20):
        for x in range(23):
            cy, cx = y + 7, x + 7
            lines = [
                pad[cy, cx - 7 : cx + 8],
                pad[cy - 7 : cy + 8, cx],
                [pad[cy + i, cx + i] for i in range(-7, 8)],
                [pad[cy + i, cx - i] for i in range(-7, 8)],
            ]
            ref[y, x] = max(0.0, float(img[y, x]) - max(np.median(v) for v in lines))
    np.testing.assert_array_equal(maxmedian(img), ref)


@pytest.mark.parametrize("k", [0.0, 1.5, 3.0])
def test_probability_reproduces_the_adaptive_mask(k):
    rng = np.random.default_rng(1)
    score = (rng.random((40, 40)) ** 4 * 50).astype(np.float32)
    t = score.astype(np.float64).mean() + k * score.astype(np.float64).std()
    prob = to_probability(score, k)
    assert prob.min() >= 0 and prob.max() <= 1
    np.testing.assert_array_equal(prob > 0.5, score > t)


def test_flat_image_gives_empty_mask_and_every_detector_runs():
    for name in DETECTORS:
        assert not (detect(name, np.full((16, 16), 9, np.uint8)) > 0.5).any()
    img = np.full((32, 32), 20, np.uint8)
    img[10:12, 20:22] = 220
    mask = np.zeros_like(img)
    mask[10:12, 20:22] = 1
    for name in DETECTORS:
        m = Metrics()
        m.update(detect(name, img)[None], mask[None])
        assert m.compute()["pd"] == 1.0, name


def test_unknown_method():
    with pytest.raises(UserError, match="unknown method 'ipi'"):
        detect("ipi", np.zeros((4, 4), np.uint8))
