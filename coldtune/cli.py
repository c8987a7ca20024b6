"""The `coldtune` command: parse, call one library function, print."""

from __future__ import annotations

import contextlib
import functools
import time
from enum import StrEnum
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

from coldtune.cf.spark import SparkConfig
from coldtune.cf.wmf import WMFConfig
from coldtune.cli_options import options_help, parse_options, takes
from coldtune.data.splits import SPLIT_PRESETS, SplitConfig
from coldtune.data.synth import SYNTH_SIZES
from coldtune.errors import ColdtuneError
from coldtune.workspace import Workspace

app = typer.Typer(
    help="coldtune: recommend songs nobody has played yet (deep content-based music "
    "recommendation, van den Oord et al. 2013).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
plays_app = typer.Typer(
    help="Play counts: ingest files, generate test matrices.", no_args_is_help=True
)
wmf_app = typer.Typer(help="Weighted matrix factorization (section 3).", no_args_is_help=True)
audio_app = typer.Typer(
    help="Audio clips: decode, log-mel and MFCC features, the feature store.",
    no_args_is_help=True,
)
tags_app = typer.Typer(
    help="Last.fm tags: `coldtune tags -w W` predicts them (section 5.1); `tags ingest` reads them."
)
app.add_typer(tags_app, name="tags")
world_app = typer.Typer(
    help="The demo world: music21's corpus rendered to audio, simulated listeners.",
    no_args_is_help=True,
)
app.add_typer(plays_app, name="plays")
app.add_typer(world_app, name="world")
app.add_typer(audio_app, name="audio")
app.add_typer(wmf_app, name="wmf")

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="The experiment's folder.", file_okay=False)
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


class PlaysFormat(StrEnum):
    triplets = "triplets"
    csv = "csv"
    parquet = "parquet"


class OnBadLines(StrEnum):
    error = "error"
    skip = "skip"


@plays_app.command("ingest")
@friendly
def plays_ingest(
    path: Annotated[Path, typer.Argument(help="Triplets file, CSV or Parquet.")],
    workspace: WorkspaceOption,
    format: Annotated[
        PlaysFormat | None,
        typer.Option(help="File format; default: detected from the file (and said)."),
    ] = None,
    user_col: Annotated[str, typer.Option(help="User id column (CSV, Parquet).")] = "user",
    song_col: Annotated[str, typer.Option(help="Song id column (CSV, Parquet).")] = "song",
    count_col: Annotated[str, typer.Option(help="Play count column (CSV, Parquet).")] = "count",
    on_bad_lines: Annotated[
        OnBadLines, typer.Option(help="error: stop at the first bad line; skip: count and go on.")
    ] = OnBadLines.error,
):
    """Read play counts (Taste Profile triplets, CSV, Parquet) into W/plays/."""
    from coldtune.steps.plays import ingest

    start = time.perf_counter()
    interactions = ingest(
        path,
        Workspace(workspace),
        format=format.value if format else None,
        user_col=user_col,
        song_col=song_col,
        count_col=count_col,
        on_bad_lines=on_bad_lines.value,
    )
    say(interactions.report.summary())
    say(f"wrote {workspace / 'plays'} in {time.perf_counter() - start:.1f} s")


