"""The classical detectors the field compares against (methods.py: filters, local contrast
and low-rank methods, their registry and the adaptive threshold) and the low-rank solvers they
share (lowrank.py)."""
