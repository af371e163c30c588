"""Checkpoints: a plain dict (model and optimizer state, config, RNG states, epoch and step)
written atomically with a digest of its tensors, read back with weights_only=True and checked,
and the network it holds rebuilt through the registry."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from sirst5k.errors import CheckpointError
from sirst5k.files import atomic_path, write_error
from trainer.registry import build_model

SCHEMA = "sirst5k-checkpoint/1"


def tensor_digest(obj) -> str:
    """sha256 over every tensor and number in a (nested) checkpoint entry, in key order."""
    h = hashlib.sha256()

    def walk(o) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                walk(o[k])
        elif isinstance(o, list | tuple):
            for v in o:
                walk(v)
        else:
            h.update(repr(o).encode())

    walk(obj)
    return h.hexdigest()


DIGESTED = ("model", "optimizer")  # what a checkpoint's digest covers


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint dict atomically (a temporary file beside it, then os.replace), with a
    digest of its model and optimizer tensors that read_checkpoint checks."""
    ckpt = dict(ckpt, digest=tensor_digest({k: ckpt[k] for k in DIGESTED if k in ckpt}))
    path = Path(path)
    try:
        with atomic_path(path, force=True) as tmp:
            torch.save(ckpt, tmp)
    except (OSError, RuntimeError) as e:  # torch's zip writer: RuntimeError for a failed write
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} exists"
        raise CheckpointError(f"{write_error(path, e, tensor_bytes(ckpt))}; {kept}") from None


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) checkpoint entry: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


FIX_TRAIN = "train one with `sirst5k train STORE --out DIR` and pass DIR/best.pt"


def read_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", fix: str = FIX_TRAIN
) -> dict:
    """torch.load(weights_only=True) with one-line errors that name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; {fix}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, pickle of forbidden objects, random bytes...
        why = "corrupt, truncated or not a torch file"
        raise CheckpointError(f"{path}: not a readable checkpoint ({why}); {fix}") from e
    if not isinstance(ckpt, dict) or ckpt.get("schema") != SCHEMA:
        got = ckpt.get("schema") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a {SCHEMA} checkpoint (schema={got!r}); {fix}")
    if "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint lacks 'model'/'model_config'; {fix}")
    digest = ckpt.get("digest")
    if digest is not None and digest != tensor_digest({k: ckpt[k] for k in DIGESTED if k in ckpt}):
        raise CheckpointError(f"{path}: damaged (its tensors do not match its digest); {fix}")
    return ckpt


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a checkpoint; return (model in eval mode on device, checkpoint dict)."""
    ckpt = read_checkpoint(path, device)
    try:
        model = build_model(dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (ValueError, TypeError, RuntimeError) as e:
        msg = str(e).splitlines()[0]
        raise CheckpointError(
            f"{path}: checkpoint does not fit this sirst5k's model ({msg[:120]}); "
            "retrain it with this version's `sirst5k train`"
        ) from e
    return model.to(device).eval(), ckpt
