"""ACM (Dai et al., WACV 2021, "Asymmetric Contextual Modulation for Infrared Small Target
Detection"), the U-Net variant (ASKCResUNet) with b = 3 blocks per stage as BasicIRSTD runs
it: a stride-4 stem, three ResNet stages, two transposed-conv decoder steps each fused with its
skip by asymmetric bi-directional modulation (global top-down channel attention from the deep
feature, point-wise bottom-up channel attention from the shallow one), an FCN head at 1/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from trainer.nets.dai import DaiConfig, DaiNet, FCNHead
from trainer.nets.layers import InputBN, conv_bn_relu, gate, res_stage, resize


class AsymBiFuse(nn.Module):
    """ACM's asymmetric bi-directional modulation of a deep feature xh and a shallow one xl:
    2 * xl * topdown(xh) + 2 * xh * bottomup(xl), then conv3x3-BN-ReLU. topdown is global
    channel attention (pooled), bottomup point-wise channel attention (per pixel)."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        hidden = max(c // reduction, 1)
        self.topdown = gate(c, hidden, pooled=True)
        self.bottomup = gate(c, hidden, pooled=False)
        self.post = conv_bn_relu(c, c, bias=True)

    def forward(self, xh: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        return self.post(2 * xl * self.topdown(xh) + 2 * xh * self.bottomup(xl))


def dai_stem(cin: int, width: int) -> nn.Sequential:
    """Input BN (no affine), conv3x3/2 -> width, conv3x3 -> width, conv3x3 -> 2 width (each
    BN-ReLU), max-pool 3/2: 1/4 resolution."""
    return nn.Sequential(
        InputBN(cin),
        conv_bn_relu(cin, width, stride=2),
        conv_bn_relu(width, width),
        conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(3, 2, 1),
    )


@dataclass
class ACMConfig(DaiConfig):  # layers and channels: DaiConfig's defaults, BasicIRSTD's
    reduction: int = 4  # the attention bottleneck: channels // reduction


class ACM(
    DaiNet,
    config=ACMConfig,
    stride=16,
    paper="Dai et al., Asymmetric Contextual Modulation for IRSTD, WACV 2021",
    reported_m=0.398,
):
    """ACM, the U-Net variant (ASKCResUNet): stem /4, stages at 1/4, 1/8, 1/16; decoder by
    transposed convs, fused with the skips by AsymBiFuse, each followed by a residual stage."""

    def __init__(self, cfg: ACMConfig):
        super().__init__(cfg, dai_stem(cfg.in_channels, cfg.channels[0]))
        (n1, n2, _), (_, c1, c2, c3) = cfg.layers, cfg.channels
        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.fuse2 = AsymBiFuse(c2, cfg.reduction)
        self.uplayer2 = res_stage(c2, c2, n2, 1)
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.fuse1 = AsymBiFuse(c1, cfg.reduction)
        self.uplayer1 = res_stage(c1, c1, n1, 1)
        self.head = FCNHead(c1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1, c2, c3 = self.encode(x)  # 1/4, 1/8, 1/16
        up = self.uplayer2(self.fuse2(resize(self.deconv2(c3), c2), c2))
        up = self.uplayer1(self.fuse1(resize(self.deconv1(up), c1), c1))
        return [resize(self.head(up), x)]
