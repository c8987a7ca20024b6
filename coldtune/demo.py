"""`make demo`: every step that exists, end to end, ending with the results table.

The data is the demo world (`coldtune world build`): music21's corpus rendered to
ogg clips, with simulated listeners' play counts in the Taste Profile's format. The
steps are the ones a user runs on the real Million Song Dataset files. `world="synthetic"`
uses the generator of `coldtune.data.synth` instead (plays only, no audio).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console

from coldtune import pipeline
from coldtune.cf.wmf import WMFConfig
from coldtune.data.splits import SplitConfig
from coldtune.data.synth import synth_config, synth_plays, write_plays
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
    `size`, no audio)."""
    timings: dict[str, float] = {}

    @contextmanager
    def stage(name: str):
        console.print(f"[bold]{name}[/]")
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 2)
        console.print(f"  done in {timings[name]:.1f} s")

    manifest = None
    if world == "synthetic":
        triplets = workspace.root / "source" / "train_triplets.txt"
        with stage(f"generate Taste-Profile-shaped plays ({size})"):
            write_plays(synth_plays(synth_config(size)), triplets)
    else:
        from coldtune.world.build import build_world, world_config

        world_dir = workspace.root / "world"
        with stage(f"build the {world} demo world (music21 corpus -> FluidSynth -> ogg)"):
            summary = build_world(world_dir, world_config(world, seed=seed), workers=workers)
            console.print(
                f"  {summary.songs:,} songs by {summary.artists:,} artists, "
                f"{summary.users:,} users, {summary.triplets:,} triplets"
                + (" (already built)" if summary.cached else ""),
                highlight=False,
            )
        triplets = world_dir / "train_triplets.txt"
        manifest = world_dir / "clips.csv"
    with stage("ingest"):
        interactions = pipeline.ingest(triplets, workspace)
        console.print("  " + interactions.report.summary().replace("\n", "\n  "), highlight=False)
    with stage("split: hold out 20% of songs as cold"):
        split = pipeline.make_split(workspace, SplitConfig(cold_fraction=0.2, seed=seed))
        console.print(
            f"  {len(split.users):,} users, {len(split.warm_songs):,} warm, "
            f"{len(split.cold_songs):,} cold songs"
        )
    with stage(f"WMF on warm songs ({backend})"):
        result = pipeline.fit_wmf(workspace, WMFConfig(backend=backend))
        objective = result.model.objective_
        console.print(f"  objective {objective[0]:.6g} -> {objective[-1]:.6g}")
    if manifest is not None:
        from coldtune.audio.store import extract

        with stage("audio features: log-mel and MFCC of every clip"):
            extracted = extract(None, workspace.features_dir, manifest=manifest, workers=workers)
            console.print(
                f"  {extracted.songs_in_store:,} songs in the feature store, "
                f"{extracted.rejected_total:,} rejected",
                highlight=False,
            )
        from coldtune.data.tags import ingest_tags
        from coldtune.models import train

        with stage("metadata: Last.fm-style tags -> ridge (the reference of section 1.1)"):
            tag_report = ingest_tags(
                workspace.root / "world" / "lastfm",
                workspace.root / "world" / "unique_tracks.txt",
                workspace,
            )
            report = train(workspace, "metadata")
            console.print(
                f"  {tag_report.tagged_songs:,} songs tagged; {report['tags']} tags used, "
                f"{report['cold_songs_with_tags']} of {report['cold_songs']} cold songs tagged",
                highlight=False,
            )
        # the paper's 4,000 words are for 9,330 songs; the demo's fewer songs get fewer
        words = int(min(1000, max(16, len(split.warm_songs) // 2)))
        with stage(f"bow-linear: MFCC bag of {words} words, PCA, ridge (section 4.1)"):
            report = train(workspace, "bow-linear", words=words, kmeans_iterations=10)
            console.print(
                f"  {report['pca_components']} PCA components, alpha {report['alpha']:g}",
                highlight=False,
            )
        for objective in ("mse", "wpe"):
            with stage(f"bow-mlp, {objective.upper()} objective (sections 4.1, 4.3)"):
                report = train(
                    workspace, "bow-mlp", words=words, kmeans_iterations=10, objective=objective
                )
                console.print(
                    f"  {report['epochs']} epochs, best {report['best_epoch']}", highlight=False
                )
        with stage("cnn (the paper's architecture), MSE objective, 3 s windows (section 4.2)"):
            report = train(workspace, "cnn", architecture="paper", objective="mse",
                           max_epochs=40, patience=6)  # fmt: skip
            console.print(
                f"  {report['epochs']} epochs, best {report['best_epoch']}, "
                f"{report['windows_per_s']:.0f} windows/s",
                highlight=False,
            )
    with stage("evaluate"):
        results = pipeline.evaluate(workspace)
    write_json(workspace.results_dir / "timings.json", timings)
    console.print()
    console.print(pipeline.results_markdown(results), highlight=False)
    if manifest is not None:  # the report's analyses need a clip model, so audio
        from coldtune.report import write_report

        console.print(f"report: {write_report(workspace)}", highlight=False, soft_wrap=True)
    return results
