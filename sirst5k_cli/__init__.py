"""The `sirst5k` command line: click commands over the Python API (sirst5k.api), nothing else.
cli.py is the group; cli_synth, cli_train and cli_eval hold the commands, cli_options the
option types and the error decorator they share."""
