"""The models shipped inside the package, by name (`--checkpoint nudt`), and the default of
eval and predict: `real` (trained for real frames of other sensors: the labelled targets
implanted into real target-free frames, docs/model-card.md) when the package holds it, else
`nudt` (NUDT-SIRST alone). Both names stay available.

weights/real.pt and weights/nudt.pt are best.pt files of the project's own CPU recipes (on
NUDT-SIRST's train split with and without real target-free frames, docs/model-card.md),
stripped to the model and its card, weights stored as float16 (1 MB) and loaded as float32.
The card records how it was made and its metrics: on the NUDT-SIRST test split, on
SIRST-V2-extra, and on FIXTURE, a small demo set that `sirst5k demo-data` generates the same on
every machine, so a test can check that eval reproduces the recorded numbers.

`benchmarks/bundle_model.py RUN_DIR --name NAME` writes the file (`make bundle RUN=... NAME=...`).
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
BUNDLED = {"real": WEIGHTS / "real.pt", "nudt": WEIGHTS / "nudt.pt"}
DEFAULTS = ("real", "nudt")  # the first one present is the default
FIXTURE = dict(n=24, size=96, seed=7, sizes="fixed")  # sirst5k.demo.DemoConfig


def resolve(checkpoint) -> Path:
    """A bundled model's name ("nudt") to its file, unless a file of that name exists here;
    a run folder to its best.pt; any other value is a path, unchanged."""
    name = str(checkpoint)
    if name in BUNDLED and not Path(name).exists():
        return BUNDLED[name]
    if Path(name).is_dir() and (Path(name) / "best.pt").is_file():
        return Path(name) / "best.pt"
    return Path(checkpoint)


def default_checkpoint() -> Path | None:
    """The bundled model used when neither --checkpoint nor --method is given (None if none)."""
    return next((BUNDLED[n] for n in DEFAULTS if BUNDLED[n].is_file()), None)
