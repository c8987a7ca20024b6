"""The `coldtune` command: parse, call one library function, print."""

from __future__ import annotations

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

from coldtune import pipeline
from coldtune.cf.wmf import WMFConfig
from coldtune.data.splits import SPLIT_PRESETS, SplitConfig
from coldtune.data.synth import SYNTH_SIZES, synth_config, synth_plays, write_plays
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


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}.get(
        suffix, "triplets"
    )


@plays_app.command("ingest")
@friendly
def plays_ingest(
    path: Annotated[Path, typer.Argument(help="Triplets file, CSV or Parquet.")],
    workspace: WorkspaceOption,
    format: Annotated[
        PlaysFormat | None,
        typer.Option(help="File format; default: from the suffix (.csv, .parquet), else triplets."),
    ] = None,
    user_col: Annotated[str, typer.Option(help="User id column (CSV, Parquet).")] = "user",
    song_col: Annotated[str, typer.Option(help="Song id column (CSV, Parquet).")] = "song",
    count_col: Annotated[str, typer.Option(help="Play count column (CSV, Parquet).")] = "count",
    on_bad_lines: Annotated[
        OnBadLines, typer.Option(help="error: stop at the first bad line; skip: count and go on.")
    ] = OnBadLines.error,
):
    """Read play counts (Taste Profile triplets, CSV, Parquet) into W/plays/."""
    start = time.perf_counter()
    interactions = pipeline.ingest(
        path,
        Workspace(workspace),
        format=(format.value if format else _detect_format(path)),
        user_col=user_col,
        song_col=song_col,
        count_col=count_col,
        on_bad_lines=on_bad_lines.value,
    )
    console.print(interactions.report.summary(), highlight=False)
    console.print(f"wrote {workspace / 'plays'} in {time.perf_counter() - start:.1f} s")


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
    start = time.perf_counter()
    config = synth_config(size, users=users, songs=songs, plays=plays, seed=seed)
    generated = synth_plays(config)
    write_plays(generated, out, format=_detect_format(out))
    m = generated.matrix
    console.print(
        f"wrote {out}: {m.shape[0]:,} users x {m.shape[1]:,} songs, {m.nnz:,} triplets, "
        f"{int(m.sum()):,} plays in {time.perf_counter() - start:.1f} s"
    )


