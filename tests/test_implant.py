"""Synthesis on the deployment sensor's target-free frames: the implantation ops (values worked
out by hand), the store rows `synth --backgrounds` and `--noise-from` write (checked against
their recorded provenance through the ops), bad input, the gallery, and exact resume."""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from sirst5k import store
from sirst5k.errors import UserError
from sirst5k.inspect_store import verify
from sirst5k.ops import (
    cell_stats,
    cut_targets,
    dihedral,
    draw_implants,
    implant,
    implant_all,
    orient_patch,
)
from sirst5k.synth import SynthConfig, build_store, draw_frame_noise
from sirst5k_cli.cli import main


def _source_with_block(value: int = 90, bg: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A flat background with one 3 x 4 target block and one lone pixel target."""
    image = np.full((40, 40), bg, np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    image[10:13, 20:24] = value
    mask[10:13, 20:24] = 1
    image[30, 5] = min(value + 10, 255)
    mask[30, 5] = 1
    return image, mask


def test_cut_targets_keeps_the_signal_over_the_local_background():
    image, mask = _source_with_block()
    block, dot = cut_targets(image, mask, margin=3)  # OpenCV's label order: raster order
    # the block grown by 3 px: (3 + 6) x (4 + 6); on a flat background the inpainted
    # background is the background itself, so the signal is 90 - 50 = 40 on the target, 0 off
    assert block.shape == (9, 10) and dot.shape == (7, 7)
    want = np.zeros((9, 10), np.float32)
    want[3:6, 3:7] = 40
    np.testing.assert_array_equal(block.signal, want)
    np.testing.assert_array_equal(block.mask, want > 0)
    assert dot.signal[3, 3] == 50 and np.count_nonzero(dot.signal) == 1
    # the weight: 1 on the target and 1 px around it, 2/3 and 1/3 further out
    assert block.weight[3:6, 3:7].min() == 1 and block.weight[2, 2] == 1
    assert block.weight[1, 1] == pytest.approx(2 / 3) and block.weight[0, 0] == pytest.approx(1 / 3)


@pytest.mark.parametrize("k", range(8))
def test_implanted_mask_is_the_source_component_in_each_orientation(k):
    rng = np.random.default_rng(k)
    image = rng.integers(0, 200, (48, 48)).astype(np.uint8)
    mask = np.zeros((48, 48), np.uint8)
    mask[20:23, 10:12] = 1  # an L-shaped target: every orientation differs
    mask[23, 10:15] = 1
    image[mask > 0] = 250
    patch = orient_patch(cut_targets(image, mask, margin=2)[0], k)
    frame = np.full((64, 64), 100, np.uint8)
    _, out = implant(frame, np.zeros_like(frame), patch, 7, 9, 0.5)
    ys, xs = np.nonzero(out)
    got = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    np.testing.assert_array_equal(got, dihedral(mask[20:24, 10:15], k))
    assert patch.mask.sum() == mask.sum()


def test_implant_adds_gain_times_the_signal_and_nothing_beyond_the_soft_edge():
    image, mask = _source_with_block()
    block = cut_targets(image, mask, margin=3)[0]
    rng = np.random.default_rng(1)
    frame = rng.integers(60, 120, (32, 32)).astype(np.uint8)
    new, new_mask = implant(frame, np.zeros_like(frame), block, 5, 7, 0.35)
    added = new.astype(int) - frame
    # on the target: round(0.35 * 40) = 14 exactly
    assert (added[5 + 3 : 5 + 6, 7 + 3 : 7 + 7] == 14).all()
    assert new_mask.sum() == 12 and new_mask[8:11, 10:14].all()
    # outside the patch nothing changes, and inside it only where the weight is > 0
    outside = np.ones(frame.shape, bool)
    outside[5:14, 7:17] = block.weight == 0
    assert (added[outside] == 0).all()
    # the frame's own texture survives beside the target: a signal, not a pasted patch
    assert (new[5:14, 7:17][block.signal == 0] == frame[5:14, 7:17][block.signal == 0]).all()


def test_implant_clips_and_refuses_a_patch_outside_the_frame():
    image, mask = _source_with_block(value=240, bg=0)
    block = cut_targets(image, mask)[0]
    new, _ = implant(np.full((20, 20), 200, np.uint8), np.zeros((20, 20), np.uint8), block, 0, 0, 1)
    assert new.max() == 255
    with pytest.raises(ValueError, match="leaves"):
        implant(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), block, 0, 0, 1.0)


def test_draw_implants_same_seed_same_draws_inside_the_frame_without_overlap():
    shapes = [(7, 9), (8, 7), (7, 12)]  # patches of margin 3: sides >= 7
    args = (shapes, np.arange(3), (64, 64), 6, (0.3, 1.0), (0.5, 2.0))
    a = draw_implants(np.random.default_rng(5), *args)
    b = draw_implants(np.random.default_rng(5), *args)
    assert a == b and len(a) == 6
    taken = np.zeros((64, 64), int)
    for d in a:
        h, w = orient_patch_shape(shapes[d.patch], d.orient, d.zoom)
        assert 0 <= d.y <= 64 - h and 0 <= d.x <= 64 - w and 0.3 <= d.gain <= 1.0
        taken[d.y : d.y + h, d.x : d.x + w] += 1
    assert taken.max() == 1


def orient_patch_shape(shape, k, zoom):
    """The shape of a patch after orientation k and the zoom, through the ops themselves."""
    patch = cut_targets(*_blank_with_target(shape))[0]
    return orient_patch(patch, k, zoom).shape


def _blank_with_target(shape):
    """An image whose one target's patch (margin 3) has exactly `shape`."""
    h, w = shape
    image = np.zeros((h + 10, w + 10), np.uint8)
    mask = np.zeros_like(image)
    mask[5 : 5 + h - 6, 5 : 5 + w - 6] = 1
    image[mask > 0] = 200
    return image, mask


def test_noise_cells_from_frames_follow_eq1():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 30, (64, 80)).astype(np.uint8) for _ in range(2)]
    frames[1][:32] = 200  # bright cells: above mu
    frames[0][:, :10] = 7  # flat cells: variance 0
    cfg = SynthConfig(sigma=60.0, mu=120.0)
    pool, drawn = draw_frame_noise(frames, 50, cfg)
    assert len(pool) and (drawn >= 0).all() and (drawn < len(pool)).all()
    for f, r, c in zip(pool.owner, pool.row, pool.col, strict=True):
        ch, cw = 64 // 8, 80 // 8
        cell = frames[f][r * ch : (r + 1) * ch, c * cw : (c + 1) * cw].astype(float)
        assert 0 < cell.var() < 60 and 0 < cell.mean() < 120
    mean, var = cell_stats(frames[1], 8)
    bright = {(int(r), int(c)) for r, c in np.argwhere(mean >= 120)}
    kept = {(int(r), int(c)) for f, r, c in zip(pool.owner, pool.row, pool.col, strict=True)
            if f == 1}  # fmt: skip
    assert len(bright) == 32 and not bright & kept


