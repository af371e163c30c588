"""The NUAA-SIRST and SIRST-V2 layouts, split files and synth's input checks, on small generated
copies of each layout (16 x 16 px images written here; no real dataset file is used)."""

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from sirst5k import store, synthesize
from sirst5k.errors import UserError
from sirst5k.io import find_pairs, find_split_file, find_split_files, load_split
from sirst5k_cli.cli import main

SIZE = 16  # even: the largest odd --s that fits is 15


def write_pair(img_dir: Path, mask_dir: Path, stem: str, rng, pixels0: bool = True) -> None:
    """A 16 x 16 grey image of low noise with one bright 1-px target, and its 0/255 mask."""
    img = (60 + rng.integers(0, 8, (SIZE, SIZE))).astype(np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    y, x = (int(v) for v in rng.integers(3, SIZE - 3, 2))
    img[y, x], mask[y, x] = 220, 255
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(img_dir / f"{stem}.png"), img)
    name = f"{stem}_pixels0.png" if pixels0 else f"{stem}.png"
    assert cv2.imwrite(str(mask_dir / name), mask)


def write_ids(path: Path, ids) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def make_nuaa(root: Path) -> dict[str, list[str]]:
    """NUAA-SIRST: images/, masks/<id>_pixels0.png, idx_427/{trainval,train,val,test}.txt (8 =
    6 + 2, and 3) and an older, smaller idx_320/ that must not win."""
    rng = np.random.default_rng(0)
    ids = [f"Misc_{i}" for i in range(1, 12)]
    for stem in ids:
        write_pair(root / "images", root / "masks", stem, rng)
    lists = {"train": ids[:6], "val": ids[6:8], "trainval": ids[:8], "test": ids[8:]}
    for name, li in lists.items():
        write_ids(root / "idx_427" / f"{name}.txt", li)
    write_ids(root / "idx_320" / "trainval.txt", ids[:4])
    write_ids(root / "idx_320" / "test.txt", ids[4:6])
    return lists


def make_sirst_v2(root: Path, images="mixed", masks="annotations/masks", full=True):
    """SIRST-V2: mixed/ (or images/), annotations/masks/ (or masks/) with _pixels0 masks,
    splits/trainval_full.txt (6) + test_full.txt (3), and other lists beside them."""
    rng = np.random.default_rng(1)
    ids = [f"Misc_{i}" for i in range(1, 10)] + ["S_12", "S_13"]
    for stem in ids:
        write_pair(root / images, root / masks, stem, rng)
    lists = {
        "trainval_full": ids[:6],
        "test_full": ids[6:9],
        "trainval_v1": ids[:4],
        "test_v1": ids[4:6],
        "train_v1": ids[:3],
        "val_v1": ids[3:4],
    }
    if not full:
        lists = {k: v for k, v in lists.items() if "full" not in k}
        lists |= {"trainval_v2": ids[:5], "test_v2": ids[9:]}
    for name, li in lists.items():
        write_ids(root / "splits" / f"{name}.txt", li)
    (root / "annotations" / "bboxes").mkdir(parents=True, exist_ok=True)
    return lists


def synth(*args, **env):
    env = {"COLUMNS": "1000"} | env  # a wide console: rich does not wrap the long tmp paths
    return CliRunner().invoke(main, ["synth", *map(str, args)], env=env)


def ok(res) -> str:
    assert res.exit_code == 0, res.output
    return res.output


def fails(res, out: Path, *words) -> str:
    """Exit 1, one line of error, each word in it, nothing at the destination."""
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for w in words:
        assert str(w) in res.output, (w, res.output)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    return lines[0]


def row(output: str, name: str) -> str:
    """The value of a row of synth's summary table."""
    m = re.search(rf"│ {name}\s+│\s+(.*?)\s+│", output)
    assert m, (name, output)
    return m.group(1)


def suggested_splits(message: str) -> list[str]:
    m = re.search(r"--split (\S+) --split (\S+?)(?:\)|$|;|,)", message)
    assert m, message
    return ["--split", m.group(1), "--split", m.group(2)]


# ------------------------------------------------------------------ NUAA-SIRST
def test_nuaa_trains_on_trainval_with_no_flag(tmp_path):
    lists = make_nuaa(tmp_path / "nuaa")
    out = tmp_path / "out.h5"
    text = ok(synth(tmp_path / "nuaa", "-o", out))
    assert row(text, "train split") == "idx_427/trainval.txt (8 ids)"
    assert row(text, "test split") == "idx_427/test.txt (3 ids)"
    assert (row(text, "originals"), row(text, "test images")) == ("8", "3")
    attrs = store.read_attrs(out)
    assert attrs["params"]["train_split"] == str(tmp_path / "nuaa" / "idx_427" / "trainval.txt")
    assert attrs["params"]["test_split"] == str(tmp_path / "nuaa" / "idx_427" / "test.txt")
    assert list(attrs["sources"]) == lists["trainval"] + lists["test"]
    assert len(store.read_split(out, "train").columns["kind"]) == 8 + 4 * 8  # one target each


