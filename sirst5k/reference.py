"""The published results on NUDT-SIRST's 50/50 test split (664 images) that eval prints beside
its own, and the test that tells that split apart. Sources and definitions: docs/reference.md."""

from __future__ import annotations

# NUDT-SIRST 50/50 test split, 664 images. (name, IoU x1e2, Pd x1e2,
# Fa x1e6, params in M or None, Fa definition). [B]: retrained by BasicIRSTD; [T1]: the
# SIRST-5K paper's Table I, whose Fa definition is not stated.
REFERENCE_ROWS = [
    ("SIRST-5K paper", 92.78, 98.84, 2.735, 8.79, "legacy"),
    ("DNA-Net [B]", 94.19, 99.26, 2.436, 4.70, "corr."),
    ("ISTDU-Net [B]", 91.76, 98.52, 3.769, 2.75, "corr."),
    ("UIU-Net [B]", 90.52, 98.84, 8.342, 50.5, "corr."),
    ("ACM [B]", 64.86, 96.72, 28.6, 0.40, "corr."),
    ("ALCNet [B]", 61.13, 97.25, 29.1, 0.43, "corr."),
    ("Top-Hat [T1]", 20.7, 78.4, 166.7, None, "?"),
    ("Max-Median [T1]", 4.2, 58.4, 36.9, None, "?"),
]


def is_nudt_test(stems: list[str]) -> bool:
    """Whether the images are NUDT-SIRST's 50/50 test split (664 images named by 6 digits),
    the data the published rows of REFERENCE_ROWS were measured on."""
    return len(stems) == 664 and all(len(s) == 6 and s.isdigit() for s in stems)