@plays_app.command("synth")
@friendly
def plays_synth(
    out: Annotated[Path, typer.Argument(help="File to write (triplets, .csv or .parquet).")],
    size: Annotated[str, typer.Option(help=f"Preset: {', '.join(SYNTH_SIZES)}.")] = "small",
    users: Annotated[int | None, typer.Option(help="Override the preset's users.")] = None,
    songs: Annotated[int | None, typer.Option(help="Override the preset's songs.")] = None,
    plays: Annotated[
        int | None, typer.Option(help="Override the preset's (user, song) pairs.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
):
    """Generate play counts shaped like the Taste Profile (power laws, heavy-tailed counts)."""
    from coldtune.data.synth import synth_config, synth_plays, write_plays

    start = time.perf_counter()
    config = synth_config(size, users=users, songs=songs, plays=plays, seed=seed)
    generated = synth_plays(config)
    write_plays(generated, out)
    m = generated.matrix
    console.print(
        f"wrote {out}: {m.shape[0]:,} users x {m.shape[1]:,} songs, {m.nnz:,} triplets, "
        f"{int(m.sum()):,} plays in {time.perf_counter() - start:.1f} s"
    )


@app.command("split")
@friendly
@takes(SplitConfig, into="config")
def split(
    workspace: WorkspaceOption,
    config: SplitConfig,
    preset: Annotated[
        str | None, typer.Option(help=f"The paper's settings: {', '.join(SPLIT_PRESETS)}.")
    ] = None,
):
    """Hold out cold songs (section 5.2); optionally keep a popular subset first."""
    from coldtune.steps import plays

    if preset is not None:
        config = plays.split_config(preset, seed=config.seed)
    result = plays.split(Workspace(workspace), config)
    say(
        f"{len(result.users):,} users, {len(result.warm_songs):,} warm songs, "
        f"{len(result.cold_songs):,} cold songs -> {workspace / 'split.json'}"
    )


@wmf_app.command("fit")
@friendly
@takes(WMFConfig, into="config")
@takes(SparkConfig, into="spark", exclude=("conf",), panel="Spark")
def wmf_fit(
    workspace: WorkspaceOption,
    config: WMFConfig,
    spark: SparkConfig,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda or cpu.")] = None,
    plays: Annotated[
        str | None,
        typer.Option(
            help="spark: Parquet plays as a path or URI Spark reads (hdfs://, s3a://); "
            "default: the ingested W/plays.",
            rich_help_panel="Spark",
        ),
    ] = None,
    user_col: Annotated[
        str, typer.Option(help="spark --plays: user id column.", rich_help_panel="Spark")
    ] = "user",
    song_col: Annotated[
        str, typer.Option(help="spark --plays: song id column.", rich_help_panel="Spark")
    ] = "song",
    count_col: Annotated[
        str, typer.Option(help="spark --plays: play count column.", rich_help_panel="Spark")
    ] = "count",
    spark_conf: Annotated[
        list[str] | None,
        typer.Option(
            help="Any Spark setting as KEY=VALUE (repeat), e.g. spark.executor.memory=8g.",
            rich_help_panel="Spark",
        ),
    ] = None,
):
    """Fit WMF on the warm songs' plays; write factors and the objective per iteration."""
    from coldtune.cf.spark import PlaysColumns
    from coldtune.steps import wmf

    def show(iteration: int, objective: float | None, seconds: float) -> None:
        value = f"objective {objective:.7g}" if objective is not None else "objective not tracked"
        say(f"iteration {iteration + 1:>3}/{config.iterations}: {value}  ({seconds:.2f} s)")

    start = time.perf_counter()
    fitted = wmf.run(
        Workspace(workspace),
        config,
        plays=plays,
        spark=wmf.with_spark_settings(spark, spark_conf),
        columns=PlaysColumns(user_col, song_col, count_col),
        device=device,
        callback=show,
        on_stage=say,
    )
    if plays is not None:
        report = fitted.plays
        say(
            f"read {report.rows_read:,} rows: {report.plays:,} (user, song) pairs kept, "
            f"{report.rows_outside:,} rows outside the split's users and warm songs, "
            f"{report.rows_bad:,} bad (no id, no count or a negative one)"
        )
        show(config.iterations - 1, fitted.objective, fitted.seconds / config.iterations)
    say(f"wrote {workspace / 'wmf'} in {time.perf_counter() - start:.1f} s")


@app.command("evaluate")
@friendly
def evaluate(
    workspace: WorkspaceOption,
    k: Annotated[int, typer.Option(help="Cut-off of average precision.")] = 500,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda.")] = None,
    users: Annotated[
        str | None,
        typer.Option(help="i/n: evaluate only range i of n of the users (one machine of n)."),
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="Merge the parts evaluated with --users i/n.")
    ] = False,
):
    """Score cold songs for every user; print and write the results table."""
    from coldtune.eval.parts import UserPart
    from coldtune.steps import evaluate as step

    if merge:
        if users is not None:
            raise ColdtuneError("give --users i/n to evaluate a part, or --merge, not both")
        results = step.merge_evaluation(Workspace(workspace))
        say(step.results_markdown(results))
        say(f"wrote {workspace / 'results' / 'evaluation.json'} and evaluation.md")
        return
    part = UserPart.parse(users)
    with _bars(16) as show:
        results = step.evaluate(
            Workspace(workspace), k=k, device=device, users=part, on_progress=show
        )
    say(step.results_markdown(results))
    if part is None:
        say(f"wrote {workspace / 'results' / 'evaluation.json'} and evaluation.md")
    else:
        say(
            f"wrote {workspace / 'results' / 'parts' / f'evaluation-{part.name}.json'}; "
            "once every part is there, run `coldtune evaluate --merge`",
        )


@contextlib.contextmanager
def _bars(width: int):
    """One progress bar per name: yields show(name, done, total)."""
    with _progress(TextColumn(f"{{task.description:<{width}}}")) as progress:
        tasks: dict[str, int] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        yield show


def _progress(label: TextColumn, *, rate: bool = False) -> Progress:
    """A progress bar on stderr: label, bar, done/total, [items/s,] elapsed, ETA."""
    columns = [label, BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]} clips/s"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=err_console)


