"""Losses on hand-computed tensors: Soft-IoU, per-sample Soft-IoU, mask pyramid, L_Neg."""

import math

import pytest
import torch

from trainer.losses import SirstLoss, mask_pyramid, neg_loss, soft_iou, soft_iou_per_sample


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
    with pytest.raises(ValueError, match="choose one of"):
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
