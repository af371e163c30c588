"""The store contract: atomic writes, schema checks, round trip, real-size rows and their
digests (sirst5k/store.py, files.py)."""

import os

import h5py
import numpy as np
import pytest

from sirst5k.errors import SirstError, StoreError
from sirst5k.files import atomic_path
from sirst5k.store import (
    CHUNK,
    COLUMNS,
    FORMAT,
    OPTIONAL,
    TEST_COLUMNS,
    Split,
    check_file,
    read_attrs,
    read_split,
    require_group,
    write_store,
)

PROVENANCE = ("source", "kind", "target", "rotation", "group", "noise_source")


def tiny_splits(n_train=3, n_test=2, shapes=((6, 5), (4, 7), (6, 5)), seed=0):
    """Random rows of the given (h, w) shapes (cycled), packed with Split.from_rows."""
    rng = np.random.default_rng(seed)

    def rows(n):
        hw = [shapes[i % len(shapes)] for i in range(n)]
        return ([rng.integers(0, 256, s, np.uint8) for s in hw],
                [rng.integers(0, 2, s, np.uint8) for s in hw])  # fmt: skip

    cols = {k: np.arange(n_train, dtype=COLUMNS[k]) for k in PROVENANCE}
    train = Split.from_rows(*rows(n_train), cols)
    test = Split.from_rows(*rows(n_test), {"source": np.arange(n_test, dtype=np.int32)})
    return train, test


def test_round_trip_and_attrs(tmp_path):
    train, test = tiny_splits()
    path = write_store(tmp_path / "s.h5", train, test, ["a", "b"], {"alpha": 0.1}, 7, "src")
    back = read_split(path, "train")
    assert np.array_equal(back.image, train.image) and np.array_equal(back.mask, train.mask)
    for k in COLUMNS:
        want = train.columns[k] if k not in OPTIONAL else np.full(3, -1)  # filled in: -1
        assert np.array_equal(back.columns[k], want)
        assert back.columns[k].dtype == COLUMNS[k]
    assert back.size.tolist() == [[6, 5], [4, 7], [6, 5]] and back.offset.tolist() == [0, 30, 58]
    assert set(read_split(path, "test").columns) == set(TEST_COLUMNS)
    attrs = read_attrs(path)
    assert attrs["params"] == {"alpha": 0.1} and attrs["seed"] == 7
    assert attrs["canvas"] == (6, 7) and attrs["sources"] == ["a", "b"]
    assert attrs["schema_version"] == 3
    with h5py.File(path) as f:
        assert f["train/image"].shape == (88,) and f["train/image"].chunks == (CHUNK,)
        assert f["train/image"].compression is None and f["train/mask"].compression == "gzip"
        assert f["train/size"].fletcher32 and f["train/digest"].dtype == np.uint32


def test_mixed_sizes_round_trip_exact_without_padding(tmp_path):
    """A 1000 x 1000 image among small ones in each split: every row back bit for bit at its
    own size, and the file holds the real pixels only (v1 padded all 8 rows: 16 MB)."""
    shapes = ((1000, 1000), (40, 50), (64, 48), (33, 77), (120, 90))
    train, test = tiny_splits(n_train=5, n_test=3, shapes=shapes, seed=1)
    real = len(train.image) + len(test.image)  # image bytes (masks compress to almost nothing)
    for compress in ("none", "gzip-1", "lzf"):
        path = write_store(tmp_path / f"{compress}.h5", train, test, ["a"], {}, 0, "src",
                           compress=compress)  # fmt: skip
        for name, split in (("train", train), ("test", test)):
            back = read_split(path, name)
            for i in range(len(split)):
                got, want = back.row(i), split.row(i)
                assert got[0].shape == want[0].shape == tuple(split.size[i])
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        if compress == "none":
            # random masks do not compress much either: allow both arrays, plus the last
            # partial 64 KiB chunk of each array and the metadata
            assert path.stat().st_size < 1.1 * 2 * real + 4 * CHUNK + 100_000
            assert path.stat().st_size < 0.2 * 2 * 8 * 1000 * 1000


def test_schema_1_store_is_refused_with_the_rebuild_message(tmp_path):
    """A v1 store (padded (N, H, W) arrays, schema_version 1), as this project wrote it."""
    path = tmp_path / "v1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = 1
        f.attrs["canvas"] = np.array([8, 8], np.int32)
        for g in ("train", "test"):
            f.create_dataset(f"{g}/image", (2, 8, 8), np.uint8, chunks=(1, 8, 8), fletcher32=True)
            f.create_dataset(f"{g}/mask", (2, 8, 8), np.uint8, chunks=(1, 8, 8), fletcher32=True)
            f.create_dataset(f"{g}/size", data=np.full((2, 2), 8, np.int32))
    for name in ("train", "test"):
        with pytest.raises(StoreError) as e:
            read_split(path, name)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and "schema version 1" in msg
        assert "rebuild the store with this version's `sirst5k synth`" in msg


