"""The CPU inference runtime: frames of a batch side by side, each on its share of the threads,
on lane threads kept from call to call (fresh threads every call cost a tenth or more of the
images/s on 256 x 256 frames, docs/results.md), cleared in a forked child, which has none of
them. And the --precision check: bf16 only where the hardware runs it fast."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from sirst5k.errors import UserError
from sirst5k.inference import PRECISIONS
from sirst5k.machine import bf16_supported

LANES = 4  # at most this many frames side by side on the CPU (each holds its activations)


def check_precision(precision: str, device: str) -> bool:
    """Whether --precision asks for bf16 autocast; refused where it would run slower."""

    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not bf16_supported(device):
        raise UserError(
            f"--precision bf16: {device} has no bf16 support (a CPU needs AVX512-BF16 or AMX), "
            "so it would run slower than fp32; use --precision fp32"
        )
    return precision == "bf16"


_POOLS: dict[tuple[int, int | None], ThreadPoolExecutor] = {}  # kept from call to call
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the threads


def side_by_side(fn, images: list[np.ndarray], lanes: int, threads=None) -> list[np.ndarray]:
    """[fn(image) for image in images], `lanes` images at a time on threads of their own (the
    engines release the GIL while they compute), each with `threads` torch threads (None: left
    as it is). The threads are kept for the next call: eval hands over `lanes` frames a call,
    and fresh threads every call cost a tenth or more of the images/s on 256 x 256 frames
    (docs/results.md)."""
    if (lanes, threads) not in _POOLS:
        import torch

        init = None if threads is None else partial(torch.set_num_threads, threads)
        _POOLS[lanes, threads] = ThreadPoolExecutor(lanes, "lane", initializer=init)
    return list(_POOLS[lanes, threads].map(fn, images))