def test_nuaa_split_discovery(tmp_path):
    root = tmp_path / "nuaa"
    make_nuaa(root)
    assert find_split_files(root) == (root / "idx_427/trainval.txt", root / "idx_427/test.txt")
    # the single-split lookups (eval, examples) agree with the pair
    assert find_split_file(root, "train") == root / "idx_427/trainval.txt"
    assert find_split_file(root, "test", alone=True) == root / "idx_427/test.txt"
    # one file given: its partner beside it; train.txt pairs with test.txt, not val.txt
    assert find_split_files(root, root / "idx_427/train.txt") == (
        root / "idx_427/train.txt",
        root / "idx_427/test.txt",
    )
    assert find_split_files(root, root / "idx_320") == (
        root / "idx_320/trainval.txt",
        root / "idx_320/test.txt",
    )
    # without test.txt, val.txt is the test list of train.txt but never of trainval.txt
    (root / "idx_427/test.txt").unlink()
    assert find_split_files(root) == (root / "idx_427/train.txt", root / "idx_427/val.txt")
    with pytest.raises(UserError, match=r"no test list beside it \(looked for test.txt\)"):
        find_split_files(root, root / "idx_427/trainval.txt")


# ------------------------------------------------------------------ SIRST-V2
@pytest.mark.parametrize(
    "images, masks", [("mixed", "annotations/masks"), ("images", "masks"), ("mixed", "masks")]
)
def test_sirst_v2_uses_full_splits_with_no_flag(tmp_path, images, masks):
    lists = make_sirst_v2(tmp_path / "v2", images, masks)
    out = tmp_path / "out.h5"
    res = synthesize(tmp_path / "v2", out)
    assert (res["originals"], res["test"], res["targets"]) == (6, 3, 6)
    assert res["train_split"] == str(tmp_path / "v2" / "splits" / "trainval_full.txt")
    assert res["test_split"] == str(tmp_path / "v2" / "splits" / "test_full.txt")
    assert (res["train_ids"], res["test_ids"], res["warnings"]) == (6, 3, [])
    attrs = store.read_attrs(out)
    assert attrs["params"]["train_split"] == res["train_split"]
    assert attrs["params"]["test_split"] == res["test_split"]
    assert list(attrs["sources"]) == lists["trainval_full"] + lists["test_full"]
    pair = find_pairs(tmp_path / "v2")["Misc_1"]
    assert pair.image.parent.name == images.split("/")[-1]
    assert pair.mask == tmp_path / "v2" / masks / "Misc_1_pixels0.png"


def test_sirst_v2_cli_summary_and_single_split(tmp_path):
    root = tmp_path / "v2"
    lists = make_sirst_v2(root)
    out = tmp_path / "out.h5"
    text = ok(synth(root, "-o", out))
    assert row(text, "train split") == "splits/trainval_full.txt (6 ids)"
    assert row(text, "test split") == "splits/test_full.txt (3 ids)"
    # one file: its partner of the same tag, either way round
    text = ok(synth(root, "-o", out, "--force", "--split", root / "splits/test_v1.txt"))
    assert row(text, "train split") == "splits/trainval_v1.txt (4 ids)"
    assert row(text, "test split") == "splits/test_v1.txt (2 ids)"
    assert list(store.read_attrs(out)["sources"]) == lists["trainval_v1"] + lists["test_v1"]
    text = ok(synth(root, "-o", out, "--force", "--split", root / "splits/val_v1.txt"))
    assert row(text, "train split") == "splits/train_v1.txt (3 ids)"
    text = ok(synth(root, "-o", out, "--force", "--split", root / "splits"))
    assert row(text, "train split") == "splits/trainval_full.txt (6 ids)"


