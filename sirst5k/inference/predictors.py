"""Predictors: what eval, predict and compare run on images. Each is a callable from a list of
grey uint8 (H, W) frames to their probability maps (float32, same sizes), with `name`, `info`,
`params`, `device` and `lanes`:

- ModelPredictor: a .pt checkpoint (pad to the stride, sigmoid, crop back; tiles; bf16);
- OnnxPredictor (inference/export.py): an exported .onnx model on ONNX Runtime;
- MethodPredictor: a classical detector (sirst5k.detectors);
- TTAPredictor: a network's mean over the flips and rotations it was trained on.

Inference holds the options the commands share (eval's and predict's --threshold ... --precision,
the keywords of sirst5k.evaluate, predict and compare); make_predictor builds a predictor from
them, refusing bad values and options that would be ignored before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sirst5k.detectors.methods import detect, get_detector
from sirst5k.errors import UserError
from sirst5k.inference.bundled import default_checkpoint, resolve
from sirst5k.inference.export import OnnxPredictor
from sirst5k.inference.runtime import LANES, check_precision, side_by_side
from sirst5k.inference.tiling import (
    WINDOW,
    by_shape,
    check_tiling,
    check_window,
    default_tiling,
    tiled,
)
from sirst5k.ops import dihedral, undo_dihedral
from trainer.checkpoint import load_model
from trainer.config import flatten
from trainer.forward import count_params, predict_probs, resolve_device
from trainer.nets.aff_unet import set_attention_window


def decision_rule(predictor, threshold: float) -> str:
    """How a predictor's pixels are decided, for summaries: a method's k or the threshold."""
    if isinstance(predictor, MethodPredictor):
        return f"k {predictor.k:g} (T = mean + k std)"
    return f"threshold {threshold:g}"


class MethodPredictor:
    """A classical detector of sirst5k.detectors.methods as a predictor."""

    def __init__(self, name: str, k: float | None = None):

        self.detector = get_detector(name)
        self.name, self.params, self.device = name, None, "cpu"
        self.k = self.detector.k if k is None else float(k)
        self.info = {"method": name, "k": self.k}

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:

        return [detect(self.name, im, self.k) for im in images]


class ModelPredictor:
    """A trained checkpoint as a predictor: pad to the stride, sigmoid, crop back; frames
    larger than `tile` px run in tiles (tiled). channels_last memory; `precision` "bf16":
    bf16 autocast. On the CPU several frames run side by side (`lanes` at a time, the
    threads shared out among them), as OnnxPredictor does; a lone frame runs on all threads."""

    def __init__(self, checkpoint, device="auto", tile=None, halo=None, window=WINDOW,
                 precision="fp32"):  # fmt: skip

        device = resolve_device(device)
        self.amp = check_precision(precision, device)
        self.model, ckpt = load_model(checkpoint, device)
        self.model.to(memory_format=torch.channels_last)
        self.device, self.name = device, Path(checkpoint).name
        self.lanes = min(torch.get_num_threads(), LANES) if device == "cpu" else 1
        self.params = count_params(self.model)
        windowed = set_attention_window(self.model, window) and window > 0
        self.tile, self.halo = default_tiling(tile, halo, windowed)
        self.info = {"checkpoint": str(checkpoint), "epoch": ckpt.get("epoch")}
        self.info |= {"best": ckpt.get("best"), "tile": self.tile, "tile_halo": self.halo}
        self.info["attention_window"] = window if windowed else None
        self.info["precision"] = precision
        self.flips = flatten(ckpt.get("config", {})).get("flips", "d4")  # what --tta may average

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:

        def run(batch: np.ndarray) -> np.ndarray:  # (B, H, W) uint8 -> (B, H, W) probabilities
            x = torch.from_numpy(batch)[:, None].to(self.device)
            return predict_probs(self.model, x, self.amp, channels_last=True).cpu().numpy()

        one = tiled(run, self.tile, self.halo)
        if self.lanes < 2 or len(images) < 2:
            return by_shape(images, one)
        n = torch.get_num_threads()
        try:  # the workers' count also becomes the default of threads started later: restored
            return side_by_side(lambda im: one(im[None])[0], images, self.lanes, n // self.lanes)
        finally:
            torch.set_num_threads(n)


# the views (k of dihedral) that TTA averages for a network trained with each set of
# --flips (trainer.data.FLIPS): only orientations it has seen (k = 5 is the up-down flip,
# 7 the left-right one, 2 both)
TTA_VIEWS = {"d4": tuple(range(8)), "hv": (0, 2, 5, 7), "h": (0, 7), "none": (0,)}


class TTAPredictor:
    """Test-time augmentation: a network's mean probability over the flips and 90-degree
    rotations of each image that it was trained on (`views`, the k of dihedral; all 8 for the
    default --flips d4, 8x the time). Chosen on validation: docs/evaluation.md."""

    def __init__(self, base, views=TTA_VIEWS["d4"]):
        self.base, self.name, self.params, self.views = base, base.name, base.params, views
        self.device, self.info = base.device, base.info | {"tta": len(views)}
        self.lanes = getattr(base, "lanes", 1)  # the base runs each view's frames side by side

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        total = [np.zeros(im.shape, np.float32) for im in images]
        for k in self.views:
            probs = self.base([np.ascontiguousarray(dihedral(im, k)) for im in images])
            for t, p in zip(total, probs, strict=True):
                t += undo_dihedral(p, k)
        return [t / len(self.views) for t in total]


@dataclass(frozen=True)
class Inference:
    """How eval, predict and compare run a checkpoint or a method: the options they share, each
    with the commands' default (None: the predictor's own, as noted). sirst5k.evaluate, predict
    and compare take these names as keywords (a name not here is a TypeError); `predictor`
    builds the predictor, where the values are checked (make_predictor)."""

    threshold: float | None = None  # a network's pixel is target when its probability is > this
    # (None: 0.5); a network's option, as are tile ... precision: refused with a method
    device: str = "auto"  # where a network runs: auto (cuda if available), cpu, cuda, cuda:N
    k: float | None = None  # a method's T = mean + k std of its score map (None: its own k)
    batch_size: int | None = None  # images per call (None: default_batch)
    tile: int | None = None  # frames with a side over this many px run in tiles of this side
    # (0: never; None: tiling.default_tiling, for the network and its attention window)
    tile_halo: int | None = None  # px of context around each tile (None: default_tiling)
    tta: bool = False  # average a network over the flips and rotations it was trained on
    attention_window: int | None = None  # the AFF U-Net's channel attention pools over cells of
    # this many px (None: tiling.WINDOW; 0: the whole input); an .onnx export has its own
    precision: str | None = None  # a .pt network's arithmetic: fp32 or bf16 autocast (None: fp32)

    @property
    def decision_threshold(self) -> float:
        """What a network's probability must exceed: `threshold`, or 0.5."""
        return 0.5 if self.threshold is None else self.threshold

    def predictor(self, checkpoint=None, method=None):
        """The predictor of a checkpoint or a method (neither: the bundled model) run so."""
        return make_predictor(
            checkpoint, method=method, device=self.device, k=self.k, tile=self.tile,
            halo=self.tile_halo, window=self.attention_window, tta=self.tta,
            threshold=self.threshold, precision=self.precision,
        )  # fmt: skip


