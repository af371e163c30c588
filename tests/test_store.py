"""The store contract: atomic writes, schema checks, round trip (sirst5k/store.py, files.py)."""

import os

import h5py
import numpy as np
import pytest

from sirst5k.errors import SirstError, StoreError
from sirst5k.files import atomic_path
from sirst5k.store import (
    COLUMNS,
    FORMAT,
    TEST_COLUMNS,
    Split,
    read_attrs,
    read_split,
    write_store,
)


def tiny_splits(n_train=3, n_test=2, canvas=(6, 5)):
    rng = np.random.default_rng(0)
    cols = {k: np.arange(n_train * (2 if k == "size" else 1), dtype=v) for k, v in COLUMNS.items()}
    cols["size"] = cols["size"].reshape(n_train, 2)
    train = Split(
        rng.integers(0, 256, (n_train, *canvas), np.uint8),
        rng.integers(0, 2, (n_train, *canvas), np.uint8),
        cols,
    )
    tcols = {"size": np.full((n_test, 2), 4, np.int32), "source": np.arange(n_test, dtype=np.int32)}
    test = Split(
        rng.integers(0, 256, (n_test, *canvas), np.uint8),
        rng.integers(0, 2, (n_test, *canvas), np.uint8),
        tcols,
    )
    return train, test


def test_round_trip_and_attrs(tmp_path):
    train, test = tiny_splits()
    path = write_store(tmp_path / "s.h5", train, test, ["a", "b"], {"alpha": 0.1}, 7, "src")
    back = read_split(path, "train")
    assert np.array_equal(back.image, train.image) and np.array_equal(back.mask, train.mask)
    for k in COLUMNS:
        assert np.array_equal(back.columns[k], train.columns[k])
        assert back.columns[k].dtype == COLUMNS[k]
    assert set(read_split(path, "test").columns) == set(TEST_COLUMNS)
    attrs = read_attrs(path)
    assert attrs["params"] == {"alpha": 0.1} and attrs["seed"] == 7
    assert attrs["canvas"] == (6, 5) and attrs["sources"] == ["a", "b"]
    with h5py.File(path) as f:
        assert f["train/image"].chunks == (1, 6, 5) and f["train/image"].fletcher32


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
    train, test = tiny_splits(canvas=(64, 64))
    path = write_store(tmp_path / "s.h5", train, test, ["a"], {}, 0, "src")
    with h5py.File(path, "a") as f:
        del f["test"]
    with pytest.raises(StoreError, match="no 'test' group"):
        read_split(path, "test")
    path = write_store(tmp_path / "c.h5", train, test, ["a"], {}, 0, "src")
    with h5py.File(path) as f:
        offset = f["train/image"].id.get_chunk_info(1).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 100] ^= 0xFF  # flip one byte inside the second image's chunk
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="damaged"):
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
