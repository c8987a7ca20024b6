"""The one Markdown table renderer of coldtune's results (evaluation, experiment, tags)."""

from __future__ import annotations


def markdown_table(
    header: list[str], rows: list[list[str]], *, numeric: set[int] = frozenset()
) -> str:
    """A GitHub-flavoured Markdown table; columns in `numeric` are right-aligned.
    Cells are given as text (each caller formats its own numbers)."""
    rule = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = [
        "|" + "|".join(f" {c} " if c else " " for c in line) + "|" for line in [header, rule, *rows]
    ]
    return "\n".join(lines) + "\n"
