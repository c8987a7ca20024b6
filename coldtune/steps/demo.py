"""`make demo`: every step that exists, end to end, ending with the results table.

The data is the demo world (`coldtune world build`): music21's corpus rendered to
ogg clips, with simulated listeners' play counts in the Taste Profile's format. The
steps are the ones a user runs on the real Million Song Dataset files. `world="synthetic"`
uses the generator of `coldtune.data.synth` instead (plays only, no audio).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coldtune.audio.store import extract
from coldtune.data.synth import synth_config, synth_plays, write_plays
from coldtune.data.tags import ingest_tags
from coldtune.steps.experiment import Stages, run_seeds
from coldtune.steps.plays import ingest
from coldtune.steps.report import write_report
from coldtune.workspace import Workspace, write_json

DEMO_ROWS: tuple[str, ...] = (
    "bow-mlp-mse",
    "mlr",
    "bow-linear-unit",
    "cnn-small-mse-unit-avg",
    "metadata",
)
"""The rows `make demo` trains (besides bow-linear and the reference rows): the ones that
answer the paper's question, the deep model against a bag of frames, and Table 2's rows
that take seconds. The demo preset's other rows (the CNN on raw factor targets, with MSE
and with WPE, and the WPE MLP) take 10 minutes more on 2 cores, beyond make demo's
budget of 6 minutes once the world is built; `coldtune demo --all-rows` trains them too."""


@dataclass(frozen=True)
class DemoConfig:
    """What `make demo` runs on (`coldtune demo`'s options)."""

    world: str = "default"  # a world size (small, default, paper), or "synthetic"
    size: str = "medium"  # with world="synthetic": a preset of coldtune.data.synth
    backend: str = "implicit"  # WMF's
    seed: int = 0  # of the world and the first repetition's split, WMF and models
    seeds: int = 1  # repetitions of the experiment (mean ± SE)
    workers: int | None = None  # processes; None: one per core
    rows: tuple[str, ...] = DEMO_ROWS  # the demo preset's rows to train; (): every row


def run_demo(
    workspace: Workspace,
    config: DemoConfig = DemoConfig(),
    *,
    on_stage: Callable[[str, str, float | None], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> dict:
    """config.world: a world size (small, default, paper) or "synthetic" (generated plays
    of `config.size`, no audio). Ends with `coldtune experiment`'s table for the demo
    preset (W/results/experiment.md) and, with audio, the report (W/results/report.html).

    on_stage : called with ("start", stage, None) and ("done", stage, seconds).
    on_note : called with what a stage found (sizes, counts), one message at a time.
    Returns the experiment's results, with "report" (the report's path) added.
    """

    def show(event: str, name: str) -> None:
        if on_stage is not None:
            on_stage(event, name, stages.seconds.get(name) if event == "done" else None)

    def note(message: str) -> None:
        if on_note is not None:
            on_note(message)

    world, size, seed, seeds, workers = (
        config.world,
        config.size,
        config.seed,
        config.seeds,
        config.workers,
    )
    stages = Stages(on_stage=show)
    manifest = None
    if world == "synthetic":
        triplets = workspace.root / "source" / "train_triplets.txt"
        with stages(f"generate Taste-Profile-shaped plays ({size})"):
            write_plays(synth_plays(synth_config(size)), triplets)
    else:
        from coldtune.world.build import build_world, world_config

        world_dir = workspace.root / "world"
        with stages(f"build the {world} demo world (music21 corpus -> FluidSynth -> ogg)"):
            summary = build_world(world_dir, world_config(world, seed=seed), workers=workers)
        note(
            f"{summary.songs:,} songs by {summary.artists:,} artists, "
            f"{summary.users:,} users, {summary.triplets:,} triplets"
            + (" (already built)" if summary.cached else "")
        )
        triplets = world_dir / "train_triplets.txt"
        manifest = world_dir / "clips.csv"
    with stages("ingest"):
        interactions = ingest(triplets, workspace)
    note(interactions.report.summary())
    if manifest is not None:
        with stages("audio features: log-mel and MFCC of every clip"):
            extracted = extract(None, workspace.features_dir, manifest=manifest, workers=workers)
        note(
            f"{extracted.songs_in_store:,} songs in the feature store, "
            f"{extracted.rejected_total:,} rejected"
        )
        with stages("tags: Last.fm-style JSON -> W/tags"):
            tag_report = ingest_tags(
                workspace.root / "world" / "lastfm",
                workspace.root / "world" / "unique_tracks.txt",
                workspace,
            )
        note(f"{tag_report.tagged_songs:,} songs tagged")
    if seeds == 1 or config.rows:
        note(
            f"{seeds} seed{'s' if seeds > 1 else ''}"
            + (f", {len(config.rows) + 1} of the demo preset's rows" if config.rows else "")
            + ": what make demo's time budget (6 minutes once the world is built) allows; "
            "`coldtune experiment --preset demo --seeds 3 -w W` gives every row, mean ± SE"
        )
    results = run_seeds(
        workspace,
        "demo",
        seeds=list(range(seed, seed + seeds)),
        backend=config.backend,
        rows=config.rows,
        stages=stages,
        on_note=note,
    )
    write_json(workspace.results_dir / "timings.json", stages.seconds)
    if manifest is not None:  # the report's analyses need a clip model, so audio
        results["report"] = str(write_report(workspace))
    return results