def make_predictor(
    checkpoint=None, *, method=None, device="auto", k=None, tile=None, halo=None, window=None,
    tta=False, threshold=None, precision=None,
):  # fmt: skip
    """The one place that turns the options of eval, predict and compare into a predictor: from
    a checkpoint (a path, a .onnx file, or a bundled model's name such as "nudt"), or a
    classical method; with neither, the bundled model (sirst5k/inference/bundled.py). The
    options are Inference's fields (`halo` is its tile_halo, `window` its attention_window;
    batch_size is not the predictor's). `threshold` is only checked here: a network's option,
    refused with a method (None: not given). Bad values (a `threshold` outside [0, 1], a `k`
    that is not finite) and options that would be ignored are refused here, before anything
    runs."""

    if threshold is not None and not 0 <= threshold <= 1:  # nan too
        raise UserError(f"--threshold {threshold}: give a probability in [0, 1], e.g. 0.5")
    if k is not None and not math.isfinite(k):
        raise UserError(f"--k {k}: give a finite number, e.g. 3")
    check_tiling(tile, halo)
    check_window(window)
    given = {"--tile": tile, "--tile-halo": halo, "--attention-window": window,
             "--threshold": threshold, "--tta": tta or None,
             "--precision": precision}  # fmt: skip
    if checkpoint is None and method is None:
        checkpoint = default_checkpoint()
        if checkpoint is None:
            raise UserError("give --checkpoint CKPT or --method NAME (no bundled model here)")
    if checkpoint is not None and method is not None:
        raise UserError("give exactly one of --checkpoint CKPT or --method NAME")
    if checkpoint is not None:
        checkpoint = resolve(checkpoint)
    if method is not None:
        for name, v in given.items():
            if v is not None:
                hint = " (a method's threshold is --k)" if name == "--threshold" else ""
                raise UserError(f"{name} is a network's option: not for --method{hint}")
        return MethodPredictor(method, k)
    if k is not None:
        raise UserError("--k sets a classical method's threshold: use it with --method only")
    if Path(checkpoint).suffix.lower() == ".onnx":  # an exported model: ONNX Runtime
        if precision not in (None, "fp32"):
            raise UserError(
                f"{checkpoint}: an .onnx model runs in fp32 on ONNX Runtime; for --precision "
                f"{precision} give the .pt checkpoint it was exported from"
            )
        predictor = OnnxPredictor(checkpoint, tile, halo, window)
    else:
        window = WINDOW if window is None else window
        predictor = ModelPredictor(checkpoint, device, tile, halo, window, precision or "fp32")
    if not tta:
        return predictor
    return TTAPredictor(predictor, TTA_VIEWS[predictor.flips])


def default_batch(predictor) -> int:
    """16 on a GPU; on the CPU as many frames as the predictor runs side by side, 1 for a
    classical method."""
    if getattr(predictor, "device", "cpu").startswith("cuda"):
        return 16
    return getattr(predictor, "lanes", 1)
