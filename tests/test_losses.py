"""Losses on hand-computed tensors: Soft-IoU, per-sample Soft-IoU, mask pyramid, L_Neg."""

import math

import numpy as np
import pytest
import torch

from trainer.losses import (
    SirstLoss,
    group_soft_iou,
    mask_pyramid,
    neg_loss,
    soft_iou,
    soft_iou_per_sample,
    soft_iou_sums,
)


def test_soft_iou_half_probability():
    # logits 0 -> p = 0.5 everywhere; 2 samples of 2x2, one target pixel in the first
    logits = torch.zeros(2, 1, 2, 2)
    y = torch.zeros(2, 1, 2, 2)
    y[0, 0, 0, 0] = 1
    # sum(p*y) = 0.5, sum(p) = 4, sum(y) = 1: 1 - 1.5 / (4 + 1 - 0.5 + 1) = 1 - 1.5/5.5
    assert soft_iou(logits, y).item() == pytest.approx(1 - 1.5 / 5.5)
    per = soft_iou_per_sample(logits, y)
    # sample 0: 1 - 1.5 / (2 + 1 - 0.5 + 1); sample 1: 1 - 1 / (2 + 0 - 0 + 1)
    assert per.tolist() == pytest.approx([1 - 1.5 / 3.5, 1 - 1 / 3])


def test_soft_iou_perfect_and_wrong():
    y = torch.tensor([[[[1.0, 0.0]]]])
    big = 50.0
    assert soft_iou((2 * y - 1) * big, y).item() == pytest.approx(0.0, abs=1e-6)
    # all wrong: p = 1 - y -> inter 0, sum p 1, sum y 1: 1 - 1/3
    assert soft_iou((1 - 2 * y) * big, y).item() == pytest.approx(1 - 1 / 3, abs=1e-6)
    p = torch.sigmoid(torch.tensor(1.0)).item()
    assert soft_iou(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1)).item() == pytest.approx(
        1 - (p + 1) / (p + 1 - p + 1)
    )


def test_mask_pyramid_keeps_small_targets():
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0, 5, 3] = 1
    outs = [torch.zeros(1, 1, 8 // 2**k, 8 // 2**k) for k in range(4)]
    pyr = mask_pyramid(m, outs)
    assert [p.shape[-1] for p in pyr] == [8, 4, 2, 1]
    assert pyr[1][0, 0, 2, 1] == 1 and pyr[1].sum() == 1
    assert pyr[2][0, 0, 1, 0] == 1 and pyr[3].sum() == 1


def test_neg_loss_grouping():
    per = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.5, 0.6, 0.7, 0.8])
    group = torch.tensor([7, 7, 7, 7, -1, 3, 3, 3, 3])
    # groups: 7 -> 0.1+0.2+0.3+0.4 = 1.0, 3 -> 0.5+0.6+0.7+0.8 = 2.6; mean 1.8
    assert neg_loss(per, group, "sum").item() == pytest.approx(1.8)
    # min: 0.1 and 0.5 -> 0.3
    assert neg_loss(per, group, "min").item() == pytest.approx(0.3)
    assert neg_loss(per, group, "off").item() == 0
    assert neg_loss(per, torch.full((9,), -1), "sum").item() == 0
    with pytest.raises(ValueError, match="sum, min or off"):
        neg_loss(per, group, "max")


def test_neg_loss_min_gradient_only_to_the_min():
    per = torch.tensor([0.4, 0.2, 0.3, 0.5], requires_grad=True)
    neg_loss(per, torch.tensor([0, 0, 0, 0]), "min").backward()
    assert per.grad.tolist() == [0, 1, 0, 0]


def test_sirst_loss_combines():
    torch.manual_seed(0)
    outs = [torch.randn(4, 1, 8 // 2**k, 8 // 2**k) for k in range(4)]
    mask = (torch.rand(4, 1, 8, 8) > 0.8).float()
    group = torch.tensor([-1, 2, 2, -1])
    total, main, neg = SirstLoss("sum", 0.5)(outs, mask, group)
    pyr = mask_pyramid(mask, outs)
    exp_main = sum(soft_iou(o, m) for o, m in zip(outs, pyr, strict=True)) / 4
    per = sum(soft_iou_per_sample(o, m) for o, m in zip(outs, pyr, strict=True)) / 4
    assert main.item() == pytest.approx(exp_main.item())
    assert neg.item() == pytest.approx((per[1] + per[2]).item())
    assert total.item() == pytest.approx(main.item() + 0.5 * neg.item())
    t_off, _, n_off = SirstLoss("off")(outs, mask, group)
    assert n_off.item() == 0 and t_off.item() == pytest.approx(main.item())
    assert math.isfinite(total.item())


def _nudt_like_batch():
    """16 crops of 64 x 64 as the trainer builds them at batch 16 with L_Neg on: 3 groups of 4
    (each group's window holds its target, a 21-pixel blob, NUDT-SIRST's typical size) and 4
    originals, 2 with a target and 2 without; grey clutter around 108 +- 33 (NUDT's statistics)."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(108, 33, (16, 1, 64, 64)), 0, 255)
    mask = np.zeros((16, 1, 64, 64), np.uint8)
    blob = np.ones((5, 5), np.uint8)
    blob[[0, 0, 4, 4], [0, 4, 0, 4]] = 0  # 21 px
    for i in range(14):
        if i % 4 == 0 or i >= 12:
            y, x = rng.integers(4, 55, 2)
        mask[i, 0, y : y + 5, x : x + 5] = blob
        img[i, 0, y : y + 5, x : x + 5][blob > 0] = 230
    group = np.r_[np.repeat([0, 1, 2], 4), [-1] * 4]
    return torch.tensor(img, dtype=torch.float32), torch.tensor(mask), torch.tensor(group)


def test_recommended_neg_loss_does_not_reward_collapse():
    """From an untrained model's output on a realistic batch, how much each loss drops when
    every pixel is predicted background. The literal per-sample sum (Eq. 9) rewards that
    collapse by ~0.6 (a per-sample Soft-IoU of a crop with Y target pixels among N prefers all
    background whenever N > Y^2 + 2Y), min by ~0.15; the pooled "group" L_Neg by under 0.05."""
    from trainer.registry import build_model

    x, y, g = _nudt_like_batch()
    torch.manual_seed(0)
    model = build_model(dict(widths=[8, 16, 32, 64, 128], blocks=1))
    with torch.no_grad():
        outs = model(x)
    background = [torch.full_like(o, -20.0) for o in outs]

    def gain(mode):
        loss = SirstLoss(mode)
        return (loss(outs, y, g)[0] - loss(background, y, g)[0]).item()

    main, group, total_sum, total_min = gain("off"), gain("group"), gain("sum"), gain("min")
    assert abs(main) < 0.01  # the batch Soft-IoU: collapse gains next to nothing
    assert 0 < group < 0.05
    assert total_sum > 10 * group and total_min > 3 * group
    # the pooled group loss is one Soft-IoU over the group's pixels, computed by hand here
    p = torch.sigmoid(outs[0][:4]).double()
    m = y[:4].double()
    inter = (p * m).sum()
    want = 1 - (inter + 1) / (p.sum() + m.sum() - inter + 1)
    sums = soft_iou_sums(outs[0], y)
    got = group_soft_iou(sums, torch.tensor([0] * 4 + [-1] * 12))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
