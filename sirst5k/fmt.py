"""Numbers for tables and summaries, one way everywhere."""

from __future__ import annotations


def fmt(v: float | None, digits: int = 2, none: str = "-") -> str:
    """v with `digits` decimals; `none` for None: "-" not applicable, "n/a" undefined (a ratio
    over nothing)."""
    return none if v is None else f"{v:.{digits}f}"
