"""The trainer: the networks (nets/, named in registry.py), the training config and its presets
(config.py), store streaming and on-the-fly synthesis (data.py), the losses (losses.py), the
loop (train.py) and checkpoints (checkpoint.py)."""
