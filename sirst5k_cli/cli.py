"""The `sirst5k` command: a thin click group over the library.

Each command lives in a module of its own (cli_synth, cli_train, cli_eval) and imports torch
only inside its body, so `sirst5k synth` and `sirst5k --help` start fast.
"""

import click

from sirst5k import __version__
from sirst5k_cli.cli_eval import compare_cmd, eval_cmd, export_cmd, predict_cmd
from sirst5k_cli.cli_synth import demo_data_cmd, inspect_cmd, synth_cmd
from sirst5k_cli.cli_train import train_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sirst5k")
def main():
    """SIRST-5K: synthesize a training store, train an AFF U-Net, evaluate with IoU/nIoU/Pd/Fa."""


for _cmd in (
    demo_data_cmd,
    synth_cmd,
    inspect_cmd,
    train_cmd,
    eval_cmd,
    predict_cmd,
    export_cmd,
    compare_cmd,
):
    main.add_command(_cmd)
