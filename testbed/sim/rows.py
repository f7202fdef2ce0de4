"""A trial's records, appended one row at a time and kept as columns.

A simulated day of a city is millions of rows (every handover, migration and
per-user interval); one dict per row would take most of the memory, so each
key keeps one list and a row costs a pointer per field.  Rows read back as
dicts (iteration) and as a DataFrame (``frame``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd


class Rows:
    def __init__(self):
        self._columns: dict[str, list] = {}
        self._length = 0

    def append(self, row: dict) -> None:
        if not self._columns:
            self._columns = {key: [] for key in row}
        if row.keys() != self._columns.keys():
            raise ValueError(f"row with fields {sorted(row)}, not {sorted(self._columns)}")
        for key, value in row.items():
            self._columns[key].append(value)
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[dict]:
        keys = list(self._columns)
        for values in zip(*self._columns.values()):
            yield dict(zip(keys, values))

    def __eq__(self, other) -> bool:
        if isinstance(other, Rows):
            return self._columns == other._columns
        return NotImplemented

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._columns)
