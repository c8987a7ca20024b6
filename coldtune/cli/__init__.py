"""The `coldtune` command: each command parses its options, calls one step of
`coldtune.steps` (or one library function) and prints what it returns.

Options come from the library's config dataclasses where there is one
(`options.takes`), so a default and its help are written once, beside the code that
uses them. common.py holds what the commands share; data.py, models.py and answers.py
hold the commands, in the order a user runs them.
"""

# --help lists the commands in the order they are registered: not sorted
from coldtune.cli.common import app  # noqa: I001
from coldtune.cli import data, models, answers  # noqa: F401


def main() -> None:
    app()
