"""What every command shares: the app and its groups, the options several commands
take, printing, errors as one line, progress bars."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from coldtune.errors import ColdtuneError

app = typer.Typer(
    help="coldtune: recommend songs nobody has played yet (deep content-based music "
    "recommendation, van den Oord et al. 2013).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
GROUPS = {
    "plays": "Play counts: ingest files, generate test matrices.",
    "wmf": "Weighted matrix factorization (section 3).",
    "audio": "Audio clips: decode, log-mel and MFCC features, the feature store.",
    "world": "The demo world: music21's corpus rendered to audio, simulated listeners.",
}
plays_app, wmf_app, audio_app, world_app = (
    typer.Typer(help=text, no_args_is_help=True) for text in GROUPS.values()
)
tags_app = typer.Typer(
    help="Last.fm tags: `coldtune tags -w W` predicts them (section 5.1); `tags ingest` reads them."
)
for name, group in zip(GROUPS, (plays_app, wmf_app, audio_app, world_app), strict=True):
    app.add_typer(group, name=name)
app.add_typer(tags_app, name="tags")

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="The experiment's folder.", file_okay=False)
]
ModelOption = Annotated[
    str | None,
    typer.Option(help="Clip model: a content model in W/models that reads audio; default: a CNN."),
]
CountOption = Annotated[int, typer.Option("-n", help="How many to list.")]
WorkersOption = Annotated[int | None, typer.Option(help="Processes; default: one per core.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the split, WMF and models.")]
SeedsOption = Annotated[
    int, typer.Option(help="Repetitions with seeds SEED, SEED+1, ...: mean ± SE.")
]


def say(message: str = "") -> None:
    console.print(message, highlight=False, soft_wrap=True)


def friendly(command):
    """Print a ColdtuneError as one line and exit with status 2 instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ColdtuneError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def command(group: typer.Typer, name: str | None = None, **settings):
    """`group.command(name)` whose ColdtuneErrors print as one line (`friendly`)."""
    return lambda function: group.command(name, **settings)(friendly(function))


@contextlib.contextmanager
def bars(width: int, *, rate: bool = False):
    """Progress bars on stderr, one per name: yields show(name, done, total)."""
    columns = [TextColumn(f"{{task.description:<{width}}}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]}"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=err_console) as progress:
        tasks: dict[str, int] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total, rate="- clips/s")
            speed = progress.tasks[tasks[name]].speed
            rate_text = f"{speed:.1f} clips/s" if speed else "- clips/s"
            progress.update(tasks[name], completed=done, total=total, rate=rate_text)

        yield show


def ranked(catalogue, picks, *, indent: str = "  ") -> None:
    """Print numbered songs: (row, text after the song) pairs."""
    for rank, (row, extra) in enumerate(picks, start=1):
        cold = " (cold)" if catalogue.cold[row] else ""
        say(f"{indent}{rank:>2}. {catalogue.label(row)}{cold}  ({catalogue.song_ids[row]}){extra}")


def show_results(results: dict, workspace: Path) -> None:
    from coldtune.steps.experiment import experiment_markdown

    say()
    say(experiment_markdown(results))
    say(f"written to {workspace / 'results' / 'experiment.md'}")