class ClipPosition(StrEnum):
    start = "start"
    middle = "middle"
    whole = "whole"


@audio_app.command("extract")
@friendly
def audio_extract(
    workspace: WorkspaceOption,
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of clips (walked recursively; song id = file name)."),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="CSV/TSV with columns song_id,path instead of a folder.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes; default: one per core.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="i/n: extract only part i of n (by song id hash).")
    ] = None,
    position: Annotated[
        ClipPosition, typer.Option(help="Which part of each file is the clip.")
    ] = ClipPosition.middle,
    seconds: Annotated[float, typer.Option(help="Clip length (start, middle).")] = 30.0,
    compression: Annotated[
        str, typer.Option(help="Log-mel compression: db (librosa) or log1p.")
    ] = "db",
    clips_per_shard: Annotated[int, typer.Option(help="Clips per committed shard.")] = 64,
):
    """Turn a folder of clips into the feature store W/features (resumable).

    Exit status: 0 all clips extracted, 1 some files rejected (see rejects.tsv), 2 error.
    """
    from coldtune.audio.decode import ClipConfig
    from coldtune.audio.features import FeatureConfig
    from coldtune.audio.store import ExtractConfig, ShardSpec, extract

    if folder is None and manifest is None:
        raise ColdtuneError("give a folder of clips, or --manifest FILE")
    config = ExtractConfig(
        ClipConfig(seconds=seconds, position=position.value),
        FeatureConfig(compression=compression),
    )
    with _progress(TextColumn("extracting"), rate=True) as progress:
        task = progress.add_task("extract", total=None, rate="-")

        def show(done: int, total: int) -> None:
            speed = progress.tasks[0].speed
            rate = f"{speed:.1f}" if speed else "-"
            progress.update(task, completed=done, total=total, rate=rate)

        summary = extract(
            folder,
            Workspace(workspace).features_dir,
            config=config,
            manifest=manifest,
            workers=workers,
            shard=ShardSpec.parse(shard),
            clips_per_shard=clips_per_shard,
            on_progress=show,
        )
    say(
        f"{summary.clips_found:,} files in part {summary.shard}: {summary.already_done:,} "
        f"already done, {summary.extracted:,} extracted, {summary.rejected_now:,} rejected "
        f"now in {summary.seconds:.1f} s ({summary.clips_per_second:.1f} clips/s, "
        f"{summary.workers} workers); {summary.songs_in_store:,} songs in the store",
    )
    if summary.rejected_total:
        say(f"{summary.rejected_total:,} files rejected in all: see {summary.rejects_path}")
        raise typer.Exit(1)


