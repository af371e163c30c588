"""The trainer: model, data streaming from the SIRST-5K store, training loop and evaluation."""

# The names of trainer.peers.MODELS (the model registry), here without torch for the CLI's
# `--model` choice; trainer/peers.py checks that the two agree.
MODEL_NAMES = ("aff-unet", "acm", "alcnet", "dna-net", "istdu-net", "uiu-net")

# A .pt network's arithmetic at inference (eval/predict --precision): float32, or bf16 autocast.
PRECISIONS = ("fp32", "bf16")
