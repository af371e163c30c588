"""The blocks shared by Dai et al.'s ACM and ALCNet: the config of their shape, the base class
that builds their three residual stages after a stem and runs them (`DaiNet.encode`), and the
FCN head both put on the first stage's width."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from trainer.nets.layers import Peer, PeerConfig, res_stage


@dataclass
class DaiConfig(PeerConfig):
    """The shape of Dai et al.'s networks: `layers`, the residual blocks of each of the 3
    stages; `channels`, the stem's width (it outputs 2 x channels[0]), then the 3 stages'. The
    head needs channels[1] >= 4. Defaults: ACM's as BasicIRSTD runs it."""

    lengths: ClassVar[dict[str, int]] = {"layers": 3, "channels": 4}
    layers: tuple[int, ...] = (3, 3, 3)  # residual blocks per stage
    channels: tuple[int, ...] = (8, 16, 32, 64)  # stem width, then the 3 stages'

    def __post_init__(self):
        super().__post_init__()
        if self.channels[1] < 4:
            raise ValueError(f"channels={list(self.channels)}: the head needs channels[1] >= 4")


class DaiNet(Peer):
    """The encoder ACM and ALCNet share: the subclass's `stem` (ending at 2 x channels[0]
    channels), then the residual stages `layer1` (channels[1], at the stem's resolution),
    `layer2` and `layer3` (channels[2] and [3], each at half the resolution before)."""

    def __init__(self, cfg: DaiConfig, stem: nn.Module):
        super().__init__(cfg)
        (n1, n2, n3), (c0, c1, c2, c3) = cfg.layers, cfg.channels
        self.stem = stem
        self.layer1 = res_stage(2 * c0, c1, n1, 1)
        self.layer2 = res_stage(c1, c2, n2, 2)
        self.layer3 = res_stage(c2, c3, n3, 2)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three stages' outputs for a raw input x (normalised here)."""
        c1 = self.layer1(self.stem(self.normalise(x)))
        c2 = self.layer2(c1)
        return c1, c2, self.layer3(c2)


class FCNHead(nn.Sequential):
    """conv3x3 (C -> C/4)-BN-ReLU-Dropout(0.1)-conv1x1 (-> 1 logit), the Dai et al. head."""

    def __init__(self, c: int):
        super().__init__(
            nn.Conv2d(c, c // 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(c // 4),
            nn.ReLU(True),
            nn.Dropout(0.1),
            nn.Conv2d(c // 4, 1, 1),
        )