@audio_app.command("merge")
@friendly
def audio_merge(
    workspace: WorkspaceOption,
    sources: Annotated[
        list[Path] | None,
        typer.Argument(help="Workspaces (or features folders) whose stores to bring into W."),
    ] = None,
    allow_missing_parts: Annotated[
        bool, typer.Option(help="Merge even when some part i/n has not been extracted.")
    ] = False,
):
    """Merge feature stores extracted in parts (--shard i/n) into W/features.

    With no SOURCES, the parts all wrote into W (shared storage): check that every part
    finished and write the store-wide rejects.tsv and summary.json.
    """
    from coldtune.audio.merge import merge_stores

    summary = merge_stores(
        Workspace(workspace).features_dir, sources or [], allow_missing_parts=allow_missing_parts
    )
    how = "linked" if summary.linked else "copied"
    say(
        f"{summary.shards_imported:,} shards ({summary.songs_imported:,} songs) {how} from "
        f"{len(summary.sources)} stores, {summary.shards_already_there:,} already there; "
        f"parts {', '.join(summary.parts)}; {summary.songs_in_store:,} songs in the store, "
        f"{summary.rejected_total:,} files rejected (see {summary.rejects_path})",
    )


@tags_app.command("ingest")
@friendly
def tags_ingest(
    folder: Annotated[Path, typer.Argument(help="Folder of Last.fm JSON files (any depth).")],
    workspace: WorkspaceOption,
    tracks: Annotated[Path, typer.Option(help="The MSD's unique_tracks.txt: track id -> song id.")],
):
    """Read Last.fm tags into W/tags/tags.parquet, keyed by song id."""
    from coldtune.data.tags import ingest_tags

    report = ingest_tags(folder, tracks, Workspace(workspace))
    say(report.summary())


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
@friendly
def train(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="bow-linear, bow-mlp, mlr, cnn or metadata (tags).")
    ] = None,
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w")] = None,
):
    """Train a content model on the warm songs; predict the cold songs' factors.

    Its options are its config's fields (`coldtune train MODEL --help` lists them with
    their defaults); an option that does not apply to the model is an error.
    """
    from coldtune import content
    from coldtune.steps.train import run as train_model

    if model is None or "--help" in ctx.args:
        say(_train_help(model))
        return
    options = parse_options(content.spec(model).config, ctx.args)
    if workspace is None:
        raise ColdtuneError("give the workspace: --workspace W")
    report = train_model(Workspace(workspace), model, **options)
    if "rank" in report:  # a process of torchrun's other than rank 0
        say(f"{model}: process {report['rank']} done; rank 0 writes the model")
        return
    say(
        f"{model}: trained on {report['warm_songs']:,} warm songs, predicted "
        f"{report['cold_songs']:,} cold songs in {report['seconds']:.1f} s "
        f"-> {workspace / 'models' / report['row']}"
    )


def _train_help(model: str | None) -> str:
    from coldtune import content

    if model is None:
        names = ", ".join(content.CONTENT_MODELS)
        return f"Usage: coldtune train MODEL -w W [--option value ...]\n\nModels: {names}."
    return (
        f"Usage: coldtune train {model} -w W [--option value ...]\n\n"
        f"Options (default, what):\n{options_help(content.spec(model).config)}"
    )


