"""The network predictor on the CPU: channels_last, frames side by side (one thread each), and
--precision bf16, checked against a plain float32 forward of the same model."""

import json
import os
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sirst5k.errors import UserError
from sirst5k.inference.predictors import ModelPredictor, TTAPredictor, default_batch, make_predictor
from sirst5k.inference.runtime import check_precision, side_by_side
from sirst5k.io import load_split, read_image
from sirst5k.machine import bf16_supported, cpu_fields, describe_cpu
from sirst5k_cli.cli import main
from trainer.checkpoint import load_model


def plain_probs(checkpoint, image: np.ndarray) -> np.ndarray:
    """The independent route: the model in its default layout, one image, float32, zero-padded
    at the bottom/right to the stride, sigmoid of the main head, cropped back."""
    model, _ = load_model(checkpoint, "cpu")
    h, w = image.shape
    s = model.stride
    x = np.zeros((1, 1, h + (-h) % s, w + (-w) % s), np.float32)
    x[0, 0, :h, :w] = image
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x))[0])[0, 0, :h, :w].numpy()


@pytest.mark.slow
def test_frames_side_by_side_equal_a_plain_forward(tiny_checkpoint, demo_source, monkeypatch):
    import sirst5k.inference.predictors as predictors

    threads, idents = [], []  # torch's thread count inside each forward, and its thread
    real = predictors.predict_probs

    def counting(*a, **kw):
        threads.append(torch.get_num_threads())
        idents.append(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr(predictors, "predict_probs", counting)
    torch.set_num_threads(2)  # the autouse fixture gives one; it restores its own after
    images = [read_image(p.image) for p in load_split(demo_source, "test")[:5]]
    assert len({im.shape for im in images}) > 1  # mixed sizes
    p = ModelPredictor(tiny_checkpoint, "cpu", window=0)
    assert p.lanes == 2 and default_batch(p) == 2 and p.info["precision"] == "fp32"
    got = p(images)
    assert threads == [1] * 5  # each frame alone on one of the 2 threads
    assert torch.get_num_threads() == 2  # the caller's count, and that of threads started later
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert later == [2]
    assert TTAPredictor(p).lanes == 2  # --tta hands the 8 views' frames to the same lanes
    again = p(images[:2])  # the next call runs on the same 2 threads, still one thread each
    assert threads[5:] == [1, 1] and set(idents[5:]) <= set(idents[:5]) and len(set(idents)) == 2
    assert threading.current_thread().name not in idents
    np.testing.assert_array_equal(again[1], got[1])
    for im, prob in zip(images, got, strict=True):
        want = plain_probs(tiny_checkpoint, im)
        assert prob.shape == im.shape
        np.testing.assert_allclose(prob, want, atol=1e-5)
    alone = p(images[:1])[0]  # a lone frame runs on both threads
    assert threads[-1] == 2
    np.testing.assert_allclose(alone, got[0], atol=1e-5)


def test_bf16_support_is_read_from_the_cpu_flags():
    """torch's own check accepts any AVX-512 CPU; bf16 needs AVX512-BF16 or AMX."""
    assert not bf16_supported("cpu", "processor : 0\nflags : fpu sse avx2 avx512f avx512bw\n")
    assert bf16_supported("cpu", "flags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n")
    assert bf16_supported("cpu", "flags : fpu amx_bf16 amx_tile\n")
    assert not bf16_supported("cpu", "")  # no flags line (another system)


def test_describe_cpu_tells_two_cpus_of_one_name_apart():
    """Two 2-core VMs that both call themselves "AMD EPYC" differ by family/model and by their
    vector instructions; the first processor's fields are the ones read."""
    zen3 = (
        "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu sse avx avx2 fma\n\nprocessor\t: 1\nmodel name\t: other\nflags : avx512f\n"
    )
    zen4 = zen3.replace(": 1\n", ": 17\n", 1).replace("fma", "fma avx512f avx512_vnni avx512_bf16")
    cores = f"{os.cpu_count()} cores"
    assert describe_cpu(zen3) == f"AMD EPYC (family 25 model 1), avx2, {cores}"
    want = f"AMD EPYC (family 25 model 17), avx2, avx512f, avx512_bf16, avx512_vnni, {cores}"
    assert describe_cpu(zen4) == want
    assert cpu_fields(zen3)["flags"] == {"fpu", "sse", "avx", "avx2", "fma"}
    assert describe_cpu("").endswith(cores)  # no /proc/cpuinfo fields: still one line


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no bf16 instructions")
def test_bf16_agrees_with_fp32_on_the_bundled_model():
    """Four Gaussian targets (peak +80, sigma 1.2 px) on a flat noisy 256 x 256 background:
    both precisions find all four, and their masks at 0.5 agree (the NUDT-SIRST test split and
    real frames: docs/evaluation.md)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    image = rng.normal(90, 2, (256, 256))
    points = [(60, 60), (121, 81), (200, 180), (40, 210)]
    for y, x in points:
        image += 80 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
    image = np.clip(image, 0, 255).astype(np.uint8)
    fp32 = make_predictor("nudt", device="cpu")([image])[0]
    pred = make_predictor("nudt", device="cpu", precision="bf16")
    bf16 = pred([image])[0]
    assert pred.info["precision"] == "bf16"
    assert all(fp32[p] > 0.5 and bf16[p] > 0.5 for p in points)
    a, b = fp32 > 0.5, bf16 > 0.5
    assert (a & b).sum() / (a | b).sum() >= 0.95
    assert 0 < np.abs(fp32 - bf16).max() and np.abs(fp32 - bf16).mean() < 0.001  # bf16 ran


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no bf16 instructions")
def test_cli_precision_reaches_the_predictor(tiny_checkpoint, demo_source, tmp_path):
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        r = CliRunner().invoke(main, ["eval", str(demo_source), "--checkpoint",
                                      str(tiny_checkpoint), "--precision", precision, "--out",
                                      str(out), "--worst", "0", "--device", "cpu"])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert json.loads((out / "metrics.json").read_text())["precision"] == precision


def test_precision_errors(tmp_path, demo_source, monkeypatch):
    with pytest.raises(UserError, match="choose one of fp32, bf16"):
        check_precision("fp16", "cpu")
    assert check_precision("fp32", "cpu") is False
    import sirst5k.inference.runtime as runtime

    monkeypatch.setattr(runtime, "bf16_supported", lambda device: False)
    with pytest.raises(UserError, match="cpu has no bf16 support"):
        check_precision("bf16", "cpu")
    with pytest.raises(UserError, match="--precision is a network's option"):
        make_predictor(method="tophat", precision="bf16")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")  # refused before it is read
    with pytest.raises(UserError, match="runs in fp32 on ONNX Runtime"):
        make_predictor(onnx, precision="bf16")
    r = CliRunner().invoke(main, ["eval", str(demo_source), "--method", "tophat",
                                  "--precision", "bf16", "--out", str(tmp_path / "e")])  # fmt: skip
    assert r.exit_code == 1 and "--precision is a network's option" in r.output
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kept_lane_threads_after_fork():
    """A forked child (multiprocessing's fork start) has none of the parent's kept threads: it
    makes its own instead of waiting forever on the parent's queue."""
    assert side_by_side(lambda v: v * 2, [1, 2, 3], 2) == [2, 4, 6]
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the lanes answer
        os._exit(0 if side_by_side(lambda v: v + 1, [1, 2, 3], 2) == [2, 3, 4] else 1)
    for _ in range(200):  # 20 s at most
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the parent's lane threads")
    assert os.waitstatus_to_exitcode(status) == 0
