"""`sirst5k demo-data / synth / inspect` through click's CliRunner: every bad input of the issue
gives a non-zero exit, one line naming the file or value, and nothing at the destination."""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from sirst5k import store
from sirst5k_cli.cli import main


@pytest.fixture
def src(demo_source, tmp_path):
    """A private, editable copy of the demo source."""
    out = tmp_path / "src"
    shutil.copytree(demo_source, out)
    return out


def _train_stem(src, k=0):
    return (src / "splits/50_50/train.txt").read_text().split()[k]


def synth(*args):
    return CliRunner().invoke(main, ["synth", *map(str, args)])


def _assert_fails(res, out, *words, code=1):
    assert res.exit_code == code, res.output
    for w in words:
        assert str(w) in res.output, (w, res.output)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no partial file left either


def test_synth_then_inspect_ok(src, tmp_path):
    out = tmp_path / "s.h5"
    res = synth(src, "-o", out, "--alpha", "0.1", "--s", "3")
    assert res.exit_code == 0, res.output
    for word in ("originals", "negatives", "noise pool", "test images", "seconds", "MB"):
        assert word in res.output
    res = CliRunner().invoke(main, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("OK") and "negatives" in res.output


def test_compress_option(src, tmp_path):
    """--compress alone is gzip-1 on the images, a value picks the filter; the pixels read
    back the same; masks are gzip-1 always; a bad value is a usage error (exit 2)."""
    import h5py

    plain = tmp_path / "plain.h5"
    assert synth(src, "-o", plain).exit_code == 0
    for args, want in ((("--compress",), "gzip"), (("--compress", "lzf"), "lzf")):
        out = tmp_path / f"{want}.h5"
        res = synth(src, "-o", out, *args)
        assert res.exit_code == 0, res.output
        with h5py.File(out) as f, h5py.File(plain) as g:
            assert f["train/image"].compression == want and g["train/image"].compression is None
            assert f["train/mask"].compression == "gzip" == g["train/mask"].compression
            if want == "gzip":
                assert f["train/image"].compression_opts == 1
        a, b = store.read_split(out, "train"), store.read_split(plain, "train")
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        res = CliRunner().invoke(main, ["inspect", str(out)])
        assert res.exit_code == 0 and want in res.output, res.output
    out = tmp_path / "x.h5"
    _assert_fails(synth(src, "-o", out, "--compress", "zip"), out, "zip", code=2)


def test_missing_source(tmp_path):
    out = tmp_path / "s.h5"
    _assert_fails(synth(tmp_path / "nope", "-o", out), out, "nope")


def test_empty_source(tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    out = tmp_path / "s.h5"
    _assert_fails(synth(tmp_path / "empty", "-o", out), out, "no images")
    _assert_fails(synth(tmp_path, "-o", out), out, "no images/ folder")


def test_image_without_mask(src, tmp_path):
    stem = _train_stem(src, 2)
    (src / "masks" / f"{stem}.png").unlink()
    out = tmp_path / "s.h5"
    _assert_fails(synth(src, "-o", out), out, f"{stem}.png", "no mask")


def test_mask_size_mismatch(src, tmp_path):
    stem = _train_stem(src, 1)
    cv2.imwrite(str(src / "masks" / f"{stem}.png"), np.zeros((17, 23), np.uint8))
    out = tmp_path / "s.h5"
    _assert_fails(synth(src, "-o", out), out, f"masks/{stem}.png", "17x23 (h x w)")


def test_corrupt_image(src, tmp_path):
    stem = _train_stem(src, 3)
    (src / "images" / f"{stem}.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "s.h5"
    _assert_fails(synth(src, "-o", out), out, f"images/{stem}.png", "cannot decode")


def test_non_binary_mask(src, tmp_path):
    stem = _train_stem(src, 0)
    m = np.zeros((64, 64), np.uint8)
    m[3, 3], m[5, 5] = 128, 255
    img = cv2.imread(str(src / "images" / f"{stem}.png"), 0)
    cv2.imwrite(str(src / "masks" / f"{stem}.png"), m[: img.shape[0], : img.shape[1]])
    out = tmp_path / "s.h5"
    _assert_fails(synth(src, "-o", out), out, f"masks/{stem}.png", "not binary")


@pytest.mark.parametrize(
    "opts, words, code",
    [
        (["--alpha", "1.5"], ["--alpha", "1.5"], 1),
        (["--alpha", "-0.2"], ["--alpha", "-0.2"], 1),
        (["--s", "4"], ["--s", "4", "odd"], 1),
        (["--s", "101"], ["--s 101", "choose an odd --s <= 47, e.g. --s 47"], 1),  # 48 px
        (["--grid", "40"], ["--grid 40", "choose --grid <="], 1),
        (["--sigma", "1e-9"], ["noise pool", "--sigma"], 1),
        (["--resize", "lanczos"], ["--resize", "lanczos"], 1),
    ],
)
def test_bad_values(src, tmp_path, opts, words, code):
    out = tmp_path / "s.h5"
    _assert_fails(synth(src, "-o", out, *opts), out, *words, code=code)


def test_empty_pool_is_fine_without_noise(src, tmp_path):
    out = tmp_path / "s.h5"
    res = synth(src, "-o", out, "--sigma", "1e-9", "--alpha", "0")
    assert res.exit_code == 0, res.output
    assert (store.read_split(out, "train").columns["noise_source"] == -1).all()


def test_existing_output_needs_force(src, tmp_path):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    res = synth(src, "-o", out)
    assert res.exit_code == 1 and str(out) in res.output and "--force" in res.output
    assert out.read_bytes() == b"precious"
    assert synth(src, "-o", out, "--force").exit_code == 0
    assert store.read_attrs(out)["format"] == store.FORMAT


def test_skip_bad_reports_and_records(src, tmp_path):
    stems = (src / "splits/50_50/train.txt").read_text().split()
    (src / "images" / f"{stems[0]}.png").write_bytes(b"junk")
    (src / "masks" / f"{stems[1]}.png").unlink()
    out = tmp_path / "s.h5"
    res = synth(src, "-o", out, "--skip-bad")
    assert res.exit_code == 0, res.output
    assert f"{stems[0]}.png" in res.output and f"{stems[1]}.png" in res.output
    attrs = store.read_attrs(out)
    skipped = json.loads(attrs["skipped"])
    # the corrupt image is named by its image file, the missing mask by its image file too
    assert sorted(s["file"].rsplit("/", 1)[-1] for s in skipped) == [
        f"{st}.png" for st in stems[:2]
    ]
    assert "cannot decode" in skipped[0]["reason"] and "no mask" in skipped[1]["reason"]
    assert stems[0] not in attrs["sources"] and stems[1] not in attrs["sources"]
    assert len(store.read_split(out, "train").columns["kind"]) > 0


def test_inspect_failures(demo_store, tmp_path):
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "none.h5")])
    assert res.exit_code == 1 and "none.h5" in res.output
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    res = CliRunner().invoke(main, ["inspect", str(junk)])
    assert res.exit_code == 1 and "junk.h5" in res.output and "OK" not in res.output
    bad = tmp_path / "bad.h5"
    shutil.copy(demo_store, bad)
    import h5py

    with h5py.File(bad, "r") as f:
        off = f["train/image"].id.get_chunk_info(3).byte_offset
    with open(bad, "r+b") as fh:
        fh.seek(off + 100)
        fh.write(b"\x00\xff\x00\xff")
    res = CliRunner().invoke(main, ["inspect", str(bad)])
    assert res.exit_code == 1 and "bad.h5" in res.output and len(res.output.splitlines()) == 1