@world_app.command("build")
@friendly
def world_build(
    out: Annotated[Path, typer.Option("--out", help="Folder of the world.", file_okay=False)],
    size: Annotated[str, typer.Option(help="small, default or paper.")] = "default",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same world.")] = 0,
    audio_share: Annotated[
        float | None,
        typer.Option(help="How much of taste audio reveals, 0-1 (the semantic gap)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes; default: one per core.")] = None,
):
    """Build the demo world: clips, tracks, Last.fm-style tags and Taste Profile triplets."""
    from coldtune.world.build import build_world, world_config

    config = world_config(size, seed=seed, audio_share=audio_share)
    with _bars(7) as show:
        summary = build_world(out, config, workers=workers, on_progress=show)
    if summary.cached:
        say(f"{out}: already built with these settings")
    say(
        f"{summary.songs:,} songs by {summary.artists:,} artists, {summary.users:,} users, "
        f"{summary.triplets:,} triplets ({summary.plays:,} plays); "
        f"{summary.unusable_pieces:,} corpus pieces unusable (see unusable_pieces.tsv); "
        f"{summary.seconds:.0f} s -> {out}",
    )


@app.command("experiment")
@friendly
def experiment(
    workspace: WorkspaceOption,
    preset: Annotated[
        str,
        typer.Option(help="demo, paper-subset (Table 2) or paper-full (Table 3)."),
    ] = "paper-subset",
    backend: Annotated[str | None, typer.Option(help="WMF backend (implicit).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, WMF and models.")] = 0,
    seeds: Annotated[
        int, typer.Option(help="Repetitions with seeds SEED, SEED+1, ...: mean ± SE.")
    ] = 1,
):
    """Split, WMF, every content model, evaluation: Table 2's layout, with stage times.

    Needs W/plays (coldtune plays ingest); the audio models need W/features (coldtune
    audio extract) and the metadata row W/tags (coldtune tags ingest): a row without its
    data is listed as not run. With --seeds N, N repetitions and each row's mean ± SE,
    each model's paired difference from bow-linear. Writes W/results/experiment.json
    and experiment.md.
    """
    from coldtune.steps.experiment import Stages, experiment_markdown, run_seeds

    stages = Stages(
        on_stage=lambda event, name: say(
            f"[bold]{name}[/]" if event == "start" else f"  done in {stages.seconds[name]:.1f} s"
        )
    )
    results = run_seeds(
        Workspace(workspace),
        preset,
        seeds=list(range(seed, seed + seeds)),
        backend=backend,
        stages=stages,
        on_note=lambda message: say("  " + message),
    )
    say()
    say(experiment_markdown(results))
    say(f"written to {workspace / 'results' / 'experiment.md'}")


@app.command("demo")
@friendly
def demo(
    workspace: Annotated[Path, typer.Option("--workspace", "-w")] = Path(".cache/demo"),
    world: Annotated[
        str, typer.Option(help="Demo world size (small, default, paper), or synthetic.")
    ] = "default",
    size: Annotated[
        str, typer.Option(help=f"With --world synthetic: {', '.join(SYNTH_SIZES)}.")
    ] = "medium",
    backend: Annotated[str, typer.Option(help="WMF backend.")] = "implicit",
    seed: Annotated[int, typer.Option(help="Seed of the world and the split.")] = 0,
    seeds: Annotated[int, typer.Option(help="Repetitions of the experiment (mean ± SE).")] = 1,
    workers: Annotated[int | None, typer.Option(help="Processes; default: one per core.")] = None,
):
    """The whole pipeline that exists, on the demo world: the results table."""
    from coldtune.steps.demo import run_demo
    from coldtune.steps.experiment import experiment_markdown

    def stage(event: str, name: str, seconds: float | None) -> None:
        console.print(f"[bold]{name}[/]" if event == "start" else f"  done in {seconds:.1f} s")

    results = run_demo(
        Workspace(workspace),
        world=world,
        size=size,
        backend=backend,
        seed=seed,
        seeds=seeds,
        workers=workers,
        on_stage=stage,
        on_note=lambda message: say("  " + message.replace("\n", "\n  ")),
    )
    say()
    say(experiment_markdown(results))
    say(f"written to {workspace / 'results' / 'experiment.md'}")
    if "report" in results:
        say(f"report: {results['report']}")


# --------------------------------------------------------------------------- using the predictions

