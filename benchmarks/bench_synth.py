"""Benchmark `sirst5k synth` against an I/O floor measured in the same run (issue item 12).

    python benchmarks/bench_synth.py --source ../shared/data/NUDT-SIRST [--out benchmarks/out]

synth: build_store(SOURCE) with the default parameters (alpha 0.1, s 3, grid 8), train split
synthesized + test split copied, as `sirst5k synth` runs it (without the progress bar).
I/O floor: the work no implementation can avoid: decode every PNG of both splits (same reader,
same 4-thread pool) and write the same bytes to HDF5, i.e. the store's schema-2 datasets
(store.create_split: flat pixel arrays, 64 KiB chunks, gzip-1 masks) filled with the decoded
images (originals repeated in the negative rows), in the same 64-row blocks; no digests.
Also reported: decode only, and decode + writing the decoded images once. Each figure is the
median of --repeat runs after one warm-up run.
Writes OUT/bench_synth.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sirst5k import io as ds
from sirst5k import store
from sirst5k.synth import SynthConfig, build_store


def decode_all(source: Path) -> tuple[list, list]:
    pairs = {n: ds.load_split(source, n) for n in ("train", "test")}
    with ThreadPoolExecutor(4) as ex:
        return tuple(list(ex.map(ds.read_pair, pairs[n])) for n in ("train", "test"))


def write_rows(g: h5py.Group, rows: list[tuple[np.ndarray, np.ndarray]]) -> None:
    block, at = 64, 0
    for b in range(0, len(rows), block):
        chunk = rows[b : b + block]
        n = sum(img.size for img, _ in chunk)
        g["image"][at : at + n] = np.concatenate([img.ravel() for img, _ in chunk])
        g["mask"][at : at + n] = np.concatenate([mask.ravel() for _, mask in chunk])
        at += n


def floor(source: Path, dest: Path, n_train_rows: int | None) -> float:
    """Decode everything, then write n_train_rows train rows (None: the decoded ones) + test."""
    t0 = time.perf_counter()
    train, test = decode_all(source)
    if n_train_rows == 0:
        return time.perf_counter() - t0
    rows = train if n_train_rows is None else [train[i % len(train)] for i in range(n_train_rows)]
    with h5py.File(dest, "w") as f:
        for name, part in (("train", rows), ("test", test)):
            sizes = np.array([im.shape for im, _ in part], np.int32)
            write_rows(store.create_split(f, name, sizes), part)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=Path("../shared/data/NUDT-SIRST"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.source.is_dir():
        sys.exit(f"{args.source}: no such dataset; pass --source PATH (e.g. NUDT-SIRST)")
    args.out.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {k: [] for k in ("synth", "floor", "decode", "decode_write")}
    cpu: dict[str, list[float]] = {"synth": [], "floor": []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        tmp = Path(tmp)
        res = build_store(args.source, tmp / "s.h5", SynthConfig())  # warm-up: page cache
        n_rows = res["originals"] + res["negatives"]
        for _ in range(args.repeat):
            c0 = time.process_time()  # CPU seconds of all threads: less sensitive to other load
            res = build_store(args.source, tmp / "s.h5", SynthConfig(), force=True)
            c1 = time.process_time()
            times["synth"].append(res["seconds"])
            times["floor"].append(floor(args.source, tmp / "f.h5", n_rows))
            cpu["synth"].append(c1 - c0)
            cpu["floor"].append(time.process_time() - c1)
            times["decode"].append(floor(args.source, tmp / "d.h5", 0))
            times["decode_write"].append(floor(args.source, tmp / "w.h5", None))
        floor_bytes = (tmp / "f.h5").stat().st_size
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "source": str(args.source),
        "counts": {k: res[k] for k in ("originals", "targets", "negatives", "noise_pool", "test")},
        "store_bytes": res["bytes"],
        "floor_bytes": floor_bytes,
        "synth_s": round(med["synth"], 3),
        "floor_s": round(med["floor"], 3),
        "ratio_synth_to_floor": round(med["synth"] / med["floor"], 3),
        "decode_s": round(med["decode"], 3),
        "decode_write_decoded_s": round(med["decode_write"], 3),
        "ratio_per_run": [
            round(a / b, 3) for a, b in zip(times["synth"], times["floor"], strict=True)
        ],
        "cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "runs": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "loadavg_before_after": [round(x, 2) for x in load_before + os.getloadavg()],
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "targets_met": {
            "under_6s": med["synth"] < 6.0,
            "within_2x_floor": med["synth"] < 2 * med["floor"],
        },
    }
    (args.out / "bench_synth.json").write_text(json.dumps(report, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"bench_synth (median of {args.repeat}), load {report['loadavg_before_after']}")
    t.add_column("measure")
    t.add_column("seconds", justify="right")
    t.add_row(f"synth (store of {n_rows} + {res['test']} rows)", f"{med['synth']:.2f}")
    t.add_row("I/O floor (decode + write same bytes)", f"{med['floor']:.2f}")
    t.add_row("ratio synth / floor", f"{med['synth'] / med['floor']:.2f}")
    t.add_row(
        "CPU seconds synth / floor",
        f"{report['cpu_s']['synth']:.2f} / {report['cpu_s']['floor']:.2f}",
    )
    t.add_row("decode only", f"{med['decode']:.2f}")
    t.add_row("decode + write decoded images once", f"{med['decode_write']:.2f}")
    Console().print(t)
    print(f"wrote {args.out / 'bench_synth.json'}")


if __name__ == "__main__":
    main()
