"""`python -m sirst5k_cli` runs the `sirst5k` command, also where it is not installed."""

from sirst5k_cli.cli import main

main(prog_name="sirst5k")