# ----------------------------------------------------------------------------- the store


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """Target-free frames of a 'sensor': 8-bit grey, one RGB and one 16-bit, 96 x 112 px."""
    import cv2

    root = tmp_path_factory.mktemp("bg")
    (root / "images").mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        base = cv2.GaussianBlur(rng.integers(0, 255, (96, 112)).astype(np.uint8), (0, 0), 4)
        cv2.imwrite(str(root / "images" / f"f{i}.png"), base)
    cv2.imwrite(str(root / "images" / "rgb.png"), np.dstack([base] * 3))
    cv2.imwrite(str(root / "images" / "deep.png"), base.astype(np.uint16) * 200)
    return root


def _build(src, out, **kw):
    kw = dict(backgrounds=None, implants=10, bg_negatives=4, bg_crop=48) | kw
    return build_store(src, out, SynthConfig(**kw))


def test_store_rows_match_their_provenance(demo_source, frames_dir, tmp_path):
    out = tmp_path / "s.h5"
    res = _build(demo_source, out, backgrounds=str(frames_dir))
    assert res["implants"] == 10 and res["backgrounds"] == 4 and res["implanted"] >= 10
    summary = verify(out)
    assert summary["implants"] == 10 and summary["backgrounds"] == 4
    train = store.read_split(out, "train")
    kind = train.columns["kind"]
    sources = store.read_attrs(out)["sources"]
    from sirst5k.io import find_frames, find_pairs, read_frames, read_pair

    frames = read_frames(find_frames(frames_dir))
    pairs = find_pairs(demo_source)
    with h5py.File(out, "r") as f:
        names = [n.decode() for n in f["frames/name"][...]]
        where = {k: f[f"frames/{k}"][...] for k in ("row", "frame", "y0", "x0")}
        imp = {k: f[f"implants/{k}"][...] for k in f["implants"]}
    assert names == sorted(p.name for p in (frames_dir / "images").iterdir())
    for row, fr, y0, x0 in zip(*where.values(), strict=True):
        crop = frames[fr][y0 : y0 + 48, x0 : x0 + 48]
        image, mask = train.row(row)
        assert train.columns["background"][row] == fr
        if kind[row] == store.KIND_BACKGROUND:  # the frame as it is, every pixel background
            assert not mask.any() and np.array_equal(image, crop)
            continue
        # an implanted crop: redo it from its recorded targets, through the ops
        mine = imp["row"] == row
        assert mine.any() and (imp["source"][mine] == train.columns["source"][row]).all()
        src_image, src_mask = read_pair(pairs[sources[imp["source"][mine][0]]])
        patches = cut_targets(src_image, src_mask)
        redo_image, redo_mask = crop, np.zeros_like(crop)
        keys = ("target", "y", "x", "orient", "zoom", "gain")
        for t, y, x, k, z, g in zip(*(imp[c][mine] for c in keys), strict=True):
            patch = orient_patch(patches[t], int(k), float(z))
            redo_image, redo_mask = implant(redo_image, redo_mask, patch, y, x, float(g))
        assert np.array_equal(image, redo_image) and np.array_equal(mask, redo_mask)
    assert (kind == store.KIND_BACKGROUND).sum() == 4
    # originals and negatives are what a store without frames holds, byte for byte
    plain = tmp_path / "plain.h5"
    build_store(demo_source, plain, SynthConfig())
    base = store.read_split(plain, "train")
    n = len(base)
    assert np.array_equal(train.image[: len(base.image)], base.image)
    assert (train.columns["background"][:n] == -1).all()


