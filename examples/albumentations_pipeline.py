"""Use the SIRST-5K ops in your own albumentations pipeline, on the embedded demo data.

    python examples/albumentations_pipeline.py [--out runs/albu-example]

Generates a small demo dataset, builds the Eq. 1 noise pool from its training images, and runs
Compose([NoiseDisplacement, NegativeRotation, HorizontalFlip]) on a few training samples; then
implants the training targets into the demo's target-free frames of another sensor with
TargetImplant. Writes side-by-side PNGs (image before | after | mask before | mask after) to OUT.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sirst5k import io as ds  # noqa: E402
from sirst5k.demo import DemoConfig, generate_demo  # noqa: E402
from sirst5k.transforms import (
    NegativeRotation,
    NoiseDisplacement,
    TargetImplant,
    noise_pool,
    target_patches,
)  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/albu-example"))
    ap.add_argument("--n", type=int, default=6, help="samples to show")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "demo"
        generate_demo(src, DemoConfig(n=24, size=96, seed=0, frames=3))
        pairs = [ds.read_pair(p) for p in ds.load_split(src, "train")]
        frames = ds.read_frames(ds.find_frames(src / "frames"))
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    # Eq. 1 pool from the *other* images: leave the shown image's own cells out if you want the
    # paper's rule exactly; here the pool comes from the second half, samples from the first.
    pool = noise_pool(images[len(images) // 2 :], masks[len(masks) // 2 :], grid=8, sigma=50)
    aug = A.Compose(
        [
            NoiseDisplacement(pool, alpha=0.1, p=1.0),
            NegativeRotation(s=3, label="rotate", p=1.0),
            A.HorizontalFlip(p=0.5),
        ],
        seed=0,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(min(args.n, len(images) // 2)):
        out = aug(image=images[i], mask=masks[i])
        row = np.hstack([images[i], out["image"], masks[i] * 255, out["mask"] * 255])
        cv2.imwrite(str(args.out / f"sample_{i}.png"), row)
        changed = int((out["image"] != images[i]).sum())
        print(f"sample {i}: {changed} pixels changed, {int(out['mask'].sum())} target pixels")
    # your sensor's target-free frames with the labelled targets implanted (synth --backgrounds)
    implant = A.Compose([TargetImplant(target_patches(images, masks), count=(1, 3))], seed=0)
    for i, frame in enumerate(frames):
        out = implant(image=frame, mask=np.zeros_like(frame))
        row = np.hstack([frame, out["image"], out["mask"] * 0, out["mask"] * 255])
        cv2.imwrite(str(args.out / f"implant_{i}.png"), row)
        print(f"frame {i}: {cv2.connectedComponents(out['mask'])[0] - 1} targets implanted")
    print(f"pool: {len(pool)} cells; wrote {args.out}/sample_*.png and implant_*.png")


if __name__ == "__main__":
    main()
