"""The train command's options and TrainConfig's fields are checked against each other here, in
one place: a field added without its option (or an option without its field) fails this test,
and every preset names only fields."""

from dataclasses import fields

from sirst5k_cli.cli_train import train_cmd
from trainer.config import PRESETS, RESUME_OPTIONS, TrainConfig, make_config

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
    names = {f.name for f in fields(TrainConfig)}
    assert names - options == set(NO_OPTION)
    assert options - names == set(NOT_A_FIELD)


def test_presets_and_resume_options_name_fields_only():
    names = {f.name for f in fields(TrainConfig)}
    for name, preset in PRESETS.items():
        assert set(preset) <= names, name
        assert make_config(name, store="s.h5", out="o").preset == name
    assert set(RESUME_OPTIONS) <= names
