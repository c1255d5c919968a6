"""How a metric value is written in tables and summaries, so every report prints it alike."""

from __future__ import annotations


def number(value, signed: bool = False, digits: int = 4, missing: str = "-") -> str:
    """`value` to `digits` decimals (with its sign when `signed`: deltas, lifts, CI bounds), or
    `missing` for None. Each report keeps its own `missing` ("-" in text, "–" in Markdown)."""
    if value is None:
        return missing
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
