"""Make sirst5k/inference/weights/nudt.pt, the bundled model, from a training run
(`make bundle RUN=...`).

    python benchmarks/bundle_model.py runs/gate/fresh-s42 [--source ../shared/data/NUDT-SIRST]

Takes RUN/best.pt, keeps the model (weights as float16: half the size; they load as float32),
its config and a card: the run's recipe and command, and the metrics of exactly these float16
weights on the NUDT-SIRST test split, on SIRST-V2-extra (its 87 target frames, and Fa on its 102
target-free frames) and on sirst5k.inference.bundled.FIXTURE (generated demo data, which a test
re-evaluates). Writes the card as JSON beside docs/model-card.md's numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.api import evaluate
from sirst5k.demo import DemoConfig, generate_demo
from sirst5k.inference.bundled import BUNDLED, FIXTURE
from sirst5k.store import read_attrs
from trainer.checkpoint import SCHEMA, read_checkpoint, save_checkpoint
from trainer.config import flatten

KEYS = ("iou", "niou", "pd", "fa")


def scores(report: dict) -> dict:
    return {k: report["metrics"][k] for k in KEYS} | {"images": report["images"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--source", default="../shared/data/NUDT-SIRST")
    ap.add_argument("--real", default="../shared/data/SIRST-V2-extra")
    ap.add_argument("--name", default="nudt")
    args = ap.parse_args()
    best = read_checkpoint(args.run / "best.pt")
    cfg = flatten(best["config"])  # grouped, or flat in runs saved before the grouping
    ckpt = {
        "schema": SCHEMA,
        "model": {k: v.half() if v.is_floating_point() else v for k, v in best["model"].items()},
        "model_config": best["model_config"],
        "config": best["config"],
        "epoch": best["epoch"],
        "best": best["best"],
        "params": best.get("params"),
    }
    card = {
        "name": args.name,
        "date": date.today().isoformat(),
        "run": str(args.run),
        "recipe": {
            k: cfg.get(k)
            for k in (
                "preset",
                "epochs",
                "batch_size",
                "crop",
                "flips",
                "max_minutes",
                "fit_budget",
                "optimizer",
                "lr",
                "warmup",
                "neg_loss",
                "on_the_fly",
                "alpha_range",
                "originals_only",
                "kinds",
                "implant_share",
                "background_share",
                "photometric",
                "scale_range",
                "seed",
                "val_fraction",
            )
        },  # fmt: skip
        "model": best["model_config"],
        "best_epoch": best["epoch"],
        "validation": best["best"],
        "weights": "float16 (loaded as float32)",
        "metrics": {},
    }
    if Path(cfg["store"]).is_file():  # how the store was synthesized (its frames, gains, ...)
        card["store"] = read_attrs(cfg["store"])["params"]
    # --fit-budget refits the epochs after every epoch: the run's last count is in config.json
    final = args.run / "config.json"
    if final.is_file():
        card["recipe"]["epochs"] = flatten(json.loads(final.read_text()))["epochs"]
    out = BUNDLED[args.name]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_checkpoint(ckpt, tmp / "m.pt")
        generate_demo(tmp / "fixture", DemoConfig(**FIXTURE))
        runs = {"fixture": [tmp / "fixture"]}
        if Path(args.source).is_dir():
            runs["nudt_test"] = [args.source]
        real = Path(args.real)
        if real.is_dir():
            runs["sirst_v2_targets"] = [real, real / "splits" / "targets.txt"]
            runs["sirst_v2_background"] = [real, real / "splits" / "background.txt"]
        for name, (data, *split) in runs.items():
            report = evaluate(data, checkpoint=tmp / "m.pt", split=split[0] if split else None,
                              out=tmp / f"ev-{name}", worst=0, device="cpu")  # fmt: skip
            card["metrics"][name] = scores(report)
            shown = {k: v if v is None else round(v, 6) for k, v in card["metrics"][name].items()}
            print(name, shown, flush=True)
        ckpt["card"] = card
        save_checkpoint(ckpt, out)
    (ROOT / "docs" / f"model-card-{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and docs/model-card-{args.name}.json")


if __name__ == "__main__":
    main()