def test_demo_data_cli(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo-data", str(out), "--n", "6", "--size", "48"])
    assert res.exit_code == 0, res.output
    assert "wrote 6 images (3 train, 3 test," in res.output and str(out) in res.output
    assert len(list((out / "images").glob("*.png"))) == 6
    res = CliRunner().invoke(main, ["demo-data", str(out)])
    assert res.exit_code == 1 and "--force" in res.output
    res = CliRunner().invoke(main, ["demo-data", str(out), "--n", "6", "--force"])
    assert res.exit_code == 0


def test_cli_import_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, sirst5k_cli.cli, sirst5k.synth; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_split_option_and_missing_split(src, tmp_path):
    splits = tmp_path / "mysplits"
    shutil.move(src / "splits" / "50_50", splits)
    out = tmp_path / "s.h5"
    words = ("no train/test split files", "--split TRAIN.txt --split TEST.txt")
    _assert_fails(synth(src, "-o", out), out, *words)
    res = synth(src, "-o", out, "--split", splits / "train.txt")
    assert res.exit_code == 0, res.output
    assert store.read_attrs(out)["params"]["test_split"] == str(splits / "test.txt")


def test_other_layouts_16bit_rgb_and_pixels0_masks(src, tmp_path):
    """SIRST conventions: <stem>_pixels0.png masks, 16-bit and RGB images."""
    stems = (src / "splits/50_50/train.txt").read_text().split()
    img0 = cv2.imread(str(src / "images" / f"{stems[0]}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(src / "images" / f"{stems[0]}.png"), img0.astype(np.uint16) * 200 + 1000)
    img1 = cv2.imread(str(src / "images" / f"{stems[1]}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(src / "images" / f"{stems[1]}.png"), np.dstack([img1] * 3))
    for p in (src / "masks").glob("*.png"):
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(p.with_name(f"{p.stem}_pixels0.png")), m)
        p.unlink()
    out = tmp_path / "s.h5"
    res = synth(src, "-o", out)
    assert res.exit_code == 0, res.output
    train = store.read_split(out, "train")
    h, w = img0.shape
    lo, hi = int(img0.min()), int(img0.max())  # 16-bit stretched from its own min..max
    expected = np.round((img0.astype(float) - lo) * 255.0 / (hi - lo)).astype(np.uint8)
    assert np.array_equal(train.row(0)[0], expected)
    assert np.array_equal(train.row(1)[0], img1)  # grey RGB -> the same grey
    assert train.mask.max() == 1 and CliRunner().invoke(main, ["inspect", str(out)]).exit_code == 0
