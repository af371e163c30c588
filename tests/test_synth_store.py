"""The store written by build_store: contents checked by independent routes, determinism,
atomicity, inspect on good and damaged stores, and the NUDT-SIRST counts when the data is here."""

import shutil

import cv2
import h5py
import numpy as np
import pytest
from conftest import NUDT
from scipy import ndimage

from sirst5k import io as ds
from sirst5k import store, synth
from sirst5k.errors import StoreError
from sirst5k.inspect_store import verify
from sirst5k.synth import SynthConfig, build_store


def _targets(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=np.ones((3, 3)))[1]


def test_demo_store_contents(demo_source, demo_store):
    train = store.read_split(demo_store, "train")
    test = store.read_split(demo_store, "test")
    attrs = store.read_attrs(demo_store)
    pairs = ds.load_split(demo_source, "train")
    test_pairs = ds.load_split(demo_source, "test")
    n = len(pairs)
    c = train.columns
    assert (c["kind"][:n] == store.KIND_ORIGINAL).all()
    assert (c["kind"][n:] == store.KIND_NEGATIVE).all()
    # originals: the source pixels at their real size (nothing padded)
    z_total = 0
    for i, p in enumerate(pairs):
        img, mask = ds.read_pair(p)
        h, w = img.shape
        assert tuple(c["size"][i]) == (h, w) and attrs["sources"][c["source"][i]] == p.stem
        got_img, got_mask = train.row(i)
        assert np.array_equal(got_img, img) and np.array_equal(got_mask, mask)
        z_total += _targets(mask)
    assert len(train.image) == int(c["size"].astype(np.int64).prod(1).sum())  # no padding
    assert len(train) - n == 4 * z_total
    neg = slice(n, None)
    assert (c["noise_source"][neg] != c["source"][neg]).all() and (
        c["noise_source"][neg] >= 0
    ).all()
    assert sorted(np.unique(c["group"][neg], return_counts=True)[1]) == [4] * z_total
    # within a group, all rotations differ from rotation 0 only inside one s x s box
    for gid in range(z_total):
        rows = np.flatnonzero(c["group"] == gid)
        assert c["rotation"][rows].tolist() == [0, 90, 180, 270]
        base = train.row(rows[0])[0].astype(int)
        for r in rows[1:]:
            ys, xs = np.nonzero(train.row(r)[0].astype(int) != base)
            if len(ys):
                assert ys.max() - ys.min() < 3 and xs.max() - xs.min() < 3
        # rotation 0 holds the original mask (I_mix does not move labels)
        assert (train.row(rows[0])[1] == train.row(c["source"][rows[0]])[1]).all()
    # test split copied unchanged
    for i, p in enumerate(test_pairs):
        img, mask = ds.read_pair(p)
        assert np.array_equal(test.row(i)[0], img) and np.array_equal(test.row(i)[1], mask)
        assert attrs["sources"][test.columns["source"][i]] == p.stem
    assert attrs["params"]["alpha"] == 0.1 and attrs["params"]["s"] == 3
    assert attrs["canvas"] == (64, 64) and len(set(map(tuple, c["size"]))) > 1  # mixed sizes
    assert verify(demo_store)["negatives"] == 4 * z_total


def test_alpha_zero_s_one_negatives_equal_originals(demo_source, tmp_path):
    out = tmp_path / "s.h5"
    build_store(demo_source, out, SynthConfig(alpha=0.0, s=1))
    train = store.read_split(out, "train")
    c = train.columns
    neg = np.flatnonzero(c["kind"] == store.KIND_NEGATIVE)
    assert len(neg) and (c["noise_source"][neg] == -1).all()
    src = c["source"][neg]
    image, mask = train.padded()
    assert (image[neg] == image[src]).all()
    assert (mask[neg] == mask[src]).all()


