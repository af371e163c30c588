"""Evaluation and prediction: the library behind `sirst5k eval` and `sirst5k predict`.

eval: iterate the test images of a store (its test group: real-size rows, each checked against
its crc32 digest) or of a dataset folder (dataset.load_split), run a predictor (a checkpoint or
a classical method from trainer.detectors), accumulate trainer.metrics, and write metrics.json,
per_image.csv, roc.csv, pd_fa.png and overlays of the worst images. predict: the same
predictors on a user's files.

Networks see each image zero-padded at the bottom/right to a multiple of `model.stride`
(trainer.model.pad_to_stride, as in validation during training); the logits are cropped
back before the sigmoid, so only real pixels are ever scored. On the CPU a network runs the
frames of a batch side by side, each frame alone on its share of the threads (the default batch
is the number of lanes), and a lone frame on all threads, which changes its probabilities by
about 1e-6: eval and predict agree bit for bit when they split the images alike. On CUDA
images of one batch are grouped by padded shape, the default batch is 16, and the same
--batch-size and image order reproduce the same masks.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from sirst5k.errors import UserError, skipped_reason
from sirst5k.files import atomic_path
from sirst5k.io import (
    IMAGE_EXTS,
    find_split_file,
    load_split,
    read_image,
    read_pair,
)
from trainer import PRECISIONS
from trainer.metrics import FA_CORRECTED, FA_LEGACY, Metrics, RocSweep

# ANCHORS.md section 3: NUDT-SIRST 50/50 test split, 664 images. (name, IoU x1e2, Pd x1e2,
# Fa x1e6, params in M or None, Fa definition). [B]: retrained by BasicIRSTD; [T1]: the
# SIRST-5K paper's Table I, whose Fa definition is not stated.
REFERENCE_ROWS = [
    ("SIRST-5K paper", 92.78, 98.84, 2.735, 8.79, "legacy"),
    ("DNA-Net [B]", 94.19, 99.26, 2.436, 4.70, "corr."),
    ("ISTDU-Net [B]", 91.76, 98.52, 3.769, 2.75, "corr."),
    ("UIU-Net [B]", 90.52, 98.84, 8.342, 50.5, "corr."),
    ("ACM [B]", 64.86, 96.72, 28.6, 0.40, "corr."),
    ("ALCNet [B]", 61.13, 97.25, 29.1, 0.43, "corr."),
    ("Top-Hat [T1]", 20.7, 78.4, 166.7, None, "?"),
    ("Max-Median [T1]", 4.2, 58.4, 36.9, None, "?"),
]
DEFINITIONS = {
    "iou": "foreground IoU, intersections and unions summed over the set, divided once",
    "niou": "mean over images of per-image IoU (empty union counts 0)",
    "pd": "8-connected targets matched greedily (label order) to a prediction at < 3 px",
    "fa_corrected": FA_CORRECTED,
    "fa_legacy": FA_LEGACY,
    "threshold": "pixel is target when prob > threshold (sigmoid of the logit for a network)",
}


@dataclass
class EvalImage:
    stem: str
    image: np.ndarray  # (h, w) uint8 grey, real size
    mask: np.ndarray | None  # (h, w) uint8 0/1
    index: int = -1  # position in its EvalData


@dataclass
class EvalData:
    """The test images of a store or a dataset folder, read lazily, with what was skipped."""

    path: Path
    kind: str  # "store" or "folder"
    split: str
    n: int
    _get: Callable[[int], EvalImage]
    skip_bad: bool = False
    skipped: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[EvalImage]:
        for _, got in prefetch(self._get, range(self.n)):
            if isinstance(got, UserError):
                if not self.skip_bad:
                    raise got
                self.skipped.append(skipped_reason(got))
            else:
                yield got

    def get(self, i: int) -> EvalImage:
        return self._get(i)


READ_AHEAD = 8  # images decoded ahead of the predictor, on 2 threads (OpenCV drops the GIL)


def prefetch(fn, items, ahead: int = READ_AHEAD):
    """Yield (item, fn(item) or the UserError it raised) in order, computing up to `ahead`
    items in advance on a small thread pool, so decoding overlaps the network."""
    items = list(items)

    def call(item):
        try:
            return fn(item)
        except UserError as e:
            return e

    with ThreadPoolExecutor(2) as ex:
        pending = deque(ex.submit(call, it) for it in items[:ahead])
        for i, item in enumerate(items):
            if i + ahead < len(items):
                pending.append(ex.submit(call, items[i + ahead]))
            yield item, pending.popleft().result()


def open_data(path: str | Path, split: str | Path | None = None, skip_bad: bool = False):
    """A store file (its test group) or a dataset folder (its test split) as EvalData."""
    from sirst5k.errors import StoreError
    from sirst5k.store import read_attrs, read_split

    path = Path(path)
    if path.is_dir():
        pairs = load_split(path, "test", split, alone=True)  # eval reads the test list only
        split_file = find_split_file(path, "test", split, alone=True)

        def get(i: int) -> EvalImage:
            image, mask = read_pair(pairs[i])
            return EvalImage(pairs[i].stem, image, mask, i)

        return EvalData(path, "folder", str(split_file), len(pairs), get, skip_bad)
    if not path.exists():
        raise UserError(f"{path}: no such store file or dataset folder")
    if split is not None:
        raise UserError(f"--split {split}: a store's test group is fixed; --split is for folders")
    try:
        test = read_split(path, "test")  # real sizes; every row checked against its digest
        names = read_attrs(path)["sources"]
    except StoreError as e:
        raise UserError(str(e)) from e
    except (OSError, KeyError, ValueError) as e:  # HDF5's own errors: the store, not --out
        what = str(e).splitlines()[0][:100]
        raise StoreError(
            f"{path}: damaged store ({type(e).__name__}: {what}); rebuild it with `sirst5k synth`"
        ) from None

    def get_store(i: int) -> EvalImage:
        src = int(test.columns["source"][i])
        stem = names[src] if 0 <= src < len(names) else f"test-{i:05d}"
        image, mask = test.row(i)
        return EvalImage(stem, image, mask, i)

    return EvalData(path, "store", "store:test", len(test), get_store, skip_bad)


def decision_rule(predictor, threshold: float) -> str:
    """How a predictor's pixels are decided, for summaries: a method's k or the threshold."""
    if isinstance(predictor, MethodPredictor):
        return f"k {predictor.k:g} (T = mean + k std)"
    return f"threshold {threshold:g}"


class MethodPredictor:
    """A classical detector of trainer.detectors as a predictor."""

    def __init__(self, name: str, k: float | None = None):
        from trainer.detectors import get_detector

        self.detector = get_detector(name)
        self.name, self.params, self.device = name, None, "cpu"
        self.k = self.detector.k if k is None else float(k)
        self.info = {"method": name, "k": self.k}

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        from trainer.detectors import detect

        return [detect(self.name, im, self.k) for im in images]


# A network whose attention pools over its whole input (peers, or --attention-window 0) runs
# frames with a side over TILE px in tiles with HALO px of context, the input size it was chosen
# at; the AFF U-Net pools over WINDOW px cells instead and runs frames whole up to WINDOW_TILE px
# (a memory bound), in tiles of it beyond. Chosen on validation mosaics: docs/evaluation.md.
TILE, HALO = 256, 64
WINDOW, WINDOW_TILE, WINDOW_HALO = 256, 2048, 256
TILE_STEP = 32  # tiles start on multiples of every model's stride (4 to 32)
LANES = 4  # at most this many frames side by side on the CPU (each holds its activations)


def check_tiling(tile: int | None, halo: int | None) -> None:
    """Refuse a --tile or --tile-halo (None: not given) that is not a multiple of TILE_STEP."""
    for name, v in (("--tile", tile), ("--tile-halo", halo)):
        if v is not None and (v < 0 or v % TILE_STEP):
            raise UserError(f"{name} {v}: use a multiple of {TILE_STEP} (--tile 0 = never tile)")


def default_tiling(tile: int | None, halo: int | None, windowed: bool) -> tuple[int, int]:
    """(tile, halo) with None replaced by the defaults for a network with windowed attention
    pooling or without; checked."""
    t, h = (WINDOW_TILE, WINDOW_HALO) if windowed else (TILE, HALO)
    tile, halo = t if tile is None else tile, h if halo is None else halo
    check_tiling(tile, halo)
    return tile, halo


def tiled(run, tile: int = TILE, halo: int = HALO):
    """run (a (B, H, W) uint8 -> (B, H, W) probability function) on frames with a side over
    `tile` px as tiles of tile x tile px, each with `halo` px of the frame around it as context
    (less at the frame's edges); frames that fit run whole.

    Tiles start on multiples of 32, so a network's pooling grid and its zero padding at the
    frame's edges are those of the whole frame: where the network's receptive field reaches at
    most `halo` px, the tiled result equals the whole-frame one (tests/test_tiling.py).

    The AFF U-Net's channel attention pools over its whole input, so its output depends on the
    input's size: trained on 64 px crops and chosen on 256 x 256 images, on 1024 x 1280 frames
    it loses a third of its IoU (benchmarks/bench_tiling.py). The default, 256 px tiles with
    64 px of context (chosen on mosaics of validation images, docs/evaluation.md), gives it
    inputs of the size it was chosen at; it also bounds memory.
    """
    check_tiling(tile, halo)

    def go(batch: np.ndarray) -> np.ndarray:
        b, h, w = batch.shape
        if tile == 0 or (h <= tile and w <= tile):
            return run(batch)
        out = np.empty((b, h, w), np.float32)
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                y0, x0 = max(0, y - halo), max(0, x - halo)
                y1, x1 = min(h, y + tile + halo), min(w, x + tile + halo)
                probs = run(np.ascontiguousarray(batch[:, y0:y1, x0:x1]))
                ty, tx = min(tile, h - y), min(tile, w - x)
                out[:, y : y + ty, x : x + tx] = probs[
                    :, y - y0 : y - y0 + ty, x - x0 : x - x0 + tx
                ]
        return out

    return go


def check_precision(precision: str, device: str) -> bool:
    """Whether --precision asks for bf16 autocast; refused where it would run slower."""
    from trainer.model import bf16_supported

    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not bf16_supported(device):
        raise UserError(
            f"--precision bf16: {device} has no bf16 support (a CPU needs AVX512-BF16 or AMX), "
            "so it would run slower than fp32; use --precision fp32"
        )
    return precision == "bf16"


_POOLS: dict[tuple[int, int | None], ThreadPoolExecutor] = {}  # kept from call to call
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the threads


def side_by_side(fn, images: list[np.ndarray], lanes: int, threads=None) -> list[np.ndarray]:
    """[fn(image) for image in images], `lanes` images at a time on threads of their own (the
    engines release the GIL while they compute), each with `threads` torch threads (None: left
    as it is). The threads are kept for the next call: eval hands over `lanes` frames a call,
    and fresh threads every call cost a tenth or more of the images/s on 256 x 256 frames
    (docs/results.md)."""
    if (lanes, threads) not in _POOLS:
        import torch

        init = None if threads is None else partial(torch.set_num_threads, threads)
        _POOLS[lanes, threads] = ThreadPoolExecutor(lanes, "lane", initializer=init)
    return list(_POOLS[lanes, threads].map(fn, images))


class ModelPredictor:
    """A trained checkpoint as a predictor: pad to the stride, sigmoid, crop back; frames
    larger than `tile` px run in tiles (tiled). channels_last memory; `precision` "bf16":
    bf16 autocast. On the CPU several frames run side by side (`lanes` at a time, the
    threads shared out among them), as OnnxPredictor does; a lone frame runs on all threads."""

    def __init__(self, checkpoint, device="auto", tile=None, halo=None, window=WINDOW,
                 precision="fp32"):  # fmt: skip
        import torch

        from trainer.model import count_params, load_model, resolve_device, set_attention_window

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
        self.flips = ckpt.get("config", {}).get("flips", "d4")  # what --tta may average

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from trainer.model import predict_probs

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


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips and 90-degree rotations (k in 0..7): transposed when k & 4, then
    rotated k & 3 quarter turns counter-clockwise."""
    return np.rot90(image.T if k & 4 else image, k & 3)


def undo_dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The inverse of dihedral(., k)."""
    back = np.rot90(image, -(k & 3))
    return back.T if k & 4 else back


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


def by_shape(images: list[np.ndarray], run) -> list[np.ndarray]:
    """run(stack) on the images grouped by shape (one forward per shape), back in input order."""
    out: list[np.ndarray | None] = [None] * len(images)
    shapes: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        shapes.setdefault(im.shape, []).append(i)
    for idx in shapes.values():
        probs = run(np.stack([images[i] for i in idx]))
        for j, i in enumerate(idx):
            out[i] = probs[j]
    return out


def make_predictor(
    checkpoint=None, method=None, device="auto", k=None, tile=None, halo=None, window=None,
    tta=False, threshold=None, precision=None,
):  # fmt: skip
    """A predictor from a checkpoint (a path, a .onnx file, or a bundled model's name such as
    "nudt"), or a classical method; with neither, the bundled model (trainer/bundled.py).
    A network runs frames with a side over `tile` px in tiles with `halo` px of context (None:
    the defaults above); the AFF U-Net's channel attention pools over `window` px cells (None:
    WINDOW; 0: its whole input; an ONNX export has its window built in); `tta` averages a
    network over the flips and rotations it was trained on (TTAPredictor); `precision`
    "bf16" runs a .pt network in bf16 autocast (None: "fp32"). `threshold` is only checked here:
    a network's option, refused with a method (None: not given). Bad values and options that
    would be ignored are refused here, before anything runs."""
    from trainer.bundled import default_checkpoint, resolve

    check_tiling(tile, halo)
    given = {"--tile": tile, "--tile-halo": halo, "--attention-window": window,
             "--threshold": threshold, "--tta": tta or None,
             "--precision": precision}  # fmt: skip
    if window is not None and (window < 0 or window % TILE_STEP):
        raise UserError(f"--attention-window {window}: use a multiple of {TILE_STEP} (0 = none)")
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
        from trainer.export import OnnxPredictor

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


def _chunks(items, n: int):
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _stack(arrays: list[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """(B, Hmax, Wmax) zero-padded stack and the (B, 2) real sizes."""
    sizes = np.array([a.shape for a in arrays], np.int64)
    out = np.zeros((len(arrays), *sizes.max(0)), dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return out, sizes


def is_nudt_test(stems: list[str]) -> bool:
    """Whether the images are NUDT-SIRST's 50/50 test split (664 images named by 6 digits),
    the data the published rows of REFERENCE_ROWS were measured on."""
    return len(stems) == 664 and all(len(s) == 6 and s.isdigit() for s in stems)


def _badness(s) -> tuple:
    """Worst first: low IoU (an image with nothing to find and nothing found is perfect), then
    misses, then false pixels."""
    iou = 1.0 if s.targets == 0 and s.false_pixels == 0 else s.iou
    return (1.0 - iou, s.misses, s.false_pixels)


def evaluate(data: EvalData, predictor, out: Path, threshold=0.5, legacy_fa=False,
             batch_size=None, worst=8, progress=None) -> dict:  # fmt: skip
    """Run `predictor` over `data`, write every output into `out`, return metrics.json's dict."""
    from trainer.plots import overlay, pd_fa_curve, write_png

    t_start = time.perf_counter()
    batch_size = batch_size or default_batch(predictor)
    metrics, roc = Metrics(threshold, legacy_fa), RocSweep(extra=threshold)
    stems, shapes, heap, t_pred = [], [], [], 0.0
    for batch in _chunks(data, batch_size):
        t0 = time.perf_counter()
        probs = predictor([s.image for s in batch])
        t_pred += time.perf_counter() - t0
        prob, sizes = _stack(probs, np.float32)
        mask, _ = _stack([s.mask for s in batch], np.uint8)
        part = Metrics(threshold, legacy_fa)
        part.update(prob, mask, sizes)
        roc.update(prob, mask, sizes)
        for s, score, p in zip(batch, part.per_image(), probs, strict=True):
            entry = (_badness(score), -len(stems), s.index, s.stem, p > threshold)
            if len(heap) < worst:
                heapq.heappush(heap, entry)
            elif worst:
                heapq.heappushpop(heap, entry)
            stems.append(s.stem)
            shapes.append(s.image.shape)
        metrics.merge(part)
        if progress:
            progress(len(batch))
    if not stems:
        raise UserError(f"{data.path}: no test image could be read ({len(data.skipped)} skipped)")
    out.mkdir(parents=True, exist_ok=True)
    result = metrics.compute()
    scores = metrics.per_image()
    # every output is written whole or not at all (an interrupted eval leaves the old files)
    with atomic_path(out / "per_image.csv", force=True) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stem", "h", "w", "iou", "targets", "hits", "misses", "false_pixels"])
        for stem, (h, wd), s in zip(stems, shapes, scores, strict=True):
            w.writerow([stem, h, wd, f"{s.iou:.6f}", s.targets, s.hits, s.misses, s.false_pixels])
    with atomic_path(out / "roc.csv", force=True) as tmp:
        roc.write_csv(tmp)
    pd_fa_curve(roc.compute(), out / "pd_fa.png", threshold, f"{predictor.name} on {data.path}")
    worst_list = sorted(heap, reverse=True)
    for old in (out / "overlays").glob("*.png"):  # a previous eval's worst images
        old.unlink()
    for rank, (_, _, index, stem, pred) in enumerate(worst_list):
        sample = data.get(index)
        name = f"{rank + 1:02d}-{stem}.png"
        write_png(out / "overlays" / name, overlay(sample.image, pred, sample.mask))
    n, seconds = len(stems), time.perf_counter() - t_start
    keys = ("iou", "niou", "pd", "fa", "fa_corrected", "fa_legacy", "precision", "recall")
    report = {
        "data": str(data.path),
        "data_kind": data.kind,
        "split": data.split,
        "predictor": predictor.name,
        **predictor.info,
        "params": predictor.params,
        "device": predictor.device,
        "threshold": threshold,
        "rule": decision_rule(predictor, threshold),
        "fa_definition": result["fa_definition"],
        "definitions": DEFINITIONS,
        "metrics": {k: result[k] for k in keys},
        "paper_units": {
            "iou_x1e2": result["iou"] * 1e2,
            "niou_x1e2": result["niou"] * 1e2,
            "pd_x1e2": result["pd"] * 1e2,
            "fa_x1e6": result["fa"] * 1e6,
            "fa_corrected_x1e6": result["fa_corrected"] * 1e6,
            "fa_legacy_x1e6": None if result["fa_legacy"] is None else result["fa_legacy"] * 1e6,
        },
        "counts": {k: v for k, v in result.items() if isinstance(v, int)},
        "images": n,
        "comparable_to_papers": is_nudt_test(stems),
        "skipped": data.skipped,
        "worst": [f"{r + 1:02d}-{e[3]}" for r, e in enumerate(worst_list)],
        "timing": {
            "predict_s": t_pred,
            "total_s": seconds,
            "images_per_s": n / t_pred if t_pred > 0 else None,
            "batch_size": batch_size,
        },
    }
    with atomic_path(out / "metrics.json", force=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def collect_images(inputs: list[str | Path], out: Path) -> list[tuple[Path, Path]]:
    """(image path, output path relative to OUT) for files and folders (recursively, image
    extensions only, never inside OUT, nor in a dataset folder's masks/ or annotations/masks/);
    two inputs with one output name are an error."""
    from sirst5k.io import MASK_DIRS

    found: list[tuple[Path, Path]] = []
    out_abs = out.resolve()
    for item in map(Path, inputs):
        if item.is_dir():
            skip = [out_abs] + [(item / d).resolve() for d in MASK_DIRS if (item / d).is_dir()]
            for p in sorted(item.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                    if any(d in p.resolve().parents for d in skip):
                        continue
                    found.append((p, p.relative_to(item).with_suffix(".png")))
        elif item.is_file():
            found.append((item, Path(item.stem + ".png")))
        else:
            raise UserError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for src, rel in found:
        if rel in seen:
            raise UserError(
                f"{src} and {seen[rel]} would both be written to {out / rel}; rename one"
            )
        seen[rel] = src
    if not found:
        raise UserError(
            f"no image files ({', '.join(IMAGE_EXTS)}) in {', '.join(map(str, inputs))}"
        )
    return found


def predict(inputs, predictor, out: Path, threshold=0.5, limit=None, skip_bad=False,
            write_overlays=True, batch_size=None, progress=None) -> dict:  # fmt: skip
    """Write OUT/<name>.png (0/255 mask at the real size) and OUT/overlays/<name>.png.

    Every PNG is written atomically (whole or not at all); a failure part-way says how many
    masks were written before it."""
    import cv2

    from trainer.plots import overlay, write_png

    out = Path(out)
    items = collect_images(inputs, out)[: limit or None]
    batch_size = batch_size or default_batch(predictor)
    written, targets, skipped, t_pred, t0 = 0, 0, [], 0.0, time.perf_counter()
    try:
        for batch in _chunks(prefetch(lambda item: read_image(item[0]), items), batch_size):
            images, kept = [], []
            for (_, rel), got in batch:
                if isinstance(got, UserError):
                    if not skip_bad:
                        raise got
                    skipped.append(skipped_reason(got))
                else:
                    images.append(got)
                    kept.append(rel)
            if images:
                t1 = time.perf_counter()
                probs = predictor(images)
                t_pred += time.perf_counter() - t1
                for im, rel, p in zip(images, kept, probs, strict=True):
                    pred = p > threshold
                    write_png(out / rel, pred.astype(np.uint8) * 255)
                    if write_overlays:
                        write_png(out / "overlays" / rel, overlay(im, pred))
                    n_components = cv2.connectedComponents(pred.astype(np.uint8), connectivity=8)[0]
                    targets += n_components - 1
                    written += 1
            if progress:
                progress(len(batch))
    except (UserError, OSError) as e:
        why = str(e).splitlines()[0]
        raise UserError(
            f"{why} (predict stopped: {written} of {len(items)} masks were written to {out}; "
            "--skip-bad skips unreadable images)"
        ) from None
    return {
        "out": str(out),
        "written": written,
        "detections": targets,
        "skipped": skipped,
        "predict_s": t_pred,
        "total_s": time.perf_counter() - t0,
        "threshold": threshold,
        "rule": decision_rule(predictor, threshold),
    }
