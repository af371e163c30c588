"""Benchmark the schema-2 store on mixed-size images: size against the real pixels, synth time,
random reads through StoreData (issue: every image padded to the largest one).

    python benchmarks/bench_store.py [--n 2000] [--compress none,gzip-1] [--nudt PATH]
                                     [--sweep] [--out benchmarks/out] [--work DIR]

1. Generates --n infrared-like grey images (NUDT-SIRST layout: images/, masks/,
   splits/50_50/{train,test}.txt, half train, half test) whose heights run from 256 to 1024 and
   widths from 256 to 1280 (uniform, multiples of 32; one 256 x 256 and one 1024 x 1280 among
   them): a smooth background, sensor noise and 0-3 small Gaussian targets per image (masks:
   their half-maximum discs), PNG level 1. Into --work (default: a temporary folder under /tmp,
   removed afterwards).
2. For each --compress value: `build_store` with the default SynthConfig, timed; the store's
   bytes against the real pixel bytes (images + masks at their own sizes) and against what
   schema 1 would have written (every row padded to the largest height x width, both arrays);
   the bytes the image array takes on disk against the real image bytes.
3. Reads (page cache warm, right after synth): --reads random /train rows through
   StoreData(in_memory=False).read (each checked against its crc32 digest), as samples/s and
   MB/s; the in-memory load (every row checked once) in seconds.
With --nudt PATH the same synth + read figures for that dataset (NUDT-SIRST: all 256 x 256) for
none, lzf, gzip-1 and gzip-4. With --sweep, the chunk size of the flat arrays is swept
(16 KiB .. 1 MiB, no image compression) on the NUDT store (or the generated one without
--nudt). With --vlen (needs --nudt), the alternative ragged design: the decoded masks of the
dataset as one HDF5 variable-length dataset (one row per mask), without and with gzip-1,
against the flat array: bytes and random row reads. Writes OUT/bench_store.json and prints
tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sirst5k import store
from sirst5k.synth import SynthConfig, build_store
from trainer.data import StoreData, available_memory

N_TARGETS_P = (0.08, 0.52, 0.25, 0.15)  # 0..3 targets per image, as sirst5k.demo


def draw_sizes(n: int, rng: np.random.Generator) -> np.ndarray:
    h = rng.integers(8, 33, n) * 32  # 256 .. 1024
    w = rng.integers(8, 41, n) * 32  # 256 .. 1280
    sizes = np.stack([h, w], 1)
    sizes[0], sizes[min(1, n - 1)] = (1024, 1280), (256, 256)
    return sizes


def make_pair(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a smooth background, sensor noise and 0-3 Gaussian targets."""
    rng = np.random.default_rng(seed)
    low = rng.normal(0, 1, (max(h // 64, 2), max(w // 64, 2))).astype(np.float32)
    bg = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img = rng.uniform(60, 140) + rng.uniform(10, 30) * bg
    img += rng.normal(0, rng.uniform(2, 6), (h, w)).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[-6:7, -6:7]
    for _ in range(rng.choice(4, p=N_TARGETS_P)):
        y, x = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
        sigma, amp = rng.uniform(0.8, 2.0), rng.uniform(30, 90)
        blob = np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
        img[y - 6 : y + 7, x - 6 : x + 7] += amp * blob
        mask[y - 6 : y + 7, x - 6 : x + 7] |= (blob >= 0.5).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def generate(root: Path, n: int, seed: int = 0) -> dict:
    """The mixed-size source dataset in the NUDT-SIRST layout; returns its sizes and bytes."""
    sizes = draw_sizes(n, np.random.default_rng(seed))
    for d in ("images", "masks", "splits/50_50"):
        (root / d).mkdir(parents=True, exist_ok=True)
    stems = [f"{i:06d}" for i in range(n)]

    def one(i: int) -> None:
        img, mask = make_pair(int(sizes[i, 0]), int(sizes[i, 1]), seed * 100_003 + i)
        level = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        cv2.imwrite(str(root / "images" / f"{stems[i]}.png"), img, level)
        cv2.imwrite(str(root / "masks" / f"{stems[i]}.png"), mask * 255, level)

    with ThreadPoolExecutor(2) as ex:
        list(ex.map(one, range(n)))
    order = np.random.default_rng(seed + 1).permutation(n)
    train, test = sorted(order[: n // 2]), sorted(order[n // 2 :])
    for name, ids in (("train", train), ("test", test)):
        (root / "splits/50_50" / f"{name}.txt").write_text("".join(f"{stems[i]}\n" for i in ids))
    png = sum(p.stat().st_size for p in (root / "images").iterdir())
    png += sum(p.stat().st_size for p in (root / "masks").iterdir())
    return {"images": n, "png_bytes": png, "pixels": int(sizes.prod(1).sum())}


def store_figures(path: Path) -> dict:
    """Bytes of the store against the real pixels and against schema 1's padded canvas."""
    out = {"store_bytes": path.stat().st_size}
    with h5py.File(path, "r") as f:
        rows = sum(len(f[g]["size"]) for g in store.GROUPS)
        real_image = sum(len(f[g]["image"]) for g in store.GROUPS)
        disk_image = sum(f[g]["image"].id.get_storage_size() for g in store.GROUPS)
        disk_mask = sum(f[g]["mask"].id.get_storage_size() for g in store.GROUPS)
        canvas = [int(v) for v in f.attrs["canvas"]]
    out |= {
        "rows": rows,
        "real_pixel_bytes": 2 * real_image,  # images + masks at their own sizes
        "schema1_bytes": 2 * rows * canvas[0] * canvas[1],  # both arrays padded to the canvas
        "image_array_bytes": disk_image,
        "mask_array_bytes": disk_mask,
        "canvas": canvas,
    }
    out["ratio_to_real"] = round(out["store_bytes"] / out["real_pixel_bytes"], 4)
    out["ratio_image_array_to_real_images"] = round(disk_image / real_image, 4)
    out["ratio_schema1_to_store"] = round(out["schema1_bytes"] / out["store_bytes"], 2)
    return out


def read_figures(path: Path, reads: int, seed: int = 0, max_s: float = 30.0) -> dict:
    """Random /train rows through StoreData streaming; then the in-memory load."""
    data = StoreData(path, in_memory=False)
    rows = np.random.default_rng(seed).integers(len(data), size=reads)
    data.read(int(rows[0]))  # open the handle
    nbytes, done = 0, 0
    t0 = time.perf_counter()
    for r in rows.tolist():
        image, mask = data.read(r)
        nbytes += image.nbytes + mask.nbytes
        done += 1
        if time.perf_counter() - t0 > max_s:
            break
    dt = time.perf_counter() - t0
    data.close()
    out = {
        "random_reads": done,
        "read_samples_per_s": round(done / dt, 1),
        "read_MB_per_s": round(nbytes / dt / 1e6, 1),
        "in_memory_load_s": None,  # skipped when it would take over a quarter of free RAM
    }
    with h5py.File(path, "r") as f:
        real = 2 * len(f["train/image"])
    if real < available_memory() // 4:
        t1 = time.perf_counter()
        mem = StoreData(path, in_memory=True)
        out["in_memory_load_s"] = round(time.perf_counter() - t1, 3)
        assert mem.in_memory
        del mem
    return out


def synth_and_read(source: Path, dest: Path, compress: str, reads: int) -> dict:
    c0 = time.process_time()
    res = build_store(source, dest, SynthConfig(), force=True, compress=compress)
    cpu = time.process_time() - c0
    out = {"compress": compress, "synth_s": round(res["seconds"], 3), "synth_cpu_s": round(cpu, 3)}
    out |= {k: res[k] for k in ("originals", "negatives", "test")}
    out |= store_figures(dest) | read_figures(dest, reads)
    return out


def sweep(source: Path, work: Path, reads: int) -> list[dict]:
    """The flat arrays' chunk size, 16 KiB .. 1 MiB (no image compression)."""
    out = []
    default = store.CHUNK
    try:
        for chunk in (1 << 14, 1 << 16, 1 << 18, 1 << 20):
            store.CHUNK = chunk
            r = synth_and_read(source, work / f"chunk{chunk}.h5", "none", reads)
            out.append({"chunk": chunk} | r)
            (work / f"chunk{chunk}.h5").unlink()
            print(f"chunk {chunk >> 10} KiB: {r['read_samples_per_s']} samples/s, load "
                  f"{r['in_memory_load_s']} s, synth {r['synth_s']} s", flush=True)  # fmt: skip
    finally:
        store.CHUNK = default
    return out


def vlen_figures(source: Path, work: Path, reads: int) -> list[dict]:
    """Masks of the dataset's decoded pairs as vlen rows (-/+ gzip-1) and as a flat array."""
    from sirst5k import io as ds

    pairs = ds.load_split(source, "train") + ds.load_split(source, "test")
    with ThreadPoolExecutor(2) as ex:
        masks = [m.ravel() for _, m in ex.map(ds.read_pair, pairs)]
    offset, total = store.row_offsets(np.array([[1, len(m)] for m in masks]))
    rows = np.random.default_rng(0).integers(len(masks), size=reads).tolist()
    out = []
    for design, filt in (("vlen", {}), ("vlen", store.MASK_FILTER),
                         ("flat", {}), ("flat", store.MASK_FILTER)):  # fmt: skip
        path = work / "design.h5"
        t0 = time.perf_counter()
        with h5py.File(path, "w") as f:
            if design == "vlen":
                d = f.create_dataset("mask", (len(masks),), h5py.vlen_dtype(np.uint8),
                                     chunks=(64,), **filt)  # fmt: skip
                for i, m in enumerate(masks):  # h5py turns equal-length rows into 2-D
                    d[i] = m
            else:
                d = f.create_dataset("mask", (total,), np.uint8, chunks=(store.CHUNK,),
                                     maxshape=(None,), **filt)  # fmt: skip
                d[...] = np.concatenate(masks)
        write = time.perf_counter() - t0
        with h5py.File(path, "r") as f:
            d = f["mask"]
            t0 = time.perf_counter()
            for r in rows:
                if design == "vlen":
                    store.crc(d[r])
                else:
                    store.crc(d[offset[r] : offset[r] + len(masks[r])])
            rate = len(rows) / (time.perf_counter() - t0)
        out.append({"design": design, "filter": filt.get("compression", "none"),
                    "bytes": path.stat().st_size, "pixel_bytes": total,
                    "write_s": round(write, 3), "read_rows_per_s": round(rate, 1)})  # fmt: skip
        path.unlink()
        print(f"{design} {out[-1]}", flush=True)
    return out


def table(title: str, results: list[dict], key: str = "compress") -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in (key, "store MB", "real px MB", "store/real", "img array/real img",
                "schema 1 MB", "synth s", "reads/s", "MB/s", "load s"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in results:
        t.add_row(
            str(r[key]),
            f"{r['store_bytes'] / 1e6:.1f}",
            f"{r['real_pixel_bytes'] / 1e6:.1f}",
            f"{r['ratio_to_real']:.3f}",
            f"{r['ratio_image_array_to_real_images']:.3f}",
            f"{r['schema1_bytes'] / 1e6:.0f}",
            f"{r['synth_s']:.2f}",
            f"{r['read_samples_per_s']:.0f}",
            f"{r['read_MB_per_s']:.0f}",
            "-" if r["in_memory_load_s"] is None else f"{r['in_memory_load_s']:.2f}",
        )
    Console(width=160).print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="generated images (0: none)")
    ap.add_argument("--compress", default="none,gzip-1", help="comma-separated synth --compress")
    ap.add_argument("--reads", type=int, default=2000, help="random rows read (30 s at most)")
    ap.add_argument("--nudt", type=Path, default=None, help="also measure this dataset")
    ap.add_argument("--sweep", action="store_true", help="sweep the chunk size")
    ap.add_argument("--vlen", action="store_true", help="compare vlen rows (needs --nudt)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--work", type=Path, default=None, help="keep the data here (default: tmp)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_store.", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    report: dict = {"n": args.n, "reads": args.reads}
    try:
        src = work / "mixed"
        report["mixed"] = []
        if args.n > 0:
            t0 = time.perf_counter()
            if not (src / "splits/50_50/test.txt").is_file():
                report["dataset"] = generate(src, args.n)
                report["generate_s"] = round(time.perf_counter() - t0, 1)
            else:
                report["dataset"] = {"images": args.n, "reused": str(src)}
            print(f"dataset: {report['dataset']}", flush=True)
            for c in args.compress.split(","):
                r = synth_and_read(src, work / "mixed.h5", c, args.reads)
                report["mixed"].append(r)
                print(f"mixed {c}: {r}", flush=True)
            (work / "mixed.h5").unlink(missing_ok=True)
        if args.nudt:
            report["nudt"] = []
            for c in ("none", "lzf", "gzip-1", "gzip-4"):
                r = synth_and_read(args.nudt, work / "nudt.h5", c, args.reads)
                report["nudt"].append(r)
                print(f"nudt {c}: {r}", flush=True)
        if args.sweep and (args.nudt or args.n > 0):
            report["sweep"] = sweep(args.nudt or src, work, args.reads)
        if args.vlen and args.nudt:
            report["vlen"] = vlen_figures(args.nudt, work, args.reads)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report |= {
        "loadavg_before_after": [round(x, 2) for x in load_before + os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "chunk": store.CHUNK,
    }
    none = next((r for r in report["mixed"] if r["compress"] == "none"), None)
    if none:
        report["targets_met"] = {
            "store_within_1.1x_real_uncompressed": none["ratio_to_real"] <= 1.1,
            "image_array_within_1.1x_real_images": none["ratio_image_array_to_real_images"] <= 1.1,
        }
    (args.out / "bench_store.json").write_text(json.dumps(report, indent=2) + "\n")
    if report["mixed"]:
        table(f"bench_store: {args.n} mixed-size images, load {report['loadavg_before_after']}",
              report["mixed"])  # fmt: skip
    if args.nudt:
        table(f"bench_store: {args.nudt}", report["nudt"])
    for r in report.get("vlen", []):
        print(f"{r['design']:4s} {r['filter']:5s} {r['bytes'] / 1e6:8.1f} MB for "
              f"{r['pixel_bytes'] / 1e6:.1f} MB of mask pixels, write {r['write_s']:.2f} s, "
              f"{r['read_rows_per_s']:.0f} random rows/s")  # fmt: skip
    if report.get("sweep"):
        table("chunk size sweep (no image compression)", report["sweep"], key="chunk")
    print(f"wrote {args.out / 'bench_store.json'}")


if __name__ == "__main__":
    main()
