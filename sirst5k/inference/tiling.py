"""Large frames in tiles: a network runs frames with a side over `tile` px as tiles with `halo`
px of context, so it sees inputs of the size it was chosen at and memory stays bounded; the
AFF U-Net's windowed channel attention (trainer.nets.aff_unet.set_attention_window) lets it run
larger frames whole. Chosen on validation mosaics: docs/evaluation.md."""

from __future__ import annotations

import numpy as np

from sirst5k.errors import UserError

# A network whose attention pools over its whole input (peers, or --attention-window 0) runs
# frames with a side over TILE px in tiles with HALO px of context, the input size it was chosen
# at; the AFF U-Net pools over WINDOW px cells instead and runs frames whole up to WINDOW_TILE px
# (a memory bound), in tiles of it beyond. Chosen on validation mosaics: docs/evaluation.md.
TILE, HALO = 256, 64
WINDOW, WINDOW_TILE, WINDOW_HALO = 256, 2048, 256
TILE_STEP = 32  # tiles start on multiples of every model's stride (4 to 32)
WINDOW_MAX = 65536  # px: the largest --attention-window; frames are smaller


def check_tiling(tile: int | None, halo: int | None) -> None:
    """Refuse a --tile or --tile-halo (None: not given) that is not a multiple of TILE_STEP."""
    for name, v in (("--tile", tile), ("--tile-halo", halo)):
        if v is not None and (v < 0 or v % TILE_STEP):
            raise UserError(f"{name} {v}: use a multiple of {TILE_STEP} (--tile 0 = never tile)")


def check_window(window: int | None) -> None:
    """Refuse an --attention-window (None: not given) that is not a multiple of TILE_STEP in
    0..WINDOW_MAX."""
    if window is not None and (window < 0 or window % TILE_STEP or window > WINDOW_MAX):
        raise UserError(
            f"--attention-window {window}: use a multiple of {TILE_STEP} up to {WINDOW_MAX} "
            "(0 = the whole input)"
        )


def default_tiling(tile: int | None, halo: int | None, windowed: bool) -> tuple[int, int]:
    """(tile, halo) with None replaced by the defaults for a network with windowed attention
    pooling or without; checked."""
    t, h = (WINDOW_TILE, WINDOW_HALO) if windowed else (TILE, HALO)
    tile, halo = t if tile is None else tile, h if halo is None else halo
    check_tiling(tile, halo)
    return tile, halo


def tiled(run, tile: int = TILE, halo: int = HALO):
    """run (a (B, H, W) uint8 -> (B, H, W) probability function) on frames with a side over
    `tile` px as tiles of tile x tile px, each with `halo` px of the frame around it as context
    (less at the frame's edges); frames that fit run whole.

    Tiles start on multiples of 32, so a network's pooling grid and its zero padding at the
    frame's edges are those of the whole frame: where the network's receptive field reaches at
    most `halo` px, the tiled result equals the whole-frame one (tests/test_tiling.py).

    The AFF U-Net's channel attention pools over its whole input, so its output depends on the
    input's size: trained on 64 px crops and chosen on 256 x 256 images, on 1024 x 1280 frames
    it loses a third of its IoU (benchmarks/bench_tiling.py). The default, 256 px tiles with
    64 px of context (chosen on mosaics of validation images, docs/evaluation.md), gives it
    inputs of the size it was chosen at; it also bounds memory.
    """
    check_tiling(tile, halo)

    def go(batch: np.ndarray) -> np.ndarray:
        b, h, w = batch.shape
        if tile == 0 or (h <= tile and w <= tile):
            return run(batch)
        out = np.empty((b, h, w), np.float32)
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                y0, x0 = max(0, y - halo), max(0, x - halo)
                y1, x1 = min(h, y + tile + halo), min(w, x + tile + halo)
                probs = run(np.ascontiguousarray(batch[:, y0:y1, x0:x1]))
                ty, tx = min(tile, h - y), min(tile, w - x)
                out[:, y : y + ty, x : x + tx] = probs[
                    :, y - y0 : y - y0 + ty, x - x0 : x - x0 + tx
                ]
        return out

    return go


def by_shape(images: list[np.ndarray], run) -> list[np.ndarray]:
    """run(stack) on the images grouped by shape (one forward per shape), back in input order."""
    out: list[np.ndarray | None] = [None] * len(images)
    shapes: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        shapes.setdefault(im.shape, []).append(i)
    for idx in shapes.values():
        probs = run(np.stack([images[i] for i in idx]))
        for j, i in enumerate(idx):
            out[i] = probs[j]
    return out
