"""The whole pipeline from Python, on the project's own generated demo data (about a minute).

    python examples/python_api.py [WORKDIR]

The same four calls work on a real dataset folder (images/, masks/, split files).
"""

import sys
import tempfile
from pathlib import Path

import torch

from sirst5k import evaluate, load_model, synthesize, train
from sirst5k.demo import DemoConfig, generate_demo

work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="sirst5k-"))
generate_demo(work / "source", DemoConfig(), force=True)

synthesize(work / "source", work / "store.h5", force=True)  # the SIRST-5K store
summary = train(work / "store.h5", work / "run", preset="demo", device="cpu", force=True)
report = evaluate(work / "store.h5", checkpoint=work / "run" / "best.pt")
print(f"trained {summary['epochs_done']} epochs; test IoU {report['paper_units']['iou_x1e2']:.2f}")

model = load_model(work / "run" / "best.pt")  # a plain torch module: raw 0..255 grey in
with torch.inference_mode():
    logits = model(torch.full((1, 1, 128, 128), 100.0))[0]
print(f"logits {tuple(logits.shape)}; outputs in {work}")
