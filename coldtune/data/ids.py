"""The one map between outside ids (songs, users) and rows (lightfm's `Dataset` idea):
every place that turns ids into matrix rows or columns asks an `IdMap`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class IdMap:
    """ids [shape=(n,)] <-> rows 0..n-1, in the order given.

    >>> songs = IdMap(["SOB", "SOA"]); songs.row("SOA"), songs.rows(["SOA", "SOB"])
    (1, array([1, 0]))
    """

    def __init__(self, ids: Iterable[str]):
        self.ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object)
        self._row = {str(value): row for row, value in enumerate(self.ids)}
        if len(self._row) != len(self.ids):
            raise ValueError(f"{len(self.ids) - len(self._row)} ids are given twice")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, value: object) -> bool:
        return value in self._row

    def row(self, value: str) -> int:
        """The row of `value` (KeyError if unknown)."""
        return self._row[value]

    def rows(self, values: Iterable[str]) -> np.ndarray:
        """The rows of `values` [shape=(n,)] int64 (KeyError names the first unknown)."""
        return np.fromiter((self._row[v] for v in values), dtype=np.int64)

    def missing(self, values: Iterable[str]) -> list[str]:
        """The values that are not ids of this map, in their order."""
        return [v for v in values if v not in self._row]
