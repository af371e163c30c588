"""The training loop and the `train` CLI: resume equivalence, Ctrl-C, errors, end to end."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_data import make_tiny_store

from sirst5k.errors import TrainError
from sirst5k_cli.cli import main
from trainer.checkpoint import load_model, read_checkpoint
from trainer.config import make_config
from trainer.train import StopRequest, budget_epochs, lr_at, train

TINY_MODEL = dict(widths=[4, 4, 8, 8, 8], blocks=1)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return make_tiny_store(tmp_path_factory.mktemp("store") / "tiny.h5", n_src=10)


def _cfg(store, out, **kw):
    base = dict(epochs=4, batch_size=8, crop=16, device="cpu", val_fraction=0.2, model=TINY_MODEL)
    base.update(kw)
    return make_config(store=str(store), out=str(out), **base)


def _weights(path):
    return read_checkpoint(path)["model"]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _StopAt:
    """Hooks that press Ctrl-C after a given global step or epoch."""

    def __init__(self, step=0, epoch=0):
        self.step, self.epoch, self.n = step, epoch, 0

    def on_start(self, info):
        pass

    def on_epoch(self, row):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt

    def on_step(self, s):
        self.n += 1
        if self.n == self.step:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_gives_the_same_weights(tiny_store, tmp_path):
    straight = train(_cfg(tiny_store, tmp_path / "a"))
    assert straight["epochs_done"] == 4
    # killed after epoch 2 (the epoch hook runs once last.pt is written)
    train(_cfg(tiny_store, tmp_path / "b"), hooks=_StopAt(epoch=2))
    ckpt = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["step"] == 0
    resumed = train(_cfg(tiny_store, tmp_path / "b"), resume=ckpt)
    assert resumed["epochs_done"] == 4
    _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert a["optimizer"]["state"][0]["sum"].equal(b["optimizer"]["state"][0]["sum"])
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"] == 0
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]


@pytest.mark.slow
@pytest.mark.parametrize("stop,warmup", [(8, 0), (3, 4)])
def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(tiny_store, tmp_path, stop, warmup):
    kw = dict(epochs=3, neg_loss="min", warmup=warmup)
    train(_cfg(tiny_store, tmp_path / "a", **kw))
    out = train(_cfg(tiny_store, tmp_path / "b", **kw), hooks=_StopAt(step=stop))
    assert out["status"] == "interrupted"
    ckpt = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["step"] > 0  # in the middle of an epoch
    train(_cfg(tiny_store, tmp_path / "b", **kw), resume=ckpt)
    _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))


def test_checkpoint_contents_and_best(tiny_store, tmp_path):
    train(_cfg(tiny_store, tmp_path, epochs=2, originals_only=True, neg_loss="off"))
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["schema"] == "sirst5k-checkpoint/1"
    assert set(best) >= {"model", "model_config", "optimizer", "epoch", "step", "config"}
    assert set(best["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert best["best"]["epoch"] == best["epoch"]
    assert best["config"]["data"]["originals_only"] is True
    model, _ = load_model(tmp_path / "best.pt")
    assert model.cfg.widths == (4, 4, 8, 8, 8) and not model.training
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["val_images"] == 2
    assert summary["train_samples"] == 10 - 2


def test_config_errors(tiny_store, tmp_path):
    with pytest.raises(TrainError, match="multiple of 16"):
        _cfg(tiny_store, tmp_path, crop=20)
    with pytest.raises(TrainError, match="choose one of"):
        _cfg(tiny_store, tmp_path, neg_loss="max")
    with pytest.raises(TrainError, match="needs >= 4"):
        _cfg(tiny_store, tmp_path, batch_size=2)
    with pytest.raises(TrainError, match="5 positive stage widths"):
        _cfg(tiny_store, tmp_path, model=dict(widths=[4, 4]))
    with pytest.raises(TrainError, match="--preset"):
        make_config("huge")
    with pytest.raises(TrainError, match="0.125 <= LO <= HI <= 8"):
        _cfg(tiny_store, tmp_path, scale_range=(2.0, 1.0))
    with pytest.raises(TrainError, match="give a --crop > 0"):
        _cfg(tiny_store, tmp_path, crop=0, scale_range=(0.5, 2.0))


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


TINY_ARGS = ("--epochs", 2, "--batch-size", 8, "--crop", 16, "--device", "cpu")
TINY_ARGS += ("--widths", "4,4,8,8,8", "--blocks", 1, "--val-fraction", 0.2)


@pytest.mark.slow
def test_cli_end_to_end(tiny_store, tmp_path):
    out = tmp_path / "run"
    r = _cli("train", tiny_store, "--out", out, *TINY_ARGS)
    assert r.exit_code == 0, r.output
    assert {"best.pt", "last.pt", "log.csv", "config.json", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    assert "completed" in r.output and "best epoch" in r.output
    curves = cv2.imread(str(out / "curves.png"))
    assert curves.shape == (420, 1500, 3) and curves.std() > 10  # a drawn figure, not blank
    # every head's mean probability and positive fraction are logged per epoch
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    for row in log:
        for i in range(4):
            assert 0 < float(row[f"p_mean_{i}"]) < 1
            assert 0 <= float(row[f"pos_frac_{i}"]) <= 1
    # a second run into the same directory needs --resume or --force
    r = _cli("train", tiny_store, "--out", out, *TINY_ARGS)
    assert r.exit_code == 1 and "already holds a run" in r.output and "--resume" in r.output
    r = _cli("train", "--resume", out, "--epochs", 3, "--lr", 0.1)
    assert r.exit_code == 1 and "drop --lr" in r.output  # not silently ignored
    r = _cli("train", "--resume", out, "--epochs", 3)
    assert r.exit_code == 0, r.output
    assert read_checkpoint(out / "last.pt")["epoch"] == 3
    r = _cli("train", tiny_store, "--out", out, *TINY_ARGS, "--force", "--no-attention")
    assert r.exit_code == 0, r.output
    assert read_checkpoint(out / "best.pt")["model_config"]["attention"] is False
    # --force with a store that turns out unusable fails before the earlier run is touched
    broken = tmp_path / "no-train.h5"
    shutil.copy(tiny_store, broken)
    with h5py.File(broken, "a") as f:
        del f["train"]
    before = (out / "best.pt").read_bytes()
    r = _cli("train", broken, "--out", out, *TINY_ARGS, "--force")
    assert r.exit_code == 1 and "train" in r.output
    assert (out / "best.pt").read_bytes() == before


def test_cli_bad_inputs(tiny_store, tmp_path):
    r = _cli("train", tmp_path / "missing.h5", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no such file" in r.output
    (tmp_path / "x.h5").write_bytes(b"junk")
    r = _cli("train", tmp_path / "x.h5", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "not an HDF5 file" in r.output
    r = _cli("train", "--resume", tmp_path / "nothing")
    assert r.exit_code == 1 and "no such checkpoint" in r.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "last.pt").write_bytes(b"\x00" * 100)
    r = _cli("train", "--resume", tmp_path / "bad")
    assert r.exit_code == 1 and "not a readable checkpoint" in r.output
    r = _cli("train", tiny_store, "--out", tmp_path / "o", "--crop", 20)
    assert r.exit_code == 1 and "multiple of 16" in r.output
    r = _cli("train", tiny_store, "--out", tmp_path / "o", "--widths", "1,2")
    assert r.exit_code == 2 and "5 positive integers" in r.output
    assert len(r.output.strip().splitlines()) <= 4
    r = _cli("train", tiny_store, "--out", tmp_path / "o", "--scale-range", "2")
    assert r.exit_code == 2 and "two numbers LO,HI" in r.output
    r = _cli("train", tiny_store, "--out", tmp_path / "o", "--scale-range", "0.01,2")
    assert r.exit_code == 1 and "--scale-range" in r.output


def _torchrun(*args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return [*cmd, "-m", "sirst5k_cli", "train", *[str(a) for a in args]]


@pytest.mark.slow
def test_ddp_gloo_two_processes_ctrl_c_and_resume(tiny_store, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    args = [*TINY_ARGS, "--epochs", 3]  # the later --epochs wins
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(
        _torchrun(tiny_store, "--out", a, *args), env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((a / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_done"] == 3
    assert (a / "log.csv").read_text().count("\n") == 4  # header + 3 epochs, rank 0 only
    assert r.stderr.count("epochs done") == 1  # one summary table, rank 0's
    load_model(a / "best.pt")

    # Ctrl-C (SIGINT to torchrun, which passes it on to both workers) during epoch 2
    p = subprocess.Popen(
        _torchrun(tiny_store, "--out", b, *args),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (b / "last.pt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    log = p.communicate(timeout=120)[0]
    assert p.returncode != 0, log[-2000:]
    assert log.count("Ctrl-C: saving after this batch") == 1, log[-2000:]  # rank 0, once
    assert json.loads((b / "summary.json").read_text())["status"] == "interrupted", log[-2000:]
    assert read_checkpoint(b / "last.pt")["epoch"] < 3, log[-2000:]
    r = subprocess.run(_torchrun("--resume", b), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    _same(_weights(a / "last.pt"), _weights(b / "last.pt"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_channels_last(tiny_store, tmp_path):
    s = train(_cfg(tiny_store, tmp_path, epochs=2, device="cuda", workers=2))
    assert s["device"].startswith("cuda") and s["epochs_done"] == 2


def test_presets_and_optimizer_defaults():
    assert make_config().optim.lr == 0.05 and make_config().optim.epochs == 1500
    assert make_config(optimizer="adam").optim.lr == 5e-4
    assert make_config(optimizer="adam", lr=1e-3).optim.lr == 1e-3
    cpu = make_config("cpu30", epochs=3)
    assert cpu.optim.epochs == 3 and cpu.model["widths"] == [8, 16, 32, 64, 128]
    assert cpu.preset == "cpu30"
    assert cpu.model["attention"] is True and (cpu.optim.neg_loss, cpu.optim.warmup) == ("off", 50)
    assert make_config("cpu30", neg_loss="sum", warmup=0).optim.neg_loss == "sum"  # options win
    assert make_config("cpu30", neg_loss="sum", warmup=0).optim.warmup == 0
    assert make_config("cpu30", model={"attention": False}).model["blocks"] == 1
    # cpu30 fits its epochs to its 26 minutes, unless the epochs are given or there is no budget
    assert make_config("cpu30").optim.fit_budget and make_config("cpu30").optim.max_minutes == 26
    assert (cpu.data.crop, cpu.data.flips) == (96, "none")
    assert make_config("cpu30", flips="d4").data.flips == "d4"
    assert (make_config("demo").data.crop, make_config("demo").data.flips) == (64, "d4")
    assert not cpu.optim.fit_budget and not make_config("cpu30", max_minutes=0).optim.fit_budget
    assert make_config("cpu30", epochs=3, fit_budget=True).optim.fit_budget
    assert not make_config().optim.fit_budget and not make_config("demo").optim.fit_budget
    with pytest.raises(TrainError, match="--fit-budget fits --epochs to --max-minutes"):
        make_config(fit_budget=True)


def test_budget_epochs_by_hand():
    # 28 min = 1680 s; 40 s spent on set-up and epoch 1; 32 s an epoch: 1 + 1640 // 32 = 52
    assert budget_epochs(1680, 40, 32) == 52
    assert budget_epochs(1680, 1680, 32) == 1  # nothing left: the epoch done
    assert budget_epochs(100, 160, 50) == 1  # the first epoch overran
    assert budget_epochs(100, 20, 40) == 3  # 20 + 2 x 40 = 100: ends on the budget
    # refitted after epoch 10: 600 s spent, 1080 s left at 35 s an epoch: 10 + 30 = 40
    assert budget_epochs(1680, 600, 35, done=10) == 40
    assert budget_epochs(1680, 1700, 35, done=10) == 10  # past the budget: end now


@pytest.mark.slow
def test_fit_budget_sets_the_epochs_and_resume_keeps_them(tiny_store, tmp_path, monkeypatch):
    """After each epoch the run's epochs become budget_epochs(...) (stubbed: 3), which the
    cosine, config.json, the checkpoints and the summary follow; a resume does not fit again."""
    import trainer.train as tt

    calls = []

    def three(budget, spent, pace, done):
        calls.append((budget, spent, pace, done))
        return 3

    monkeypatch.setattr(tt, "budget_epochs", three)
    kw = dict(epochs=10, fit_budget=True, max_minutes=5)
    s = train(_cfg(tiny_store, tmp_path / "a", **kw))
    assert (s["status"], s["epochs_done"], s["epochs"]) == ("completed", 3, 3)
    assert [c[3] for c in calls] == [1, 2, 3] and all(c[0] == 300 and c[2] > 0 for c in calls)
    # each refit at the mean pace of the epochs so far (training + validation seconds)
    with open(tmp_path / "a" / "log.csv") as f:
        paces = [float(r["seconds"]) + float(r["val_seconds"]) for r in csv.DictReader(f)]
    assert [c[2] for c in calls] == pytest.approx([np.mean(paces[:i]) for i in (1, 2, 3)])
    assert calls[0][1] > 0 and calls[0][1] < calls[1][1] < calls[2][1]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["optim"]["epochs"] == 3
    with open(tmp_path / "a" / "log.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    cfg3 = _cfg(tiny_store, tmp_path / "x", epochs=3)
    assert lrs[1:] == pytest.approx([lr_at(cfg3, e, 0) for e in (1, 2)])  # cosine over 3
    # stopped after epoch 2, resumed with another fit on offer: the fitted 3 stand
    train(_cfg(tiny_store, tmp_path / "b", **kw), hooks=_StopAt(epoch=2))
    ckpt = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["config"]["optim"]["epochs"] == 3
    calls.clear()
    monkeypatch.setattr(tt, "budget_epochs", lambda *a: calls.append(a) or 7)
    from trainer.config import train_config

    cfg, ckpt = train_config(resume=tmp_path / "b")
    assert train(cfg, resume=ckpt)["epochs_done"] == 3 and calls == []
    _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    # an --epochs given on resume turns fitting off
    assert not train_config(resume=tmp_path / "b", epochs=5)[0].optim.fit_budget


@pytest.mark.slow
def test_fit_budget_refits_and_the_cosine_follows(tiny_store, tmp_path, monkeypatch):
    """A pace that drifts changes the count after a later epoch: fitted to 5 after epoch 1 and
    to 3 after epoch 2, the run ends after epoch 3, which it validates although --val-every 2
    skips it; each epoch's lr is the cosine over the count of its time."""
    import trainer.train as tt

    counts = iter([5, 3, 3])
    monkeypatch.setattr(tt, "budget_epochs", lambda *a: next(counts))
    kw = dict(epochs=10, fit_budget=True, max_minutes=5, val_every=2)
    s = train(_cfg(tiny_store, tmp_path / "a", **kw))
    assert (s["status"], s["epochs_done"], s["epochs"]) == ("completed", 3, 3)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["optim"]["epochs"] == 3
    assert read_checkpoint(tmp_path / "a" / "last.pt")["config"]["optim"]["epochs"] == 3
    with open(tmp_path / "a" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [bool(r["val_iou"]) for r in rows] == [False, True, True]
    c5, c3 = (_cfg(tiny_store, tmp_path / "x", epochs=n) for n in (5, 3))
    # epoch 1 ran before any fit (10 epochs), epoch 2 under 5, epoch 3 under 3
    assert float(rows[1]["lr"]) == pytest.approx(lr_at(c5, 1, 0))
    assert float(rows[2]["lr"]) == pytest.approx(lr_at(c3, 2, 0))
    assert lr_at(c5, 1, 0) != pytest.approx(lr_at(c3, 1, 0))  # the counts give different lrs


@pytest.mark.slow
def test_fit_budget_edge_cases(tiny_store, tmp_path, monkeypatch):
    """Fitted to its first epoch with --val-every 2, a run still validates it (best.pt); a run
    stopped in its first epoch and resumed with --no-fit-budget keeps its --epochs."""
    import trainer.train as tt
    from trainer.config import train_config

    monkeypatch.setattr(tt, "budget_epochs", lambda *a: 1)
    kw = dict(epochs=4, fit_budget=True, max_minutes=5)
    s = train(_cfg(tiny_store, tmp_path / "a", val_every=2, **kw))
    assert (s["epochs_done"], s["epochs"], s["best"]["epoch"]) == (1, 1, 1)
    assert "val_iou" in s["best"] and (tmp_path / "a" / "best.pt").exists()
    train(_cfg(tiny_store, tmp_path / "b", **kw), hooks=_StopAt(step=1))
    assert read_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 0
    cfg, ckpt = train_config(resume=tmp_path / "b", fit_budget=False)
    assert train(cfg, resume=ckpt)["epochs_done"] == 4  # not fitted to 1


@pytest.mark.slow
def test_val_every_and_no_validation(tiny_store, tmp_path):
    s = train(_cfg(tiny_store, tmp_path / "a", epochs=3, val_every=2))
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()[1:]
    assert [bool(r.split(",")[4]) for r in rows] == [False, True, True]  # epochs 2 and 3 (last)
    assert s["best"]["epoch"] in (2, 3)
    s = train(_cfg(tiny_store, tmp_path / "b", epochs=2, val_fraction=0.0))
    assert s["val_images"] == 0 and s["best"]["epoch"] == 2


def test_stop_request_defers_the_first_ctrl_c():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # the first only asks
        time.sleep(0.01)
        assert stop.asked
        with pytest.raises(KeyboardInterrupt):  # the second stops at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.slow
def test_on_the_fly_resumes_exactly_and_differs_by_epoch(demo_store, tmp_path):
    """On-the-fly negatives, zoom and photometric variation are drawn from (seed, epoch): a run
    stopped mid-epoch and resumed ends with the weights of an uninterrupted one; the two epochs
    saw different samples."""
    from trainer.data import FreshDataset, GroupBatchSampler, StoreData, split_by_source

    kw = dict(epochs=2, on_the_fly=True, neg_loss="off", batch_size=8)
    kw |= dict(scale_range=(0.5, 2.0), photometric=True)
    train(_cfg(demo_store, tmp_path / "a", **kw))
    out = train(_cfg(demo_store, tmp_path / "b", **kw), hooks=_StopAt(step=3))
    assert out["status"] == "interrupted"
    ckpt = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["step"] > 0
    train(_cfg(demo_store, tmp_path / "b", **kw), resume=ckpt)
    _same(_weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt"))
    data = StoreData(demo_store)
    rows, _ = split_by_source(data.columns, 0.2, 42)
    ds = FreshDataset(data, rows, 16, len(rows))
    sampler = GroupBatchSampler(ds.groups, 8, seed=42)
    first = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        first.append(ds[next(iter(sampler))[0]]["image"])
    assert not torch.equal(first[0], first[1])
    with pytest.raises(TrainError, match="exclude each other"):
        _cfg(demo_store, tmp_path / "c", on_the_fly=True, originals_only=True)


def test_lr_at_warmup_then_cosine_per_epoch():
    cfg = make_config(store="x.h5", epochs=4, lr=0.05, min_lr=0.0, warmup=10)
    # warm-up: (step + 1) / 10 of the lr over the first 10 steps of epoch 0, then the full lr
    assert [round(lr_at(cfg, 0, s), 6) for s in (0, 4, 9, 10, 500)] == [
        0.005, 0.025, 0.05, 0.05, 0.05,
    ]  # fmt: skip
    # cosine by epoch: 0.05 * (1 + cos(pi e / 4)) / 2 = 0.042678, 0.025, 0.007322
    assert [round(lr_at(cfg, e, 3), 6) for e in (1, 2, 3)] == [0.042678, 0.025, 0.007322]
    # the same as torch's CosineAnnealingLR stepped once per epoch
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 4, 0.0)
    for e in range(1, 4):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(cfg, e, 0), rel=1e-12)


