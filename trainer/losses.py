"""Losses: Soft-IoU (Eq. 8), deep supervision over the heads (Eq. 7), L_Neg (Eq. 9, Alg. 2).

Pure functions on logits; `SirstLoss` only holds the two options and combines them.

- soft_iou: p = sigmoid(logits); 1 - (sum(p*y) + 1) / (sum(p) + sum(y) - sum(p*y) + 1), the sums
  over the whole batch, exactly as the official code (docs/reference.md). soft_iou_per_sample
  sums over each sample's own pixels and gives one loss per sample (B,).
- Deep supervision: every head is compared with the mask max-pooled to the head's size (a target
  pixel anywhere in a cell keeps the cell positive, so small targets survive down-sampling);
  the main loss is the mean of the heads' Soft-IoU.
- L_Neg over the groups of the store (the 4 rotations of one target share a group id >= 0):
  "sum" adds the group's per-sample losses (Eq. 9), "min" keeps the smallest (Algorithm 2),
  "group" is ONE Soft-IoU over the pixels of the group's 4 members together, "off" is 0. The
  per-group values are averaged over the groups present in the batch.
  Why "group": a per-sample Soft-IoU of a crop with few target pixels is ill-conditioned (its
  gradient is steep for an empty or near-empty mask and points the whole crop to background),
  and "sum" weighs it 4 times; pooling the 4 members' sums gives the group the conditioning of
  the batch loss (docs/training.md).
- total = L_main + neg_weight * L_Neg.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEG_MODES = ("group", "sum", "min", "off")


def soft_iou(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Batch Soft-IoU loss, a scalar; logits and target (B, 1, H, W), target 0/1."""
    p = torch.sigmoid(logits.float())
    y = target.float()
    inter = (p * y).sum()
    return 1 - (inter + smooth) / (p.sum() + y.sum() - inter + smooth)


def soft_iou_per_sample(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """Soft-IoU loss of each sample, (B,)."""
    p = torch.sigmoid(logits.float()).flatten(1)
    y = target.float().flatten(1)
    inter = (p * y).sum(1)
    return 1 - (inter + smooth) / (p.sum(1) + y.sum(1) - inter + smooth)


def soft_iou_sums(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample (sum(p*y), sum(p), sum(y)), (B, 3): what a pooled Soft-IoU adds up."""
    p = torch.sigmoid(logits.float()).flatten(1)
    y = target.float().flatten(1)
    return torch.stack([(p * y).sum(1), p.sum(1), y.sum(1)], 1)


def group_soft_iou(sums: torch.Tensor, group: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean over the group ids >= 0 of one Soft-IoU over each group's pooled pixels."""
    keep = group >= 0
    if not bool(keep.any()):
        return sums.sum() * 0.0
    ids, inverse = torch.unique(group[keep], return_inverse=True)
    pooled = torch.zeros(len(ids), 3, dtype=sums.dtype, device=sums.device)
    pooled = pooled.index_add(0, inverse, sums[keep])
    inter, p, y = pooled.unbind(1)
    return (1 - (inter + smooth) / (p + y - inter + smooth)).mean()


def mask_pyramid(mask: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mask (B, 1, H, W) max-pooled to the size of every output."""
    m = mask.float()
    return [
        m if o.shape[-2:] == m.shape[-2:] else F.adaptive_max_pool2d(m, o.shape[-2:])
        for o in outputs
    ]


def neg_loss(per_sample: torch.Tensor, group: torch.Tensor, mode: str) -> torch.Tensor:
    """L_Neg: per group id >= 0, the sum ("sum", Eq. 9) or min ("min", Alg. 2) of the members'
    losses, averaged over the groups in the batch; 0 when there is none or mode is "off"."""
    if mode not in ("sum", "min", "off"):
        raise ValueError(f"neg_loss mode {mode!r}: sum, min or off (group: group_soft_iou)")
    keep = group >= 0
    if mode == "off" or not bool(keep.any()):
        return per_sample.sum() * 0.0  # keeps the graph and the dtype
    ids, inverse = torch.unique(group[keep], return_inverse=True)
    losses = per_sample[keep]
    if mode == "sum":
        per_group = torch.zeros(len(ids), dtype=losses.dtype, device=losses.device)
        per_group = per_group.index_add(0, inverse, losses)
    else:
        per_group = torch.full((len(ids),), float("inf"), dtype=losses.dtype, device=losses.device)
        per_group = per_group.scatter_reduce(0, inverse, losses, reduce="amin")
    return per_group.mean()


class SirstLoss:
    """total = mean over heads of batch Soft-IoU + neg_weight * L_Neg (mean over heads too)."""

    def __init__(self, neg_mode: str = "sum", neg_weight: float = 1.0):
        if neg_mode not in NEG_MODES:
            raise ValueError(f"neg loss mode {neg_mode!r}: choose one of {', '.join(NEG_MODES)}")
        self.neg_mode, self.neg_weight = neg_mode, float(neg_weight)

    def __call__(self, outputs: list[torch.Tensor], mask: torch.Tensor, group: torch.Tensor):
        """Returns (total, main, neg), scalars; outputs from the model, mask (B, 1, H, W)."""
        masks = mask_pyramid(mask, outputs)
        main = torch.stack([soft_iou(o, m) for o, m in zip(outputs, masks, strict=True)]).mean()
        if self.neg_mode == "off" or not bool((group >= 0).any()):
            neg = main * 0.0
        elif self.neg_mode == "group":
            neg = torch.stack(
                [
                    group_soft_iou(soft_iou_sums(o, m), group)
                    for o, m in zip(outputs, masks, strict=True)
                ]
            ).mean()
        else:
            per = torch.stack(
                [soft_iou_per_sample(o, m) for o, m in zip(outputs, masks, strict=True)]
            ).mean(0)  # (B,)
            neg = neg_loss(per, group, self.neg_mode)
        return main + self.neg_weight * neg, main, neg