def test_mixing_matches_formula_on_store(demo_source, tmp_path):
    """alpha = 1: I_mix outside the rotated box is exactly the resized noise cell (Eq. 2-3)."""
    out = tmp_path / "a1.h5"
    cfg = SynthConfig(alpha=1.0, s=1, resize="nearest", grid=4)
    build_store(demo_source, out, cfg)
    train = store.read_split(out, "train")
    c = train.columns
    row = int(np.flatnonzero(c["kind"] == store.KIND_NEGATIVE)[0])
    h, w = c["size"][row]
    noise_img = train.row(c["noise_source"][row])[0]  # originals come first, source == row
    got = train.row(row)[0]
    # nearest-resized 4x4-grid cell: constant over blocks; its values must all occur in one cell
    nh, nw = c["size"][c["noise_source"][row]] // 4
    cells = [
        noise_img[r * nh : (r + 1) * nh, q * nw : (q + 1) * nw] for r in range(4) for q in range(4)
    ]
    matches = [
        cell for cell in cells if (cv2.resize(cell, (int(w), int(h)), interpolation=0) == got).all()
    ]
    assert matches, "the negative is not a nearest resize of any cell of its noise source"


def test_same_seed_same_bytes_other_seed_other_noise(demo_source, tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    build_store(demo_source, a, SynthConfig(seed=3))
    build_store(demo_source, b, SynthConfig(seed=3))
    build_store(demo_source, c, SynthConfig(seed=4))
    ta, tb, tc = (store.read_split(p, "train") for p in (a, b, c))
    assert (ta.image == tb.image).all() and (ta.mask == tb.mask).all()
    assert all((ta.columns[k] == tb.columns[k]).all() for k in ta.columns)
    assert (ta.columns["noise_source"] != tc.columns["noise_source"]).any()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing(demo_source, tmp_path, monkeypatch, exc):
    calls = {"n": 0}
    real = synth.RowWriter.flush

    def boom(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc("interrupted")
        real(self)

    monkeypatch.setattr(synth.RowWriter, "flush", boom)
    out = tmp_path / "x.h5"
    with pytest.raises(exc):
        build_store(demo_source, out, SynthConfig())
    assert calls["n"] == 2 and list(tmp_path.iterdir()) == []


def test_existing_store_kept_without_force(demo_source, tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(StoreError, match="--force"):
        build_store(demo_source, out, SynthConfig())
    assert out.read_bytes() == b"keep me"
    build_store(demo_source, out, SynthConfig(), force=True)
    assert verify(out)["originals"] == 12


def _flip_chunk_bytes(path, group, key, row):
    """XOR 8 raw bytes of the file inside the chunk that holds the start of `row`."""
    with h5py.File(path, "r") as f:
        d = f[group][key]
        a = int(f[group]["offset"][row])
        info = d.id.get_chunk_info_by_coord((a - a % d.chunks[0],))
        at = info.byte_offset + (a % d.chunks[0] if d.compression is None else 10)
    with open(path, "r+b") as fh:
        fh.seek(at)
        b = bytearray(fh.read(8))
        fh.seek(at)
        fh.write(bytes(x ^ 0xFF for x in b))


@pytest.mark.parametrize(
    "group,key,row", [("train", "image", 5), ("test", "mask", 0), ("train", "mask", 30)]
)
def test_inspect_detects_flipped_bytes(demo_store, tmp_path, group, key, row):
    bad = tmp_path / "bad.h5"
    shutil.copy(demo_store, bad)
    _flip_chunk_bytes(bad, group, key, row)
    with pytest.raises(StoreError, match=f"^{bad}: /{group} row"):
        verify(bad)


def flip_mask_byte(src, bad, group, row=3):
    """Copy the store and turn a background byte of a mask row from 0x00 into 0xFF through
    HDF5, so that every chunk stays valid (HDF5's own checks, fletcher32 in schema 1, cannot
    see it); return the one-line message readers must give."""
    shutil.copy(src, bad)
    with h5py.File(bad, "r+") as f:
        a = int(f[group]["offset"][row])
        assert f[group]["mask"][a] == 0
        f[group]["mask"][a] = 0xFF
    return (
        rf"^{bad}: /{group} row {row}: mask bytes do not match their crc32 digest; the store "
        r"is damaged: rebuild the store with this version's `sirst5k synth`$"
    )


@pytest.mark.parametrize("group", ["train", "test"])
def test_a_mask_byte_0_to_255_is_found_by_inspect(demo_store, tmp_path, group):
    """The issue's case (eval's reader: tests/test_eval.py, StoreData: tests/test_data.py)."""
    msg = flip_mask_byte(demo_store, tmp_path / "bad.h5", group)
    with pytest.raises(StoreError, match=msg):
        verify(tmp_path / "bad.h5")


def _set_mask_pixel(f, row, value):
    """Write a mask pixel and the row's new digest: a consistent store with a bad mask value."""
    g = f["train"]
    h, w = (int(v) for v in g["size"][row])
    a = int(g["offset"][row])
    g["mask"][a] = value
    g["digest"][row] = store.row_digest(g["image"][a : a + h * w], g["mask"][a : a + h * w])


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda f: f["train/rotation"].__setitem__(-1, 45), "rotation"),
        (lambda f: f["train/group"].__setitem__(-1, 0), "group"),
        (lambda f: _set_mask_pixel(f, 0, 7), "0/1"),
        (lambda f: f["train/kind"].__setitem__(0, 1), "kind"),
        (lambda f: f["test/size"].__setitem__(0, [10, 10]), "offset: row 1 does not start"),
        (lambda f: f["train/offset"].__setitem__(2, 5), "offset: row 2 does not start"),
        (lambda f: f["train/digest"].__setitem__((4, 0), 1), "row 4: image bytes do not match"),
        (lambda f: f.attrs.__setitem__("canvas", [8, 8]), "outside 1..\\(8, 8\\)"),
        (lambda f: f.attrs.__setitem__("schema_version", 99), "schema version"),
        (lambda f: f["train"].__delitem__("noise_source"), "noise_source"),
        (lambda f: f["train"].__delitem__("digest"), "lacks digest"),
    ],
)
def test_inspect_detects_inconsistent_stores(demo_store, tmp_path, edit, reason):
    bad = tmp_path / "bad.h5"
    shutil.copy(demo_store, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    with pytest.raises(StoreError, match=reason):
        verify(bad)


@pytest.mark.slow
@pytest.mark.skipif(not NUDT.is_dir(), reason="NUDT-SIRST not at ../shared/data")
def test_nudt_sirst_counts(tmp_path):
    out = tmp_path / "nudt.h5"
    res = build_store(NUDT, out, SynthConfig())
    assert (res["originals"], res["targets"], res["negatives"], res["test"]) == (
        663,
        918,
        3672,
        664,
    )
    summary = verify(out)
    assert summary["originals"] == 663 and summary["negatives"] == 3672 and summary["test"] == 664
    assert summary["canvas"] == (256, 256)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_killed_process_leaves_nothing(demo_source, tmp_path, sig):
    """A real `sirst5k synth` process killed while writing: no store, no partial file."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "k.h5"
    code = (
        "import time, sys\n"
        "from sirst5k import synth\n"
        "real = synth.RowWriter.flush\n"
        "def slow(self):\n"
        "    time.sleep(0.3)\n"
        "    real(self)\n"
        "synth.RowWriter.flush = slow\n"
        "from sirst5k_cli.cli import main\n"
        f"sys.argv = ['sirst5k', 'synth', {str(demo_source)!r}, '-o', {str(out)!r}]\n"
        "main()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not list(tmp_path.glob(".k.h5*")) and time.time() < deadline:
        time.sleep(0.02)
    assert list(tmp_path.glob(".k.h5*")), "the writer never started"
    time.sleep(0.1)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0, err
    assert list(tmp_path.iterdir()) == []


def _boxes_by_scipy(mask: np.ndarray, s: int) -> list[tuple[int, int]]:
    """Top-left of the s x s box on each 8-connected target's centroid (rounded half up, moved
    inside the image), in raster order of each target's first pixel: scipy, not synth."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    h, w = mask.shape
    out = []
    for cy, cx in ndimage.center_of_mass(mask, lab, range(1, n + 1)):
        y, x = int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))
        out.append((min(max(y - s // 2, 0), h - s), min(max(x - s // 2, 0), w - s)))
    return out


def test_every_stored_negative_is_its_sources_box_rotated(demo_store):
    """Eq. 4 as the builder runs it: member k of a group = member 0 with the s x s box on its
    target rotated by k x 90 degrees, its mask = the source's mask with the same box rotated."""
    train = store.read_split(demo_store, "train")
    c, s = train.columns, store.read_attrs(demo_store)["params"]["s"]
    changed = 0
    for gid in np.unique(c["group"][c["group"] >= 0]):
        rows = np.flatnonzero(c["group"] == gid)
        src = int(c["source"][rows[0]])
        h, w = c["size"][src]
        mask = train.row(src)[1]
        assert mask.shape == (h, w)
        y0, x0 = _boxes_by_scipy(mask, s)[int(c["target"][rows[0]])]
        base = train.row(rows[0])[0]
        for r in rows:
            k = int(c["rotation"][r]) // 90
            want_img, want_mask = base.copy(), mask.copy()
            want_img[y0 : y0 + s, x0 : x0 + s] = np.rot90(base[y0 : y0 + s, x0 : x0 + s], k)
            want_mask[y0 : y0 + s, x0 : x0 + s] = np.rot90(mask[y0 : y0 + s, x0 : x0 + s], k)
            assert np.array_equal(train.row(r)[0], want_img), (gid, k)
            assert np.array_equal(train.row(r)[1], want_mask), (gid, k)
            changed += k > 0 and not np.array_equal(train.row(r)[1], mask)
    assert changed > 0  # the rotations do move target pixels: the check above has teeth


def test_full_disk_is_refused_before_writing(demo_source, small_disk):
    """A store that cannot fit (a 1 MB tmpfs): one line, exit 1, nothing left behind, an
    existing store untouched. (HDF5 itself segfaults on a write that fails half-way.)"""
    import subprocess
    import sys

    mnt = small_disk(1024 * 1024)
    (mnt / "s.h5").write_bytes(b"an existing store")
    cmd = [sys.executable, "-m", "sirst5k_cli", "synth", str(demo_source), "-o"]
    r = subprocess.run([*cmd, str(mnt / "s.h5"), "--force"], capture_output=True, text=True)
    assert r.returncode == 1 and "MB free" in r.stderr and "Traceback" not in r.stderr
    assert (mnt / "s.h5").read_bytes() == b"an existing store"
    assert sorted(p.name for p in mnt.iterdir()) == ["s.h5"]


def test_two_synths_to_one_output_one_wins(demo_source, tmp_path):
    """Two processes, same output, no --force: one writes the store, the other exits 1 saying
    so (the final rename is exclusive); the store is whole."""
    import subprocess
    import sys

    out = tmp_path / "s.h5"
    cmd = [sys.executable, "-m", "sirst5k_cli", "synth", str(demo_source), "-o", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(err for code, err in results if code)
    assert "exists" in loser or "created by another process" in loser
    assert verify(out)["negatives"] > 0
    assert not list(tmp_path.glob(".*partial"))


def test_damaged_metadata_is_one_line_naming_the_store(demo_store, tmp_path):
    """Broken params JSON, a missing sources list: train and eval say the STORE is damaged
    (not the run or output folder), in one line, exit 1."""
    from click.testing import CliRunner

    from sirst5k_cli.cli import main

    for name, edit in (
        ("json", lambda f: f.attrs.__setitem__("params", "{not json")),
        ("sources", lambda f: f.__delitem__("sources/name")),
    ):
        bad = tmp_path / f"{name}.h5"
        shutil.copy(demo_store, bad)
        with h5py.File(bad, "r+") as f:
            edit(f)
        for args in (["train", str(bad), "--out", str(tmp_path / "run"), "--preset", "demo",
                      "--device", "cpu"], ["eval", str(bad), "--method", "tophat", "--out",
                                           str(tmp_path / "ev")]):  # fmt: skip
            r = CliRunner().invoke(main, args)
            assert r.exit_code == 1, r.output
            assert f"{bad}: damaged store metadata" in r.output and "Traceback" not in r.output
        assert not (tmp_path / "run").exists()
