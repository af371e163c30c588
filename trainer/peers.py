"""The field's CNN peers beside the AFF U-Net, each written from its paper, and the registry.

`MODELS` maps a model name to its class; `build_model` in trainer/model.py dispatches on the
config dict's "name" (no name: the AFF U-Net, so every older config and checkpoint still builds).
Every model here follows the AFF U-Net's contract:

- input: raw 0..255 grey images (B, 1, H, W) float; the model normalises them itself with the
  `mean`/`std` of its config (NUDT-SIRST statistics by default; non-persistent buffers);
- `stride`: the multiple of H and W it needs (evaluation pads to it); any multiple works;
- output: a list of logits, the full-resolution head first, then the deep-supervision heads where
  the paper has them (else a one-element list); `n_outputs` says how many.

Parameter counts of the default configs against BasicIRSTD's table (thop on a 256 x 256 input,
which counts only the modules a test-mode forward runs) are in docs/training.md and checked by
tests/test_peers.py.

- ACM (Dai et al., WACV 2021, "Asymmetric Contextual Modulation for Infrared Small Target
  Detection"), the U-Net variant (ASKCResUNet) with b = 3 blocks per stage as BasicIRSTD runs
  it: a stride-4 stem, three ResNet stages, two transposed-conv decoder steps each fused with its
  skip by asymmetric bi-directional modulation (global top-down channel attention from the deep
  feature, point-wise bottom-up channel attention from the shallow one), an FCN head at 1/4.
- ALCNet (Dai et al., TGRS 2021, "Attentional Local Contrast Networks for Infrared Small Target
  Detection"): a full-resolution ResNet (b = 4), a parameter-free local contrast layer on every
  stage (cyclic feature-map shifts by `shift` px in 8 directions; per pixel the minimum over the
  4 axes of (x - x_a)(x - x_b)), and a top-down pyramid whose fusions are bottom-up attentional
  modulations (point-wise channel attention computed from the shallow feature gates the deep
  one). Configuration as the authors' released model (blocks 4, shift 13, r = 1).
- DNA-Net (Li et al., TIP 2022, "Dense Nested Attention Network for Infrared Small Target
  Detection"): UNet++-style dense nested nodes X(i, j) over 5 levels whose inputs also take the
  down-sampled node above (DNIM), residual blocks with channel + spatial attention (CBAM, the
  CSAM), the feature pyramid fusion of X(4,0), X(3,1), X(2,2), X(1,3), X(0,4) at full
  resolution, and deep supervision over X(0,1), X(0,2), X(0,3) and the fused output.
- ISTDU-Net (Hou et al., GRSL 2022, "ISTDU-Net: Infrared Small-Target Detection U-Net"): a
  U-Net whose down-sampling stages are feature-map groups (ResNeSt split-attention bottlenecks,
  1-2-4-8 blocks) and whose skip connections pass a "fully connected" layer (external attention
  over 64 learned memory units) before an additive top-down decoder.
- UIU-Net (Wu et al., TIP 2023, "UIU-Net: U-Net in U-Net for Infrared Small Object
  Detection"): U2-Net's nested residual U-blocks (RSU) in a six-stage U-Net, the interactive-
  cross attention (IC-A) fusing each deep feature with its skip in the decoder, and resolution-
  maintenance deep supervision (six side outputs at full resolution and their fusion).

Each paper's text fixes the blocks; channel widths, depths and the attention bottlenecks follow
the authors' released configurations (as BasicIRSTD runs them), which the parameter counts
confirm. Initialisation: PyTorch's defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer import MODEL_NAMES
from trainer.model import AFFUNet

DEFAULT = "aff-unet"


# ----------------------------------------------------------------------------- config and base


@dataclass
class PeerConfig:
    """Options every peer has; subclasses add their architecture's."""

    in_channels: int = 1
    mean: float = 107.81  # input normalisation on the 0..255 scale (NUDT-SIRST statistics)
    std: float = 33.02

    def __post_init__(self):
        for f in fields(self):  # lists from JSON back to the tuples of the defaults
            if isinstance(f.default, tuple):
                setattr(self, f.name, tuple(int(v) for v in getattr(self, f.name)))
                if min(getattr(self, f.name), default=0) < 1:
                    raise ValueError(f"{f.name}={getattr(self, f.name)}: give positive integers")
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
    """Normalisation buffers and the registry's class attributes."""

    Config = PeerConfig
    stride = 16  # the H, W multiple the network needs
    paper = ""
    reported_m: float | None = None  # BasicIRSTD's parameter count, millions

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