@pytest.mark.slow
def test_compiled_training_saves_plain_weights(tiny_store, tmp_path):
    """--compile compiles the training forward only: the checkpoint holds the plain model's
    keys (loadable by eval) and the run completes. (About a minute: the compile itself.)"""
    out = train(_cfg(tiny_store, tmp_path / "c", epochs=1, compile=True))
    assert out["status"] == "completed"
    ckpt = read_checkpoint(tmp_path / "c" / "best.pt")
    eager = read_checkpoint(_train_eager(tiny_store, tmp_path / "e"))
    assert ckpt["model"].keys() == eager["model"].keys()
    model, _ = load_model(tmp_path / "c" / "best.pt")
    assert not model.training


def _train_eager(store, out):
    train(_cfg(store, out, epochs=1))
    return out / "best.pt"


def test_full_disk_during_training_is_one_line(tiny_store, small_disk):
    """A run folder on a full file system (a 1 MB tmpfs): one line, exit 1, no partial files."""
    mnt = small_disk(1024 * 1024, fill=1024 * 1024 - 64 * 1024)  # leave ~64 KB
    r = _cli("train", tiny_store, "--out", mnt / "run", *TINY_ARGS)
    assert r.exit_code == 1, r.output
    assert f"the disk {mnt} is full" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()[-1]) > 20  # the error is the last line
    assert not list((mnt / "run").glob("*.partial")) and not list((mnt / "run").glob(".*"))


