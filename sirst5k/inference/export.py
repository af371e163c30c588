"""ONNX export of a checkpoint, and ONNX Runtime as a predictor (`sirst5k export`, `--checkpoint
model.onnx` in eval and predict).

The exported graph is the whole inference path: raw 0..255 grey images (B, 1, H, W) float32 in,
probabilities (B, 1, H, W) out. Inside it: the model's own normalisation (mean/std buffers),
zero padding at the bottom/right to a multiple of the stride, the network's main head, the crop
back to H x W and the sigmoid. Batch, height and width are dynamic. The AFF U-Net's channel
attention pools over cells of --attention-window px (256 by default, as eval; 0: the whole
input), built into the graph and recorded in its metadata (sirst5k.attention_window). Opset
17, written by PyTorch's TorchScript-based exporter (the newer torch.export one needs the
onnxscript package).
onnx and onnxruntime are the optional extra `sirst5k[onnx]` (in `dev` too).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst5k.errors import UserError
from sirst5k.files import atomic_path
from sirst5k.inference.runtime import side_by_side
from sirst5k.inference.tiling import (
    WINDOW,
    WINDOW_TILE,
    by_shape,
    check_window,
    default_tiling,
    tiled,
)
from trainer.checkpoint import load_model
from trainer.config import flatten
from trainer.forward import count_params
from trainer.nets.aff_unet import set_attention_window

try:  # the newest opset the installed TorchScript exporter writes (torch 2.x: 20)
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET
except ImportError:
    MAX_OPSET = 20
OPSET = 17
MIN_OPSET = 13
META_WINDOW = "sirst5k.attention_window"  # ONNX metadata: the built-in attention window (0: none)
META_FLIPS = "sirst5k.flips"  # ONNX metadata: the training --flips, the views --tta may average


class ProbabilityModel(nn.Module):
    """The exported function: pad to the stride, main head, crop, sigmoid."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.stride = model, int(model.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = (
            (self.stride - h % self.stride) % self.stride,
            (self.stride - w % self.stride) % self.stride,
        )
        logits = self.model(F.pad(x, (0, pw, 0, ph)))[0]
        return torch.sigmoid(logits[:, :, :h, :w])


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise UserError(
            "ONNX Runtime is not installed: pip install 'sirst5k[onnx]' (onnx, onnxruntime)"
        ) from None
    return onnxruntime


def session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session for an exported model (one-line error when unreadable)."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # missing, truncated, not ONNX
        msg = str(e).splitlines()[0][:160]
        raise UserError(
            f"{path}: not a readable ONNX model ({msg}); export one with `sirst5k export`"
        ) from e


def export_onnx(
    checkpoint: str | os.PathLike, out: str | os.PathLike, opset: int = OPSET, window=None
) -> dict:
    """Write the checkpoint's model as ONNX to OUT (atomically); check it against PyTorch on
    odd-sized inputs (one larger than the attention window, at most 2085 x 2101) when ONNX
    Runtime is there. Returns a summary dict. An opset outside MIN_OPSET..MAX_OPSET, or a
    window that is not a multiple of 32 up to 65536, is refused first."""
    import onnx

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(
            f"--opset {opset}: the installed torch exports opsets {MIN_OPSET} to {MAX_OPSET}"
        )
    check_window(window)
    model, ckpt = load_model(checkpoint, "cpu")
    window = WINDOW if window is None else window
    window = window if set_attention_window(model, window) else 0
    wrapped = ProbabilityModel(model).eval()
    example = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    dynamic = {0: "batch", 2: "height", 3: "width"}
    out = Path(out)
    with atomic_path(out, force=True) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on the TorchScript path
        torch.onnx.export(
            wrapped, (example,), str(tmp), input_names=["image"], output_names=["prob"],
            dynamic_axes={"image": dynamic, "prob": dynamic}, opset_version=opset,
            dynamo=False,
        )  # fmt: skip
        graph = onnx.load(str(tmp))
        flips = flatten(ckpt.get("config", {})).get("flips", "d4")
        onnx.helper.set_model_props(graph, {META_WINDOW: str(window), META_FLIPS: flips})
        onnx.save(graph, str(tmp))
    summary = {
        "onnx": str(out),
        "opset": opset,
        "attention_window": window or None,
        "params": count_params(model),
        "checkpoint": str(checkpoint),
        "epoch": ckpt.get("epoch"),
        "max_abs_diff": None,
    }
    try:
        _ort()
    except UserError:
        return summary
    gen, diffs, sess = torch.Generator().manual_seed(1), [], session(out)
    side = min(window, WINDOW_TILE)  # beyond a window of 2048 px: a frame inside it
    for shape in [(2, 1, 37, 53), (1, 1, side + 37, side + 53)][: 2 if window else 1]:
        x = torch.rand(shape, generator=gen) * 255
        with torch.inference_mode():
            ref = wrapped(x).numpy()
        diffs.append(np.abs(sess.run(None, {"image": x.numpy()})[0] - ref).max())
    summary["max_abs_diff"] = float(max(diffs))
    return summary


class OnnxPredictor:
    """An exported .onnx model as an eval/predict predictor (ONNX Runtime on the CPU).

    A lone frame runs on all threads. Several frames run side by side, one thread each, on a
    second session (`lanes` of them at a time): on 2 cores that gives 8-9 % more images/s
    than one frame after another on both threads (docs/results.md), and the same results.
    eval and predict therefore hand it `lanes` frames a call by default.
    """

    def __init__(self, path: str | Path, tile=None, halo=None, window: int | None = None):
        """window: None, or the one built into the file (anything else cannot be honoured)."""
        self.session = session(path)
        self.lanes = torch.get_num_threads()
        self.single = session(path, threads=1) if self.lanes > 1 else None
        meta = self.session.get_modelmeta().custom_metadata_map
        built = int(meta.get(META_WINDOW, 0))  # exports before the window: 0
        if window is not None and window != built:
            raise UserError(
                f"{path}: its attention window ({built} px) is built in; for "
                f"--attention-window {window} export again with `sirst5k export CKPT -o "
                f"{Path(path).stem}-w{window}.onnx --attention-window {window}`"
            )
        window = built
        self.flips = meta.get(META_FLIPS, "d4")  # exports before it: all 8 views
        self.name, self.device, self.params = Path(path).name, "cpu (onnxruntime)", None
        self.tile, self.halo = default_tiling(tile, halo, window > 0)
        self.info = {"checkpoint": str(path), "engine": "onnxruntime", "tile": self.tile}
        self.info |= {"tile_halo": self.halo, "attention_window": window or None}

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        def predict(sess, frames: list[np.ndarray]) -> list[np.ndarray]:
            def run(batch: np.ndarray) -> np.ndarray:
                return sess.run(None, {"image": batch[:, None].astype(np.float32)})[0][:, 0]

            return by_shape(frames, tiled(run, self.tile, self.halo))

        if self.single is None or len(images) < 2:
            return predict(self.session, images)
        return side_by_side(lambda im: predict(self.single, [im])[0], images, self.lanes)