# ----------------------------------------------------------------------------- shared blocks


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


# ----------------------------------------------------------------------------- ACM


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
class ACMConfig(PeerConfig):
    layers: tuple[int, ...] = (3, 3, 3)  # residual blocks per stage (BasicIRSTD: 3)
    channels: tuple[int, ...] = (8, 16, 32, 64)  # stem width, then the 3 stages'
    reduction: int = 4  # the attention bottleneck: channels // reduction

    def __post_init__(self):
        super().__post_init__()
        if len(self.layers) != 3 or len(self.channels) != 4:
            raise ValueError("ACM: give 3 layers and 4 channels, e.g. 3,3,3 and 8,16,32,64")
        if self.channels[1] < 4:
            raise ValueError(f"channels={list(self.channels)}: the head needs channels[1] >= 4")


class ACM(Peer):
    """ACM, the U-Net variant (ASKCResUNet): stem /4, stages at 1/4, 1/8, 1/16; decoder by
    transposed convs, fused with the skips by AsymBiFuse, each followed by a residual stage."""

    Config = ACMConfig
    stride = 16
    paper = "Dai et al., Asymmetric Contextual Modulation for IRSTD, WACV 2021"
    reported_m = 0.398

    def __init__(self, cfg: ACMConfig):
        super().__init__(cfg)
        (n1, n2, n3), (c0, c1, c2, c3) = cfg.layers, cfg.channels
        self.stem = dai_stem(cfg.in_channels, c0)
        self.layer1 = res_stage(2 * c0, c1, n1, 1)
        self.layer2 = res_stage(c1, c2, n2, 2)
        self.layer3 = res_stage(c2, c3, n3, 2)
        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.fuse2 = AsymBiFuse(c2, cfg.reduction)
        self.uplayer2 = res_stage(c2, c2, n2, 1)
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.fuse1 = AsymBiFuse(c1, cfg.reduction)
        self.uplayer1 = res_stage(c1, c1, n1, 1)
        self.head = FCNHead(c1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        c1 = self.layer1(self.stem(self.normalise(x)))  # 1/4
        c2 = self.layer2(c1)  # 1/8
        c3 = self.layer3(c2)  # 1/16
        up = self.uplayer2(self.fuse2(resize(self.deconv2(c3), c2), c2))
        up = self.uplayer1(self.fuse1(resize(self.deconv1(up), c1), c1))
        return [resize(self.head(up), size)]


# ----------------------------------------------------------------------------- ALCNet


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
class ALCNetConfig(PeerConfig):
    layers: tuple[int, ...] = (4, 4, 4)  # residual blocks per stage (released model: 4)
    channels: tuple[int, ...] = (8, 16, 32, 64)  # stem outputs 2 x channels[0]; 3 stages
    shift: int = 13  # the local contrast layer's shift in px (released model: 13)
    reduction: int = 1  # the modulation's bottleneck (released model: r = 1)

    def __post_init__(self):
        super().__post_init__()
        if len(self.layers) != 3 or len(self.channels) != 4:
            raise ValueError("ALCNet: give 3 layers and 4 channels, e.g. 4,4,4 and 8,16,32,64")
        if self.channels[1] < 4:
            raise ValueError(f"channels={list(self.channels)}: the head needs channels[1] >= 4")
        if self.shift < 1:
            raise ValueError(f"shift={self.shift}: must be >= 1")


class ALCNet(Peer):
    """ALCNet: stem (input BN, conv3x3 at full resolution), stages at 1, 1/2, 1/4; local
    contrast on each stage's output, the two deeper ones projected to the first stage's width
    (1x1 conv-BN-ReLU), fused top-down by BottomUpModulation; FCN head at full resolution."""

    Config = ALCNetConfig
    stride = 4
    paper = "Dai et al., Attentional Local Contrast Networks for IRSTD, TGRS 2021"
    reported_m = 0.427

    def __init__(self, cfg: ALCNetConfig):
        super().__init__(cfg)
        (n1, n2, n3), (c0, c1, c2, c3) = cfg.layers, cfg.channels
        self.stem = nn.Sequential(InputBN(cfg.in_channels), conv_bn_relu(cfg.in_channels, 2 * c0))
        self.layer1 = res_stage(2 * c0, c1, n1, 1)
        self.layer2 = res_stage(c1, c2, n2, 2)
        self.layer3 = res_stage(c2, c3, n3, 2)
        self.dec3 = conv_bn_relu(c3, c1, k=1)
        self.dec2 = conv_bn_relu(c2, c1, k=1)
        self.fuse2 = BottomUpModulation(c1, cfg.reduction)
        self.fuse1 = BottomUpModulation(c1, cfg.reduction)
        self.head = FCNHead(c1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = self.cfg.shift
        c1 = self.layer1(self.stem(self.normalise(x)))  # full resolution
        c2 = self.layer2(c1)  # 1/2
        c3 = self.layer3(c2)  # 1/4
        lc3 = resize(self.dec3(local_contrast(c3, s)), c2)
        out = self.fuse2(lc3, self.dec2(local_contrast(c2, s)))
        out = self.fuse1(resize(out, c1), local_contrast(c1, s))
        return [resize(self.head(out), x)]


# ----------------------------------------------------------------------------- DNA-Net


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
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)  # levels 0 (full resolution) .. 4 (1/16)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # ResCBAM blocks per node of levels 1..4 (level 0: 1)
    ratio: int = 16  # channel attention: hidden = C // ratio
    deep_supervision: bool = True  # heads on X(0,1), X(0,2), X(0,3) beside the fused output

    def __post_init__(self):
        super().__post_init__()
        if len(self.widths) != 5 or len(self.blocks) != 4:
            raise ValueError("DNA-Net: give 5 widths and 4 blocks, e.g. 16,32,64,128,256, 2,2,2,2")


class DNANet(Peer):
    """DNA-Net: nodes X(i, j), level i (1/2^i resolution), column j; X(i, 0) the encoder (max-
    pool 2 then blocks), X(i, j>0) = blocks(cat[X(i, 0..j-1), up(X(i+1, j-1)), down(X(i-1, j))])
    with i + j <= 4; the outputs of the nodes on the last diagonal (1x1 conv to width 0, up-
    sampled) and X(0, 4) concatenated and fused by a block: the main head."""

    Config = DNANetConfig
    stride = 16
    paper = "Li et al., Dense Nested Attention Network for IRSTD, TIP 2022"
    reported_m = 4.697

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


# ----------------------------------------------------------------------------- ISTDU-Net


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
    stem: int = 16  # width of the full-resolution stem conv
    planes: tuple[int, ...] = (16, 32, 64, 128)  # stage outputs are 4 x planes
    layers: tuple[int, ...] = (1, 2, 4, 8)  # bottlenecks per stage
    radix: int = 2  # splits per group
    groups: int = 4  # feature-map groups (cardinality)
    width: int = 16  # ResNeSt bottleneck width: group width = planes * width / 64 * groups
    memory: int = 64  # external attention's memory units

    def __post_init__(self):
        super().__post_init__()
        if len(self.planes) != 4 or len(self.layers) != 4:
            raise ValueError("ISTDU-Net: give 4 planes and 4 layers, e.g. 16,32,64,128, 1,2,4,8")


class ISTDUNet(Peer):
    """ISTDU-Net: input BN + conv3x3 stem at full resolution; 4 stages of split-attention
    bottlenecks at 1, 1/2, 1/4, 1/8; external attention on each stage's output (the skips); a
    top-down decoder (1x1 conv-BN-ReLU to the next width, up-sample, add the skip); FCN-style
    head (conv3x3 to C/4-BN-ReLU, 1x1 conv)."""

    Config = ISTDUNetConfig
    stride = 8
    paper = "Hou et al., ISTDU-Net: Infrared Small-Target Detection U-Net, GRSL 2022"
    reported_m = 2.752

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


# ----------------------------------------------------------------------------- UIU-Net


def rebn(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """U2-Net's REBNCONV: conv3x3 (bias, dilated)-BN-ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
    )


class RSU(nn.Module):
    """The residual U-block RSU-L of U2-Net, the inner U-Net of UIU-Net: an input conv to
    `cout`, then a U-Net of `mid`-wide convs with L - 1 encoder levels (max-pool 2 between them;
    with `dilated`, RSU-4F: no pooling, dilations 1, 2, 4 instead), a dilated bottom conv, a
    decoder of convs over [deeper, same level], the last back to `cout`; plus the input conv's
    output (the residual)."""

    def __init__(self, depth: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        dil = [2**i if dilated else 1 for i in range(depth)]  # encoder levels, then bottom
        self.conv_in = rebn(cin, cout)
        self.enc = nn.ModuleList(
            rebn(cout if i == 0 else mid, mid, dil[i]) for i in range(depth - 1)
        )
        self.bottom = rebn(mid, mid, dil[-1] if dilated else 2)
        self.dec = nn.ModuleList(
            rebn(2 * mid, cout if i == 0 else mid, dil[i]) for i in reversed(range(depth - 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = h = self.conv_in(x)
        skips = []
        for i, conv in enumerate(self.enc):
            if i > 0 and not self.dilated:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for conv, skip in zip(self.dec, reversed(skips), strict=True):
            h = conv(torch.cat([resize(h, skip), skip], 1))
        return h + xin


class InteractiveCrossAttention(nn.Module):
    """UIU-Net's IC-A between the up-sampled deep feature xh and the skip xl: xh to the skip's
    width (1x1 conv-BN-ReLU); global channel attention from xh (top-down) gates xl; spatial
    attention (3x3 conv over the channel mean and max of a 1x1 conv-BN-ReLU bottleneck) from the
    gated xl gates xh (bottom-up); each product x2 through a shared conv3x3-BN-ReLU; the two
    returned concatenated."""

    def __init__(self, ch: int, cl: int, reduction: int = 4):
        super().__init__()
        hidden = cl // reduction
        self.high = conv_bn_relu(ch, cl, k=1, bias=True)
        self.topdown = gate(cl, hidden, pooled=True)
        self.bottomup = conv_bn_relu(cl, hidden, k=1, bias=True)
        self.spatial = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.post = conv_bn_relu(cl, cl, bias=True)

    def forward(self, xh: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        xh = self.high(xh)
        td = self.topdown(xh)  # (B, C, 1, 1)
        b = self.bottomup(xl * td)
        bu = torch.sigmoid(self.spatial(torch.cat([b.mean(1, True), b.amax(1, True)], 1)))
        return torch.cat([self.post(2 * xl * td), self.post(2 * xh * bu)], 1)


@dataclass
class UIUNetConfig(PeerConfig):
    base: int = 16  # mid width of the last decoder stage; every other width is a multiple

    def __post_init__(self):
        super().__post_init__()
        if self.base < 4 or self.base % 4:
            raise ValueError(f"base={self.base}: a multiple of 4 (default 16)")


class UIUNet(Peer):
    """UIU-Net: a U2-Net (six encoder stages of RSU-7, 6, 5, 4, 4F, 4F at 1 .. 1/32, max-pool 2
    between them; decoder stages RSU-4F, 4, 5, 6, 7 back to full resolution) whose decoder fuses
    each up-sampled deep feature with its skip by IC-A at the 4 deepest fusions (the full-
    resolution fusion concatenates); side outputs (conv3x3 to 1) of the 6 decoder/bottom features
    up-sampled to full resolution (resolution-maintenance deep supervision) and their 1x1 fusion.
    Outputs [fused, side 1 .. side 6], all full resolution. Widths for base b = 16: encoder
    (mid, out) = (2b, 4b), (2b, 8b), (4b, 16b), (8b, 32b), (16b, 32b), (16b, 32b)."""

    Config = UIUNetConfig
    stride = 32
    paper = "Wu et al., UIU-Net: U-Net in U-Net for Infrared Small Object Detection, TIP 2023"
    reported_m = 50.540

    def __init__(self, cfg: UIUNetConfig):
        super().__init__(cfg)
        b = cfg.base
        enc = [(7, 2 * b, 4 * b), (6, 2 * b, 8 * b), (5, 4 * b, 16 * b), (4, 8 * b, 32 * b)]
        cin, stages = cfg.in_channels, []
        for depth, mid, cout in enc:
            stages.append(RSU(depth, cin, mid, cout))
            cin = cout
        stages += [RSU(4, 32 * b, 16 * b, 32 * b, True), RSU(4, 32 * b, 16 * b, 32 * b, True)]
        self.encoder = nn.ModuleList(stages)
        skip = [4 * b, 8 * b, 16 * b, 32 * b, 32 * b]  # encoder stages 1..5
        # decoder stage i (5 .. 1) -> (depth, mid, out); its input: fused deep + skip i
        dec = {5: (4, 16 * b, 32 * b), 4: (4, 8 * b, 16 * b), 3: (5, 4 * b, 8 * b),
               2: (6, 2 * b, 4 * b), 1: (7, b, 4 * b)}  # fmt: skip
        self.fusions = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        deep = 32 * b  # the stage-6 output
        for i in (5, 4, 3, 2, 1):
            depth, mid, cout = dec[i]
            if i > 1:
                self.fusions[str(i)] = InteractiveCrossAttention(deep, skip[i - 1])
            self.decoder[str(i)] = RSU(depth, 2 * skip[i - 1] if i > 1 else deep + skip[0],
                                       mid, cout, dilated=i == 5)  # fmt: skip
            deep = cout
        side = [dec[i][2] for i in (1, 2, 3, 4, 5)] + [32 * b]  # decoder 1..5, stage 6
        self.sides = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in side)
        self.fuse = nn.Conv2d(6, 1, 1)

    @property
    def n_outputs(self) -> int:
        return 7

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, skips = self.normalise(x), []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = stage(h)
            skips.append(h)
        feats = {6: h}
        for i in (5, 4, 3, 2, 1):
            skip = skips[i - 1]
            up = resize(h, skip)
            if i > 1:
                h = self.decoder[str(i)](self.fusions[str(i)](up, skip))
            else:
                h = self.decoder[str(i)](torch.cat([up, skip], 1))
            feats[i] = h
        sides = [resize(conv(feats[i + 1]), x) for i, conv in enumerate(self.sides)]
        return [self.fuse(torch.cat(sides, 1)), *sides]


# ----------------------------------------------------------------------------- the registry

MODELS: dict[str, type[nn.Module]] = {
    "aff-unet": AFFUNet,
    "acm": ACM,
    "alcnet": ALCNet,
    "dna-net": DNANet,
    "istdu-net": ISTDUNet,
    "uiu-net": UIUNet,
}
assert tuple(MODELS) == MODEL_NAMES, "trainer.MODEL_NAMES must list trainer.peers.MODELS"


def _entry(cfg: dict | None) -> tuple[str, type[nn.Module], dict]:
    d = dict(cfg or {})
    name = d.pop("name", DEFAULT)
    if name not in MODELS:
        raise ValueError(f"model {name!r}: choose one of {', '.join(MODELS)}")
    return name, MODELS[name], d


def model_config(cfg: dict | None = None) -> dict:
    """The full config dict of a model: "name" first, then all its options with the defaults
    filled in. ValueError for an unknown name or option."""
    name, cls, d = _entry(cfg)
    return {"name": name, **cls.Config.from_dict(d).to_dict()}


def model_stride(cfg: dict | None = None) -> int:
    """The H, W multiple the config's model needs, without building it."""
    return int(_entry(cfg)[1].stride)


def build(cfg: dict | None = None) -> nn.Module:
    """The model of a config dict (name absent: the AFF U-Net)."""
    _, cls, d = _entry(cfg)
    return cls(cls.Config.from_dict(d))
