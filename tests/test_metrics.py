"""Metrics on masks built by hand, and against an independent skimage-based implementation."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from skimage.measure import label, regionprops

from sirst5k.metrics import Metrics, RocSweep, match_batch, score_image


def canvas(*pixels, size=(20, 20)):
    a = np.zeros(size, np.uint8)
    for y, x in pixels:
        a[y, x] = 1
    return a


def run(pred, mask, legacy=False, sizes=None):
    m = Metrics(0.5, legacy_fa=legacy)
    m.update(np.asarray(pred, np.float32)[None], mask[None], sizes)
    return m.compute()


def reference(preds, masks, sizes=None):
    """DNA-Net's loops with skimage (label connectivity=2, regionprops centroids), corrected and
    legacy Fa, IoU summed, nIoU averaged; written independently of sirst5k.metrics."""
    tot = dict(inter=0, union=0, targets=0, hits=0, false=0, legacy=0, pixels=0)
    ious = []
    for i, (p, g) in enumerate(zip(preds, masks, strict=True)):
        h, w = sizes[i] if sizes is not None else p.shape
        p, g = p[:h, :w].astype(bool), g[:h, :w].astype(bool)
        inter, union = int((p & g).sum()), int((p | g).sum())
        ious.append(inter / union if union else 0.0)
        tot["inter"] += inter
        tot["union"] += union
        tot["pixels"] += h * w
        pr, gr = regionprops(label(p, connectivity=2)), regionprops(label(g, connectivity=2))
        areas = [r.area for r in pr]
        tot["targets"] += len(gr)
        matched_areas = []
        for r in gr:
            for m in range(len(pr)):
                # exact, as documented in sirst5k/metrics.py (DNA-Net's float norm can put a
                # distance of exactly 3 at 2.9999999999999996: hypothesis found such a case)
                d2 = sum((Fraction(int(a.sum()), len(a)) - Fraction(int(b.sum()), len(b))) ** 2
                         for a, b in zip(pr[m].coords.T, r.coords.T, strict=True))  # fmt: skip
                if d2 < 9:
                    matched_areas.append(pr[m].area)
                    tot["hits"] += 1
                    del pr[m]
                    break
        tot["false"] += int(p.sum()) - sum(matched_areas)
        tot["legacy"] += sum(a for a in areas if a not in matched_areas)
    return tot, ious


def test_touching_pixels_are_one_target():
    mask = canvas((2, 2), (3, 3))  # diagonal neighbours: one 8-connected target
    r = run(canvas((2, 2)), mask)
    assert (r["targets"], r["hits"], r["false_pixels"]) == (1, 1, 0)
    assert r["iou"] == 0.5


def test_target_split_into_two_predicted_parts():
    mask = canvas(*[(5, x) for x in range(2, 7)])  # centroid (5, 4)
    pred = canvas((5, 2), (5, 6))  # two parts, both at distance 2: the first wins
    r = run(pred, mask)
    assert (r["targets"], r["hits"], r["false_pixels"], r["legacy_false_pixels"]) == (1, 1, 1, 0)
    assert r["iou"] == pytest.approx(2 / 5)


def test_distance_just_under_three_matches():
    mask = canvas((10, 10))
    pred = canvas(*[(13, x) for x in range(6, 15)], (12, 10))  # centroid (12.9, 10): 2.9 px
    assert run(pred, mask)["hits"] == 1


@pytest.mark.parametrize(
    "pixels",
    [
        [(13, 10)],  # 3.0 px straight down
        [(10, 12), (11, 12), (12, 13), (13, 12), (13, 13)],  # centroid (11.8, 12.4): 3.0 px
    ],
)
def test_distance_of_exactly_three_does_not_match(pixels):
    r = run(canvas(*pixels), canvas((10, 10)))
    assert (r["hits"], r["false_pixels"]) == (0, len(pixels))


def test_first_candidate_in_label_order_not_nearest():
    mask = canvas((10, 10))
    # label 1 (first pixel on row 7): (7, 10), (8, 10), centroid (7.5, 10), 2.5 px away.
    # label 2 (first pixel on row 10): (10, 10), (10, 11), (11, 10), centroid (31/3, 31/3),
    # sqrt(2) / 3 = 0.47 px away. Row 9 is empty, so they are two components. Greedy in label
    # order takes label 1; a nearest-first matcher would take label 2 (2 false pixels, not 3).
    pred = canvas((7, 10), (8, 10), (10, 10), (10, 11), (11, 10))
    m = match_batch(pred[None].astype(bool), mask[None].astype(bool), keep_labels=True)
    assert m.pred_area.tolist() == [2, 3] and m.pred_labels[0, 7, 10] == 1
    assert m.pred_matched.tolist() == [True, False] and m.gt_hit.tolist() == [True]
    r = run(pred, mask)
    assert (r["targets"], r["hits"], r["pd"]) == (1, 1, 1.0)
    assert (r["false_pixels"], r["legacy_false_pixels"]) == (3, 3)  # the nearer one, area 3
    assert r["fa"] == 3 / 400 and r["iou"] == 1 / 5  # inter (10, 10); union 5 predicted pixels


def test_two_targets_compete_for_one_prediction():
    mask = canvas((5, 5), (5, 8))
    r = run(canvas((5, 6)), mask)
    assert (r["targets"], r["hits"], r["false_pixels"]) == (2, 1, 0)


def test_image_without_target_and_empty_prediction():
    m = Metrics()
    m.update(canvas((1, 1), (1, 2), (9, 9))[None].astype(np.float32), canvas()[None])
    m.update(canvas()[None].astype(np.float32), canvas((4, 4))[None])
    m.update(canvas()[None].astype(np.float32), canvas()[None])  # nothing at all: IoU 0
    r = m.compute()
    assert (r["targets"], r["hits"], r["false_pixels"], r["images"]) == (1, 0, 3, 3)
    assert (r["iou"], r["niou"], r["pd"]) == (0.0, 0.0, 0.0)
    assert r["fa"] == 3 / (3 * 400)
    assert [s.misses for s in m.per_image()] == [0, 1, 0]


def test_legacy_fa_drops_components_of_a_matched_area():
    # target A (2x2) matched by a 2x2 prediction; two unmatched 2x2 blobs and one single pixel
    # (the legacy form is defined for 256 x 256 images only)
    mask = canvas((2, 2), (2, 3), (3, 2), (3, 3), size=(256, 256))
    pred = mask.copy()
    pred[10:12, 2:4] = 1
    pred[10:12, 10:12] = 1
    pred[17, 17] = 1
    corrected, legacy = run(pred, mask), run(pred, mask, legacy=True)
    assert corrected["false_pixels"] == 4 + 4 + 1 and corrected["fa"] == 9 / (256 * 256)
    assert legacy["legacy_false_pixels"] == 1 and legacy["fa"] == 1 / (256 * 256)
    # without the matched 2x2, both equal-area blobs count in the legacy form too
    r = run(pred * (np.arange(256) >= 5)[:, None], mask, legacy=True)
    assert r["legacy_false_pixels"] == 9 and r["hits"] == 0


def test_padding_is_ignored():
    mask = np.ones((20, 20), np.uint8)  # junk everywhere in the padding
    pred = np.ones((20, 20), np.float32)
    mask[:10, :12] = canvas((4, 4), size=(10, 12))
    pred[:10, :12] = canvas((4, 5), (0, 11), size=(10, 12))
    r = run(pred, mask, sizes=[(10, 12)])
    assert (r["pixels"], r["targets"], r["hits"], r["false_pixels"]) == (120, 1, 1, 1)
    assert r["union"] == 3 and r["inter"] == 0


def test_threshold_is_strict_and_torch_accepted():
    torch = pytest.importorskip("torch")
    prob = torch.zeros(1, 1, 8, 8)
    prob[0, 0, 2, 2] = 0.5
    prob[0, 0, 5, 5] = 0.51
    s = score_image(prob[0, 0].numpy(), canvas((5, 5), size=(8, 8)))
    assert (s.iou, s.hits, s.false_pixels) == (1.0, 1, 0)
    m = Metrics()
    m.update(prob, torch.from_numpy(canvas((5, 5), size=(8, 8)))[None, None])
    assert m.compute()["iou"] == 1.0


def test_roc_sweep_rows():
    prob = np.zeros((1, 8, 8), np.float32)
    prob[0, 2, 2], prob[0, 6, 6] = 0.95, 0.35
    sweep = RocSweep()
    sweep.update(prob, canvas((2, 2), size=(8, 8))[None])
    rows = {r["threshold"]: r for r in sweep.compute()}
    assert all(round(0.1 * i, 1) in rows for i in range(11))  # DNA-Net's 11, and finer steps
    assert len(rows) == 21 and rows[0.9]["pd"] == 1.0 and rows[0.95]["pd"] == 0.0  # 0.95 > 0.95
    assert rows[0.3]["fa"] == 1 / 64 and rows[0.3]["precision"] == 0.5
    assert rows[0.5]["fa"] == 0 and rows[0.5]["pd"] == 1.0 and rows[1.0]["pd"] == 0.0


masks_st = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1), st.integers(4, 24), st.integers(4, 24), st.floats(0.05, 0.5)
    ),
    min_size=1,
    max_size=6,
)


def make_batch(specs, hw=(24, 24)):
    preds, masks, sizes = [], [], []
    for seed, h, w, density in specs:
        rng = np.random.default_rng(seed)
        g = rng.random(hw) < density * 0.5
        p = np.where(rng.random(hw) < 0.3, rng.random(hw) < density, g)
        if seed % 3 == 0:  # a shifted copy exercises distances near 3 px
            p = np.roll(g, (seed % 5) - 2, axis=seed % 2)
        preds.append(p)
        masks.append(g)
        sizes.append((h, w))
    return np.array(preds), np.array(masks), np.array(sizes)


@settings(max_examples=60, deadline=None)
@given(masks_st, st.integers(1, 5))
@example([(2358, 5, 8, 0.5)], 1)  # two centroid distances of exactly 3 (found 2026-12-04)
def test_batches_equal_one_shot_and_reference(specs, chunk):
    preds, masks, sizes = make_batch(specs)
    one = Metrics()
    one.update(preds.astype(np.float32), masks, sizes)
    parts = Metrics()
    for i in range(0, len(preds), chunk):
        sl = slice(i, i + chunk)
        parts.update(preds[sl].astype(np.float32), masks[sl], sizes[sl])
    a, b = one.compute(), parts.compute()
    assert a == b
    ref, ious = reference(preds, masks, sizes)
    assert (a["inter"], a["union"], a["pixels"]) == (ref["inter"], ref["union"], ref["pixels"])
    assert (a["targets"], a["hits"]) == (ref["targets"], ref["hits"])
    assert (a["false_pixels"], a["legacy_false_pixels"]) == (ref["false"], ref["legacy"])
    assert a["niou"] == (math.fsum(ious) / len(ious) if ref["union"] else None)  # undefined
