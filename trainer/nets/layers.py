"""Building blocks the peers share: their config and base class (normalisation buffers, the
registry's class attributes) and the layers of Dai et al.'s networks that others reuse (those
only ACM and ALCNet use are in dai.py).

Every network of trainer/nets follows the AFF U-Net's contract:

- input: raw 0..255 grey images (B, 1, H, W) float; the model normalises them itself with the
  `mean`/`std` of its config (NUDT-SIRST statistics by default; non-persistent buffers);
- `stride`: the multiple of H and W it needs (evaluation pads to it); any multiple works;
- output: a list of logits, the full-resolution head first, then the deep-supervision heads where
  the paper has them (else a one-element list); `n_outputs` says how many.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class PeerConfig:
    """Options every peer has; subclasses add their architecture's. A subclass's `lengths`
    names the tuple options whose length its architecture fixes: another length is refused, the
    defaults given as the example."""

    lengths: ClassVar[dict[str, int]] = {}
    in_channels: int = 1
    mean: float = 107.81  # input normalisation on the 0..255 scale (NUDT-SIRST statistics)
    std: float = 33.02

    def __post_init__(self):
        for f in fields(self):  # lists from JSON back to the tuples of the defaults
            if isinstance(f.default, tuple):
                setattr(self, f.name, tuple(int(v) for v in getattr(self, f.name)))
                if min(getattr(self, f.name), default=0) < 1:
                    raise ValueError(f"{f.name}={getattr(self, f.name)}: give positive integers")
        if any(len(getattr(self, k)) != n for k, n in self.lengths.items()):
            net = type(self).__name__.removesuffix("Config")
            want = " and ".join(f"{n} {k}" for k, n in self.lengths.items())
            default = {f.name: f.default for f in fields(self)}
            example = " and ".join(",".join(map(str, default[k])) for k in self.lengths)
            raise ValueError(f"{net}: give {want}, e.g. {example}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels={self.in_channels}: must be >= 1")
        if not self.std > 0:
            raise ValueError(f"std={self.std}: the normalisation std must be > 0")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> PeerConfig:
        known = [f.name for f in fields(cls)]
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown model_config keys {sorted(unknown)} (known: {known})")
        return cls(**d)


class Peer(nn.Module):
    """Normalisation buffers and the registry's class attributes: `Config` (the config
    dataclass), `stride` (the H, W multiple the network needs), `paper` and `reported_m`
    (BasicIRSTD's parameter count, millions). A subclass gives them as class keywords, read
    back as those attributes; one left out keeps the parent's value:

        class ACM(DaiNet, config=ACMConfig, stride=16, paper="Dai et al., ...", reported_m=0.398):
    """

    Config = PeerConfig
    stride = 16
    paper = ""
    reported_m: float | None = None

    def __init_subclass__(
        cls,
        config: type[PeerConfig] | None = None,
        stride: int | None = None,
        paper: str | None = None,
        reported_m: float | None = None,
        **kwargs,
    ):
        super().__init_subclass__(**kwargs)
        given = {"Config": config, "stride": stride, "paper": paper, "reported_m": reported_m}
        for name, value in given.items():
            if value is not None:
                setattr(cls, name, value)

    def __init__(self, cfg: PeerConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor(float(cfg.mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(cfg.std)), persistent=False)

    @property
    def n_outputs(self) -> int:
        return 1

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class InputBN(nn.BatchNorm2d):
    """The input BatchNorm without affine parameters of Dai et al.'s stems (and ISTDU-Net's).
    In eval mode it applies its running statistics as plain arithmetic, which an ONNX export
    with dynamic shapes can take (its batch_norm op needs a known channel count)."""

    def __init__(self, c: int):
        super().__init__(c, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        mean, var = self.running_mean.view(1, -1, 1, 1), self.running_var.view(1, -1, 1, 1)
        return (x - mean) / torch.sqrt(var + self.eps)


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, bias: bool = False):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut (1x1 conv + BN when the
    width or the resolution changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.short = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


def res_stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def gate(c: int, hidden: int, pooled: bool) -> nn.Sequential:
    """Channel attention weights: (global average pool,) 1x1 conv-BN-ReLU-1x1 conv-BN, sigmoid."""
    layers = [nn.AdaptiveAvgPool2d(1)] if pooled else []
    layers += [
        nn.Conv2d(c, hidden, 1),
        nn.BatchNorm2d(hidden),
        nn.ReLU(True),
        nn.Conv2d(hidden, c, 1),
        nn.BatchNorm2d(c),
        nn.Sigmoid(),
    ]
    return nn.Sequential(*layers)


def resize(x: torch.Tensor, like: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    size = like.shape[-2:] if isinstance(like, torch.Tensor) else like
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
