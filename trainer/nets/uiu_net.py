"""UIU-Net (Wu et al., TIP 2023, "UIU-Net: U-Net in U-Net for Infrared Small Object
Detection"): U2-Net's nested residual U-blocks (RSU) in a six-stage U-Net, the interactive-
cross attention (IC-A) fusing each deep feature with its skip in the decoder, and resolution-
maintenance deep supervision (six side outputs at full resolution and their fusion).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.nets.layers import Peer, PeerConfig, conv_bn_relu, gate, resize


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


class UIUNet(
    Peer,
    config=UIUNetConfig,
    stride=32,
    paper="Wu et al., UIU-Net: U-Net in U-Net for Infrared Small Object Detection, TIP 2023",
    reported_m=50.540,
):
    """UIU-Net: a U2-Net (six encoder stages of RSU-7, 6, 5, 4, 4F, 4F at 1 .. 1/32, max-pool 2
    between them; decoder stages RSU-4F, 4, 5, 6, 7 back to full resolution) whose decoder fuses
    each up-sampled deep feature with its skip by IC-A at the 4 deepest fusions (the full-
    resolution fusion concatenates); side outputs (conv3x3 to 1) of the 6 decoder/bottom features
    up-sampled to full resolution (resolution-maintenance deep supervision) and their 1x1 fusion.
    Outputs [fused, side 1 .. side 6], all full resolution. Widths for base b = 16: encoder
    (mid, out) = (2b, 4b), (2b, 8b), (4b, 16b), (8b, 32b), (16b, 32b), (16b, 32b)."""

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
