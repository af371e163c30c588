"""Evaluation and prediction: the library behind `sirst5k eval` and `sirst5k predict`.

eval: iterate the test images of a store (its test group: real-size rows, each checked against
its crc32 digest) or of a dataset folder (dataset.load_split), run a predictor (a checkpoint or
a classical method from sirst5k.detectors), accumulate sirst5k.metrics, and write
metrics.json, per_image.csv, roc.csv, pd_fa.png and overlays of the worst images. predict: the same
predictors on a user's files.

Networks see each image zero-padded at the bottom/right to a multiple of `model.stride`
(trainer.forward.pad_to_stride, as in validation during training); the logits are cropped
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
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sirst5k.errors import StoreError, UserError, skipped_reason
from sirst5k.files import atomic_path, safe_name, write_error
from sirst5k.fmt import fmt
from sirst5k.inference.bundled import resolve
from sirst5k.inference.predictors import Inference, decision_rule, default_batch, make_predictor
from sirst5k.io import collect_images, find_split_file, load_split, read_image, read_pair
from sirst5k.metrics import FA_CORRECTED, FA_LEGACY, Metrics, RocSweep
from sirst5k.plots import overlay, pd_fa_curve, write_png
from sirst5k.reference import is_nudt_test
from sirst5k.store import read_attrs, read_split

DEFINITIONS = {
    "iou": "foreground IoU, intersections and unions summed over the set, divided once",
    "niou": "mean over images of per-image IoU (empty union counts 0)",
    "null": "undefined, a ratio over nothing: pd and recall without targets, iou and niou with "
    "nothing target or predicted, precision with nothing predicted",
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


def _times(v: float | None, scale: float) -> float | None:
    """A metric in paper units; None (undefined) stays None."""
    return None if v is None else v * scale


def _badness(s) -> tuple:
    """Worst first: low IoU (an image with nothing to find and nothing found is perfect), then
    misses, then false pixels."""
    iou = 1.0 if s.targets == 0 and s.false_pixels == 0 else s.iou
    return (1.0 - iou, s.misses, s.false_pixels)


def evaluate(data: EvalData, predictor, out: Path, threshold=0.5, legacy_fa=False,
             batch_size=None, worst=8, progress=None) -> dict:  # fmt: skip
    """Run `predictor` over `data`, write every output into `out`, return metrics.json's dict.

    Each file is written whole or not at all. The previous metrics.json is deleted before any
    other file is written and the new one is written last, so a metrics.json present always
    belongs to the per_image.csv, roc.csv, pd_fa.png and overlays/ beside it (an eval killed
    part-way leaves none). Overlays are named by rank and each image's name reduced to a plain
    base name (files.safe_name): data cannot put a file outside `out`."""
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
    # metrics.json goes first and comes back last: it vouches for the files beside it
    (out / "metrics.json").unlink(missing_ok=True)
    with atomic_path(out / "per_image.csv", force=True) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stem", "h", "w", "iou", "targets", "hits", "misses", "false_pixels"])
        for stem, (h, wd), s in zip(stems, shapes, scores, strict=True):
            iou = fmt(s.iou, 6, "n/a")  # None: nothing to find, nothing found
            w.writerow([stem, h, wd, iou, s.targets, s.hits, s.misses, s.false_pixels])
    with atomic_path(out / "roc.csv", force=True) as tmp:
        roc.write_csv(tmp)
    pd_fa_curve(roc.compute(), out / "pd_fa.png", threshold, f"{predictor.name} on {data.path}")
    worst_list = sorted(heap, reverse=True)
    names = [f"{r + 1:02d}-{safe_name(e[3])}" for r, e in enumerate(worst_list)]  # ranked: unique
    for old in (out / "overlays").glob("*.png"):  # a previous eval's worst images
        old.unlink()
    for name, (_, _, index, _, pred) in zip(names, worst_list, strict=True):
        sample = data.get(index)
        write_png(out / "overlays" / f"{name}.png", overlay(sample.image, pred, sample.mask))
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
            "iou_x1e2": _times(result["iou"], 1e2),
            "niou_x1e2": _times(result["niou"], 1e2),
            "pd_x1e2": _times(result["pd"], 1e2),
            "fa_x1e6": _times(result["fa"], 1e6),
            "fa_corrected_x1e6": _times(result["fa_corrected"], 1e6),
            "fa_legacy_x1e6": _times(result["fa_legacy"], 1e6),
        },
        "counts": {k: v for k, v in result.items() if isinstance(v, int)},
        "images": n,
        "comparable_to_papers": is_nudt_test(stems),
        "skipped": data.skipped,
        "worst": names,
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


def check_outputs(items, out: Path, overlays: bool, force: bool, limit=None) -> None:
    """Refuse, before anything runs, predict's outputs for `items` (collect_images) that would
    overwrite an input (even with force) or each other, and, without force, existing files."""
    inputs = {src.resolve(): src for src, _ in items}
    planned: dict[Path, Path] = {}
    for src, rel in items[: limit or None]:
        for dest in [out / rel, out / "overlays" / rel] if overlays else [out / rel]:
            if dest.resolve() in inputs:
                raise UserError(
                    f"-o {out}: {dest} would overwrite the input image "
                    f"{inputs[dest.resolve()]}; choose an output folder apart from the images"
                )
            if dest in planned:
                raise UserError(f"{src} and {planned[dest]} would both be written to {dest}; "
                                "rename one")  # fmt: skip
            planned[dest] = src
    existing = [dest for dest in planned if dest.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more output files)" if len(existing) > 1 else ""
        raise UserError(
            f"{existing[0]} exists{more}; pass --force to replace, or choose another -o"
        )


def predict(inputs, predictor, out: Path, threshold=0.5, limit=None, skip_bad=False,
            write_overlays=True, batch_size=None, progress=None, force=False) -> dict:  # fmt: skip
    """Write OUT/<name>.png (0/255 mask at the real size) and OUT/overlays/<name>.png.

    No output may be an input; existing files are replaced only with `force` (check_outputs,
    before anything runs). Every PNG is written atomically (whole or not at all); a failure
    part-way says how many masks were written before it."""
    out = Path(out)
    items = collect_images(inputs, out)
    check_outputs(items, out, write_overlays, force, limit)
    items = items[: limit or None]
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
                    written += 1
                    n_components = cv2.connectedComponents(pred.astype(np.uint8), connectivity=8)[0]
                    targets += n_components - 1
                    if write_overlays:
                        write_png(out / "overlays" / rel, overlay(im, pred))
            if progress:
                progress(len(batch))
    except UserError as e:
        raise UserError(
            f"{str(e).splitlines()[0]} (predict stopped: {written} of {len(items)} masks were "
            f"written to {out}; --skip-bad skips unreadable images)"
        ) from None
    except OSError as e:  # a full or read-only disk
        raise UserError(
            f"{write_error(out, e)}; predict stopped: {written} of {len(items)} masks were "
            f"written to {out}"
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


def compare(
    data: str | Path,
    *,
    checkpoints: list[str | Path] = (),
    methods: list[str] = (),
    out: str | Path = "runs/compare",
    split: str | Path | None = None,
    k: dict[str, float] | None = None,
    run: Inference = Inference(),
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Evaluate every checkpoint (a run folder means its best.pt) and classical method on the
    same DATA with the same metrics, like the paper's Table I; write OUT/compare.csv and
    OUT/compare.md and each evaluation into OUT/<name>/. `k` maps a method to its k; `run`
    says how the networks run (its batch_size applies to all). Every entry is loaded and
    checked before any runs. A checkpoint is named by its run folder, with as many parent
    folders as make the names unique. Returns one row per entry."""
    k = dict(k or {})
    if unknown := sorted(set(k) - set(methods)):
        raise UserError(f"--k {unknown[0]}=...: {unknown[0]} is not among the --method given")
    for m, v in k.items():
        if not math.isfinite(v):
            raise UserError(f"--k {m}={v}: give a finite number, e.g. {m}=3")
    if run.threshold is not None and not 0 <= run.threshold <= 1:  # nan too
        raise UserError(f"--threshold {run.threshold}: give a probability in [0, 1], e.g. 0.5")
    paths = [resolve(c) for c in checkpoints]  # a run folder: its best.pt
    if len(set(map(Path.resolve, paths))) < len(paths):
        raise UserError("compare: a checkpoint is given twice")
    names = list(methods) + _unique_names(paths)
    if not names:
        raise UserError("compare: give at least one run, checkpoint or --method")
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"compare: two entries are named {clash[0]!r}; rename the run folder")
    predictors = [make_predictor(method=m, k=k.get(m)) for m in methods]
    predictors += [run.predictor(p) for p in paths]
    threshold, out = run.decision_threshold, Path(out)
    rows = []
    for name, predictor in zip(names, predictors, strict=True):
        if progress:
            progress(name)
        source = open_data(data, split, False)
        r = evaluate(source, predictor, out / name, threshold, batch_size=run.batch_size, worst=0)
        pu = r["paper_units"]
        rows.append({
            "name": name, "iou": pu["iou_x1e2"], "niou": pu["niou_x1e2"], "pd": pu["pd_x1e2"],
            "fa": pu["fa_x1e6"], "params_m": r["params"] / 1e6 if r["params"] else None,
            "images_per_s": r["timing"]["images_per_s"], "images": r["images"],
            "rule": r["rule"] + (", tta 8" if r.get("tta") else ""),
        })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    keys, scores = list(rows[0]), ("iou", "niou", "pd", "fa")  # a None score: undefined, n/a
    with atomic_path(out / "compare.csv", force=True) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows({k: "n/a" if v is None and k in scores else v for k, v in r.items()}
                    for r in rows)  # fmt: skip

    md = [
        f"Data: {data} ({rows[0]['images']} images). IoU, nIoU, Pd x1e2; Fa x1e6 (corrected).",
        "",
        "| method | IoU | nIoU | Pd | Fa | params (M) | images/s | rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [fmt(r[k], 1 if k == "fa" else 2, "n/a") for k in scores]
        cells += [fmt(r["params_m"]), fmt(r["images_per_s"], 1), r["rule"]]
        md.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    with atomic_path(out / "compare.md", force=True) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    return rows


def _unique_names(paths: list[Path]) -> list[str]:
    """Each checkpoint's name: its run folder (best.pt) or file stem, with as many parent
    folders in front as make the names unique ("a/run", "b/run")."""

    def name(p: Path, depth: int) -> str:
        parts = (p.parent if p.name == "best.pt" else p.with_suffix("")).resolve().parts
        return "/".join(parts[-depth:])

    depth = {p: 1 for p in paths}
    while True:
        names = [name(p, depth[p]) for p in paths]
        clash = {n for n in names if names.count(n) > 1}
        if not clash:
            return names
        grown = False
        for p, n in zip(paths, names, strict=True):
            if n in clash and depth[p] < len(p.resolve().parts):
                depth[p] += 1
                grown = True
        if not grown:
            return names
