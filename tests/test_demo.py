"""The demo dataset: layout, determinism, target sizes and counts, binary masks, mixed sizes."""

import hashlib

import cv2
import numpy as np
import pytest
from scipy import ndimage

from sirst5k import io as ds
from sirst5k.demo import DemoConfig, generate_demo
from sirst5k.errors import UserError


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "demo"
    generate_demo(out, DemoConfig(n=40, size=96, seed=1))
    return out


def test_layout_and_splits(demo):
    stems = sorted(p.stem for p in (demo / "images").glob("*.png"))
    assert len(stems) == 40 and stems == sorted(p.stem for p in (demo / "masks").glob("*.png"))
    train = (demo / "splits/50_50/train.txt").read_text().split()
    test = (demo / "splits/50_50/test.txt").read_text().split()
    assert len(train) == 20 and len(test) == 20 and sorted(train + test) == stems
    assert [p.stem for p in ds.load_split(demo, "train")] == train  # the reader finds it all


def test_targets_small_binary_and_mostly_present(demo):
    counts = []
    for p in sorted((demo / "masks").glob("*.png")):
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        img = cv2.imread(str(demo / "images" / p.name), cv2.IMREAD_UNCHANGED)
        assert m.dtype == np.uint8 and m.ndim == 2 and set(np.unique(m)) <= {0, 255}
        assert img.dtype == np.uint8 and img.ndim == 2 and img.shape == m.shape
        lab, z = ndimage.label(m, structure=np.ones((3, 3)))
        counts.append(z)
        for sl in ndimage.find_objects(lab):
            extent = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
            assert 1 <= extent <= 10
        # targets are brighter than their surroundings
        for k in range(1, z + 1):
            ring = cv2.dilate((lab == k).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            ring &= lab == 0
            assert img[lab == k].max() > np.median(img[ring])
    assert max(counts) <= 3 and sum(c >= 1 for c in counts) >= 0.75 * len(counts)


def test_images_look_like_clutter_not_flat(demo):
    img = cv2.imread(str(next((demo / "images").glob("*.png"))), 0).astype(float)
    assert img.std() > 5 and 10 < img.mean() < 245


def test_deterministic_by_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        generate_demo(out, DemoConfig(n=6, size=48, seed=seed, sizes="mixed"))
    assert _digest(a) == _digest(b) != _digest(c)


def test_mixed_sizes(tmp_path):
    generate_demo(tmp_path / "m", DemoConfig(n=12, size=64, sizes="mixed"))
    shapes = {cv2.imread(str(p), 0).shape for p in (tmp_path / "m/images").glob("*.png")}
    assert len(shapes) > 1 and max(h for h, _ in shapes) == 64
    assert all(48 <= h <= 64 and 48 <= w <= 64 for h, w in shapes)


def test_existing_out_and_bad_config(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="--force"):
        generate_demo(tmp_path / "x", DemoConfig(n=4, size=32))
    with pytest.raises(UserError, match="--n 1"):
        DemoConfig(n=1)
    with pytest.raises(UserError, match="--sizes"):
        DemoConfig(sizes="huge")


def test_force_replaces_only_a_demo_set(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    with pytest.raises(UserError, match="not a demo set"):
        generate_demo(mine, DemoConfig(n=4, size=32), force=True)
    assert (mine / "thesis.tex").read_text() == "keep"
    demo = tmp_path / "demo"
    generate_demo(demo, DemoConfig(n=4, size=32, seed=1))
    first = (demo / "images" / "demo_0000.png").read_bytes()
    generate_demo(demo, DemoConfig(n=6, size=32, seed=2), force=True)
    assert len(list((demo / "images").glob("*.png"))) == 6
    assert (demo / "images" / "demo_0000.png").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "mine"]  # no leftovers