ModelOption = Annotated[
    str | None,
    typer.Option(help="Clip model: a content model in W/models that reads audio; default: a CNN."),
]


def _song_line(catalogue, row: int, extra: str = "") -> str:
    cold = " (cold)" if catalogue.cold[row] else ""
    return f"{catalogue.label(row)}{cold}  ({catalogue.song_ids[row]}){extra}"


@tags_app.callback(invoke_without_command=True)
@friendly
def tags_predict(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="The experiment's folder.")
    ] = None,
    n_tags: Annotated[int, typer.Option("--tags", help="The most frequent tags to predict.")] = 50,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 10,
    model: ModelOption = None,
):
    """Tag prediction (section 5.1): mean AUC of a logistic regression per tag from WMF
    factors, BoW-PCA audio features and predicted factors."""
    if ctx.invoked_subcommand is not None:
        return
    if workspace is None:
        say(ctx.get_help())
        raise typer.Exit(0)
    from coldtune.eval.tags import TagConfig, tags_markdown
    from coldtune.steps.analyses import tags as tag_experiment

    with _bars(22) as show:
        results = tag_experiment(
            Workspace(workspace),
            TagConfig(tags=n_tags, folds=folds, min_songs=max(10, folds)),
            model=model,
            on_progress=lambda row, column, done, total: show(f"{row}, {column}", done, total),
        )
    say(tags_markdown(results))
    say(f"wrote {workspace / 'results' / 'tags.json'} and tags.md")


@app.command("similar")
@friendly
def similar(
    song: Annotated[str, typer.Argument(help="A song id (`coldtune search` finds one).")],
    workspace: WorkspaceOption,
    n: Annotated[int, typer.Option("-n", help="Songs per column.")] = 10,
    model: ModelOption = None,
):
    """Table 4: the songs with the closest usage patterns, by WMF and by predicted factors."""
    from coldtune.steps.catalogue import load_catalogue

    catalogue = load_catalogue(Workspace(workspace), model=model)
    found = catalogue.similar(song, n=n)
    say(f"[bold]{_song_line(catalogue, catalogue.song_row(song))}[/]")
    titles = {"usage": "by usage (WMF factors)", "predicted": f"by audio ({catalogue.model_name})"}
    for space, neighbours in found.items():
        say(f"\n{titles[space]}:")
        if not neighbours:
            say("  (the song has no audio)")
        for rank, nb in enumerate(neighbours, start=1):
            line = _song_line(catalogue, nb.index, f"  {nb.similarity:.4f}")
            say(f"  {rank:>2}. {line}")


@app.command("search")
@friendly
def search(
    query: Annotated[str, typer.Argument(help="Words of an artist, a title or an id.")],
    workspace: WorkspaceOption,
    n: Annotated[int, typer.Option("-n", help="Most songs to list.")] = 20,
):
    """Find songs by artist or title, to get their ids."""
    from coldtune.steps.catalogue import search as find

    found = find(Workspace(workspace), query, n=n)
    for song, artist, title in found:
        say(f"{song}  {artist} - {title}")
    if not found:
        say("no song matches")


@app.command("recommend")
@friendly
def recommend(
    user: Annotated[str, typer.Argument(help="A user id.")],
    workspace: WorkspaceOption,
    n: Annotated[int, typer.Option("-n", help="Songs to recommend.")] = 20,
    cold_only: Annotated[bool, typer.Option(help="Only songs nobody has played yet.")] = False,
    model: ModelOption = None,
):
    """Top songs for a user by x_u^T y (warm songs: WMF; cold songs: predicted factors)."""
    from coldtune.steps.catalogue import load_catalogue

    catalogue = load_catalogue(Workspace(workspace), model=model)
    u = catalogue.user_row(user)
    about = catalogue.user_summary(u)
    console.print(
        f"[bold]{user}[/]: {about['songs_played']} songs played, most: "
        + "; ".join(about["top_songs"]),
        highlight=False,
        soft_wrap=True,
    )
    for rank, pick in enumerate(catalogue.recommend(user, n=n, cold_only=cold_only), start=1):
        held = f", played {pick['held_out_plays']}x (held out)" if pick["held_out_plays"] else ""
        line = _song_line(catalogue, pick["row"], f"  {pick['score']:.3f}{held}")
        say(f"{rank:>3}. {line}")


