"""sirst5k's command line (cli*.py, the top layer) and the synthesis library (synth.py, the store
builder; demo.py, inspect_store.py, transforms.py). The foundation they share with the trainer
is the `sirst5k` package; this package is imported by nothing below it."""

from sirst5k import __version__

__all__ = ["__version__", "synthesize", "train", "evaluate", "predict", "load_model"]

_API = ("synthesize", "train", "evaluate", "predict", "export", "compare", "load_model")


def __getattr__(name: str):
    """The Python API (sirst5k_cli.api), imported on first use so the CLI starts fast."""
    if name in _API:
        from sirst5k_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'sirst5k_cli' has no attribute {name!r}")