def test_same_seed_same_bytes_and_seed_changes_them(demo_source, frames_dir, tmp_path):
    a, b, c = (tmp_path / f"{n}.h5" for n in "abc")
    _build(demo_source, a, backgrounds=str(frames_dir), seed=4)
    _build(demo_source, b, backgrounds=str(frames_dir), seed=4)
    _build(demo_source, c, backgrounds=str(frames_dir), seed=5)
    ta, tb, tc = (store.read_split(p, "train") for p in (a, b, c))
    assert np.array_equal(ta.image, tb.image) and np.array_equal(ta.mask, tb.mask)
    assert not np.array_equal(ta.image, tc.image)


def test_noise_from_frames_mixes_their_cells_into_the_negatives(demo_source, frames_dir, tmp_path):
    out = tmp_path / "n.h5"
    _build(demo_source, out, noise_from=str(frames_dir), implants=None, bg_negatives=None,
           bg_crop=256)  # fmt: skip
    train = store.read_split(out, "train")
    c = train.columns
    neg = c["kind"] == store.KIND_NEGATIVE
    assert (c["noise_source"] == -1).all()  # no source image's noise
    assert (c["noise_frame"][neg] >= 0).all() and (c["noise_frame"][~neg] == -1).all()
    with h5py.File(out, "r") as f:
        assert len(f["noise/name"]) == 6


def test_bad_frame_folders_get_one_line_and_write_nothing(demo_source, frames_dir, tmp_path):
    import cv2

    out = tmp_path / "x.h5"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no frames"):
        _build(demo_source, out, backgrounds=str(empty))
    with pytest.raises(UserError, match="no such folder"):
        _build(demo_source, out, backgrounds=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="smaller than the 200 px crops.*--bg-crop"):
        _build(demo_source, out, backgrounds=str(frames_dir), bg_crop=200)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot decode"):
        _build(demo_source, out, backgrounds=str(broken))
    labelled = tmp_path / "labelled"
    (labelled / "images").mkdir(parents=True)
    (labelled / "masks").mkdir()
    cv2.imwrite(str(labelled / "images" / "a.png"), np.full((64, 64), 9, np.uint8))
    target = np.zeros((64, 64), np.uint8)
    target[3, 3] = 255
    cv2.imwrite(str(labelled / "masks" / "a.png"), target)
    with pytest.raises(UserError, match="marks targets"):
        _build(demo_source, out, backgrounds=str(labelled))
    with pytest.raises(UserError, match="--implants.*options of --backgrounds"):
        SynthConfig(implants=5)
    with pytest.raises(UserError, match="--gain"):
        SynthConfig(backgrounds="x", gain=(float("nan"), 1.0))
    assert not out.exists() and not list(tmp_path.glob(".x.h5*"))


