"""DNA-Net (Li et al., TIP 2022, "Dense Nested Attention Network for Infrared Small Target
Detection"): UNet++-style dense nested nodes X(i, j) over 5 levels whose inputs also take the
down-sampled node above (DNIM), residual blocks with channel + spatial attention (CBAM, the
CSAM), the feature pyramid fusion of X(4,0), X(3,1), X(2,2), X(1,3), X(0,4) at full
resolution, and deep supervision over X(0,1), X(0,2), X(0,3) and the fused output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.nets.layers import Peer, PeerConfig


class CBAMChannel(nn.Module):
    """CBAM channel attention weights: sigmoid(MLP(avgpool) + MLP(maxpool)), MLP without
    biases, hidden = C // ratio (at least 1)."""

    def __init__(self, c: int, ratio: int = 16):
        super().__init__()
        hidden = max(c // ratio, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False), nn.ReLU(True), nn.Conv2d(hidden, c, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean((2, 3), keepdim=True))
        return torch.sigmoid(avg + self.mlp(x.amax((2, 3), keepdim=True)))


class CBAMSpatial(nn.Module):
    """CBAM spatial attention weights: sigmoid(conv7x7([mean_c, max_c])), no bias."""

    def __init__(self, k: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return torch.sigmoid(self.conv(pooled))


class ResCBAM(nn.Module):
    """DNA-Net's residual block: conv3x3-BN-ReLU-conv3x3-BN (convs with bias), channel then
    spatial attention, plus the shortcut (1x1 conv + BN when the width changes), ReLU."""

    def __init__(self, cin: int, cout: int, ratio: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
        )
        self.ca, self.sa = CBAMChannel(cout, ratio), CBAMSpatial()
        self.short = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        y = y * self.ca(y)
        y = y * self.sa(y)
        return F.relu(y + self.short(x))


@dataclass
class DNANetConfig(PeerConfig):
    lengths: ClassVar[dict[str, int]] = {"widths": 5, "blocks": 4}
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)  # levels 0 (full resolution) .. 4 (1/16)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # ResCBAM blocks per node of levels 1..4 (level 0: 1)
    ratio: int = 16  # channel attention: hidden = C // ratio
    deep_supervision: bool = True  # heads on X(0,1), X(0,2), X(0,3) beside the fused output


class DNANet(
    Peer,
    config=DNANetConfig,
    stride=16,
    paper="Li et al., Dense Nested Attention Network for IRSTD, TIP 2022",
    reported_m=4.697,
):
    """DNA-Net: nodes X(i, j), level i (1/2^i resolution), column j; X(i, 0) the encoder (max-
    pool 2 then blocks), X(i, j>0) = blocks(cat[X(i, 0..j-1), up(X(i+1, j-1)), down(X(i-1, j))])
    with i + j <= 4; the outputs of the nodes on the last diagonal (1x1 conv to width 0, up-
    sampled) and X(0, 4) concatenated and fused by a block: the main head."""

    def __init__(self, cfg: DNANetConfig):
        super().__init__(cfg)
        w, r = cfg.widths, cfg.ratio

        def node(cin: int, i: int) -> nn.Sequential:
            n = 1 if i == 0 else cfg.blocks[i - 1]
            return nn.Sequential(
                ResCBAM(cin, w[i], r), *[ResCBAM(w[i], w[i], r) for _ in range(n - 1)]
            )

        self.nodes = nn.ModuleDict()
        for i in range(5):
            self.nodes[f"{i}_0"] = node(cfg.in_channels if i == 0 else w[i - 1], i)
            for j in range(1, 5 - i):
                cin = j * w[i] + w[i + 1] + (w[i - 1] if i > 0 else 0)
                self.nodes[f"{i}_{j}"] = node(cin, i)
        # the pyramid fusion: X(4,0), X(3,1), X(2,2), X(1,3) to width 0, with X(0,4)
        self.pyramid = nn.ModuleList(nn.Conv2d(w[i], w[0], 1) for i in (4, 3, 2, 1))
        self.fuse = node(5 * w[0], 0)
        n_heads = 4 if cfg.deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(w[0], 1, 1) for _ in range(n_heads))

    @property
    def n_outputs(self) -> int:
        return len(self.heads)

    @staticmethod
    def _to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        X: dict[tuple[int, int], torch.Tensor] = {}
        X[0, 0] = self.nodes["0_0"](self.normalise(x))
        for k in range(1, 5):  # the k-th anti-diagonal: X(k, 0), then X(k-1, 1) .. X(0, k)
            X[k, 0] = self.nodes[f"{k}_0"](F.max_pool2d(X[k - 1, 0], 2))
            for j in range(1, k + 1):
                i = k - j
                parts = [X[i, m] for m in range(j)] + [self._to(X[i + 1, j - 1], X[i, 0])]
                if i > 0:
                    parts.append(self._to(X[i - 1, j], X[i, 0]))
                X[i, j] = self.nodes[f"{i}_{j}"](torch.cat(parts, 1))
        full = X[0, 4]
        pairs = zip(self.pyramid, (4, 3, 2, 1), strict=True)
        pyr = [self._to(conv(X[i, 4 - i]), full) for conv, i in pairs]
        fused = self.fuse(torch.cat([*pyr, full], 1))
        feats = [fused, X[0, 1], X[0, 2], X[0, 3]][: len(self.heads)]
        return [head(f) for head, f in zip(self.heads, feats, strict=True)]
