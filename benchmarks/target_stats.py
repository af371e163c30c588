"""How targets look over their local background, in two labelled datasets: peak signal, area, and
the signal level at which each dataset's masks stop.

    python benchmarks/target_stats.py [--a NUDT-SIRST] [--b SIRST-V2-extra]   (folders)

Every 8-connected target is cut with sirst5k.ops.cut_targets (its signal: the image minus the
background inpainted over the target grown by 3 px). For each: the peak signal, the area, and
the "mask level": the fraction t of the peak (0.05, 0.10, ..., 0.95) whose region {signal >=
t * peak} best matches the labelled mask (highest IoU). A dataset whose masks stop at a lower
level annotates more of a target's halo. Writes benchmarks/out/target_stats.json and prints a
table of percentiles.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sirst5k.io import load_split, read_pair
from sirst5k.ops import cut_targets

LEVELS = np.linspace(0.05, 0.95, 19)


def stats(root: str, which: str, split: str | None) -> dict:
    pairs = load_split(root, which, split, alone=True) if split else load_split(root, which)
    peak, area, level = [], [], []
    for p in pairs:
        image, mask = read_pair(p)
        for t in cut_targets(image, mask):
            top = float(t.signal[t.mask > 0].max())
            peak.append(top)
            area.append(int(t.mask.sum()))
            if top > 5:  # a level needs a signal above the quantisation
                own = t.mask > 0
                ious = [((t.signal >= v * top) & own).sum() / ((t.signal >= v * top) | own).sum()
                        for v in LEVELS]  # fmt: skip
                level.append(float(LEVELS[int(np.argmax(ious))]))
    pct = lambda xs: [round(float(v), 3) for v in np.percentile(xs, [10, 25, 50, 75, 90])]  # noqa: E731
    return {"data": f"{root} ({which}{', ' + split if split else ''})", "targets": len(peak),
            "peak": pct(peak), "area": pct(area), "mask_level": pct(level)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", default="../shared/data/NUDT-SIRST")
    ap.add_argument("--b", default="../shared/data/SIRST-V2-extra")
    args = ap.parse_args()
    rows = [stats(args.a, "train", None),
            stats(args.b, "test", str(Path(args.b) / "splits" / "targets.txt"))]  # fmt: skip
    out = ROOT / "benchmarks" / "out" / "target_stats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print("percentiles 10 / 25 / 50 / 75 / 90")
    for r in rows:
        print(f"{r['data']}: {r['targets']} targets")
        for k in ("peak", "area", "mask_level"):
            print(f"  {k:<11}" + " / ".join(f"{v:g}" for v in r[k]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
