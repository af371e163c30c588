"""The one model registry: a network's name -> the class that builds it.

To add a network: write trainer/nets/NAME.py (a config dataclass with to_dict/from_dict, a module
following the contract in trainer/nets/layers.py) and add one line to MODELS. The classes are
imported when first asked for, so the CLI lists the names without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT = "aff-unet"  # a config without "name" (every older config and checkpoint)

MODELS = {  # name -> "module:class"
    "aff-unet": "trainer.nets.aff_unet:AFFUNet",
    "acm": "trainer.nets.acm:ACM",
    "alcnet": "trainer.nets.alcnet:ALCNet",
    "dna-net": "trainer.nets.dna_net:DNANet",
    "istdu-net": "trainer.nets.istdu_net:ISTDUNet",
    "uiu-net": "trainer.nets.uiu_net:UIUNet",
}


def model_class(name: str) -> Any:
    """The class registered as `name`; ValueError for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"model {name!r}: choose one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _entry(cfg: dict | None) -> tuple[str, Any, dict]:
    d = dict(cfg or {})
    name = d.pop("name", DEFAULT)
    return name, model_class(name), d


def model_config(cfg: dict | None = None) -> dict:
    """The full config dict of a model: "name" first, then all its options with the defaults
    filled in. ValueError for an unknown name or option."""
    name, cls, d = _entry(cfg)
    return {"name": name, **cls.Config.from_dict(d).to_dict()}


def model_stride(cfg: dict | None = None) -> int:
    """The H, W multiple the config's model needs, without building it."""
    return int(_entry(cfg)[1].stride)


def build_model(cfg: Any = None):
    """The network of a config dict (no "name": the AFF U-Net; None: its defaults), or of a
    config object of a registered network (trainer.nets.aff_unet.ModelConfig, ...)."""
    if cfg is not None and not isinstance(cfg, dict):
        for name in MODELS:
            cls = model_class(name)
            if type(cfg) is cls.Config:
                return cls(cfg)
        raise ValueError(f"{type(cfg).__name__}: not the config of a registered model")
    _, cls, d = _entry(cfg)
    return cls(cls.Config.from_dict(d))
