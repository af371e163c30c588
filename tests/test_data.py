"""Streaming the store: tiny stores, the source split, crops, the dataset and the sampler."""

import numpy as np
import pytest
import torch

from sirst5k import store
from trainer.data import (
    FreshDataset,
    GroupBatchSampler,
    StoreData,
    TrainDataset,
    crop_pad,
    crop_window,
    make_augment,
    make_photometric,
    negative_boxes,
    sample_crop,
    seed_each,
    split_by_source,
    val_batches,
)


def make_tiny_store(path, n_src=8, canvas=32, seed=0, negatives=True, equal=False):
    """A store of random images: one 2x2 target per source image; 4 rotations per target.
    Every third source image is (canvas - 5) x (canvas - 3) unless `equal` (all canvas^2)."""
    rng = np.random.default_rng(seed)
    rows = []  # (image, mask, source, kind, target, rotation, group, noise_source)
    for s in range(n_src):
        h, w = (canvas, canvas) if s % 3 or equal else (canvas - 5, canvas - 3)
        img = rng.integers(60, 160, (h, w)).astype(np.uint8)
        msk = np.zeros((h, w), np.uint8)
        y, x = rng.integers(2, h - 4), rng.integers(2, w - 4)
        img[y : y + 2, x : x + 2] = 250
        msk[y : y + 2, x : x + 2] = 1
        rows.append((img, msk, s, 0, -1, -1, -1, -1))
        if negatives:
            for r in range(4):
                neg = img.copy()
                neg[y - 1 : y + 2, x - 1 : x + 2] = np.rot90(img[y - 1 : y + 2, x - 1 : x + 2], r)
                rows.append((neg, msk, s, 1, 0, 90 * r, s, (s + 1) % n_src))
    keys = ("source", "kind", "target", "rotation", "group", "noise_source")
    cols = {k: np.array([r[2 + i] for r in rows], store.COLUMNS[k]) for i, k in enumerate(keys)}
    train = store.Split.from_rows([r[0] for r in rows], [r[1] for r in rows], cols)
    n_test = 3
    test = store.Split.from_rows([r[0] for r in rows[:n_test]], [r[1] for r in rows[:n_test]],
                                 {"source": np.arange(n_test, dtype=np.int32)})  # fmt: skip
    names = [f"img{i:03d}" for i in range(n_src)]
    store.write_store(path, train, test, names, {"tiny": True}, seed, "tiny", force=True)
    return path


@pytest.fixture
def tiny_store(tmp_path):
    return make_tiny_store(tmp_path / "tiny.h5")


def test_split_by_source_has_no_leakage(tiny_store):
    data = StoreData(tiny_store, in_memory=True)
    c = data.columns
    train, val = split_by_source(c, 0.25, seed=3)
    assert len(val) == 2 and (c["kind"][val] == 0).all()
    val_src = set(c["source"][val].tolist())
    assert not val_src & set(c["source"][train].tolist())
    assert not val_src & set(c["noise_source"][train].tolist())
    assert set(train.tolist()).isdisjoint(val.tolist())
    # same seed, same split; originals_only keeps originals only
    assert np.array_equal(split_by_source(c, 0.25, seed=3)[1], val)
    tr_o, val_o = split_by_source(c, 0.25, seed=3, originals_only=True)
    assert np.array_equal(val_o, val) and (c["kind"][tr_o] == 0).all()
    assert len(tr_o) == 8 - 2


def test_crop_window_inside_and_forced():
    mask = np.zeros((32, 32), np.uint8)
    mask[20, 27] = 1
    rng = np.random.default_rng(0)
    for _ in range(200):
        y0, x0 = crop_window(mask, (30, 29), 8, rng, force=True)
        assert 0 <= y0 <= 22 and 0 <= x0 <= 21
        assert y0 <= 20 < y0 + 8 and x0 <= 27 < x0 + 8
    # smaller than the crop: window at 0, padded with zeros outside the real size
    assert crop_window(mask, (5, 6), 8, rng, force=False) == (0, 0)
    out = crop_pad(np.full((32, 32), 7, np.uint8), 0, 0, (5, 6), 8)
    assert out.shape == (8, 8) and out[:5, :6].min() == 7 and out.sum() == 7 * 30


