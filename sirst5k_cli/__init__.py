"""sirst5k's command line (cli*.py, the top layer) and the synthesis library (synth.py, the store
builder; demo.py, inspect_store.py, transforms.py). The foundation they share with the trainer
is the `sirst5k` package; this package is imported by nothing below it."""

from sirst5k import __version__

__all__ = ["__version__"]
