"""ALCNet (Dai et al., TGRS 2021, "Attentional Local Contrast Networks for Infrared Small Target
Detection"): a full-resolution ResNet (b = 4), a parameter-free local contrast layer on every
stage (cyclic feature-map shifts by `shift` px in 8 directions; per pixel the minimum over the
4 axes of (x - x_a)(x - x_b)), and a top-down pyramid whose fusions are bottom-up attentional
modulations (point-wise channel attention computed from the shallow feature gates the deep
one). Configuration as the authors' released model (blocks 4, shift 13, r = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from trainer.nets.dai import DaiConfig, DaiNet, FCNHead
from trainer.nets.layers import InputBN, conv_bn_relu, gate, resize


def local_contrast(x: torch.Tensor, shift: int) -> torch.Tensor:
    """ALCNet's parameter-free local contrast layer: with x_a, x_b the features `shift` px away
    on either side of a pixel along one of the 4 axes (horizontal, vertical, 2 diagonals; the
    feature map shifted cyclically), min over the axes of (x - x_a) * (x - x_b). Large where the
    pixel stands out from both sides along every axis, as a small target does."""
    out = None
    for dy, dx in ((1, 1), (1, 0), (1, -1), (0, 1)):
        a = cyclic_shift(x, dy * shift, dx * shift)
        b = cyclic_shift(x, -dy * shift, -dx * shift)
        d = (x - a) * (x - b)
        out = d if out is None else torch.minimum(out, d)
    return out


def cyclic_shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """torch.roll(x, (dy, dx), (2, 3)) written as slices and a concatenation, the shifts taken
    modulo the map's size: an ONNX export then stays right for every input size (the exported
    roll gets shifts larger than a small map wrong)."""
    h, w = x.shape[-2], x.shape[-1]
    if dy:
        s = h - dy % h
        x = torch.cat([x[:, :, s:], x[:, :, :s]], 2)
    if dx:
        s = w - dx % w
        x = torch.cat([x[:, :, :, s:], x[:, :, :, :s]], 3)
    return x


class BottomUpModulation(nn.Module):
    """ALCNet's bottom-up attentional modulation: both inputs batch-normalised, then the deep
    feature gated by point-wise channel attention computed from the shallow one, plus the
    shallow one: low + high * sigmoid(PWA(low))."""

    def __init__(self, c: int, reduction: int = 1):
        super().__init__()
        self.bn_high, self.bn_low = nn.BatchNorm2d(c), nn.BatchNorm2d(c)
        self.att = gate(c, max(c // reduction, 1), pooled=False)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high, low = self.bn_high(high), self.bn_low(low)
        return self.att(low) * high + low


@dataclass
class ALCNetConfig(DaiConfig):
    layers: tuple[int, ...] = (4, 4, 4)  # residual blocks per stage (released model: 4)
    shift: int = 13  # the local contrast layer's shift in px (released model: 13)
    reduction: int = 1  # the modulation's bottleneck (released model: r = 1)

    def __post_init__(self):
        super().__post_init__()
        if self.shift < 1:
            raise ValueError(f"shift={self.shift}: must be >= 1")


class ALCNet(
    DaiNet,
    config=ALCNetConfig,
    stride=4,
    paper="Dai et al., Attentional Local Contrast Networks for IRSTD, TGRS 2021",
    reported_m=0.427,
):
    """ALCNet: stem (input BN, conv3x3 at full resolution), stages at 1, 1/2, 1/4; local
    contrast on each stage's output, the two deeper ones projected to the first stage's width
    (1x1 conv-BN-ReLU), fused top-down by BottomUpModulation; FCN head at full resolution."""

    def __init__(self, cfg: ALCNetConfig):
        cin, c0 = cfg.in_channels, cfg.channels[0]
        super().__init__(cfg, nn.Sequential(InputBN(cin), conv_bn_relu(cin, 2 * c0)))
        _, c1, c2, c3 = cfg.channels
        self.dec3 = conv_bn_relu(c3, c1, k=1)
        self.dec2 = conv_bn_relu(c2, c1, k=1)
        self.fuse2 = BottomUpModulation(c1, cfg.reduction)
        self.fuse1 = BottomUpModulation(c1, cfg.reduction)
        self.head = FCNHead(c1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = self.cfg.shift
        c1, c2, c3 = self.encode(x)  # 1, 1/2, 1/4
        lc3 = resize(self.dec3(local_contrast(c3, s)), c2)
        out = self.fuse2(lc3, self.dec2(local_contrast(c2, s)))
        out = self.fuse1(resize(out, c1), local_contrast(c1, s))
        return [resize(self.head(out), x)]