def test_split_given_twice(tmp_path):
    root = tmp_path / "v2"
    make_sirst_v2(root)
    a = write_ids(tmp_path / "lists" / "a.txt", ["S_12", "Misc_2", "Misc_3"])  # any names
    b = write_ids(tmp_path / "lists" / "b.txt", ["Misc_9", "S_13"])
    out = tmp_path / "out.h5"
    text = ok(synth(root, "-o", out, "--split", a, "--split", b))
    assert row(text, "train split") == f"{a} (3 ids)" and row(text, "test split") == f"{b} (2 ids)"
    assert (row(text, "originals"), row(text, "test images")) == ("3", "2")
    attrs = store.read_attrs(out)
    assert (attrs["params"]["train_split"], attrs["params"]["test_split"]) == (str(a), str(b))
    assert list(attrs["sources"]) == ["S_12", "Misc_2", "Misc_3", "Misc_9", "S_13"]
    res = synthesize(root, tmp_path / "api.h5", split=[b, a])  # order says which is which
    assert (res["originals"], res["test"]) == (2, 3)
    out2 = tmp_path / "bad.h5"
    fails(synth(root, "-o", out2, "--split", a, "--split", b, "--split", a), out2, "3 times")
    fails(synth(root, "-o", out2, "--split", a, "--split", a), out2, "the same file")
    fails(synth(root, "-o", out2, "--split", root / "splits", "--split", b), out2, "two files")


def test_split_errors_point_to_commands_that_work(tmp_path):
    root = tmp_path / "v2"
    make_sirst_v2(root, full=False)  # v1 and v2 pairs, no "full": ambiguous
    out = tmp_path / "out.h5"
    line = fails(synth(root, "-o", out), out, "several train/test split pairs",
                 "trainval_v1.txt + test_v1.txt", "trainval_v2.txt + test_v2.txt")  # fmt: skip
    text = ok(synth(root, "-o", out, *suggested_splits(line)))
    assert row(text, "train split") == "splits/trainval_v1.txt (4 ids)"
    # a train list whose partner is not there: give both, and that works
    (root / "splits" / "test_v1.txt").unlink()
    out = tmp_path / "out2.h5"
    line = fails(synth(root, "-o", out, "--split", root / "splits/trainval_v1.txt"), out,
                 "no test list beside it (looked for test_v1.txt)",
                 f"--split {root / 'splits/trainval_v1.txt'} --split TEST.txt")  # fmt: skip
    ok(synth(root, "-o", out, "--split", root / "splits/trainval_v1.txt",
             "--split", root / "splits/test_v2.txt"))  # fmt: skip
    # a neutral name alone: the message shows the two-file form
    ids = write_ids(tmp_path / "ids.txt", ["Misc_1", "Misc_2"])
    out = tmp_path / "out3.h5"
    fails(synth(root, "-o", out, "--split", ids), out, "neither train nor test",
          f"--split {ids} --split TEST.txt")  # fmt: skip
    # nothing found: the message lists the text files there and the two-file form
    for p in (root / "splits").glob("t*_v2.txt"):
        p.unlink()
    fails(synth(root, "-o", out, "--split", root / "splits"), out,
          "no train/test split files found",
          "text files there: train_v1.txt, trainval_v1.txt, val_v1.txt;",
          "--split TRAIN.txt --split TEST.txt")  # fmt: skip


# ------------------------------------------------------------------ input checks
@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**70)])
def test_bad_seed_is_one_line(tmp_path, seed):
    make_nuaa(tmp_path / "nuaa")
    out = tmp_path / "out.h5"
    fails(synth(tmp_path / "nuaa", "-o", out, "--seed", seed), out, f"--seed {seed}",
          "0 <= seed < 2**63")  # fmt: skip


def test_largest_seed_is_accepted(tmp_path):
    make_nuaa(tmp_path / "nuaa")
    out = tmp_path / "out.h5"
    ok(synth(tmp_path / "nuaa", "-o", out, "--seed", 2**63 - 1))
    assert store.read_attrs(out)["seed"] == 2**63 - 1


def test_s_too_large_suggests_an_odd_size_that_fits(tmp_path):
    make_nuaa(tmp_path / "nuaa")
    out = tmp_path / "out.h5"
    line = fails(synth(tmp_path / "nuaa", "-o", out, "--s", 129), out, "--s 129", "16x16",
                 "choose an odd --s <= 15, e.g. --s 15")  # fmt: skip
    s = int(re.search(r"e\.g\. --s (\d+)", line).group(1))
    assert s % 2 == 1
    ok(synth(tmp_path / "nuaa", "-o", out, "--s", s))


def test_missing_masks_without_skip_bad(tmp_path):
    root = tmp_path / "nuaa"
    lists = make_nuaa(root)
    for stem in (lists["trainval"][6], lists["trainval"][2]):
        (root / "masks" / f"{stem}_pixels0.png").unlink()
    out = tmp_path / "out.h5"
    first = lists["trainval"][2]  # the first in split-file order
    fails(synth(root, "-o", out), out, f"images/{first}.png: no mask found for '{first}'",
          f"looked for {root / 'masks' / first}.png or {first}_pixels0.png",
          "2 of 11 listed images have none", "--skip-bad")  # fmt: skip
    text = ok(synth(root, "-o", out, "--skip-bad"))
    assert (row(text, "originals"), row(text, "skipped files")) == ("6", "2")
    assert f"skipped {root / 'images' / first}.png: no mask found for '{first}'" in text


