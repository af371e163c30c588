"""The AFF U-Net: shapes and gradients at odd sizes, parameter counts, checkpoint loading."""

import pytest
import torch

from sirst5k.errors import CheckpointError, UserError
from trainer.checkpoint import SCHEMA, load_model, save_checkpoint
from trainer.forward import count_params, pad_to_stride, resolve_device
from trainer.nets.aff_unet import ModelConfig
from trainer.registry import build_model

TINY = dict(widths=(2, 3, 4, 5, 6), blocks=1, reduction=1)


@pytest.mark.parametrize("hw", [(37, 53), (16, 16), (65, 31)])
def test_shapes_and_gradients_at_odd_sizes(hw):
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(4, 4, 8, 8, 8), blocks=1))
    x = torch.rand(2, 1, *hw) * 255
    out = model(x)
    h, w = hw
    assert [o.shape[-2:] for o in out] == [
        (h, w),
        (h // 2, w // 2),
        (h // 4, w // 4),
        (h // 8, w // 8),
    ]
    assert all(o.shape[:2] == (2, 1) for o in out)
    sum(o.mean() for o in out).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the 1/16 level feeds the decoder, so the deepest stage gets gradient too
    assert model.encoder[4][0].conv1.weight.grad.abs().sum() > 0


def test_single_head_and_stride():
    model = build_model({"widths": [4, 4, 4, 4, 4], "blocks": 1, "deep_supervision": False})
    assert model.stride == 16
    out = model(torch.zeros(1, 1, 32, 32))
    assert isinstance(out, list) and len(out) == 1 and out[0].shape == (1, 1, 32, 32)


def _conv(cin, cout, k, bias):
    return cin * cout * k * k + (cout if bias else 0)


def _res(cin, cout):  # two 3x3 convs + 2 BN (+ 1x1 conv + BN shortcut when widths differ)
    n = _conv(cin, cout, 3, False) + _conv(cout, cout, 3, False) + 4 * cout
    return n + (_conv(cin, cout, 1, False) + 2 * cout if cin != cout else 0)


def _aff(c, hidden):
    return _conv(c, hidden, 1, True) + _conv(hidden, c, 1, True) + _conv(2, 1, 7, True)


def test_param_count_matches_hand_count():
    w = TINY["widths"]
    enc = sum(_res(cin, c) for cin, c in zip((1,) + w[:-1], w, strict=True))
    dec = sum(_res(w[i + 1] + w[i], w[i]) for i in range(4))
    aff = sum(_aff(w[i], max(w[i] // 1, 4)) for i in range(4))
    heads = sum(_conv(w[i], 1, 1, True) for i in range(4))
    assert count_params(build_model(ModelConfig(**TINY))) == enc + dec + aff + heads
    no_att = build_model(ModelConfig(**TINY, attention=False))
    assert count_params(no_att) == enc + dec + heads


def _hand_count(widths, blocks, reduction):
    """Encoder stages and decoder nodes of `blocks` residual blocks, AFF, 4 heads, by hand."""
    w = widths
    enc = sum(
        _res(cin, c) + (blocks - 1) * _res(c, c) for cin, c in zip((1, *w[:-1]), w, strict=True)
    )
    dec = sum(_res(w[i + 1] + w[i], w[i]) + (blocks - 1) * _res(w[i], w[i]) for i in range(4))
    aff = sum(_aff(w[i], max(w[i] // reduction, 4)) for i in range(4))
    heads = sum(_conv(w[i], 1, 1, True) for i in range(4))
    return enc + dec + aff + heads


def test_default_and_cpu30_sizes():
    """The sizes the docs quote: 4,051,852 (default, 2 blocks) and 523,088 (cpu30, 1 block)."""
    n = count_params(build_model(ModelConfig()))
    assert n == _hand_count((16, 32, 64, 128, 256), 2, 4) == 4_051_852
    small = build_model(ModelConfig(widths=(8, 16, 32, 64, 128), blocks=1))
    assert count_params(small) == _hand_count((8, 16, 32, 64, 128), 1, 4) == 523_088


def test_normalisation_inside_model():
    torch.manual_seed(0)
    raw_in = build_model(ModelConfig(**TINY, mean=107.81, std=33.02)).eval()
    norm_in = build_model(ModelConfig(**TINY, mean=0.0, std=1.0)).eval()
    norm_in.load_state_dict(raw_in.state_dict())  # identical weights; mean/std not in the dict
    assert (raw_in.mean.item(), norm_in.mean.item()) == (pytest.approx(107.81), 0.0)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        a = raw_in(x)
        b = norm_in((x - 107.81) / 33.02)
        unnormalised = norm_in(x)
    assert len(a) == len(b) == 4
    for oa, ob in zip(a, b, strict=True):
        assert torch.allclose(oa, ob, rtol=1e-5, atol=1e-5)
    # the check can fail: the same weights on raw 0..255 input give other outputs
    assert not torch.allclose(a[0], unnormalised[0], rtol=1e-3, atol=1e-3)


def test_bad_config():
    with pytest.raises(ValueError, match="5 positive stage widths"):
        ModelConfig(widths=(8, 16))


def test_pad_to_stride():
    x, (h, w) = pad_to_stride(torch.ones(1, 1, 37, 48), 16)
    assert x.shape == (1, 1, 48, 48) and (h, w) == (37, 48)
    assert x[..., 37:, :].sum() == 0 and x[..., :37, :].sum() == 37 * 48


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    for name in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=f"--device {name}: no CUDA device"):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"


def test_load_model_roundtrip_and_errors(tmp_path):
    model = build_model(ModelConfig(**TINY))
    path = tmp_path / "m.pt"
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(), "schema": SCHEMA}
    save_checkpoint(ckpt, path)
    loaded, got = load_model(path)
    assert not loaded.training and got["schema"] == SCHEMA
    x = torch.rand(1, 1, 32, 32) * 255
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])

    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a sirst5k"):
        load_model(tmp_path / "other.pt")
    bad = dict(ckpt, model_config=dict(ckpt["model_config"], widths=[4, 4, 4, 4, 4]))
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(tmp_path / "bad.pt")
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "trunc.pt")


def test_checkpoint_digest_catches_flipped_bytes(tmp_path):
    """64 flipped bytes in a weight tensor of a saved checkpoint: load refuses it."""
    import zipfile

    from sirst5k.errors import CheckpointError
    from trainer.checkpoint import read_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    path = tmp_path / "m.pt"
    save_checkpoint({"schema": SCHEMA, "model": model.state_dict(), "model_config": TINY}, path)
    assert read_checkpoint(path)["digest"]  # written, and checked on load
    # flip 64 bytes inside the largest tensor's storage record of the zip (the archive stays
    # readable: torch's zip records are stored, not compressed)
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw = bytearray(path.read_bytes())
    for i in range(64):
        raw[offset + 16 + i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(path)
