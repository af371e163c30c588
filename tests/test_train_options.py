"""The train command's options and TrainConfig's fields are checked against each other here, in
one place: a field added without its option (or an option without its field) fails this test,
and every preset names only fields. TrainConfig's parts, and configs saved flat before them."""

import json
from dataclasses import asdict, fields

import pytest

from sirst5k_cli.cli_train import train_cmd
from trainer.checkpoint import SCHEMA, save_checkpoint
from trainer.config import (
    PART_OF,
    PARTS,
    PRESETS,
    RESUME_OPTIONS,
    TrainConfig,
    flatten,
    make_config,
    train_config,
)

# fields set another way than by an option of their own, and why
NO_OPTION = {
    "amp": "bf16 autocast on CUDA, always on (ignored on the CPU)",
    "channels_last": "always on",
    "min_lr": "the cosine's floor, fixed",
    "model": "--model, --widths, --blocks, --no-attention build it",
    "store_id": "read from the store",
    "val_batch_size": "fixed",
}
# options that are not fields, and why
NOT_A_FIELD = {
    "model_name": "--model: model['name']",
    "widths": "model['widths']",
    "blocks": "model['blocks']",
    "no_attention": "model['attention']",
    "force": "replace the run folder",
    "resume_dir": "--resume: the run to continue",
}


def test_every_field_has_its_option_and_every_option_its_field():
    options = {p.name for p in train_cmd.params}
    names = set(PART_OF) | {"model", "preset"}
    assert names - options == set(NO_OPTION)
    assert options - names == set(NOT_A_FIELD)


def test_presets_and_resume_options_name_fields_only():
    names = set(PART_OF) | {"model"}
    for name, preset in PRESETS.items():
        assert set(preset) <= names, name
        assert make_config(name, store="s.h5", out="o").preset == name
    assert set(RESUME_OPTIONS) <= names


def test_config_is_saved_in_parts_and_every_option_lives_in_one():
    cfg = make_config("cpu30", store="s.h5", out="o", seed=7, kinds=("original", "implant"))
    saved = json.loads(json.dumps(cfg.to_dict()))  # as config.json holds it
    assert set(saved) == {"model", "data", "optim", "runtime", "preset"}
    assert saved["data"]["crop"] == 96 and saved["optim"]["max_minutes"] == 26.0
    assert saved["runtime"]["seed"] == 7 and saved["data"]["kinds"] == ["original", "implant"]
    # no option in two parts, and every field of a part is in PART_OF
    assert sum(len(fields(c)) for c in PARTS.values()) == len(PART_OF)
    assert TrainConfig.from_dict(saved) == cfg
    with pytest.raises(TypeError, match="unknown training option 'epoch'"):
        make_config(store="s.h5", out="o", epoch=3)  # a typo is refused, not ignored


def _saved_flat(cfg: TrainConfig) -> dict:
    """cfg as runs saved it before the parts: every option at the top level (built here from the
    dataclasses, not by flatten)."""
    flat = {k: v for part in ("data", "optim", "runtime") for k, v in asdict(cfg)[part].items()}
    return flat | {"model": dict(cfg.model), "preset": cfg.preset}


def test_a_flat_config_saved_before_the_parts_reads_the_same():
    cfg = make_config("demo", store="s.h5", out="o", lr=0.02, flips="h", val_every=2)
    flat = _saved_flat(cfg) | {"retired_option": 1}  # an option since removed
    assert flatten(flat) == flat and TrainConfig.from_dict(flat) == cfg
    assert flatten(cfg.to_dict()) == {k: v for k, v in flat.items() if k != "retired_option"}


def test_resume_reads_a_run_saved_flat(tmp_path):
    cfg = make_config("demo", store=str(tmp_path / "s.h5"), out=str(tmp_path / "run"), epochs=2)
    ckpt = {"schema": SCHEMA, "model": {}, "model_config": {}, "config": _saved_flat(cfg)}
    ckpt |= {"optimizer": {}, "rng": {}}
    save_checkpoint(ckpt, tmp_path / "run" / "last.pt")
    again, _ = train_config(resume=tmp_path / "run", epochs=5)
    assert again.optim.epochs == 5 and again.data.crop == 64 and again.preset == "demo"
    assert again.runtime.out == str(tmp_path / "run")
