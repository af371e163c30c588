"""Reading source datasets: layouts, split discovery, pixel conventions (sirst5k/io.py)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from sirst5k.errors import UserError
from sirst5k.io import (
    binarise_mask,
    find_split_file,
    load_split,
    read_image,
    read_pair,
    to_grey_uint8,
)


def write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def test_uint16_is_stretched_min_to_max():
    a = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    # (v - 1000) * 255 / 2000, rounded: 0, 127.5 -> 128, 255
    assert to_grey_uint8(a).tolist() == [[0, 128], [255, 0]]


def test_flat_16bit_image_becomes_zero():
    assert to_grey_uint8(np.full((2, 3), 7, np.uint16)).tolist() == [[0, 0, 0]] * 2


def test_rgb_grey_rgba_and_palette_files(tmp_path):
    grey = np.array([[0, 50], [200, 255]], np.uint8)
    rgb = np.dstack([grey] * 3)
    rgba = np.dstack([grey] * 3 + [np.full_like(grey, 9)])
    assert read_image(write(tmp_path / "g.png", grey)).tolist() == grey.tolist()
    assert read_image(write(tmp_path / "c.png", rgb)).tolist() == grey.tolist()
    assert read_image(write(tmp_path / "a.png", rgba)).tolist() == grey.tolist()
    # a colour pixel: BT.601 luma 0.299 R + 0.587 G + 0.114 B, OpenCV stores BGR
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[0, 0] = (0, 0, 200)  # pure red 200 -> 59.8 -> 60
    assert read_image(write(tmp_path / "r.png", bgr)).item() == 60
    w16 = write(tmp_path / "w.png", np.array([[0, 65535]], np.uint16))
    assert read_image(w16).tolist() == [[0, 255]]


def test_palette_png_is_expanded(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    img = pil.new("P", (2, 1))
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    img.putdata([0, 1])
    img.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").tolist() == [[0, 255]]


def test_mask_binarisation_rule():
    assert binarise_mask(np.array([[0, 255]], np.uint8)).tolist() == [[0, 1]]
    assert binarise_mask(np.array([[0, 1]], np.uint8)).tolist() == [[0, 1]]  # 0/1 masks
    assert binarise_mask(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 1]]
    assert binarise_mask(np.array([[0, 1]], bool)).tolist() == [[0, 1]]
    assert binarise_mask(np.zeros((2, 2), np.uint8)).sum() == 0
    with pytest.raises(UserError, match="not binary"):
        binarise_mask(np.array([[0, 100, 255]], np.uint8))
    with pytest.raises(UserError, match="not binary"):
        binarise_mask(np.array([[10, 255]], np.uint8))  # background must be 0


def make_nudt(root: Path, stems, pixels0=False, size=(8, 8)):
    for s in stems:
        write(root / "images" / f"{s}.png", np.full(size, 40, np.uint8))
        m = np.zeros(size, np.uint8)
        m[2, 3] = 255
        name = f"{s}_pixels0.png" if pixels0 else f"{s}.png"
        write(root / "masks" / name, m)
    return root


def test_nudt_layout_with_split_dir(tmp_path):
    root = make_nudt(tmp_path / "d", ["a", "b", "c"])
    (root / "splits" / "50_50").mkdir(parents=True)
    (root / "splits" / "50_50" / "train.txt").write_text("b\na\n")
    (root / "splits" / "50_50" / "test.txt").write_text("c\n")
    train = load_split(root, "train")
    assert [p.stem for p in train] == ["b", "a"]
    assert [p.stem for p in load_split(root, "test")] == ["c"]
    image, mask = read_pair(train[0])
    assert image.shape == (8, 8) and mask.sum() == 1 and mask[2, 3] == 1


def test_sirst_layout_pixels0_and_trainval(tmp_path):
    root = make_nudt(tmp_path / "d", ["Misc_1", "Misc_2"], pixels0=True)
    (root / "idx_427").mkdir()
    (root / "idx_427" / "trainval.txt").write_text("Misc_1\n")
    (root / "idx_427" / "test.txt").write_text("Misc_2\n")
    (pair,) = load_split(root, "train")
    assert pair.mask.name == "Misc_1_pixels0.png"
    assert find_split_file(root, "test").name == "test.txt"


def test_img_idx_layout_and_explicit_split(tmp_path):
    root = make_nudt(tmp_path / "d", ["x", "y"])
    (root / "img_idx").mkdir()
    (root / "img_idx" / "train_NUDT.txt").write_text("x\n")
    (root / "img_idx" / "test_NUDT.txt").write_text("y\n")
    assert [p.stem for p in load_split(root, "train")] == ["x"]
    other = tmp_path / "mysplit"
    other.mkdir()
    (other / "train.txt").write_text("y\n")
    (other / "test.txt").write_text("x\n")
    assert [p.stem for p in load_split(root, "train", split=other)] == ["y"]
    assert [p.stem for p in load_split(root, "test", split=other / "train.txt")] == ["x"]
    assert [p.stem for p in load_split(root, "test", split=other / "test.txt")] == ["x"]
    assert [p.stem for p in load_split(root, "train", split=other / "test.txt")] == ["y"]


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(UserError, match="no such dataset folder"):
        load_split(tmp_path / "missing", "train")
    root = make_nudt(tmp_path / "d", ["a"])
    with pytest.raises(UserError, match="no train split file"):
        load_split(root, "train")
    (root / "train.txt").write_text("a\nzzz\n")
    with pytest.raises(UserError, match="'zzz'"):
        load_split(root, "train")
    (root / "train.txt").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        load_split(root, "train")
    bad = root / "images" / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="bad.png: cannot decode"):
        read_image(bad)
    write(root / "masks" / "a.png", np.zeros((5, 8), np.uint8))
    (root / "train.txt").write_text("a\n")
    with pytest.raises(UserError, match=r"mask is 5x8 \(h x w\) but its image is 8x8"):
        read_pair(load_split(root, "train")[0])


def test_image_without_mask(tmp_path):
    root = make_nudt(tmp_path / "d", ["a"])
    write(root / "images" / "lonely.png", np.zeros((4, 4), np.uint8))
    (root / "train.txt").write_text("lonely\n")
    (pair,) = load_split(root, "train")
    assert pair.mask is None
    with pytest.raises(UserError, match="no mask found for 'lonely'"):
        read_pair(pair)


def test_split_file_must_name_its_split(tmp_path):
    """A neutral name (ids.txt) would serve as both train and test: refused, not leaked."""
    root = make_nudt(tmp_path / "d", ["x", "y"])
    (root / "ids.txt").write_text("x\n")
    with pytest.raises(UserError, match="neither train nor test"):
        load_split(root, "test", split=root / "ids.txt")
    with pytest.raises(UserError, match="neither train nor test"):
        load_split(root, "train", split=root / "ids.txt")
    # a caller that reads one split only (eval) may name it as it likes
    assert [p.stem for p in load_split(root, "test", split=root / "ids.txt", alone=True)] == ["x"]
    # val is part of trainval: never its test partner; test.txt is
    (root / "trainval.txt").write_text("x\n")
    (root / "val.txt").write_text("y\n")
    with pytest.raises(UserError, match=r"no test list beside it \(looked for test.txt\)"):
        load_split(root, "test", split=root / "trainval.txt")
    (root / "test.txt").write_text("y\n")
    assert [p.stem for p in load_split(root, "test", split=root / "trainval.txt")] == ["y"]


def test_split_file_not_text(tmp_path):
    root = make_nudt(tmp_path / "d", ["x"])
    (root / "train.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="cannot read this split file"):
        load_split(root, "train")


def test_size_mismatch_reads_h_by_w(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((90, 100), np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), np.zeros((100, 90), np.uint8))
    (root / "test.txt").write_text("a\n")
    with pytest.raises(UserError, match=r"mask is 100x90 \(h x w\) but its image is 90x100"):
        read_pair(load_split(root, "test")[0])
