"""A store is only what synth wrote into it: links, data kept in other files and hostile JSON
metadata are refused in one line by every command that opens a store, before any data is read."""

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from sirst5k import store
from sirst5k.errors import StoreError
from sirst5k_cli.cli import main


@pytest.fixture
def copy(demo_store, tmp_path):
    out = tmp_path / "s.h5"
    shutil.copy(demo_store, out)
    return out


def _all_commands_refuse(path, tmp_path, match: str) -> None:
    for args in (
        ["inspect", str(path)],
        ["eval", str(path), "--method", "tophat", "--out", str(tmp_path / "ev")],
        ["train", str(path), "--out", str(tmp_path / "run"), "--preset", "demo", "--epochs", "1"],
    ):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, (args, r.output)
        assert match in r.output and "Traceback" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output


def test_deeply_nested_json_metadata_is_a_damaged_store(copy, tmp_path):
    with h5py.File(copy, "a") as f:
        f.attrs["params"] = "[" * 60000 + "]" * 60000
    with pytest.raises(StoreError, match="'params': RecursionError"):
        store.read_attrs(copy)
    _all_commands_refuse(copy, tmp_path, "damaged store metadata")


def test_an_external_link_is_refused(copy, demo_store, tmp_path):
    other = tmp_path / "other.h5"
    shutil.copy(demo_store, other)
    with h5py.File(copy, "a") as f:
        del f["train/image"]
        f["train/image"] = h5py.ExternalLink(str(other), "/train/image")
    with pytest.raises(StoreError, match="/train/image is a ExternalLink"):
        store.check_file(copy)
    _all_commands_refuse(copy, tmp_path, "ExternalLink")


def test_a_soft_link_is_refused(copy, tmp_path):
    with h5py.File(copy, "a") as f:
        f["extra"] = h5py.SoftLink("/train/mask")
    with pytest.raises(StoreError, match="/extra is a SoftLink"):
        store.check_file(copy)


def test_external_raw_storage_is_refused_before_it_is_read(copy, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x" * 64)
    with h5py.File(copy, "a") as f:
        f.create_dataset("notes", (64,), np.uint8, external=[(str(secret), 0, 64)])
    reads = []
    real = h5py.Dataset.__getitem__
    monkeypatch.setattr(
        h5py.Dataset, "__getitem__", lambda d, k: reads.append(d.name) or real(d, k)
    )
    with pytest.raises(StoreError, match="/notes keeps its bytes outside this file"):
        store.check_file(copy)
    assert reads == []  # refused before a byte of any dataset was read
    _all_commands_refuse(copy, tmp_path, "outside this file")


def test_a_virtual_dataset_is_refused(copy, tmp_path):
    with h5py.File(copy, "a") as f:
        layout = h5py.VirtualLayout(shape=(4,), dtype=np.int64)
        layout[:] = h5py.VirtualSource(f["train/offset"])[:4]
        f.create_virtual_dataset("view", layout)
    with pytest.raises(StoreError, match="/view keeps its bytes outside"):
        store.check_file(copy)