@app.command("split")
@friendly
def split(
    workspace: WorkspaceOption,
    preset: Annotated[
        str | None, typer.Option(help=f"The paper's settings: {', '.join(SPLIT_PRESETS)}.")
    ] = None,
    cold_fraction: Annotated[float, typer.Option(help="Share of songs held out as cold.")] = 0.2,
    cold_songs: Annotated[int | None, typer.Option(help="Exact number of cold songs.")] = None,
    top_songs: Annotated[
        int | None, typer.Option(help="Keep the N songs with most listeners.")
    ] = None,
    users: Annotated[int | None, typer.Option(help="Keep M users at random.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
):
    """Hold out cold songs (section 5.2); optionally keep a popular subset first."""
    if preset is not None:
        if preset not in SPLIT_PRESETS:
            raise ColdtuneError(
                f"--preset must be one of {', '.join(SPLIT_PRESETS)}, got {preset!r}"
            )
        config = SplitConfig(**{**SPLIT_PRESETS[preset].__dict__, "seed": seed})
    else:
        config = SplitConfig(cold_fraction, cold_songs, top_songs, users, seed)
    result = pipeline.make_split(Workspace(workspace), config)
    console.print(
        f"{len(result.users):,} users, {len(result.warm_songs):,} warm songs, "
        f"{len(result.cold_songs):,} cold songs -> {workspace / 'split.json'}"
    )


@wmf_app.command("fit")
@friendly
def wmf_fit(
    workspace: WorkspaceOption,
    factors: Annotated[int, typer.Option(help="Latent factors k.")] = WMFConfig.factors,
    alpha: Annotated[float, typer.Option(help="alpha of eq. (2).")] = WMFConfig.alpha,
    epsilon: Annotated[float, typer.Option(help="epsilon of eq. (2).")] = WMFConfig.epsilon,
    regularization: Annotated[
        float, typer.Option(help="lambda of eq. (3).")
    ] = WMFConfig.regularization,
    iterations: Annotated[int, typer.Option(help="ALS sweeps.")] = WMFConfig.iterations,
    backend: Annotated[
        str, typer.Option(help="implicit (CPU), torch (GPU/CPU) or spark (MLlib ALS).")
    ] = "implicit",
    seed: Annotated[int, typer.Option(help="Seed of the initial factors.")] = 0,
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
    spark_master: Annotated[
        str,
        typer.Option(
            help="local[N], local[*], yarn, spark://HOST:7077, k8s://... (unused when a "
            "SparkSession is already running).",
            rich_help_panel="Spark",
        ),
    ] = "local[*]",
    spark_driver_memory: Annotated[
        str | None,
        typer.Option(
            help="Driver JVM heap, e.g. 16g. Default: 60% of this machine's memory in local "
            "mode (Spark runs inside the driver), 4g on a cluster.",
            rich_help_panel="Spark",
        ),
    ] = None,
    spark_checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            help="Shared folder for ALS checkpoints on a cluster.", rich_help_panel="Spark"
        ),
    ] = None,
    spark_conf: Annotated[
        list[str] | None,
        typer.Option(
            help="Any Spark setting as KEY=VALUE (repeat), e.g. spark.executor.memory=8g.",
            rich_help_panel="Spark",
        ),
    ] = None,
):
    """Fit WMF on the warm songs' plays; write factors and the objective per iteration."""
    config = WMFConfig(factors, alpha, epsilon, regularization, iterations, backend, seed)

    def show(iteration: int, objective: float | None, seconds: float) -> None:
        value = f"objective {objective:.7g}" if objective is not None else "objective not tracked"
        console.print(f"iteration {iteration + 1:>3}/{iterations}: {value}  ({seconds:.2f} s)")

    if backend != "spark":
        if plays is not None:
            raise ColdtuneError("--plays is read by Spark: add --backend spark")
        pipeline.fit_wmf(Workspace(workspace), config, device=device, callback=show)
        console.print(f"wrote {workspace / 'wmf'}")
        return

    from coldtune.cf.spark import PlaysColumns, SparkConfig, spark_session

    pairs = []
    for item in spark_conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ColdtuneError(f"--spark-conf expects KEY=VALUE, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    spark_config = SparkConfig(
        master=spark_master,
        driver_memory=spark_driver_memory,
        checkpoint_dir=spark_checkpoint_dir,
        conf=tuple(pairs),
    )
    start = time.perf_counter()
    if plays is None:
        with spark_session(spark_config):  # the backend runs on this session
            pipeline.fit_wmf(Workspace(workspace), config, callback=show)
    else:
        fit = pipeline.fit_wmf_spark(
            Workspace(workspace),
            config,
            plays,
            spark=spark_config,
            columns=PlaysColumns(user_col, song_col, count_col),
            on_stage=lambda message: console.print(message, highlight=False, soft_wrap=True),
        )
        report = fit.plays
        console.print(
            f"read {report.rows_read:,} rows: {report.plays:,} (user, song) pairs kept, "
            f"{report.rows_outside:,} rows outside the split's users and warm songs, "
            f"{report.rows_bad:,} bad (no id, no count or a negative one)",
            highlight=False,
            soft_wrap=True,
        )
        show(iterations - 1, fit.objective, fit.seconds / iterations)
    console.print(
        f"wrote {workspace / 'wmf'} in {time.perf_counter() - start:.1f} s", highlight=False
    )


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

    if merge:
        if users is not None:
            raise ColdtuneError("give --users i/n to evaluate a part, or --merge, not both")
        results = pipeline.merge_evaluation(Workspace(workspace))
        console.print(pipeline.results_markdown(results), highlight=False)
        console.print(f"wrote {workspace / 'results' / 'evaluation.json'} and evaluation.md")
        return
    part = UserPart.parse(users)
    with _progress(TextColumn("{task.description:<16}")) as progress:
        tasks: dict[str, int] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        results = pipeline.evaluate(
            Workspace(workspace), k=k, device=device, users=part, on_progress=show
        )
    console.print(pipeline.results_markdown(results), highlight=False)
    if part is None:
        console.print(f"wrote {workspace / 'results' / 'evaluation.json'} and evaluation.md")
    else:
        console.print(
            f"wrote {workspace / 'results' / 'parts' / f'evaluation-{part.name}.json'}; "
            "once every part is there, run `coldtune evaluate --merge`",
            highlight=False,
            soft_wrap=True,
        )


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
    console.print(
        f"{summary.clips_found:,} files in part {summary.shard}: {summary.already_done:,} "
        f"already done, {summary.extracted:,} extracted, {summary.rejected_now:,} rejected "
        f"now in {summary.seconds:.1f} s ({summary.clips_per_second:.1f} clips/s, "
        f"{summary.workers} workers); {summary.songs_in_store:,} songs in the store",
        highlight=False,
        soft_wrap=True,
    )
    if summary.rejected_total:
        console.print(
            f"{summary.rejected_total:,} files rejected in all: see {summary.rejects_path}",
            highlight=False,
            soft_wrap=True,
        )
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
    console.print(
        f"{summary.shards_imported:,} shards ({summary.songs_imported:,} songs) {how} from "
        f"{len(summary.sources)} stores, {summary.shards_already_there:,} already there; "
        f"parts {', '.join(summary.parts)}; {summary.songs_in_store:,} songs in the store, "
        f"{summary.rejected_total:,} files rejected (see {summary.rejects_path})",
        highlight=False,
        soft_wrap=True,
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
    console.print(report.summary(), highlight=False, soft_wrap=True)


@app.command("train")
@friendly
def train(
    model: Annotated[
        str,
        typer.Argument(help="Content model: bow-linear, bow-mlp, mlr, cnn, metadata (tags)."),
    ],
    workspace: WorkspaceOption,
    architecture: Annotated[
        str | None, typer.Option(help="cnn: paper (default) or global-pooling.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="cnn, mlr, bow-mlp: songs per batch (32, 256, 64).")
    ] = None,
    words: Annotated[
        int | None, typer.Option(help="bow-*, mlr: k-means codebook size (4000).")
    ] = None,
    kmeans_iterations: Annotated[
        int | None, typer.Option(help="bow-*, mlr: k-means iterations (20).")
    ] = None,
    objective: Annotated[
        str | None, typer.Option(help="bow-mlp, cnn: mse (eq. 4, default) or wpe (eq. 5).")
    ] = None,
    hidden: Annotated[int | None, typer.Option(help="bow-mlp: hidden units (1000).")] = None,
    dropout: Annotated[
        float | None,
        typer.Option(help="bow-mlp, cnn: dropout (bow-mlp: 0.5 mse, 0 wpe; cnn: 0)."),
    ] = None,
    dims: Annotated[
        int | None, typer.Option(help="mlr: rank of the metric (0: every PCA component).")
    ] = None,
    neighbours: Annotated[
        int | None, typer.Option(help="mlr: relevant songs per song, by shared listeners (10).")
    ] = None,
    margin: Annotated[float | None, typer.Option(help="mlr: hinge margin (1).")] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="torch models: adamw (default) or sgd-nesterov.")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="torch models: learning rate (1e-3; mlr 3e-3, cnn 3e-4).")
    ] = None,
    max_epochs: Annotated[
        int | None, typer.Option(help="torch models: most epochs (bow-mlp 200, mlr 100, cnn 30).")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="torch models: epochs without improvement before stopping (10, cnn 5)."),
    ] = None,
    windows_per_song: Annotated[
        int | None, typer.Option(help="cnn: random 3 s windows of each song per batch (4).")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="cnn: auto (bf16 where the CPU or GPU has it), fp32, bf16.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (0).")] = None,
):
    """Train a content model on the warm songs; predict the cold songs' factors.

    Only the options given are passed on; each model has its own defaults (shown in
    brackets) and an option that does not apply to the model is an error.
    """
    from coldtune.models import train as train_model

    given = {
        name: value
        for name, value in locals().items()
        if name not in ("model", "workspace", "train_model") and value is not None
    }
    report = train_model(Workspace(workspace), model, **given)
    if "rank" in report:  # a process of torchrun's other than rank 0
        console.print(f"{model}: process {report['rank']} done; rank 0 writes the model")
        return
    console.print(
        f"{model}: trained on {report['warm_songs']:,} warm songs, predicted "
        f"{report['cold_songs']:,} cold songs in {report['seconds']:.1f} s "
        f"-> {workspace / 'models'}",
        highlight=False,
        soft_wrap=True,
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
    with _progress(TextColumn("{task.description:<7}")) as progress:
        tasks: dict[str, int] = {}

        def show(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        summary = build_world(out, config, workers=workers, on_progress=show)
    if summary.cached:
        console.print(f"{out}: already built with these settings", highlight=False)
    console.print(
        f"{summary.songs:,} songs by {summary.artists:,} artists, {summary.users:,} users, "
        f"{summary.triplets:,} triplets ({summary.plays:,} plays); "
        f"{summary.unusable_pieces:,} corpus pieces unusable (see unusable_pieces.tsv); "
        f"{summary.seconds:.0f} s -> {out}",
        highlight=False,
        soft_wrap=True,
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
):
    """Split, WMF, every content model, evaluation: Table 2's layout, with stage times.

    Needs W/plays (coldtune plays ingest); the audio models need W/features (coldtune
    audio extract) and the metadata row W/tags (coldtune tags ingest): a row without its
    data is listed as not run. Writes W/results/experiment.json and experiment.md.
    """
    from coldtune.experiment import Stages, experiment_config, experiment_markdown, run_experiment

    config = experiment_config(preset, seed=seed, backend=backend)
    stages = Stages(
        on_stage=lambda event, name: console.print(
            f"[bold]{name}[/]" if event == "start" else f"  done in {stages.seconds[name]:.1f} s"
        )
    )
    results = run_experiment(
        Workspace(workspace),
        config,
        stages=stages,
        on_note=lambda message: console.print("  " + message, highlight=False),
    )
    console.print()
    console.print(experiment_markdown(results), highlight=False)
    console.print(f"written to {workspace / 'results' / 'experiment.md'}", highlight=False)


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
    workers: Annotated[int | None, typer.Option(help="Processes; default: one per core.")] = None,
):
    """The whole pipeline that exists, on the demo world: the results table."""
    from coldtune.demo import run_demo

    run_demo(
        Workspace(workspace),
        world=world,
        size=size,
        backend=backend,
        seed=seed,
        workers=workers,
        console=console,
    )


# --------------------------------------------------------------------------- using the predictions

ModelOption = Annotated[
    str | None,
    typer.Option(help="Clip model (a CNN in W/models); default: the best by cold-start AUC."),
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
        console.print(ctx.get_help())
        raise typer.Exit(0)
    from coldtune.eval.tags import TagConfig, tag_experiment, tags_markdown

    with _progress(TextColumn("{task.description:<22}")) as progress:
        tasks: dict[str, int] = {}

        def show(row: str, column: str, done: int, total: int) -> None:
            name = f"{row}, {column}"
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        results = tag_experiment(
            Workspace(workspace),
            TagConfig(tags=n_tags, folds=folds, min_songs=max(10, folds)),
            model=model,
            on_progress=show,
        )
    console.print(tags_markdown(results), highlight=False, soft_wrap=True)
    console.print(f"wrote {workspace / 'results' / 'tags.json'} and tags.md")


@app.command("similar")
@friendly
def similar(
    song: Annotated[str, typer.Argument(help="A song id (`coldtune search` finds one).")],
    workspace: WorkspaceOption,
    n: Annotated[int, typer.Option("-n", help="Songs per column.")] = 10,
    model: ModelOption = None,
):
    """Table 4: the songs with the closest usage patterns, by WMF and by predicted factors."""
    from coldtune.catalogue import Catalogue

    catalogue = Catalogue(Workspace(workspace), model=model)
    found = catalogue.similar(song, n=n)
    console.print(f"[bold]{_song_line(catalogue, catalogue.song_row(song))}[/]", highlight=False)
    titles = {"usage": "by usage (WMF factors)", "predicted": f"by audio ({catalogue.model_name})"}
    for space, neighbours in found.items():
        console.print(f"\n{titles[space]}:")
        if not neighbours:
            console.print("  (the song has no audio)")
        for rank, nb in enumerate(neighbours, start=1):
            line = _song_line(catalogue, nb.index, f"  {nb.similarity:.4f}")
            console.print(f"  {rank:>2}. {line}", highlight=False, soft_wrap=True)


@app.command("search")
@friendly
def search(
    query: Annotated[str, typer.Argument(help="Words of an artist, a title or an id.")],
    workspace: WorkspaceOption,
    n: Annotated[int, typer.Option("-n", help="Most songs to list.")] = 20,
):
    """Find songs by artist or title, to get their ids."""
    from coldtune.catalogue import song_metadata

    ws = Workspace(workspace)
    words = query.lower().split()
    found = [
        (song, artist, title)
        for song, (artist, title) in song_metadata(ws).items()
        if all(w in f"{artist} {title} {song}".lower() for w in words)
    ]
    for song, artist, title in found[:n]:
        console.print(f"{song}  {artist} - {title}", highlight=False)
    if not found:
        console.print("no song matches")


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
    from coldtune.catalogue import Catalogue

    catalogue = Catalogue(Workspace(workspace), model=model)
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
        console.print(f"{rank:>3}. {line}", highlight=False, soft_wrap=True)


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
    from coldtune.catalogue import Catalogue

    catalogue = Catalogue(Workspace(workspace), model=model)
    predicted = catalogue.embed_file(file)
    console.print(f"[bold]{file}[/]: factors predicted by {catalogue.model_name}", highlight=False)
    if factors:
        console.print(" ".join(f"{v:.4f}" for v in predicted), highlight=False, soft_wrap=True)
    console.print("\nmost similar songs (predicted usage patterns):")
    for rank, nb in enumerate(catalogue.similar_to_factors(predicted, n=n), start=1):
        line = _song_line(catalogue, nb.index, f"  {nb.similarity:.4f}")
        console.print(f"  {rank:>2}. {line}", highlight=False, soft_wrap=True)
    console.print("\nusers most likely to enjoy it (predicted preference x_u^T y):")
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
    from coldtune.eval.song_map import MapConfig, write_map

    result = write_map(
        Workspace(workspace),
        MapConfig(perplexity=perplexity, seed=seed, tags=tuple(tag or ())),
        model=model,
    )
    folder = workspace / "results" / "map"
    console.print(
        f"{len(result['song_ids']):,} songs placed by {result['model']}, coloured by "
        f"{', '.join(result['colour_tags']) or 'nothing'}: {folder / 'map.png'}, "
        f"{folder / 'map.html'}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("report")
@friendly
def report(workspace: WorkspaceOption, model: ModelOption = None):
    """One HTML page: results table, tag AUCs, similar songs, the map, stage times."""
    from coldtune.report import write_report

    def show(stage: str, seconds: float) -> None:
        console.print(f"{stage}: {seconds:.1f} s", highlight=False)

    path = write_report(Workspace(workspace), model=model, on_stage=show)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


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
    console.print(f"serving {workspace} on http://{host}:{port}/ (API: /docs)", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level="info")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