def test_cli_synth_backgrounds_inspect_gallery(demo_source, frames_dir, tmp_path):
    out = tmp_path / "c.h5"
    args = ["synth", str(demo_source), "-o", str(out), "--backgrounds", str(frames_dir)]
    res = CliRunner().invoke(main, args + ["--implants", "6", "--bg-crop", "48", "--gain", "0.5,1"])
    assert res.exit_code == 0, res.output
    assert "implanted crops (targets)" in res.output
    png = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["inspect", str(out), "--gallery", str(png)])
    assert res.exit_code == 0 and "OK" in res.output and "gallery of" in res.output
    import cv2

    picture = cv2.imread(str(png))
    assert picture is not None and picture.shape[0] > 100 and picture.shape[1] > 300
    res = CliRunner().invoke(main, ["synth", str(demo_source), "-o", str(out), "--force",
                                    "--implants", "3"])  # fmt: skip
    assert res.exit_code == 1 and "options of --backgrounds" in res.output


@pytest.mark.slow
@pytest.mark.parametrize(
    "kw",
    [
        dict(kinds=("original", "implant", "background"), photometric=True),
        dict(on_the_fly=True, implant_share=0.4, background_share=0.2, scale_range=(0.5, 2)),
    ],
    ids=["store", "on-the-fly"],
)
def test_training_on_implants_resumes_exactly(demo_source, frames_dir, tmp_path, kw):
    import torch  # noqa: F401 (the one-thread fixture)

    from trainer.checkpoint import read_checkpoint
    from trainer.config import make_config
    from trainer.train import train

    out = tmp_path / "s.h5"
    _build(demo_source, out, backgrounds=str(frames_dir), noise_from=str(frames_dir),
           implants=12, bg_negatives=6, bg_crop=48)  # fmt: skip

    def cfg(run):
        return make_config(store=str(out), out=str(run), epochs=2, batch_size=8, crop=32,
                           device="cpu", val_fraction=0.2, neg_loss="off",
                           model=dict(widths=[4, 4, 8, 8, 8], blocks=1), **kw)  # fmt: skip

    class Stop:  # Ctrl-C after the third step, in the middle of the first epoch
        n = 0

        def on_start(self, info):
            pass

        def on_epoch(self, row):
            pass

        def on_step(self, s):
            self.n += 1
            if self.n == 3:
                raise KeyboardInterrupt

    train(cfg(tmp_path / "a"))
    assert train(cfg(tmp_path / "b"), hooks=Stop())["status"] == "interrupted"
    ckpt = read_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["step"] == 3  # in the middle of the first epoch
    train(cfg(tmp_path / "b"), resume=ckpt)
    a = read_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(a[k].equal(b[k]) for k in a)


def test_kinds_choose_the_training_rows_and_keep_validation_sources_out(demo_store):
    from trainer.data import split_by_source

    cols = {
        "kind": np.array([0, 0, 0, 1, 1, 2, 2, 3], np.uint8),
        "source": np.array([0, 1, 2, 0, 1, 0, 2, -1]),
        "noise_source": np.full(8, -1),
    }
    train, val = split_by_source(cols, 1 / 3, seed=0, kinds=("original", "implant", "background"))
    held = set(cols["source"][val].tolist())
    assert len(held) == 1 and set(cols["kind"][train]) <= {0, 2, 3}
    assert 7 in train  # a background crop belongs to no source
    assert not held & set(cols["source"][train].tolist())
    all_rows, _ = split_by_source(cols, 1 / 3, seed=0)
    assert set(train) < set(all_rows)