def test_no_mask_folder_does_not_suggest_skip_bad(tmp_path):
    root = tmp_path / "v2"
    make_sirst_v2(root)
    (root / "annotations" / "masks").rename(root / "annotations" / "labels")
    out = tmp_path / "out.h5"
    line = fails(synth(root, "-o", out), out, "no mask found for 'Misc_1'",
                 "has no masks/ or annotations/masks/ folder", "9 of 9 listed images have none",
                 "no training image has one")  # fmt: skip
    assert "--skip-bad" not in line
    # with --skip-bad nothing is left: the message lists the first skipped files and why
    line = fails(synth(root, "-o", out, "--skip-bad"), out,
                 "no usable training image left, all 6 of trainval_full.txt skipped",
                 f"{root / 'mixed' / 'Misc_1.png'}: no mask found for 'Misc_1'",
                 f"{root / 'mixed' / 'Misc_3.png'}: no mask found", "; and 3 more)")  # fmt: skip
    assert "Misc_4.png" not in line and "pass --skip-bad" not in line


def test_skip_bad_with_nothing_left_lists_reasons(tmp_path):
    root = tmp_path / "nuaa"
    lists = make_nuaa(root)
    grey = np.zeros((SIZE, SIZE), np.uint8)
    grey[1, 1], grey[2, 2] = 100, 255
    for stem in lists["test"]:
        cv2.imwrite(str(root / "masks" / f"{stem}_pixels0.png"), grey)
    out = tmp_path / "out.h5"
    fails(synth(root, "-o", out, "--skip-bad"), out,
          "no usable test image left, all 3 of test.txt skipped",
          f"masks/{lists['test'][0]}_pixels0.png: mask is not binary (3 levels from 0 to 255)",
          f"masks/{lists['test'][2]}_pixels0.png: mask is not binary")  # fmt: skip


def test_all_target_mask_warns(tmp_path):
    root = tmp_path / "nuaa"
    lists = make_nuaa(root)
    full = root / "masks" / f"{lists['trainval'][1]}_pixels0.png"
    cv2.imwrite(str(full), np.full((SIZE, SIZE), 255, np.uint8))
    out = tmp_path / "out.h5"
    text = ok(synth(root, "-o", out))
    assert row(text, "warnings") == "1"
    warn = [ln for ln in text.splitlines() if ln.startswith("warning: ")]
    assert warn == [
        f"warning: 1 mask(s) mark every pixel as target, so the whole image counts as one "
        f"target: {full}; check that they are not inverted"
    ]
    assert json.loads(store.read_attrs(out)["skipped"]) == []
    res = synthesize(root, tmp_path / "api.h5")
    assert len(res["warnings"]) == 1 and str(full) in res["warnings"][0]
    assert res["targets"] == 8  # the full mask is one (image-sized) target


def test_ids_in_both_lists_warn(tmp_path):
    root = tmp_path / "nuaa"
    lists = make_nuaa(root)
    test = write_ids(tmp_path / "test.txt", lists["test"] + [lists["trainval"][0]])
    res = synthesize(root, tmp_path / "o.h5", split=[root / "idx_427/trainval.txt", test])
    assert res["warnings"] == [
        f"1 id(s) are in both {root / 'idx_427/trainval.txt'} and {test} "
        f"(e.g. '{lists['trainval'][0]}'): the test images are also trained on"
    ]


def test_load_split_still_reads_one_list(tmp_path):
    """Callers that need one list only (eval, examples) still find a lone test list."""
    root = tmp_path / "v2"
    lists = make_sirst_v2(root)
    assert [p.stem for p in load_split(root, "test")] == lists["test_full"]
    for p in (root / "splits").glob("trainval*.txt"):
        p.unlink()
    for p in (root / "splits").glob("train*.txt"):
        p.unlink()
    assert find_split_file(root, "test", alone=True) == root / "splits" / "test_full.txt"
    with pytest.raises(UserError, match="no train split file found"):
        find_split_file(root, "train")


def test_ids_listed_twice_warn(tmp_path):
    root = tmp_path / "nuaa"
    lists = make_nuaa(root)
    train = write_ids(tmp_path / "train.txt", lists["trainval"] + lists["trainval"][:2])
    test = write_ids(tmp_path / "test.txt", lists["test"])
    res = synthesize(root, tmp_path / "o.h5", split=[train, test])
    first = sorted(lists["trainval"][:2])[0]
    assert res["warnings"] == [
        f"2 id(s) are listed more than once in {train} (e.g. '{first}'): each copy is stored, "
        "so those images weigh more"
    ]
