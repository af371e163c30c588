"""The albumentations wrappers: same results as the pure ops, seeded, masks per label mode."""

import albumentations as A
import numpy as np
import pytest

from sirst5k.errors import UserError
from sirst5k.ops import noise_cells, rotate_box
from sirst5k.transforms import NegativeRotation, NoiseDisplacement, noise_pool


def _sample():
    img = np.arange(144, dtype=np.uint8).reshape(12, 12)
    mask = np.zeros((12, 12), np.uint8)
    mask[2, 2] = mask[2, 3] = 1  # target 0: centroid (2, 2.5) -> box (1, 2)
    mask[9, 9] = 1  # target 1: box (8, 8)
    return img, mask


def test_negative_rotation_is_one_of_the_exact_candidates():
    img, mask = _sample()
    seen = set()
    for seed in range(40):
        out = A.Compose([NegativeRotation(s=3)], seed=seed)(image=img, mask=mask)
        hits = [
            (b, k)
            for b in ((1, 2), (8, 8))
            for k in range(4)
            if (out["image"] == rotate_box(img, *b, 3, k)).all()
        ]
        assert hits, "output is not a rot90 of one target box"
        b, k = hits[0]
        assert (out["mask"] == rotate_box(mask, *b, 3, k)).all()
        seen.add((b, k))
    # both targets and all rotations occur; k = 0 is the identity, counted once: 2 x 3 + 1
    assert len(seen) == 7


def test_negative_rotation_same_seed_same_output_and_label_unchanged():
    img, mask = _sample()
    a = A.Compose([NegativeRotation(3, "unchanged")], seed=5)(image=img, mask=mask)
    b = A.Compose([NegativeRotation(3, "unchanged")], seed=5)(image=img, mask=mask)
    assert (a["image"] == b["image"]).all() and (a["mask"] == mask).all()
    # seed 5 draws target 1, box (8, 8), k = 3: [[104..106], [116..118], [128..130]] turned
    # 270 degrees counter-clockwise; nothing else moves
    want = img.copy()
    want[8:11, 8:11] = [[128, 116, 104], [129, 117, 105], [130, 118, 106]]
    assert (a["image"] == want).all()


def test_negative_rotation_apply_rotates_image_and_mask_box():
    img, mask = _sample()
    t = NegativeRotation(3)
    # box (1, 2) holds [[14, 15, 16], [26, 27, 28], [38, 39, 40]]; np.rot90 with k = 1
    want = img.copy()
    want[1:4, 2:5] = [[16, 28, 40], [15, 27, 39], [14, 26, 38]]
    assert (t.apply(img, box=(1, 2), k=1) == want).all()
    # the mask box [[0, 0, 0], [1, 1, 0], [0, 0, 0]] becomes [[0, 0, 0], [0, 1, 0], [0, 1, 0]]
    got = t.apply_to_mask(mask, box=(1, 2), k=1)
    assert sorted(zip(*np.nonzero(got), strict=True)) == [(2, 3), (3, 3), (9, 9)]
    unchanged = NegativeRotation(3, "unchanged").apply_to_mask(mask, box=(1, 2), k=1)
    assert (unchanged == mask).all()


def test_negative_rotation_without_target_or_channels():
    img, _ = _sample()
    empty = np.zeros_like(img)
    out = A.Compose([NegativeRotation(3)], seed=0)(image=img, mask=empty)
    assert (out["image"] == img).all() and (out["mask"] == empty).all()
    rgb = np.dstack([img] * 3)
    _, mask = _sample()
    out = A.Compose([NegativeRotation(3)], seed=1)(image=rgb, mask=mask)
    assert out["image"].shape == (12, 12, 3)
    assert (out["image"][..., 0] == out["image"][..., 2]).all()


def test_noise_displacement_exact_mix_and_mask_untouched():
    img, mask = _sample()
    pool = [np.full((3, 3), 100, np.uint8)]
    out = A.Compose([NoiseDisplacement(pool, alpha=0.5)], seed=0)(image=img, mask=mask)
    assert (out["image"] == np.rint(0.5 * 100 + 0.5 * img.astype(float))).all()
    assert (out["mask"] == mask).all()
    rgb = np.dstack([img] * 3)
    out = A.Compose([NoiseDisplacement(pool, alpha=1.0)], seed=0)(image=rgb, mask=mask)
    assert out["image"].shape == (12, 12, 3) and (out["image"] == 100).all()


def test_noise_pool_matches_eq1():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(90, 95, (16, 16), dtype=np.uint8) for _ in range(2)]
    masks = [np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)]
    masks[1][0, 0] = 1
    cells = noise_pool(imgs, masks, grid=4)
    n = sum(noise_cells(i, m, 4, 50, 255).sum() for i, m in zip(imgs, masks, strict=True))
    assert len(cells) == n == 31 and all(c.shape == (4, 4) for c in cells)


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty noise pool"):
        NoiseDisplacement([])
    with pytest.raises(UserError, match="alpha"):
        NoiseDisplacement([np.ones((2, 2), np.uint8)], alpha=2)
    with pytest.raises(UserError, match="odd"):
        NegativeRotation(s=2)