def test_a_batch_that_cannot_fit_is_refused_before_anything_is_written(tiny_store, tmp_path):
    """The paper's batch 256 at crop 256 on the default model needs ~63 GiB of activations:
    refused with one line naming a batch that fits, and --out stays untouched."""
    from trainer.registry import build_model
    from trainer.train import activation_bytes

    per_sample = activation_bytes(build_model(), 256)
    assert 150 * 2**20 < per_sample < 200 * 2**20  # 168 MiB of leaf outputs at 256 x 256
    out = tmp_path / "run"
    r = _cli("train", tiny_store, "--out", out, "--device", "cpu", "--crop", "0",
             "--batch-size", "100000")  # fmt: skip
    assert r.exit_code == 1 and "GiB for activations" in r.output and "fits" in r.output
    assert not out.exists()


def test_a_run_killed_in_its_first_epoch_points_to_force(tiny_store, tmp_path):
    """config.json written, no last.pt: neither --out nor --resume sends the user to the other."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    r = _cli("train", tiny_store, "--out", out, *TINY_ARGS)
    assert r.exit_code == 1 and "never finished its first epoch" in r.output
    assert "--force" in r.output and "--resume" not in r.output
    r = _cli("train", "--resume", out)
    assert r.exit_code == 1 and "never finished its first epoch" in r.output
    assert f"--out {out} --force" in r.output
    r = _cli("train", tiny_store, "--out", out, *TINY_ARGS, "--force")
    assert r.exit_code == 0, r.output


def test_ema_is_the_moving_average_of_the_steps_weights(tiny_store, tmp_path, monkeypatch):
    decay, seen = 0.9, []
    step = torch.optim.Adagrad.step

    def recording_step(self, *a, **kw):
        out = step(self, *a, **kw)
        seen.append([p.detach().clone() for p in self.param_groups[0]["params"]])
        return out

    monkeypatch.setattr(torch.optim.Adagrad, "step", recording_step)
    train(_cfg(tiny_store, tmp_path, epochs=2, ema=decay))
    # by hand: the first step's weights, then w <- decay * w + (1 - decay) * new, each step
    expected = seen[0]
    for new in seen[1:]:
        expected = [decay * e + (1 - decay) * n for e, n in zip(expected, new, strict=True)]
    last = read_checkpoint(tmp_path / "last.pt")
    assert last["ema_steps"] == len(seen) > 2
    model, _ = load_model(tmp_path / "last.pt")  # what eval loads: the averaged weights
    for e, p in zip(expected, model.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    trained = [v for k, v in last["train_model"].items() if k in dict(model.named_parameters())]
    for t, n in zip(trained, seen[-1], strict=True):
        assert torch.equal(t, n)  # the trained weights, kept for resuming
    assert not torch.allclose(seen[-1][0], expected[0])  # the average is not the last step


@pytest.mark.slow
def test_ema_resumes_exactly_mid_epoch(tiny_store, tmp_path):
    kw = dict(epochs=3, ema=0.95)
    train(_cfg(tiny_store, tmp_path / "a", **kw))
    train(_cfg(tiny_store, tmp_path / "b", **kw), hooks=_StopAt(step=5))
    ckpt = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["step"] > 0
    train(_cfg(tiny_store, tmp_path / "b", **kw), resume=ckpt)
    a, b = read_checkpoint(tmp_path / "a" / "last.pt"), read_checkpoint(tmp_path / "b" / "last.pt")
    _same(a["model"], b["model"])
    _same(a["train_model"], b["train_model"])
    assert a["ema_steps"] == b["ema_steps"]
    with pytest.raises(TrainError, match="--ema"):
        _cfg(tiny_store, tmp_path, ema=1.0)


@pytest.mark.parametrize("alpha", ["0,0.3", "0,0.2"])  # 0,0.2: the default, given all the same
def test_alpha_range_needs_on_the_fly(demo_store, tmp_path, alpha):
    r = _cli("train", demo_store, "--out", tmp_path / "r", "--preset", "demo",
             "--alpha-range", alpha, "--epochs", 1)  # fmt: skip
    assert r.exit_code != 0
    assert "--alpha-range draws the alpha of on-the-fly negatives" in r.output
    assert not (tmp_path / "r").exists()


def test_resume_from_a_damaged_last_pt_does_not_advise_starting_over(demo_store, tmp_path):
    run = tmp_path / "r"
    r = _cli("train", demo_store, "--out", run, "--preset", "demo", "--epochs", 1,
             "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    r = _cli("train", "--resume", run)
    assert r.exit_code != 0
    assert "last.pt: not a readable checkpoint" in r.output
    assert "never finished" not in r.output and "--force" not in r.output
    assert f"evaluate {run}/best.pt" in r.output
    assert (run / "best.pt").is_file() and (run / "log.csv").is_file()
