"""Where ONNX Runtime spends a forward pass: each operator type's share of the kernel time.

    python benchmarks/profile_onnx.py [--checkpoint nudt] [--size 1024x1280] [--threads 1]

Exports the checkpoint (eval's attention window built in), runs --runs forward passes of one
random frame with ONNX Runtime's profiler on, and prints the operator types by their share of
the kernel time (shares hold on a busy machine; times do not). Writes nothing but the profiler's
JSON in a temporary folder.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.inference.bundled import resolve
from sirst5k.inference.export import _ort, export_onnx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="nudt")
    ap.add_argument("--size", default="1024x1280", help="HxW of the frame")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    ort = _ort()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(resolve(args.checkpoint), path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.enable_profiling = args.threads, True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).integers(0, 256, (1, 1, h, w)).astype(np.float32)
        for _ in range(args.runs):
            sess.run(None, {"image": x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    print(f"{args.size}, {args.threads} thread(s), {args.runs} runs: "
          f"{total / args.runs / 1000:.0f} ms of kernel time per run")  # fmt: skip
    for op, us in per_op.most_common(12):
        print(f"{op:24s} {100 * us / total:5.1f} %  {us / args.runs / 1000:8.1f} ms/run")


if __name__ == "__main__":
    main()
