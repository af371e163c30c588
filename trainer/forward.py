"""The forward path every caller shares: device names, padding to a network's stride, and
probabilities of raw 0..255 images (validation during training, eval, predict)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst5k.errors import UserError


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_device(name: str) -> str:
    """--device auto|cpu|cuda[:N] to a torch device name; auto takes a visible GPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is visible; use --device cpu")
    return name


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (B, C, H, W) at the bottom/right up to multiples of stride; returns (x, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


@torch.inference_mode()
def predict_probs(
    model: nn.Module, x: torch.Tensor, amp: bool = False, channels_last: bool = False
) -> torch.Tensor:
    """Main-head probabilities (B, H, W) float32 of raw 0..255 images x (B, 1, H, W) already on
    the model's device: zero-padded to the model's stride, sigmoid, cropped back. The one
    inference path of validation, eval and predict; the caller sets eval mode. amp: bf16
    autocast on x's device (CUDA or CPU)."""
    h, w = x.shape[-2:]
    x, _ = pad_to_stride(x.float(), model.stride)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        logits = model(x)[0]
    return torch.sigmoid(logits.float())[:, 0, :h, :w]
