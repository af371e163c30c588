"""The AFF U-Net of SIRST-5K (section III-C, Eq. 5-7) and checkpoint loading.

A U-Net with 4 down-sampling stages. Every decoder fusion node (the up-sampled deep feature
concatenated with the skip, then two residual conv blocks) ends in Attention Feature Fusion:
channel attention (Eq. 5: a shared one-hidden-layer MLP over the max- and average-pooled
features, summed, sigmoid) followed by spatial attention (Eq. 6: a 7x7 conv over the channel-wise
max and mean, sigmoid). Heads at full, 1/2, 1/4 and 1/8 resolution give the deep-supervision
outputs of Eq. 7.

Input: float (B, 1, H, W) with raw intensities on the 0..255 scale; the model normalises them
itself with the mean/std buffers held in its config, so evaluation code needs to know nothing.
Output: always a list of logits, first (B, 1, H, W), then (B, 1, H/2, W/2), /4, /8 when deep
supervision is on. Any H, W work (the decoder up-samples to each skip's exact size); sizes that
are multiples of `model.stride` avoid the floor of odd poolings and are what training uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst5k.errors import UserError


@dataclass
class ModelConfig:
    in_channels: int = 1
    # Stage widths, encoder level 0 (full resolution) to 4 (1/16). With 2 residual blocks per
    # stage this is 4.05 M parameters: half of DNA-Net's 8.79 M, near BasicIRSTD's 4.70 M.
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    blocks: int = 2  # residual blocks per encoder stage and per decoder node
    attention: bool = True  # Attention Feature Fusion at every fusion node (Eq. 5-6)
    deep_supervision: bool = True  # extra heads at 1/2, 1/4, 1/8 (Eq. 7)
    reduction: int = 4  # channel-attention MLP hidden size = max(channels // reduction, 4)
    mean: float = 107.81  # input normalisation on the 0..255 scale (NUDT-SIRST statistics)
    std: float = 33.02

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if len(self.widths) != 5 or min(self.widths) < 1:
            raise ValueError(
                f"widths={self.widths}: give 5 positive stage widths (4 down-samplings), "
                "e.g. 16,32,64,128,256"
            )
        if self.blocks < 1:
            raise ValueError(f"blocks={self.blocks}: need at least 1 block per stage")
        if self.in_channels < 1 or self.reduction < 1:
            raise ValueError("in_channels and reduction must be >= 1")
        if not self.std > 0:
            raise ValueError(f"std={self.std}: the normalisation std must be > 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model_config keys {sorted(unknown)}")
        return cls(**d)


class ResBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (1x1 when the width changes) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


class ChannelAttention(nn.Module):
    """Eq. 5: sigmoid(MLP(maxpool(F)) + MLP(avgpool(F))) * F, the MLP shared. The pools span the
    whole input, or with `window` > 0 each window x window cell of a grid from its top-left
    corner, each cell gated by its own statistics (set_attention_window: inference on frames
    larger than the model was trained and chosen at)."""

    window = 0  # px of this level's feature map; 0: the whole input (Eq. 5 as written)

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        k = self.window
        if not k:
            gate = self.mlp(x.amax(dim=(2, 3), keepdim=True)) + self.mlp(x.mean((2, 3), True))
            return x * torch.sigmoid(gate)  # gate (B, C, 1, 1)
        # ceil_mode: a partial cell at the bottom/right pools over its own pixels only
        mx, avg = F.max_pool2d(x, k, k, ceil_mode=True), F.avg_pool2d(x, k, k, ceil_mode=True)
        gate = F.interpolate(self.mlp(mx) + self.mlp(avg), scale_factor=float(k), mode="nearest")
        return x * torch.sigmoid(gate[..., : x.shape[-2], : x.shape[-1]])  # gate per cell


class SpatialAttention(nn.Module):
    """Eq. 6: sigmoid(conv7x7([max_c(F'), mean_c(F')])) * F'."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))  # gate (B, 1, H, W)


class AFF(nn.Module):
    """Attention Feature Fusion: channel attention then spatial attention (Eq. 5 then Eq. 6)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class DecoderNode(nn.Module):
    """Up-sample the deep feature to the skip's exact size, concat, residual convs, AFF."""

    def __init__(self, cdeep: int, cskip: int, cout: int, blocks: int, attention: bool, red: int):
        super().__init__()
        layers = [ResBlock(cdeep + cskip, cout)] + [ResBlock(cout, cout) for _ in range(blocks - 1)]
        self.convs = nn.Sequential(*layers)
        self.aff = AFF(cout, red) if attention else nn.Identity()

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.aff(self.convs(torch.cat([deep, skip], dim=1)))


class AFFUNet(nn.Module):
    Config = ModelConfig  # the registry's interface (trainer/registry.py)
    stride = 16
    paper = "Lu et al., SIRST-5K (the AFF U-Net of section III-C)"
    reported_m = None

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w, n = cfg.widths, cfg.blocks
        self.stride = 2 ** (len(w) - 1)  # 16: inputs of multiples of it pool without flooring
        self.register_buffer("mean", torch.tensor(float(cfg.mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(cfg.std)), persistent=False)
        cins = (cfg.in_channels,) + w[:-1]
        self.encoder = nn.ModuleList(
            nn.Sequential(ResBlock(cin, c), *[ResBlock(c, c) for _ in range(n - 1)])
            for cin, c in zip(cins, w, strict=True)
        )
        # decoder[i] produces level i (0 = full resolution) from level i+1 and skip i
        self.decoder = nn.ModuleList(
            DecoderNode(w[i + 1], w[i], w[i], n, cfg.attention, cfg.reduction)
            for i in range(len(w) - 1)
        )
        n_heads = 4 if cfg.deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(w[i], 1, 1) for i in range(n_heads))
        self.reset_parameters()

    @property
    def n_outputs(self) -> int:
        return len(self.heads)

    def reset_parameters(self):
        """Xavier initialisation of every conv (IV-C), zero biases, BN at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std  # (B, 1, H, W), raw 0..255 in
        skips = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            skips.append(x)  # level i: (B, w[i], H / 2^i, W / 2^i)
        feats = [None] * len(self.decoder)
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](x, skips[i])
            feats[i] = x
        return [head(feats[i]) for i, head in enumerate(self.heads)]


def set_attention_window(model: nn.Module, px: int) -> bool:
    """Make the AFF U-Net's channel attention pool over px x px cells of the input (each decoder
    level over its share: px / 2^level) instead of over the whole input; 0 restores Eq. 5.
    Trained on crops and chosen on 256 x 256 images, the model sees on a large frame what it was
    chosen at, at the cost of one whole-frame pass (docs/evaluation.md). Inputs of at most px
    give the same result either way. Returns whether the model has such attention (peers and
    the U-Net without AFF do not)."""
    nodes = [d for d in getattr(model, "decoder", []) if isinstance(getattr(d, "aff", None), AFF)]
    step = 2 ** max(len(nodes) - 1, 0)  # the deepest level's cells must be whole pixels
    if px < 0 or px % step:
        raise UserError(f"--attention-window {px}: use a multiple of {step} (0 = whole input)")
    for level, node in enumerate(model.decoder if nodes else []):
        node.aff.channel.window = px >> level
    return bool(nodes)
