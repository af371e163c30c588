"""Inference: predictors over checkpoints, exported models and classical detectors
(predictors.py), tiling of large frames (tiling.py), the CPU runtime and precision check
(runtime.py), ONNX export (export.py) and the bundled weights (bundled.py, weights/)."""

# A .pt network's arithmetic at inference (eval/predict --precision): float32, or bf16 autocast.
PRECISIONS = ("fp32", "bf16")
