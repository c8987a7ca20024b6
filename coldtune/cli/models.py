"""Commands that learn and measure: WMF, content models, evaluation, the experiment, the demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from coldtune.cf.spark import SparkConfig
from coldtune.cf.wmf import WMFConfig
from coldtune.cli.common import (
    SeedOption,
    SeedsOption,
    WorkersOption,
    WorkspaceOption,
    app,
    bars,
    command,
    say,
    show_results,
    wmf_app,
)
from coldtune.cli.options import options_help, parse_options, takes
from coldtune.data.plays import ReadConfig
from coldtune.data.synth import SYNTH_SIZES
from coldtune.errors import ColdtuneError
from coldtune.workspace import Workspace


@command(wmf_app, "fit")
@takes(WMFConfig, into="config")
@takes(SparkConfig, into="spark", exclude=("conf",), panel="Spark")
@takes(ReadConfig, into="columns", only=("user_col", "song_col", "count_col"), panel="Spark")
def wmf_fit(
    workspace: WorkspaceOption,
    config: WMFConfig,
    spark: SparkConfig,
    columns: ReadConfig,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda or cpu.")] = None,
    plays: Annotated[
        str | None,
        typer.Option(
            help="spark: Parquet plays as a path or URI Spark reads (hdfs://, s3a://); "
            "default: the ingested W/plays.",
            rich_help_panel="Spark",
        ),
    ] = None,
    spark_conf: Annotated[
        list[str] | None,
        typer.Option(help="Any Spark setting as KEY=VALUE (repeat).", rich_help_panel="Spark"),
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
        columns=PlaysColumns(columns.user_col, columns.song_col, columns.count_col),
        device=device,
        callback=show,
        on_stage=say,
    )
    if plays is not None:
        say(fitted.plays.summary())
        show(config.iterations - 1, fitted.objective, fitted.seconds / config.iterations)
    say(f"wrote {workspace / 'wmf'} in {time.perf_counter() - start:.1f} s")


@command(
    app,
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
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

    if model is None:
        names = ", ".join(content.CONTENT_MODELS)
        say(f"Usage: coldtune train MODEL -w W [--option value ...]\n\nModels: {names}.")
        return
    config_class = content.spec(model).config
    if "--help" in ctx.args:
        say(f"Usage: coldtune train {model} -w W [--option value ...]\n\nOptions (default, what):")
        say(options_help(config_class))
        return
    options = parse_options(config_class, ctx.args)
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


@command(app, "evaluate")
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

    if merge and users is not None:
        raise ColdtuneError("give --users i/n to evaluate a part, or --merge, not both")
    part = None if merge else UserPart.parse(users)
    if merge:
        results = step.merge_evaluation(Workspace(workspace))
    else:
        with bars(16) as show:
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


@command(app, "experiment")
def experiment(
    workspace: WorkspaceOption,
    preset: Annotated[
        str, typer.Option(help="demo, paper-subset (Table 2) or paper-full (Table 3).")
    ] = "paper-subset",
    backend: Annotated[str | None, typer.Option(help="WMF backend (implicit).")] = None,
    seed: SeedOption = 0,
    seeds: SeedsOption = 1,
    row: Annotated[
        list[str] | None,
        typer.Option(help="Only this model's row (repeat it for more; bow-linear always runs)."),
    ] = None,
):
    """Split, WMF, every content model, evaluation: Table 2's layout, with stage times.

    Needs W/plays (coldtune plays ingest); the audio models need W/features (coldtune
    audio extract) and the metadata row W/tags (coldtune tags ingest): a row without its
    data is listed as not run. With --seeds N, N repetitions and each row's mean ± SE,
    each model's paired difference from bow-linear. Writes W/results/experiment.json
    and experiment.md.
    """
    from coldtune.steps.experiment import Stages, run_seeds

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
        rows=tuple(row or ()),
        stages=stages,
        on_note=lambda message: say("  " + message),
    )
    show_results(results, workspace)


@command(app, "demo")
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
    seeds: SeedsOption = 1,
    workers: WorkersOption = None,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all-rows",
            help="Every row of the demo preset, the CNNs on raw factor targets and the "
            "WPE MLP too (10 minutes more on 2 cores).",
        ),
    ] = False,
):
    """The whole pipeline that exists, on the demo world: the results table.

    Trains bow-linear and the rows that answer the paper's question (the CNN against the
    bag of frames) and Table 2's rows that take seconds; --all-rows trains every row."""
    from coldtune.steps.demo import DEMO_ROWS, DemoConfig, run_demo

    def stage(event: str, name: str, seconds: float | None) -> None:
        say(f"[bold]{name}[/]" if event == "start" else f"  done in {seconds:.1f} s")

    config = DemoConfig(
        world,
        size,
        backend,
        seed=seed,
        seeds=seeds,
        workers=workers,
        rows=() if all_rows else DEMO_ROWS,
    )
    results = run_demo(
        Workspace(workspace),
        config,
        on_stage=stage,
        on_note=lambda message: say("  " + message.replace("\n", "\n  ")),
    )
    show_results(results, workspace)
    if "report" in results:
        say(f"report: {results['report']}")