@app.command("embed")
@friendly
def embed(
    file: Annotated[Path, typer.Argument(help="An audio file (mp3, ogg, wav, flac, ...).")],
    workspace: WorkspaceOption,
    n: Annotated[int, typer.Option("-n", help="Songs and users to list.")] = 10,
    model: ModelOption = None,
    factors: Annotated[bool, typer.Option(help="Print the predicted factors too.")] = False,
):
    """A brand-new clip: its predicted factors, the most similar songs, likely listeners."""
    from coldtune.steps.catalogue import load_catalogue

    catalogue = load_catalogue(Workspace(workspace), model=model)
    predicted = catalogue.embed_file(file)
    say(f"[bold]{file}[/]: factors predicted by {catalogue.model_name}")
    if factors:
        say(" ".join(f"{v:.4f}" for v in predicted))
    say("\nmost similar songs (predicted usage patterns):")
    for rank, nb in enumerate(catalogue.similar_to_factors(predicted, n=n), start=1):
        line = _song_line(catalogue, nb.index, f"  {nb.similarity:.4f}")
        say(f"  {rank:>2}. {line}")
    say("\nusers most likely to enjoy it (predicted preference x_u^T y):")
    for rank, (u, score) in enumerate(catalogue.listeners(predicted, n=n), start=1):
        about = catalogue.user_summary(u, n=2)
        console.print(
            f"  {rank:>2}. {about['user_id']}  {score:.3f}  (plays "
            + "; ".join(about["top_songs"])
            + ")",
            highlight=False,
            soft_wrap=True,
        )


@app.command("map")
@friendly
def song_map(
    workspace: WorkspaceOption,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="Colour songs with this tag (repeat for more colours)."),
    ] = None,
    perplexity: Annotated[float, typer.Option(help="t-SNE perplexity.")] = 30.0,
    seed: Annotated[int, typer.Option(help="t-SNE seed.")] = 0,
    model: ModelOption = None,
):
    """Figure 1: t-SNE of predicted usage patterns, as a PNG and an interactive page."""
    from coldtune.eval.song_map import MapConfig
    from coldtune.steps.analyses import song_map as write_map

    result = write_map(
        Workspace(workspace),
        MapConfig(perplexity=perplexity, seed=seed, tags=tuple(tag or ())),
        model=model,
    )
    folder = workspace / "results" / "map"
    say(
        f"{len(result['song_ids']):,} songs placed by {result['model']}, coloured by "
        f"{', '.join(result['colour_tags']) or 'nothing'}: {folder / 'map.png'}, "
        f"{folder / 'map.html'}",
    )


@app.command("report")
@friendly
def report(workspace: WorkspaceOption, model: ModelOption = None):
    """One HTML page: results table, tag AUCs, similar songs, the map, stage times."""
    from coldtune.steps.report import write_report

    def show(stage: str, seconds: float) -> None:
        say(f"{stage}: {seconds:.1f} s")

    path = write_report(Workspace(workspace), model=model, on_stage=show)
    say(f"wrote {path}")


@app.command("serve")
@friendly
def serve(
    workspace: WorkspaceOption,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 opens it to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: ModelOption = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload, MiB.")] = 16.0,
):
    """The web service and its page: http://HOST:PORT/ (API docs at /docs)."""
    import uvicorn

    from coldtune.serve import create_app

    app_ = create_app(
        Workspace(workspace), model=model, max_upload_bytes=int(max_upload_mb * 2**20)
    )
    say(f"serving {workspace} on http://{host}:{port}/ (API: /docs)")
    uvicorn.run(app_, host=host, port=port, log_level="info")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