def test_on_the_fly_items_from_the_frames(demo_source, demo_store, frames_dir, tmp_path):
    from trainer.data import FreshDataset, StoreData, split_by_source

    out = tmp_path / "s.h5"
    _build(demo_source, out, backgrounds=str(frames_dir), implants=4, bg_negatives=8)
    data = StoreData(out)
    rows, _ = split_by_source(data.columns, 0.2, 0)
    ds = FreshDataset(data, rows, 32, 400, flips="none", implant_share=0.5, background_share=0.25)
    crops = {data.read(int(r))[0].tobytes() for r in rows
             if data.columns["kind"][r] == store.KIND_BACKGROUND}  # fmt: skip
    assert len(ds.backgrounds) == len(crops) and len(ds.patches) > 0
    counts = {"frames": 0, "empty": 0}
    for pos in range(400):
        item = ds[(pos, 1000 + pos)]
        assert item["image"].shape == (1, 32, 32)
        again = ds[(pos, 1000 + pos)]
        assert item["image"].equal(again["image"]) and item["mask"].equal(again["mask"])
        u = np.random.default_rng(1000 + pos).random()  # the item's first draw picks its kind
        counts["frames"] += u < 0.75
        if u < 0.25:
            counts["empty"] += 1
            assert not item["mask"].any()  # a background crop: every pixel background
    assert 0.6 < counts["frames"] / 400 < 0.9 and 0.15 < counts["empty"] / 400 < 0.35
    plain = StoreData(demo_store)  # built without --backgrounds
    rows, _ = split_by_source(plain.columns, 0.2, 0)
    from sirst5k.errors import TrainError

    with pytest.raises(TrainError, match="synth SOURCE --backgrounds"):
        FreshDataset(plain, rows, 32, 10, implant_share=0.5)


def test_albumentations_transform_implants_as_the_store_does():
    import albumentations as A

    from sirst5k.transforms import TargetImplant, target_patches

    image, mask = _source_with_block()
    patches = target_patches([image], [mask * 255])  # 0/255 masks are fine
    assert len(patches) == 2
    frame = np.full((64, 64), 100, np.uint8)
    t = TargetImplant(patches, count=(3, 3), gain=(0.5, 0.5))
    t.set_random_seed(3)
    draws = t.get_params_dependent_on_data({}, {"image": frame})["draws"]
    assert len(draws) == 3
    got, got_mask = t.apply(frame, draws), t.apply_to_mask(np.zeros_like(frame), draws)
    want, want_mask = implant_all(frame, patches, draws)
    assert np.array_equal(got, want) and np.array_equal(got_mask, want_mask)
    # each target raised by round(0.5 x its signal): 0.5 x 40 = 20 (block), 0.5 x 50 = 25 (dot)
    sizes = {12: 120, 1: 125}
    assert got_mask.sum() == sum(patches[d.patch].mask.sum() for d in draws)
    assert set(np.unique(got[got_mask > 0]).tolist()) <= set(sizes.values())
    runs = [A.Compose([TargetImplant(patches)], seed=5)(image=frame, mask=frame * 0)
            for _ in range(2)]  # fmt: skip
    assert np.array_equal(runs[0]["image"], runs[1]["image"]) and runs[0]["mask"].any()
    with pytest.raises(ValueError, match="no target patches"):
        TargetImplant([])


def test_mask_level_grows_the_mask_to_a_fraction_of_the_peak():
    yy, xx = np.mgrid[0:40, 0:40]
    blob = 100 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (2 * 1.5**2))
    image = np.rint(50 + blob).astype(np.uint8)
    mask = (blob >= 50).astype(np.uint8)  # labelled at half the peak: a tight mask
    plain = cut_targets(image, mask, margin=4)[0]
    wide = cut_targets(image, mask, margin=4, level=0.1)[0]
    assert plain.mask.sum() == mask.sum() == 9
    # independently: the pixels of the blob at >= 10 of its 100 grey levels, all within 4 px
    want = (np.rint(blob) >= 10)[15:26, 15:26]  # the 3 x 3 component's box grown by 4 px
    assert np.array_equal(wide.mask.astype(bool), want)
    assert wide.mask.sum() > 3 * plain.mask.sum() and (wide.mask >= plain.mask).all()
    assert (wide.weight[wide.mask > 0] == 1).all()
    with pytest.raises(UserError, match="--mask-level 1.5"):
        cut_targets(image, mask, level=1.5)
