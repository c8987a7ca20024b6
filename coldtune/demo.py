"""`make demo`: every step that exists, end to end, ending with the results table.

The data is the demo world (`coldtune world build`): music21's corpus rendered to
ogg clips, with simulated listeners' play counts in the Taste Profile's format. The
steps are the ones a user runs on the real Million Song Dataset files. `world="synthetic"`
uses the generator of `coldtune.data.synth` instead (plays only, no audio).
"""

from __future__ import annotations

from rich.console import Console

from coldtune import pipeline
from coldtune.data.synth import synth_config, synth_plays, write_plays
from coldtune.experiment import Stages, experiment_config, experiment_markdown, run_experiment
from coldtune.workspace import Workspace, write_json


def run_demo(
    workspace: Workspace,
    *,
    world: str = "default",
    size: str = "medium",
    backend: str = "implicit",
    seed: int = 0,
    workers: int | None = None,
    console: Console,
) -> dict:
    """world: a world size (small, default, paper) or "synthetic" (generated plays of
    `size`, no audio). Ends with `coldtune experiment`'s table for the demo preset."""

    def show(event: str, name: str) -> None:
        if event == "start":
            console.print(f"[bold]{name}[/]")
        else:
            console.print(f"  done in {stages.seconds[name]:.1f} s")

    def note(message: str) -> None:
        console.print("  " + message.replace("\n", "\n  "), highlight=False)

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
        interactions = pipeline.ingest(triplets, workspace)
    note(interactions.report.summary())
    if manifest is not None:
        from coldtune.audio.store import extract
        from coldtune.data.tags import ingest_tags

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
    config = experiment_config("demo", seed=seed, backend=backend)
    results = run_experiment(workspace, config, stages=stages, on_note=note)
    write_json(workspace.results_dir / "timings.json", stages.seconds)
    console.print()
    console.print(experiment_markdown(results), highlight=False)
    console.print(f"written to {workspace.results_dir / 'experiment.md'}", highlight=False)
    if manifest is not None:  # the report's analyses need a clip model, so audio
        from coldtune.report import write_report

        console.print(f"report: {write_report(workspace)}", highlight=False, soft_wrap=True)
    return results
