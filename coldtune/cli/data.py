"""Commands that bring data in: plays, the split, audio features, tags, the demo world."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from coldtune.audio.configs import FeatureConfig
from coldtune.audio.decode import ClipConfig
from coldtune.cli.common import (
    WorkersOption,
    WorkspaceOption,
    app,
    audio_app,
    bars,
    command,
    plays_app,
    say,
    tags_app,
    world_app,
)
from coldtune.cli.options import takes
from coldtune.data.plays import ReadConfig
from coldtune.data.splits import SPLIT_PRESETS, SplitConfig
from coldtune.data.synth import SYNTH_SIZES
from coldtune.errors import ColdtuneError
from coldtune.workspace import Workspace


@command(plays_app, "ingest")
@takes(ReadConfig, into="config")
def plays_ingest(
    path: Annotated[Path, typer.Argument(help="Triplets file, CSV or Parquet.")],
    workspace: WorkspaceOption,
    config: ReadConfig,
):
    """Read play counts (Taste Profile triplets, CSV, Parquet) into W/plays/."""
    from coldtune.steps.plays import ingest

    start = time.perf_counter()
    interactions = ingest(path, Workspace(workspace), **config.keywords())
    say(interactions.report.summary())
    say(f"wrote {workspace / 'plays'} in {time.perf_counter() - start:.1f} s")


@command(plays_app, "synth")
def plays_synth(
    out: Annotated[Path, typer.Argument(help="File to write (triplets, .csv or .parquet).")],
    size: Annotated[str, typer.Option(help=f"Preset: {', '.join(SYNTH_SIZES)}.")] = "small",
    users: Annotated[int | None, typer.Option(help="Override the preset's users.")] = None,
    songs: Annotated[int | None, typer.Option(help="Override the preset's songs.")] = None,
    plays: Annotated[int | None, typer.Option(help="Override the preset's pairs.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
):
    """Generate play counts shaped like the Taste Profile (power laws, heavy-tailed counts)."""
    from coldtune.data.synth import synth_config, synth_plays, write_plays

    start = time.perf_counter()
    generated = synth_plays(synth_config(size, users=users, songs=songs, plays=plays, seed=seed))
    write_plays(generated, out)
    say(f"wrote {out}: {generated.summary()} in {time.perf_counter() - start:.1f} s")


@command(app, "split")
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


@command(audio_app, "extract")
@takes(ClipConfig, into="clip", only=("position", "seconds"))
@takes(FeatureConfig, into="features", only=("compression",))
def audio_extract(
    workspace: WorkspaceOption,
    clip: ClipConfig,
    features: FeatureConfig,
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of clips (walked recursively; song id = file name)."),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="CSV/TSV with columns song_id,path instead of a folder.")
    ] = None,
    tracks: Annotated[
        Path | None,
        typer.Option(
            help="The MSD's unique_tracks.txt: clips named by track id are stored by song id."
        ),
    ] = None,
    workers: WorkersOption = None,
    shard: Annotated[
        str | None, typer.Option(help="i/n: extract only part i of n (by song id hash).")
    ] = None,
    clips_per_shard: Annotated[int, typer.Option(help="Clips per committed shard.")] = 64,
):
    """Turn a folder of clips into the feature store W/features (resumable).

    Exit status: 0 all clips extracted, 1 some files rejected (see rejects.tsv), 2 error.
    """
    from coldtune.audio.store import ExtractConfig, ShardSpec, extract
    from coldtune.data.tags import read_track_songs

    if folder is None and manifest is None:
        raise ColdtuneError("give a folder of clips, or --manifest FILE")
    # read here, not in coldtune.audio: audio and data are independent layers
    track_songs = read_track_songs(tracks) if tracks is not None else None
    with bars(10, rate=True) as show:
        summary = extract(
            folder,
            Workspace(workspace).features_dir,
            config=ExtractConfig(clip, features),
            manifest=manifest,
            tracks=track_songs,
            workers=workers,
            shard=ShardSpec.parse(shard),
            clips_per_shard=clips_per_shard,
            on_progress=lambda done, total: show("extracting", done, total),
        )
    say(summary.summary())
    if summary.rejected_total:
        raise typer.Exit(1)


@command(app, "add")
def add(
    workspace: WorkspaceOption,
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of new clips (walked recursively; id = file name)."),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="CSV/TSV with song_id,path (and artist,title) instead of a folder."),
    ] = None,
    tracks: Annotated[
        Path | None,
        typer.Option(help="The MSD's unique_tracks.txt: track ids -> song ids, artist, title."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Clip model that predicts their factors; default: a CNN.")
    ] = None,
    workers: WorkersOption = None,
):
    """New releases: extract their clips, predict their factors, add them as cold songs.

    Resumable and idempotent: run it again after a kill, or on the same clips, and each
    song is added once. Exit status: 0 all clips used, 1 some rejected (rejects.tsv), 2 error.
    """
    from coldtune.steps.releases import add_releases

    if folder is None and manifest is None:
        raise ColdtuneError("give a folder of clips, or --manifest FILE")
    with bars(10, rate=True) as show:
        summary = add_releases(
            Workspace(workspace),
            folder,
            manifest=manifest,
            tracks=tracks,
            model=model,
            workers=workers,
            on_progress=lambda done, total: show("extracting", done, total),
        )
    say(summary.summary())
    if summary.extract.rejected_total:
        raise typer.Exit(1)


@command(audio_app, "merge")
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

    features = Workspace(workspace).features_dir
    say(merge_stores(features, sources or [], allow_missing_parts=allow_missing_parts).summary())


@command(tags_app, "ingest")
def tags_ingest(
    folder: Annotated[Path, typer.Argument(help="Folder of Last.fm JSON files (any depth).")],
    workspace: WorkspaceOption,
    tracks: Annotated[Path, typer.Option(help="The MSD's unique_tracks.txt: track id -> song id.")],
):
    """Read Last.fm tags into W/tags/tags.parquet, keyed by song id."""
    from coldtune.data.tags import ingest_tags

    say(ingest_tags(folder, tracks, Workspace(workspace)).summary())


@command(world_app, "build")
def world_build(
    out: Annotated[Path, typer.Option("--out", help="Folder of the world.", file_okay=False)],
    size: Annotated[str, typer.Option(help="small, default or paper.")] = "default",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same world.")] = 0,
    audio_share: Annotated[
        float | None,
        typer.Option(help="How much of taste audio reveals, 0-1 (the semantic gap)."),
    ] = None,
    workers: WorkersOption = None,
):
    """Build the demo world: clips, tracks, Last.fm-style tags and Taste Profile triplets."""
    from coldtune.world.build import build_world, world_config

    config = world_config(size, seed=seed, audio_share=audio_share)
    with bars(7) as show:
        say(build_world(out, config, workers=workers, on_progress=show).summary())