warm_up_app = typer.Typer(
    help="First plays of cold songs: their factors move from the audio prediction toward "
    "what the plays say (eq. 3 with the prediction as prior), without refitting WMF.",
    no_args_is_help=True,
)
app.add_typer(warm_up_app, name="warm-up")
WarmUpModelOption = Annotated[
    str | None,
    typer.Option(help="Clip model whose predictions are the prior; default: the catalogue's."),
]


@command(warm_up_app, "apply")
def warm_up_apply(
    workspace: WorkspaceOption,
    plays: Annotated[
        Path | None,
        typer.Argument(
            help="New plays (user, song, count; triplets, CSV or Parquet) of cold songs; "
            "none: apply the kept ones again."
        ),
    ] = None,
    model: WarmUpModelOption = None,
    device: Annotated[str | None, typer.Option(help="torch device, e.g. cuda.")] = None,
):
    """Add new plays of cold songs and warm up those songs' factors for the catalogue."""
    from coldtune.steps import warmup

    report = warmup.apply(Workspace(workspace), plays, model=model, device=device)
    if report["already_applied"]:
        say(f"{plays}: applied before; its plays are kept once")
    elif plays is not None:
        rejected = ", ".join(f"{n:,} {why}" for why, n in report["rejected"].items() if n)
        say(
            f"{plays}: {report['rows']:,} (user, song) pairs, {report['used']:,} used"
            + (f"; not used: {rejected}" if rejected else "")
        )
    say(
        f"{report['songs_warmed']:,} cold songs warmed up from {report['plays_kept']:,} plays "
        f"(prior {report['model']}, weight {report['prior_weight']}) -> {report['factors']}"
    )


DrawsOption = Annotated[int, typer.Option(help="Draws of the revealed listeners.")]
DeviceOption = Annotated[str | None, typer.Option(help="torch device, e.g. cuda.")]


def _warm_up(step: str, markdown: str, workspace: Path, model, seeds: int, device) -> None:
    """Run warmup.STEP with the command's options and print warmup.MARKDOWN of it."""
    from coldtune.steps import warmup

    with bars(12) as show:
        results = getattr(warmup, step)(
            Workspace(workspace),
            warmup.WarmupConfig(seeds=seeds),
            model=model,
            device=device,
            on_stage=say,
            on_progress=show,
        )
    say(getattr(warmup, markdown)(results))


@command(warm_up_app, "choose")
def warm_up_choose(
    workspace: WorkspaceOption,
    model: WarmUpModelOption = None,
    seeds: DrawsOption = 5,
    device: DeviceOption = None,
):
    """Choose the prior's weight on warm songs held out of WMF and the clip model."""
    _warm_up("choose_prior_weight", "prior_weight_markdown", workspace, model, seeds, device)
    say(f"wrote {workspace / 'warmup' / 'prior_weight.json'}")


@command(warm_up_app, "table")
def warm_up_table(
    workspace: WorkspaceOption,
    model: WarmUpModelOption = None,
    seeds: DrawsOption = 5,
    device: DeviceOption = None,
):
    """The warm-up table on the cold songs: audio, fold-in, both, upper bound, per k."""
    _warm_up("table", "table_markdown", workspace, model, seeds, device)
    say(f"wrote {workspace / 'results' / 'warmup.md'}, warmup.json and warmup.png")


@command(warm_up_app, "splits")
def warm_up_splits(
    workspaces: Annotated[
        list[Path], typer.Argument(help="Workspaces of one world, one per split seed.")
    ],
):
    """One warm-up table from several workspaces' (split seeds): mean ± SE over them."""
    from coldtune.steps import warmup

    say(warmup.table_markdown(warmup.across_splits([Workspace(w) for w in workspaces])))
