"""Would int8 quantization make large frames fast enough? ONNX Runtime's static quantization
of the exported model, timed against float32 and checked for what it costs in IoU.

    python benchmarks/bench_int8.py [--checkpoint nudt] [--source ../shared/data/NUDT-SIRST]

Exports the checkpoint (eval's attention window built in), quantizes it three ways with
onnxruntime.quantization.quantize_static (QDQ all operators, QOperator all operators, QDQ
convolutions only; per-channel int8 weights, uint8 activations, calibrated on 32 train
images), times one 1024 x 1280 frame (best of --runs, --threads threads) and scores every
variant on 100 other train images (IoU at 0.5 against the masks: a comparison between the
variants, not a test score). Writes benchmarks/out/bench_int8.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.inference.bundled import resolve
from sirst5k.inference.export import _ort, export_onnx
from sirst5k.io import load_split, read_image, read_pair
from sirst5k.machine import describe_cpu

VARIANTS = {  # name: (format, operator types quantized; None = all)
    "qdq-all": ("QDQ", None),
    "qoperator-all": ("QOperator", None),
    "qdq-conv": ("QDQ", ["Conv"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="nudt")
    ap.add_argument("--source", default=str(ROOT.parent / "shared/data/NUDT-SIRST"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ort = _ort()
    from onnxruntime import quantization as q

    class Feed(q.CalibrationDataReader):
        def __init__(self, items):
            self.items = iter(items)

        def get_next(self):
            return next(self.items, None)

    train = load_split(args.source, "train")
    calib, scored = train[::20][:32], train[5::13][:100]
    feeds = [{"image": read_image(p.image)[None, None].astype(np.float32)} for p in calib]
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        export_onnx(resolve(args.checkpoint), fp32)
        q.shape_inference.quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        paths = {"float32": fp32}
        for name, (fmt, ops) in VARIANTS.items():
            paths[name] = Path(tmp) / f"{name}.onnx"
            q.quantize_static(
                str(pre), str(paths[name]), Feed(feeds), quant_format=getattr(q.QuantFormat, fmt),
                activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                per_channel=True, op_types_to_quantize=ops,
            )  # fmt: skip
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                    for k, p in paths.items()}  # fmt: skip
        frame = (np.random.default_rng(0).random((1, 1, 1024, 1280)) * 255).astype(np.float32)
        times = {k: [] for k in sessions}
        for _ in range(args.runs):  # interleaved, so a busy machine weighs on all alike
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {"image": frame})
                times[k].append(time.perf_counter() - t0)
        inter, union = dict.fromkeys(sessions, 0), dict.fromkeys(sessions, 0)
        for p in scored:
            image, mask = read_pair(p)
            for k, s in sessions.items():
                pred = s.run(None, {"image": image[None, None].astype(np.float32)})[0][0, 0] > 0.5
                inter[k] += int((pred & (mask > 0)).sum())
                union[k] += int((pred | (mask > 0)).sum())
    rows = {k: {"s_per_frame": min(times[k]), "iou": 100 * inter[k] / union[k]} for k in sessions}
    base = rows["float32"]
    for r in rows.values():
        r["speedup"], r["iou_change"] = (
            base["s_per_frame"] / r["s_per_frame"],
            r["iou"] - base["iou"],
        )
    out = ROOT / "benchmarks" / "out" / "bench_int8.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"cpu": describe_cpu(), "threads": args.threads, "runs": args.runs, "rows": rows}
    out.write_text(json.dumps(record, indent=2))
    print(f"1024 x 1280, {args.threads} thread(s), best of {args.runs}; IoU on 100 train images")
    print("| variant | s/frame | speed-up | IoU | IoU change |\n|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['s_per_frame']:.3f} | {r['speedup']:.2f}x | {r['iou']:.2f} | "
              f"{r['iou_change']:+.2f} |")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