def test_sampler_covers_once_and_keeps_groups():
    groups = np.array([-1, -1, 5, 5, 5, 5, -1, 9, 9, 9, 9, -1, -1, 2, 2, 2, 2])
    s = GroupBatchSampler(groups, batch_size=6, seed=1)
    s.set_epoch(3)
    batches = list(s)
    keys = [k for b in batches for k in b]
    assert sorted(p for p, _ in keys) == list(range(len(groups)))
    assert all(len(b) <= 6 for b in batches)
    for g in (5, 9, 2):
        where = {i for i, b in enumerate(batches) for p, _ in b if groups[p] == g}
        seeds = {sd for b in batches for p, sd in b if groups[p] == g}
        assert len(where) == 1 and len(seeds) == 1  # one batch, one shared seed
    s.set_epoch(3)
    assert list(s) == batches  # seeded
    s.set_epoch(4)
    assert list(s) != batches
    s.set_epoch(3, start=2)
    assert list(s) == batches[2:] and len(s) == len(batches) - 2


def test_sampler_shards_by_rank():
    groups = np.array([-1] * 11 + [4] * 4)
    full = GroupBatchSampler(groups, batch_size=8, seed=0, world_size=1)
    shards = [GroupBatchSampler(groups, 8, seed=0, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    b0, b1 = list(shards[0]), list(shards[1])
    assert len(b0) == len(b1) and all(len(b) <= 4 for b in b0 + b1)
    seen = [p for b in b0 + b1 for p, _ in b]
    assert set(seen) == set(range(len(groups)))  # every sample, padding only repeats
    assert full.per_rank == 8 and shards[0].per_rank == 4
    assert b0 != b1
    ungrouped = GroupBatchSampler(groups, 3, seed=0, keep_groups=False)
    assert all(len(b) == 3 for b in list(ungrouped)[:-1])


@pytest.mark.parametrize("in_memory", [True, False])
def test_dataset_items_and_group_windows(tiny_store, in_memory):
    data = StoreData(tiny_store, in_memory=in_memory)
    rows = np.arange(len(data))
    ds = TrainDataset(data, rows, crop=16)
    item = ds[(0, 123)]
    assert item["image"].shape == (1, 16, 16) and item["image"].dtype == torch.uint8
    assert item["mask"].shape == (1, 16, 16) and item["group"] == -1
    assert torch.equal(ds[(0, 123)]["image"], item["image"])  # same seed, same sample
    # the 4 rotations of group 2 with one seed: same window and flips, same mask
    members = np.flatnonzero(data.columns["group"] == 2)
    outs = [ds[(int(p), 77)] for p in members]
    for o in outs[1:]:
        assert torch.equal(o["mask"], outs[0]["mask"])
    # with a full 32x32 window the whole 3x3 patch is seen: the stored patch of member 0 is
    # [[84, 89, 116], [135, T, T], [71, T, T]] (T = 250); rotated by 90, 180, 270 degrees it
    # differs in 7, 8, 7 pixels (the rotated 2x2 target overlaps itself in 2, 1, 2 pixels)
    assert data.columns["size"][members].tolist() == [[32, 32]] * 4
    full = TrainDataset(data, rows, crop=32)
    outs = [full[(int(p), 77)] for p in members]
    diffs = []
    for o in outs[1:]:
        assert torch.equal(o["mask"], outs[0]["mask"])
        ys, xs = np.nonzero((o["image"][0] != outs[0]["image"][0]).numpy())
        assert len(ys) and np.ptp(ys) <= 2 and np.ptp(xs) <= 2  # in one 3x3 patch
        diffs.append(len(ys))
    assert diffs == [7, 8, 7]
    # streaming and in-memory give the same bytes
    other = TrainDataset(StoreData(tiny_store, in_memory=not in_memory), rows, crop=16)
    assert torch.equal(other[(5, 9)]["image"], ds[(5, 9)]["image"])


def test_val_batches_pad_each_batch_to_its_largest_image(tiny_store):
    data = StoreData(tiny_store)
    rows = np.array([0, 5, 10, 15])  # sources 0, 1, 2, 3: 27 x 29, 32 x 32, 32 x 32, 27 x 29
    got = list(val_batches(data, rows, batch_size=2))
    assert [g[0].shape for g in got] == [(2, 1, 32, 32), (2, 1, 32, 32)]
    only_small = list(val_batches(data, np.array([0, 15]), batch_size=2))
    assert only_small[0][0].shape == (2, 1, 27, 29)  # not the store's 32 x 32 canvas
    image, mask = data.read(0)
    assert image.shape == (27, 29) and data.canvas == (32, 32)
    img0, mask0, size0 = got[0]
    assert np.array_equal(img0[0, 0, :27, :29].numpy(), image) and not img0[0, 0, 27:].any()
    assert not img0[0, 0, :, 29:].any() and np.array_equal(mask0[0, :27, :29], mask)
    assert np.array_equal(got[1][0][0, 0].numpy(), data.read(10)[0])
    assert size0.tolist() == [[27, 29], [32, 32]]


def test_not_a_store(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"nope")
    with pytest.raises(store.StoreError, match="not an HDF5 file"):
        StoreData(tmp_path / "x.h5")


@pytest.mark.parametrize("batch_size", [16, 64])
def test_sampler_exact_batch_sizes_with_groups(batch_size):
    """The review's case: 597 originals and 749 groups of 4. Every batch but the dropped tail
    is exactly batch_size (one shape on CUDA), every position once, every group whole."""
    groups = np.r_[np.full(597, -1), np.repeat(np.arange(749), 4)]
    s = GroupBatchSampler(groups, batch_size, seed=7, keep_groups=True, drop_last=True)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert [len(b) for b in batches] == [batch_size] * (len(groups) // batch_size)
        pos = [p for b in batches for p, _ in b]
        assert len(set(pos)) == len(pos) == len(groups) // batch_size * batch_size
        for b in batches:
            g = groups[[p for p, _ in b]]
            ids, counts = np.unique(g[g >= 0], return_counts=True)
            assert (counts == 4).all()
            seeds = {(int(groups[p]), sd) for p, sd in b if groups[p] >= 0}
            assert len(seeds) == len(ids)  # one seed per group


def test_crop_window_holds_the_box():
    rng = np.random.default_rng(1)
    mask = np.zeros((64, 80), np.uint8)
    for h, w in [(64, 80), (40, 33), (20, 20)]:
        for _ in range(300):
            by, bx = int(rng.integers(h - 2)), int(rng.integers(w - 2))
            y0, x0 = crop_window(mask, (h, w), 32, rng, force=False, box=(by, bx, 3))
            assert 0 <= y0 <= max(h - 32, 0) and 0 <= x0 <= max(w - 32, 0)  # inside the image
            assert y0 <= by and by + 3 <= y0 + 32 and x0 <= bx and bx + 3 <= x0 + 32
    # box at the corner: the only window that holds it is the corner one
    assert crop_window(mask, (64, 80), 32, rng, False, box=(61, 77, 3)) == (32, 48)


def test_group_windows_hold_their_box(demo_store):
    """With group_crops (L_Neg on) every member's crop holds its rotated box: the members of a
    group share a window and flips, differ only inside one 3 x 3 patch, and none is empty."""
    data = StoreData(demo_store, in_memory=True)
    rows = np.arange(len(data))
    ds = TrainDataset(data, rows, crop=16, group_crops=True)
    g = data.columns["group"]
    differ = 0
    for gid in np.unique(g[g >= 0]):
        members = np.flatnonzero(g == gid)
        for seed in (1, 2, 3):
            outs = [ds[(int(p), seed)] for p in members]
            for o in outs:
                assert o["mask"].sum() > 0 and o["group"] == gid
            for o in outs[1:]:
                ys, xs = np.nonzero((o["image"][0] != outs[0]["image"][0]).numpy())
                if len(ys):
                    differ += 1
                    assert np.ptp(ys) <= 2 and np.ptp(xs) <= 2
    assert differ > 0
    # the box each negative row is given is where its image differs from rotation 0's
    c = store.read_split(demo_store, "train").columns  # with the rotation column
    boxes = negative_boxes(data, rows)
    assert (boxes[c["kind"] == store.KIND_ORIGINAL] == -1).all()
    for r in np.flatnonzero(c["rotation"] > 0):
        base = np.flatnonzero((g == g[r]) & (c["rotation"] == 0))[0]
        ys, xs = np.nonzero(data.read(r)[0] != data.read(base)[0])
        by, bx = boxes[r]
        assert ((ys >= by) & (ys < by + 3) & (xs >= bx) & (xs < bx + 3)).all()


def test_fresh_dataset_is_a_function_of_the_key(demo_store):
    data = StoreData(demo_store, in_memory=True)
    train, _ = split_by_source(data.columns, 0.2, seed=0)
    ds = FreshDataset(data, train, crop=32, length=50, alpha_range=(0.05, 0.2))
    orig = data.columns["kind"][train] == store.KIND_ORIGINAL
    assert len(ds) == 50 and len(ds.rows) == orig.sum()
    a, b, c = ds[(3, 11)], ds[(3, 11)], ds[(3, 12)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], c["image"])
    # a fresh negative of original i: the mixed image, one target box rotated, label with it
    rng = np.random.default_rng(5)
    img, mask, box = ds.synthesize(0, rng)
    h, w = ds.size[0]
    assert img.shape == (h, w) and mask.sum() == ds.mask[0].sum()  # rotation keeps the count
    by, bx, s = box
    outside = np.ones((h, w), bool)
    outside[by : by + s, bx : bx + s] = False
    assert np.array_equal(mask[outside], ds.mask[0][outside])
    # noise comes from other images only, with alpha in the range: I_mix differs from I by
    # at most alpha_max * 255 everywhere outside the box
    diff = np.abs(img.astype(int) - ds.image[0].astype(int))[outside]
    assert diff.max() <= np.ceil(0.2 * 255) + 1
    # no validation image feeds the pool
    assert set(ds.rows.tolist()) <= set(train.tolist())


def test_a_store_replaced_under_a_streaming_reader_is_refused(tmp_path):
    path = make_tiny_store(tmp_path / "s.h5", seed=1)
    data = StoreData(path, in_memory=False)
    make_tiny_store(tmp_path / "new.h5", seed=2)
    (tmp_path / "new.h5").replace(path)  # what `synth --force` does to the path
    with pytest.raises(store.StoreError, match="was replaced while it was being read"):
        data.read(0)
    again = StoreData(path, in_memory=False)  # a new reader takes the new store
    assert again.read(0)[0].shape == (27, 29)  # the real size of source 0


def test_crops_are_windows_of_the_source_images(tmp_path):
    """Without flips every item is the crop x crop window of its source image (the rows as
    written, read back independently) at some position inside the real size, zero padded where
    the image is smaller than the crop, and its mask is the same window of the mask."""
    path = make_tiny_store(tmp_path / "m.h5")  # mixed: 27 x 29 and 32 x 32
    data = StoreData(path, in_memory=False)
    src = store.read_split(path, "train")
    rows = np.arange(len(data))
    for crop in (16, 30):
        ds = TrainDataset(data, rows, crop, flips="none")
        for pos in range(0, len(rows), 3):
            item = ds[(pos, 7 * pos + 1)]
            image, mask = src.row(pos)
            h, w = image.shape
            got_i, got_m = item["image"][0].numpy(), item["mask"][0].numpy()
            hits = []
            for y0 in range(max(h - crop, 0) + 1):
                for x0 in range(max(w - crop, 0) + 1):
                    want = np.zeros((crop, crop), np.uint8)
                    win = image[y0 : y0 + crop, x0 : x0 + crop]
                    want[: win.shape[0], : win.shape[1]] = win
                    if np.array_equal(want, got_i):
                        wm = np.zeros_like(want)
                        wm[: win.shape[0], : win.shape[1]] = mask[y0 : y0 + crop, x0 : x0 + crop]
                        hits.append(np.array_equal(wm, got_m))
            assert hits and all(hits), (crop, pos)


def _flip_mask_bytes(path, group, row, in_hdf5: bool):
    """Turn background bytes (0x00) of one row's mask into 0xFF. in_hdf5: through h5py, so the
    chunk stays valid gzip (only the digest can tell); else in the file's raw bytes (the
    compressed chunk no longer decodes, or decodes to other bytes)."""
    import h5py

    with h5py.File(path, "r+" if in_hdf5 else "r") as f:
        d = f[f"{group}/mask"]
        a = int(f[f"{group}/offset"][row])
        if in_hdf5:
            m = d[a : a + 8]
            d[a : a + 8] = np.where(m == 0, 0xFF, m)
            return
        info = d.id.get_chunk_info_by_coord((a - a % d.chunks[0],))
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        b = bytearray(fh.read(8))
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes(x ^ 0xFF for x in b))


@pytest.mark.parametrize("in_hdf5", [True, False])
@pytest.mark.parametrize("in_memory", [True, False])
def test_a_flipped_mask_row_is_refused(tmp_path, in_memory, in_hdf5):
    path = make_tiny_store(tmp_path / "s.h5")
    _flip_mask_bytes(path, "train", 7, in_hdf5)
    row = "7" if in_hdf5 else r"\d+"  # a raw flip spoils the whole (shared) chunk
    pattern = rf"^{path}: /train row {row}: .*the store is damaged: rebuild the store with"
    with pytest.raises(store.StoreError, match=pattern) as e:
        data = StoreData(path, in_memory=in_memory)  # in memory: every row checked on load
        for r in range(len(data)):  # streaming: each row checked when read
            data.read(r)
    assert "\n" not in str(e.value)
    if not in_memory and in_hdf5:  # the other rows still read; read_mask checks too
        data = StoreData(path, in_memory=False)
        assert data.read(6)[0].shape == (32, 32)
        with pytest.raises(store.StoreError, match="row 7: mask bytes do not match"):
            data.read_mask(7)


def test_a_store_with_wrong_dtypes_is_refused_before_training(tmp_path):
    import h5py

    path = make_tiny_store(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        kind = f["train/kind"][...]
        del f["train/kind"]
        f["train/kind"] = kind.astype(np.float32)
    with pytest.raises(store.StoreError, match="/train/kind is float32 .* the schema says uint8"):
        StoreData(path, in_memory=False)


def test_sample_crop_without_zoom_is_the_plain_window():
    """scale (1, 1) draws nothing more than crop_window: the default items stay as they were."""
    img = np.arange(40 * 40, dtype=np.uint32).reshape(40, 40).astype(np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[30, 5] = 1
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    got_i, got_m = sample_crop(img, mask, (40, 40), 16, r1, True, None)
    y0, x0 = crop_window(mask, (40, 40), 16, r2, True)
    assert np.array_equal(got_i, crop_pad(img, y0, x0, (40, 40), 16))
    assert np.array_equal(got_m, crop_pad(mask, y0, x0, (40, 40), 16))
    assert r1.integers(1 << 30) == r2.integers(1 << 30)  # the same draws, no more


def test_sample_crop_zoom_two_doubles_a_target_by_hand():
    """Zoom 2 on a 64 crop: a 32 px window holding the 4 x 4 box, resized bilinearly.

    Worked by hand: output pixel x samples the window at x/2 - 0.25, so the 4 x 4 block of a
    0/255 mask at window offset a is >= 128 exactly for x in 2a .. 2a + 7: an 8 x 8 block.
    """
    mask = np.zeros((100, 100), np.uint8)
    mask[50:54, 60:64] = 1
    img = (mask * 200 + 20).astype(np.uint8)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        im, m = sample_crop(img, mask, (100, 100), 64, rng, True, (50, 60, 4), (2.0, 2.0))
        assert im.shape == m.shape == (64, 64) and m.sum() == 64
        ys, xs = np.nonzero(m)
        assert np.ptp(ys) == 7 and np.ptp(xs) == 7  # one 8 x 8 block
        assert im.max() == 220 and im.min() == 20
    # zoom 1/2: a 128 px window shrunk by area, which keeps the total intensity / 4: a 4 x 4
    # target of 200 sums to 16 * 200 / 4 = 800 (+- rounding of the <= 9 pixels it touches);
    # its mask covers 2 x 2 (even offsets) to 3 x 3 pixels (a half-covered pixel is 127.5).
    mask2 = np.zeros((200, 200), np.uint8)
    mask2[100:104, 100:104] = 1
    for seed in range(20):
        rng = np.random.default_rng(seed)
        im, m = sample_crop(mask2 * 200, mask2, (200, 200), 64, rng, True, None, (0.5, 0.5))
        assert abs(int(im.sum()) - 800) <= 5 and 4 <= m.sum() <= 9


def test_flips_reach_all_8_orientations():
    """The 8 images of the dihedral group of a 4 x 4 ramp, worked out with numpy, each drawn
    about 1/8 of the time; albumentations' own Compose.set_random_seed gives only 2 of them."""
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    group = {np.ascontiguousarray(np.rot90(f, k)).tobytes() for f in (img, img.T) for k in range(4)}
    assert len(group) == 8
    aug, rng = make_augment(), np.random.default_rng(0)
    seen, library = {}, set()
    for _ in range(800):
        seed_each(aug, rng)
        key = aug(image=img, mask=img)["image"].tobytes()
        seen[key] = seen.get(key, 0) + 1
        aug.set_random_seed(int(rng.integers(2**31)))  # the library's way: one seed for all
        library.add(aug(image=img, mask=img)["image"].tobytes())
    assert set(seen) == group and min(seen.values()) >= 60  # 100 expected, sd about 9.4
    assert len(library) == 2


@pytest.mark.parametrize("flips", ["hv", "h"])
def test_fewer_flips_reach_their_orientations_only(flips):
    """--flips hv: the ramp, its left-right and up-down mirrors and its half turn (numpy); h:
    the ramp and its left-right mirror. Each drawn about equally often. (--flips none: the
    crop test above, every item the plain window.)"""
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    want = {"hv": [img, img[:, ::-1], img[::-1], np.rot90(img, 2)], "h": [img, img[:, ::-1]]}
    want = want[flips]
    want = {np.ascontiguousarray(w).tobytes() for w in want}
    aug, rng = make_augment(flips), np.random.default_rng(0)
    seen = {}
    for _ in range(400):
        seed_each(aug, rng)
        key = aug(image=img, mask=img)["image"].tobytes()
        seen[key] = seen.get(key, 0) + 1
    assert set(seen) == want and min(seen.values()) >= 0.7 * 400 / len(want)


def test_photometric_changes_the_image_only_and_is_seeded():
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, (64, 64)).astype(np.uint8)
    mask = (img > 190).astype(np.uint8)
    photo = make_photometric()
    outs = []
    for seed in (1, 1, 2):
        seed_each(photo, np.random.default_rng(seed))
        outs.append(photo(image=img.copy())["image"])
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    changed = 0
    for _ in range(200):
        seed_each(photo, rng)
        out = photo(image=img, mask=mask)
        assert out["image"].dtype == np.uint8 and np.array_equal(out["mask"], mask)
        changed += not np.array_equal(out["image"], img)
    # nothing applied with probability 0.5 * 0.5 * 0.75 * 0.7 = 13 %: 174 of 200 expected
    assert 150 <= changed <= 195


def test_variation_reaches_both_datasets(demo_store):
    data = StoreData(demo_store, in_memory=True)
    train, _ = split_by_source(data.columns, 0.2, seed=0)
    plain = TrainDataset(data, train, crop=32)
    varied = TrainDataset(data, train, crop=32, scale_range=(0.5, 2.0), photometric=True)
    fresh = FreshDataset(data, train, 32, 20, scale_range=(0.5, 2.0), photometric=True)
    a, b = plain[(4, 9)], varied[(4, 9)]
    assert a["image"].shape == b["image"].shape == (1, 32, 32)
    assert not torch.equal(a["image"], b["image"])
    assert torch.equal(varied[(4, 9)]["image"], b["image"])  # still a function of the key
    assert fresh[(3, 5)]["mask"].shape == (1, 32, 32)