@pytest.mark.parametrize(
    "edit, reason",
    [
        (
            lambda f: _replace(f, "train/image", f["train/image"][...].astype(np.uint16)),
            "image is uint16",
        ),
        (lambda f: _replace(f, "train/kind", f["train/kind"][...].astype(np.int64)), "kind"),
        (lambda f: _replace(f, "train/digest", f["train/digest"][...].astype(np.int64)), "dig"),
        (lambda f: _replace(f, "test/size", f["test/size"][...].T.copy()), "size is int32 .2, 3."),
        (
            lambda f: _replace(f, "train/image", f["train/image"][:-1]),
            "image is uint8 .66,.*says uint8 .67,",
        ),
        (lambda f: _replace(f, "train/offset", f["train/offset"][...] + 1), "offset: row 0"),
        (lambda f: _replace(f, "train/size", f["train/size"][...][::-1].copy()), "offset: row 1"),
        (lambda f: _replace(f, "train/mask", f["train/mask"][...].reshape(1, -1)), "mask"),
    ],
)
def test_wrong_dtypes_and_shapes_are_refused_at_open(tmp_path, edit, reason):
    train, test = tiny_splits(n_test=3, shapes=((6, 5), (4, 7), (3, 3)))
    path = write_store(tmp_path / "s.h5", train, test, ["a"], {}, 0, "src")
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(StoreError, match=reason) as e:
        with check_file(path) as f:
            for g in ("train", "test"):
                require_group(f, g)
    assert "rebuild the store" in str(e.value)


def _replace(f, key, data):
    """Replace dataset `key` by `data` (chunked when 1-D, like the pixel arrays)."""
    del f[key]
    f.create_dataset(key, data=data, chunks=True if data.ndim == 1 and data.size else None)


def test_existing_output_needs_force(tmp_path):
    train, test = tiny_splits()
    dest = tmp_path / "s.h5"
    dest.write_bytes(b"keep me")
    with pytest.raises(SirstError, match="--force"):
        write_store(dest, train, test, ["a"], {}, 0, "src")
    assert dest.read_bytes() == b"keep me"
    write_store(dest, train, test, ["a"], {}, 0, "src", force=True)
    assert read_attrs(dest)["format"] == FORMAT


def test_failure_inside_block_leaves_nothing(tmp_path):
    dest = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an interrupted overwrite keeps the old file
    dest.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(dest, force=True) as tmp:
        tmp.write_bytes(b"new")
        raise KeyboardInterrupt
    assert dest.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_reader_rejects_foreign_and_old_files(tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        read_split(tmp_path / "none.h5", "train")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        read_split(tmp_path / "text.h5", "train")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(StoreError, match="not a SIRST-5K store"):
        read_split(tmp_path / "other.h5", "train")
    train, test = tiny_splits()
    path = write_store(tmp_path / "s.h5", train, test, ["a"], {}, 0, "src")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        read_split(path, "train")


def test_missing_group_and_corruption(tmp_path):
    train, test = tiny_splits(shapes=((64, 64),))
    path = write_store(tmp_path / "s.h5", train, test, ["a"], {}, 0, "src")
    with h5py.File(path, "a") as f:
        del f["test"]
    with pytest.raises(StoreError, match="no 'test' group"):
        read_split(path, "test")
    path = write_store(tmp_path / "c.h5", train, test, ["a"], {}, 0, "src")
    with h5py.File(path) as f:
        offset = f["train/image"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 4096 + 100] ^= 0xFF  # flip one byte of the second image (rows of 4096 px)
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"c\.h5: /train row 1: image bytes do not match"):
        read_split(path, "train")


def test_stale_partials_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)  # that process has exited
    stale = tmp_path / f".out.h5.{pid}.abc123.partial"
    stale.write_bytes(b"half a store")
    mine = tmp_path / f".out.h5.{os.getpid()}.zzz.partial"  # this process's: kept
    mine.write_bytes(b"in progress")
    other = tmp_path / ".other.h5.1.x.partial"  # another output's: not touched
    other.write_bytes(b"x")
    with atomic_path(tmp_path / "out.h5") as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists() and mine.exists() and other.exists()
    assert (tmp_path / "out.h5").read_bytes() == b"new"


def test_final_step_is_exclusive_without_force(tmp_path):
    dest = tmp_path / "out.h5"
    with pytest.raises(SirstError, match="created by another process"):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"mine")
            dest.write_bytes(b"theirs")  # another writer finished first
    assert dest.read_bytes() == b"theirs"  # not replaced
    assert not list(tmp_path.glob("*.partial"))
    with atomic_path(dest, force=True) as tmp:  # --force replaces
        tmp.write_bytes(b"forced")
    assert dest.read_bytes() == b"forced"


def test_check_free_space(tmp_path, monkeypatch):
    from sirst5k import files

    files.check_free_space(tmp_path / "x.h5", 1000)  # plenty here
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: shutil_usage(free=10_000_000))
    with pytest.raises(SirstError, match="needs about 20 MB.*10 MB free"):
        files.check_free_space(tmp_path / "x.h5", 20_000_000)


def shutil_usage(free):
    import collections

    return collections.namedtuple("usage", "total used free")(free * 2, free, free)


def test_an_interrupt_dropped_in_a_callback_is_raised_again_without_a_traceback(monkeypatch):
    """Ctrl-C landing in a weakref callback (h5py runs many): Python drops the exception and
    prints "Exception ignored in ..." (sys.unraisablehook); interruptible's check() raises it
    again, and the hook is not called for it."""
    import signal
    import sys
    import weakref

    from sirst5k.files import interruptible

    class Thing:
        pass

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with interruptible() as check:
        thing = Thing()
        ref = weakref.ref(thing, lambda r: signal.raise_signal(signal.SIGINT))
        del thing  # the callback runs here; the handler's KeyboardInterrupt is dropped
        assert ref() is None
        with pytest.raises(KeyboardInterrupt):
            check()
    assert seen == [] and sys.unraisablehook == seen.append  # put back as it was
