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
        self._keys: tuple[str, ...] = ()
        self._lists: list[list] = []
        self._length = 0

    def append(self, row: dict) -> None:
        if tuple(row) != self._keys:              # the same fields in the same order, row after row
            if self._length:
                raise ValueError(f"row with fields {sorted(row)}, not {sorted(self._keys)}")
            self._keys, self._lists = tuple(row), [[] for _ in row]
        for column, value in zip(self._lists, row.values()):
            column.append(value)
        self._length += 1

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[dict]:
        for values in zip(*self._lists):
            yield dict(zip(self._keys, values))

    def __eq__(self, other) -> bool:
        if isinstance(other, Rows):
            return self._keys == other._keys and self._lists == other._lists
        return NotImplemented

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(dict(zip(self._keys, self._lists)))
