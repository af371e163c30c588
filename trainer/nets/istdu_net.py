"""ISTDU-Net (Hou et al., GRSL 2022, "ISTDU-Net: Infrared Small-Target Detection U-Net"): a
U-Net whose down-sampling stages are feature-map groups (ResNeSt split-attention bottlenecks,
1-2-4-8 blocks) and whose skip connections pass a "fully connected" layer (external attention
over 64 learned memory units) before an additive top-down decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.nets.layers import InputBN, Peer, PeerConfig, conv_bn_relu, resize


class SplitAttentionConv(nn.Module):
    """ISTDU-Net's feature-map groups (ResNeSt split attention): a grouped conv3x3 gives `radix`
    splits of C channels in `groups` cardinal groups (conv-BN-ReLU); their sum, pooled globally,
    feeds a grouped two-layer 1x1 MLP whose softmax over the splits (per group) weighs them; the
    output is the weighted sum of the splits."""

    def __init__(self, c: int, radix: int = 2, groups: int = 4, reduction: int = 4):
        super().__init__()
        self.radix, self.groups = radix, groups
        hidden = max(c * radix // reduction, 32)
        self.conv = nn.Conv2d(c, c * radix, 3, padding=1, groups=groups * radix, bias=False)
        self.bn = nn.BatchNorm2d(c * radix)
        self.fc1 = nn.Conv2d(c, hidden, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, c * radix, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        splits = F.relu(self.bn(self.conv(x))).chunk(self.radix, 1)  # radix x (B, C, H, W)
        pooled = sum(splits).mean((2, 3), keepdim=True)
        att = self.fc2(F.relu(self.bn1(self.fc1(pooled))))  # (B, radix C, 1, 1), by group
        att = att.view(b, self.groups, self.radix, -1).softmax(2)  # over the splits
        att = att.transpose(1, 2).reshape(b, self.radix, -1, 1, 1)  # (B, radix, C, 1, 1)
        return sum(att[:, i] * split for i, split in enumerate(splits))


class SplitBottleneck(nn.Module):
    """ResNeSt bottleneck: 1x1 conv-BN-ReLU to the group width, split attention, a 3x3/2
    average pool when down-sampling, 1x1 conv-BN to 4 x planes; shortcut average pool (when
    down-sampling) + 1x1 conv + BN when the shape changes; ReLU after the sum."""

    def __init__(self, cin: int, planes: int, stride: int, radix: int, groups: int, width: int):
        super().__init__()
        gw = int(planes * width / 64) * groups
        cout = 4 * planes
        self.reduce = conv_bn_relu(cin, gw, k=1)
        self.split = SplitAttentionConv(gw, radix, groups)
        self.pool = nn.AvgPool2d(3, stride, 1) if stride > 1 else nn.Identity()
        self.expand = nn.Sequential(nn.Conv2d(gw, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Identity()
        if stride > 1 or cin != cout:
            pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
            self.short = nn.Sequential(
                pool if stride > 1 else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.pool(self.split(self.reduce(x))))
        return F.relu(y + self.short(x))


class ExternalAttention(nn.Module):
    """The skip connections' "fully connected layer" of ISTDU-Net (external attention, Guo et
    al. 2021): 1x1 conv, then every pixel's affinities to `k` learned memory units (a 1x1 conv
    without bias), softmax over the pixels, normalised over the units, read back through a second
    memory (1x1 conv, no bias), 1x1 conv-BN, plus the input."""

    def __init__(self, c: int, k: int = 64):
        super().__init__()
        self.proj = nn.Conv2d(c, c, 1)
        self.keys = nn.Conv2d(c, k, 1, bias=False)
        self.values = nn.Conv2d(k, c, 1, bias=False)
        self.out = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.keys(self.proj(x))  # (B, k, H, W)
        a = a.flatten(2).softmax(-1).view_as(a)  # over the pixels
        a = a / (1e-9 + a.sum(1, keepdim=True))  # over the memory units
        return self.out(self.values(a)) + x


@dataclass
class ISTDUNetConfig(PeerConfig):
    lengths: ClassVar[dict[str, int]] = {"planes": 4, "layers": 4}
    stem: int = 16  # width of the full-resolution stem conv
    planes: tuple[int, ...] = (16, 32, 64, 128)  # stage outputs are 4 x planes
    layers: tuple[int, ...] = (1, 2, 4, 8)  # bottlenecks per stage
    radix: int = 2  # splits per group
    groups: int = 4  # feature-map groups (cardinality)
    width: int = 16  # ResNeSt bottleneck width: group width = planes * width / 64 * groups
    memory: int = 64  # external attention's memory units


class ISTDUNet(
    Peer,
    config=ISTDUNetConfig,
    stride=8,
    paper="Hou et al., ISTDU-Net: Infrared Small-Target Detection U-Net, GRSL 2022",
    reported_m=2.752,
):
    """ISTDU-Net: input BN + conv3x3 stem at full resolution; 4 stages of split-attention
    bottlenecks at 1, 1/2, 1/4, 1/8; external attention on each stage's output (the skips); a
    top-down decoder (1x1 conv-BN-ReLU to the next width, up-sample, add the skip); FCN-style
    head (conv3x3 to C/4-BN-ReLU, 1x1 conv)."""

    def __init__(self, cfg: ISTDUNetConfig):
        super().__init__(cfg)
        self.stem = nn.Sequential(InputBN(cfg.in_channels), conv_bn_relu(cfg.in_channels, cfg.stem))
        stages, cin = [], cfg.stem
        for i, (p, n) in enumerate(zip(cfg.planes, cfg.layers, strict=True)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(SplitBottleneck(cin, p, stride, cfg.radix, cfg.groups, cfg.width))
                cin = 4 * p
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        widths = [4 * p for p in cfg.planes]
        self.skips = nn.ModuleList(ExternalAttention(c, cfg.memory) for c in widths)
        self.lateral = nn.ModuleList(conv_bn_relu(widths[i], widths[i - 1], k=1) for i in (3, 2, 1))
        c = widths[0]
        self.head = nn.Sequential(
            conv_bn_relu(c, c // 4), nn.Conv2d(c // 4, 1, 1)
        )  # BasicIRSTD's copy also builds a second, unused head (headDet): not here

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [], self.stem(self.normalise(x))
        for stage, skip in zip(self.stages, self.skips, strict=True):
            h = stage(h)
            feats.append(skip(h))
        out = feats[3]
        for lateral, i in zip(self.lateral, (2, 1, 0), strict=True):
            out = feats[i] + resize(lateral(out), feats[i])
        return [self.head(out)]
