"""The paper's synthesis ops (section III-A/B), pure numpy/OpenCV, no randomness of their own.

- Eq. 1  `noise_cells`: G x G grid cells with 0 < Var < sigma and 0 < Mean < mu, away from targets
- Eq. 2  `resize_noise`: a cell resized to the image size (bilinear by default)
- Eq. 3  `mix`: I_mix = alpha * N_rw + (1 - alpha) * I, in float64, rounded to uint8
- Eq. 4  `target_boxes` + `negative(s)`: the s x s box on each target's centroid, rot90 k
         times; the store builder, the albumentations transforms and on-the-fly training
         all call these, so each equation is written once
- the noise pool (`build_pool`, `sample_noise`): which cell of which other image feeds an image,
  drawn from a numpy Generator the caller passes.

Beyond the paper, for training on the deployment sensor's own target-free frames:
- `cut_targets`: each labelled target as a patch of its signal over its own local background
  (the image minus an inpainted background, zero beyond a margin), its exact 0/1 mask and a
  soft-edged weight;
- `orient_patch` (the 8 flips and rotations, `dihedral`, and a zoom) and `implant`: the signal,
  times a gain, added to another frame at a place, the mask or-ed in;
- `draw_implants` and `draw_crop`: the sampler, every random choice from a passed-in Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sirst5k.errors import UserError

RESIZE = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
LABEL_MODES = ("rotate", "unchanged")
ROTATIONS = (0, 90, 180, 270)


def check_params(**params) -> None:
    """The one check of the synthesis options (the store builder, the CLI through it, and the
    albumentations transforms call it): raise UserError naming the option and its range."""
    rules = {
        "alpha": (lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1] (paper: 0.1)"),
        "s": (lambda v: v >= 1 and v % 2 == 1, "must be an odd number >= 1 (paper: 3)"),
        "grid": (lambda v: v >= 1, "must be >= 1 (paper: 8)"),
        "sigma": (lambda v: 0 < v < float("inf"), "must be > 0 and finite (official code: 50)"),
        "mu": (lambda v: 0 < v < float("inf"), "must be > 0 and finite (official: 255, no bound)"),
        "resize": (lambda v: v in RESIZE, f"choose one of {', '.join(RESIZE)}"),
        "label": (lambda v: v in LABEL_MODES, f"choose one of {', '.join(LABEL_MODES)}"),
    }
    for name, value in params.items():
        ok, why = rules[name]
        if not ok(value):
            raise UserError(f"--{name} {value!r}: {why}")


# ---------------------------------------------------------------- Eq. 1: noise-prone cells
def cell_view(a: np.ndarray, grid: int) -> np.ndarray:
    """(G, G, ch, cw) view of the cells; the h % G bottom rows and w % G right columns unused."""
    h, w = a.shape
    ch, cw = h // grid, w // grid
    return a[: ch * grid, : cw * grid].reshape(grid, ch, grid, cw).swapaxes(1, 2)


def _cell_sums(a: np.ndarray, grid: int, ch: int, cw: int) -> np.ndarray:
    """(G, G) int64 sums over cells; two reductions over contiguous axes (fast)."""
    rows = a.reshape(grid, ch, grid * cw).sum(axis=1, dtype=np.int64)  # (G, G * cw)
    return rows.reshape(grid, grid, cw).sum(axis=2)


def cell_stats(image: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of every cell, each (G, G), on the image's 0..255 scale.

    Sums are exact integers (255^2 fits uint16), so Var is exactly 0 for a constant cell.
    """
    h, w = image.shape
    ch, cw = h // grid, w // grid
    a = image[: ch * grid, : cw * grid]
    sq = a.astype(np.uint16)
    sq *= sq
    s1, s2 = _cell_sums(a, grid, ch, cw), _cell_sums(sq, grid, ch, cw)
    n = ch * cw
    return s1 / n, (n * s2 - s1 * s1) / (n * n)


def noise_cells(
    image: np.ndarray, mask: np.ndarray, grid: int, sigma: float, mu: float
) -> np.ndarray:
    """Eq. 1: boolean (G, G), True where 0 < Var < sigma and 0 < Mean < mu and no target near.

    A cell "touches" a target when it holds a pixel of the mask dilated by 1 px (8-neighbours).
    """
    mean, var = cell_stats(image, grid)
    h, w = mask.shape
    ch, cw = h // grid, w // grid
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8))[: ch * grid, : cw * grid]
    touched = near.reshape(grid, ch, grid * cw).max(axis=1).reshape(grid, grid, cw).max(axis=2) > 0
    return (var > 0) & (var < sigma) & (mean > 0) & (mean < mu) & ~touched


