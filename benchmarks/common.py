"""Shared by the benchmark scripts: print a table and write it under runs/bench/."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report(name: str, title: str, rows: list[dict], notes: list[str] = ()) -> Path:
    """Print ``rows`` as a table and write runs/bench/<name>-<time>.{md,csv}; return the .md path."""
    console = Console(width=200)
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)
    for note in notes:
        console.print(note)
    out = ROOT / "runs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(out / f"{name}-{stamp}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in columns) + " |" for r in rows]
    lines += [""] + list(notes)
    path = out / f"{name}-{stamp}.md"
    path.write_text("\n".join(lines) + "\n")
    console.print(f"written to {path}")
    return path
