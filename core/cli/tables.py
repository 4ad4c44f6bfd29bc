"""The command line's text tables. Imports no torch."""
from __future__ import annotations

from typing import Mapping


def format_comparison(columns: Mapping[str, Mapping[str, float]]) -> str:
    """A metrics table, one column per model, plus the change of the last against the first."""
    names = list(columns)
    metrics = list(next(iter(columns.values())))
    header = ["metric", *names] + (["change"] if len(names) > 1 else [])
    rows = []
    for metric in metrics:
        values = [columns[n].get(metric) for n in names]
        row = [metric, *("-" if v is None else f"{v:.3f}" for v in values)]
        if len(names) > 1 and values[0] is not None and values[-1] is not None:
            row.append(f"{values[-1] - values[0]:+.3f}")
        rows.append(row)
    return text_table(header, rows)


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns under a dashed rule (the command line's tables)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
    return "\n".join(lines)