def crop_cell(image: np.ndarray, grid: int, row: int, col: int) -> np.ndarray:
    return cell_view(image, grid)[row, col]


# ---------------------------------------------------------------- Eq. 2-3: displacement
def resize_noise(cell: np.ndarray, shape: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Eq. 2: N_rw, the cell resized to (h, w) in float32 (no rounding before mixing)."""
    h, w = shape
    return cv2.resize(cell.astype(np.float32), (w, h), interpolation=RESIZE[method])


def mix(image: np.ndarray, noise: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 3: I_mix = alpha * N + (1 - alpha) * I in float64, rounded half to even, uint8.
    noise broadcasts to the image's shape.

    (OpenCV's addWeighted on float32 images, used until 2026-12-04, is faster but not this
    expression: at a tie such as 0.3 x 235 = 70.5 it rounded to 70 where float64 gives
    70.50000000000001 and 71, a case the property test found.)
    """
    noise = np.broadcast_to(np.asarray(noise, np.float64), image.shape)
    out = alpha * noise + (1.0 - alpha) * image.astype(np.float64)  # a new array
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


# ---------------------------------------------------------------- Eq. 4: negatives
def target_boxes(mask: np.ndarray, s: int) -> np.ndarray:
    """(z, 2) top-left (y0, x0) of the s x s box on each 8-connected target's centroid.

    Centroids are rounded half up; at the border the box is shifted to lie inside the image.
    Targets are in OpenCV's label order (raster order of each component's first pixel) within
    the mask's bounding rectangle, which is the same as over the whole mask.
    """
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.zeros((0, 2), np.int64)
    sub = np.ascontiguousarray(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    n, _, _, centroids = cv2.connectedComponentsWithStats(sub, connectivity=8)
    c = np.floor(centroids[1:] + 0.5).astype(np.int64) + [cols[0], rows[0]]  # (z, 2) as (x, y)
    y0 = np.clip(c[:, 1] - s // 2, 0, h - s)
    x0 = np.clip(c[:, 0] - s // 2, 0, w - s)
    return np.stack([y0, x0], axis=1).reshape(n - 1, 2)


def rotate_box(a: np.ndarray, y0: int, x0: int, s: int, k: int) -> np.ndarray:
    """A copy of `a` with its s x s box at (y0, x0) replaced by np.rot90(box, k) (exact)."""
    out = a.copy()
    out[y0 : y0 + s, x0 : x0 + s] = np.rot90(a[y0 : y0 + s, x0 : x0 + s], k)
    return out


def negative(
    image: np.ndarray, mask: np.ndarray, y0: int, x0: int, s: int, k: int, label: str = "rotate"
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4 for one target box and one rotation k (x 90 degrees): the (image, mask) pair.

    label "rotate" rotates the mask box with the image box; "unchanged" keeps the mask.
    """
    return rotate_box(image, y0, x0, s, k), (
        rotate_box(mask, y0, x0, s, k) if label == "rotate" else mask
    )


def negatives(
    image: np.ndarray, mask: np.ndarray, boxes: np.ndarray, s: int, label: str = "rotate"
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4: (4z, h, w) images and masks, target by target, rotations 0/90/180/270.

    The store builder writes exactly these rows (after the originals).
    """
    z = len(boxes)
    imgs = np.empty((4 * z, *image.shape), np.uint8)
    masks = np.empty((4 * z, *mask.shape), np.uint8)
    for t, (y0, x0) in enumerate(boxes):
        for k in range(4):
            imgs[4 * t + k], masks[4 * t + k] = negative(image, mask, y0, x0, s, k, label)
    return imgs, masks


# ---------------------------------------------------------------- sampler
@dataclass
class NoisePool:
    """The kept cells of all training images, sorted by owner image (Eq. 1)."""

    owner: np.ndarray  # (P,) index of the image each cell comes from
    row: np.ndarray  # (P,) grid row
    col: np.ndarray  # (P,) grid column

    def __len__(self) -> int:
        return len(self.owner)


def build_pool(keep: list[np.ndarray]) -> NoisePool:
    """Pool from each image's (G, G) keep map, in image then raster order."""
    owner, row, col = [], [], []
    for i, k in enumerate(keep):
        r, c = np.nonzero(k)
        owner.append(np.full(len(r), i, np.int64))
        row.append(r)
        col.append(c)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
    return NoisePool(cat(owner), cat(row), cat(col))


def sample_noise(rng: np.random.Generator, pool: NoisePool, n_images: int) -> np.ndarray:
    """For each image i, the pool index of a cell drawn uniformly among OTHER images' cells.

    One vectorised draw: image i's own cells are a contiguous run [start_i, end_i) of the
    sorted pool, so a uniform j in [0, P - n_i) skips that run.
    """
    counts = np.bincount(pool.owner, minlength=n_images)
    avail = len(pool) - counts
    if (avail <= 0).any():
        raise UserError("no noise cell")  # caller checks first and gives a useful message
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = rng.integers(0, avail)
    return np.where(j < start, j, j + counts)


# ---------------------------------------------------------------- implantation (beyond the paper)
def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips and 90-degree rotations (k in 0..7): transposed when k & 4, then
    rotated k & 3 quarter turns counter-clockwise. k = 7 is the left-right flip, 5 the up-down
    one."""
    return np.rot90(image.T if k & 4 else image, k & 3)


def undo_dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The inverse of dihedral(., k)."""
    back = np.rot90(image, -(k & 3))
    return back.T if k & 4 else back


@dataclass
class TargetPatch:
    """One labelled target, cut to be implanted elsewhere. All arrays (h, w), the box of the
    target's component grown by `margin` px (less at the image's border)."""

    signal: np.ndarray  # float32: the image minus its local background; 0 beyond the margin
    mask: np.ndarray  # uint8 0/1: the target's own 8-connected component, exactly
    weight: np.ndarray  # float32: 1 on the target and 1 px around it, fading to 0 beyond margin

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape


def cut_targets(
    image: np.ndarray, mask: np.ndarray, margin: int = 3, level: float | None = None
) -> list[TargetPatch]:
    """The 8-connected targets of a grey uint8 image and its 0/1 mask as TargetPatch, in the
    order of target_boxes (OpenCV's label order).

    The local background under a target is its image inpainted (Navier-Stokes: exact on a flat
    background, where Telea is off by up to 2 grey levels) over the target grown by
    `margin` px (chessboard distance); the signal is the image minus that background, so it is
    exactly 0 beyond the margin, and a bright target on bright clutter keeps only what it adds
    to its surroundings.

    The patch's mask is the labelled component, or with `level` (0 < level < 1) the component
    grown by the pixels connected to it whose signal is at least `level` times its peak: an
    extent defined by the signal rather than by the labelled dataset's convention (NUDT-SIRST's
    masks stop at about 0.3 of the peak, real frames' annotations reach about 0.1:
    docs/synthesis.md).
    """
    if margin < 1:
        raise UserError(f"--margin {margin}: must be >= 1 px")
    if level is not None and not 0 < level < 1:
        raise UserError(f"--mask-level {level}: choose a fraction of the peak in (0, 1)")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = mask.shape
    out = []
    for t in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[t, :4])
        y0, x0 = max(y - margin, 0), max(x - margin, 0)
        y1, x1 = min(y + bh + margin, h), min(x + bw + margin, w)
        # context for the inpainting: margin more px around the patch
        cy0, cx0 = max(y0 - margin, 0), max(x0 - margin, 0)
        cy1, cx1 = min(y1 + margin, h), min(x1 + margin, w)
        own = (labels[cy0:cy1, cx0:cx1] == t).astype(np.uint8)
        # chessboard distance to the target: the grown region is d <= margin
        dist = cv2.distanceTransform(1 - own, cv2.DIST_C, 3)
        grown = (dist <= margin).astype(np.uint8)
        region = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
        background = cv2.inpaint(region, grown, margin, cv2.INPAINT_NS)
        signal = np.where(grown > 0, region.astype(np.float32) - background, 0).astype(np.float32)
        peak = float(signal[own > 0].max())
        if level is not None and peak > 0:
            _, above = cv2.connectedComponents((signal >= level * peak).astype(np.uint8), None, 8)
            own |= np.isin(above, np.unique(above[own > 0])).astype(np.uint8) & (above > 0)
            dist = cv2.distanceTransform(1 - own, cv2.DIST_C, 3)
        weight = np.clip((margin + 1 - np.maximum(dist, 1)) / margin, 0, 1)  # soft edge
        inner = (slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
        out.append(
            TargetPatch(
                np.ascontiguousarray(signal[inner]),
                np.ascontiguousarray(own[inner]),
                np.ascontiguousarray(weight[inner], dtype=np.float32),
            )
        )
    return out


def zoomed_shape(shape: tuple[int, int], zoom: float) -> tuple[int, int]:
    """The (h, w) of a patch zoomed by `zoom` (at least 1 px a side)."""
    return max(1, int(round(shape[0] * zoom))), max(1, int(round(shape[1] * zoom)))


def orient_patch(patch: TargetPatch, k: int = 0, zoom: float = 1.0) -> TargetPatch:
    """The patch in orientation k of dihedral (0..7), then zoomed (bilinear signal and weight;
    the mask thresholded at one half of its bilinear zoom, so it stays exactly 0/1). At zoom 1
    nothing is interpolated: the mask is the source component, flipped."""
    parts = [np.ascontiguousarray(dihedral(a, k)) for a in (patch.signal, patch.mask, patch.weight)]
    if zoom != 1.0:
        h, w = zoomed_shape(parts[1].shape, zoom)
        signal, weight = (cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
                          for a in (parts[0], parts[2]))  # fmt: skip
        mask = cv2.resize(parts[1].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        parts = [signal, (mask >= 0.5).astype(np.uint8), weight]
    return TargetPatch(*parts)


def implant(
    frame: np.ndarray, mask: np.ndarray, patch: TargetPatch, y: int, x: int, gain: float
) -> tuple[np.ndarray, np.ndarray]:
    """New (frame, mask) with `gain` x the patch's signal added to the frame at top-left (y, x),
    faded by its weight (soft edges: the frame's own pixels beyond the margin are untouched, so
    there is no seam), rounded half to even and clipped to 0..255; the patch's mask or-ed into
    the mask. The patch must lie inside the frame."""
    h, w = patch.shape
    if y < 0 or x < 0 or y + h > frame.shape[0] or x + w > frame.shape[1]:
        raise ValueError(f"patch {h}x{w} at ({y}, {x}) leaves the {frame.shape} frame")
    frame, mask = frame.copy(), mask.copy()
    box = (slice(y, y + h), slice(x, x + w))
    added = frame[box].astype(np.float32) + np.float32(gain) * patch.signal * patch.weight
    frame[box] = np.clip(np.rint(added), 0, 255).astype(np.uint8)
    mask[box] |= patch.mask
    return frame, mask


@dataclass(frozen=True)
class ImplantDraw:
    """One target to implant: which patch, where (top-left, after orientation and zoom), how."""

    patch: int  # index into the caller's list of patches
    y: int
    x: int
    orient: int  # k of dihedral, 0..7
    zoom: float
    gain: float


def draw_crop(rng: np.random.Generator, shape: tuple[int, int], crop: int) -> tuple[int, int]:
    """Top-left (y0, x0) of a crop x crop window inside a frame of `shape`, uniform."""
    return int(rng.integers(shape[0] - crop + 1)), int(rng.integers(shape[1] - crop + 1))


def draw_implants(
    rng: np.random.Generator,
    shapes: list[tuple[int, int]],
    choices: np.ndarray,
    frame_shape: tuple[int, int],
    count: int,
    gain_range: tuple[float, float],
    zoom_range: tuple[float, float] = (1.0, 1.0),
    orients: int = 8,
    tries: int = 20,
) -> list[ImplantDraw]:
    """`count` implants into a frame of `frame_shape`: each a patch drawn from `choices` (indices
    into `shapes`, the patches' (h, w)), one of the first `orients` orientations of dihedral,
    a zoom drawn log-uniformly from zoom_range, a gain uniformly from gain_range, and a place
    where it lies inside the frame and its box overlaps no earlier implant's (up to `tries`
    places each; a target that finds none is left out)."""
    out: list[ImplantDraw] = []
    taken = np.zeros(frame_shape, bool)
    lo, hi = np.log(zoom_range[0]), np.log(zoom_range[1])
    for _ in range(count):
        p = int(choices[rng.integers(len(choices))])
        k = int(rng.integers(orients))
        zoom = float(np.exp(rng.uniform(lo, hi))) if hi > lo else float(zoom_range[0])
        gain = float(rng.uniform(*gain_range))
        h, w = shapes[p][::-1] if bool(k & 4) != bool(k & 1) else shapes[p]  # dihedral's
        h, w = zoomed_shape((h, w), zoom)
        if h > frame_shape[0] or w > frame_shape[1]:
            continue
        for _ in range(tries):
            y = int(rng.integers(frame_shape[0] - h + 1))
            x = int(rng.integers(frame_shape[1] - w + 1))
            if not taken[y : y + h, x : x + w].any():
                taken[y : y + h, x : x + w] = True
                out.append(ImplantDraw(p, y, x, k, zoom, gain))
                break
    return out


def implant_all(
    frame: np.ndarray, patches: list[TargetPatch], draws: list[ImplantDraw]
) -> tuple[np.ndarray, np.ndarray]:
    """The frame with every drawn implant in it, and its 0/1 mask (pure: same draws, same
    bytes)."""
    mask = np.zeros(frame.shape, np.uint8)
    for d in draws:
        frame, mask = implant(frame, mask, orient_patch(patches[d.patch], d.orient, d.zoom),
                              d.y, d.x, d.gain)  # fmt: skip
    return frame, mask
