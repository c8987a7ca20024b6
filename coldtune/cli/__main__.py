"""`python -m coldtune.cli` (as torchrun runs it) is the `coldtune` command."""

from coldtune.cli import main

main()
