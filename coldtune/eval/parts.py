"""Evaluation split by user ranges, and merged exactly.

Every figure of the results table is a mean over users (section 5.2), and each user's
AP@500 and AUC depend on that user's scores alone. So n machines can each score a range
of the users (`coldtune evaluate --users i/n`), and the table is the mean of the parts'
means weighted by their numbers of users: the same figure as one process, up to the
order of floating-point additions.

A user whose AUC is undefined (they played every cold song) counts in neither the mean
nor the weight, as in the one-process `nanmean`; that is why a part keeps one count per
metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from coldtune.errors import ParameterError

METRICS = ("map", "auc")
"""The per-user means of the table; a part keeps each one's mean and count."""


@dataclass(frozen=True)
class UserPart:
    """`--users i/n`: the i-th of n contiguous ranges of the evaluated users.

    The evaluated users are the rows of the split's users with a cold play, in row
    order; part i takes positions [(i-1) N / n, i N / n), so the n parts cover every
    user once and differ in size by at most one.
    """

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> UserPart | None:
        if not text:
            return None
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
            raise ParameterError(f"--users must be i/n with 1 <= i <= n, like 2/8; got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def select(self, users: np.ndarray) -> np.ndarray:
        lo = len(users) * (self.index - 1) // self.count
        hi = len(users) * self.index // self.count
        return users[lo:hi]

    @property
    def name(self) -> str:
        return f"part{self.index}of{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def part_figures(values: dict[str, np.ndarray]) -> dict[str, float | int]:
    """{"map": mean, "n_map": users with a value, "auc": ..., "n_auc": ...} of one part's
    per-user values (NaN where undefined)."""
    figures: dict[str, float | int] = {}
    for metric in METRICS:
        defined = values[metric][~np.isnan(values[metric])]
        figures[metric] = float(defined.mean()) if len(defined) else math.nan
        figures[f"n_{metric}"] = len(defined)
    return figures


def merge_figures(parts: Iterable[dict]) -> dict[str, float | int]:
    """The figures of all users from those of disjoint parts: the means weighted by the
    parts' counts, which is the mean over all users."""
    parts = list(parts)
    merged: dict[str, float | int] = {}
    for metric in METRICS:
        count = sum(int(part[f"n_{metric}"]) for part in parts)
        total = math.fsum(
            part[metric] * int(part[f"n_{metric}"]) for part in parts if part[f"n_{metric}"]
        )
        merged[metric] = total / count if count else math.nan
        merged[f"n_{metric}"] = count
    return merged
