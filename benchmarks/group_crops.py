"""How often a group's 4 crops differ and hold a target (docs/results.md, the negatives' gate).

    python benchmarks/group_crops.py --store data/nudt.h5 [--groups 500] [--crop 64]

Reads every member of --groups random groups through TrainDataset as L_Neg training does (one
seed per group, group_crops=True) and counts the groups whose 4 crops are pixel-identical and
the members whose mask is empty. Run it at commit 098eea2 (with PYTHONPATH set to that checkout)
to get the figures before the fix.
"""

import argparse
import inspect

import numpy as np

from trainer.data import StoreData, TrainDataset, split_by_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="data/nudt.h5")
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--crop", type=int, default=64)
    args = ap.parse_args()
    data = StoreData(args.store)
    rows, _ = split_by_source(data.columns, 0.1, 42)
    kw = (
        {"group_crops": True} if "group_crops" in inspect.signature(TrainDataset).parameters else {}
    )
    ds = TrainDataset(data, rows, args.crop, **kw)
    rng = np.random.default_rng(0)
    g = ds.groups
    ids = rng.choice(np.unique(g[g >= 0]), args.groups, replace=False)
    same = empty = members = 0
    for gid in ids:
        seed = int(rng.integers(2**31))
        items = [ds[(int(p), seed)] for p in np.flatnonzero(g == gid)]
        images = [it["image"].numpy() for it in items]
        same += all((images[0] == x).all() for x in images[1:])
        empty += sum(int(it["mask"].sum() == 0) for it in items)
        members += len(items)
    print(
        f"{len(ids)} groups: {same} ({same / len(ids):.1%}) with 4 identical crops; "
        f"{empty} of {members} members ({empty / members:.1%}) with an empty mask"
    )


if __name__ == "__main__":
    main()
