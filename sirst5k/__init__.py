"""sirst5k's foundation: what the synthesis, the trainer and the CLI all build on.

    errors  SirstError and its kinds (one line each; the CLI prints them)
    files   atomic_path (write beside, rename on success) and interruptible (signals)
    io      reading source datasets: images, masks, split files
    store   the SIRST-5K store contract (schema, writer, validating reader)
    ops     the paper's pure ops: Eq. 1 noise cells, Eq. 2-3 mixing, Eq. 4 rotated boxes

Nothing here imports torch, click, the trainer or the CLI.
"""

__version__ = "0.1.0"
