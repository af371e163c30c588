"""sirst5k: infrared small target detection with the SIRST-5K recipe, as a Python library.

The Python API, one function per command (sirst5k/api.py):

    import sirst5k

    sirst5k.synthesize("path/to/NUDT-SIRST", "data/nudt.h5")
    sirst5k.train("data/nudt.h5", "runs/nudt", preset="cpu30", device="cpu")
    report = sirst5k.evaluate("path/to/NUDT-SIRST", checkpoint="runs/nudt/best.pt")

The modules, bottom layer first (each imports only from the layers below it):

    errors, files, io, store, ops, machine    foundation: errors, atomic files, reading
                                              datasets, the store contract, Eq. 1-4
    metrics, plots, reference, detectors/     IoU/nIoU/Pd/Fa, pictures, published rows,
                                              the classical detectors
    synth, demo, inspect_store, transforms    synthesis: the store builder, demo data, checks,
                                              albumentations transforms
    (trainer)                                 networks, config, data, losses, the loop
    inference/                                predictors, tiling, CPU runtime, ONNX, bundled
    evaluation                                eval, predict and compare
    api                                       the functions above
"""

from sirst5k.api import compare, evaluate, export, load_model, predict, synthesize, train

__version__ = "0.1.0"
__all__ = ["synthesize", "train", "evaluate", "predict", "compare", "export", "load_model"]
