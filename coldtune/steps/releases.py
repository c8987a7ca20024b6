"""`coldtune add`: new releases, songs with a clip and no plays, join the catalogue.

A music service gets new songs every day, each with a preview clip and no listener.
`add_releases` extracts their features into the workspace's store (resumable, as
`coldtune audio extract`), predicts their factors with the clip model (only the new
songs: `catalogue_predictions` keeps the others), and lists them in W/releases.csv with
their artist and title. The catalogue then holds them as cold songs: similar songs by
their predicted factors, search, and users' recommendations. Nothing else changes: the
split, WMF, the models and `coldtune evaluate`'s held-out protocol do not read them.
"""

from __future__ import annotations

import csv
import datetime
import io
from dataclasses import dataclass
from pathlib import Path

from coldtune.audio.store import ExtractConfig, ExtractSummary, FeatureStore, extract, find_clips
from coldtune.data.plays import load_interactions
from coldtune.data.splits import load_split
from coldtune.data.tags import read_unique_tracks
from coldtune.steps.catalogue import (
    RELEASE_COLUMNS,
    catalogue_predictions,
    choose_clip_model,
    load_clip_model,
    read_releases,
)
from coldtune.workspace import Workspace, atomic_path, read_json


@dataclass
class AddSummary:
    """What one `add_releases` run did."""

    extract: ExtractSummary
    added: int  # songs new to the catalogue in this run
    known: int  # songs of the listing the catalogue already had (warm, cold or added)
    releases: int  # songs W/releases.csv lists after the run
    model: str  # the clip model that predicted them
    path: str

    def summary(self) -> str:
        return (
            f"{self.extract.summary()}\n{self.added:,} new songs added, {self.known:,} already "
            f"in the catalogue; {self.releases:,} releases in {self.path}, factors "
            f"predicted by {self.model}"
        )


def add_releases(
    workspace: Workspace,
    folder: str | Path | None = None,
    *,
    manifest: str | Path | None = None,
    tracks: str | Path | None = None,
    model: str | None = None,
    workers: int | None = None,
    in_process: bool = False,
    on_progress=None,
) -> AddSummary:
    """Add the clips of `folder` (or `manifest`) to the catalogue as new songs.

    manifest : CSV/TSV with song_id and path columns, and artist and title if known.
    tracks : the MSD's unique_tracks.txt: clips named by track id are stored under
        their song id (`find_clips`), with the track's artist and title.
    model : the clip model that predicts their factors (default: `choose_clip_model`).
    workers, in_process : as `coldtune.audio.store.extract`'s.
    on_progress(done, total) : clips extracted.

    Idempotent and resumable: a clip already in the store is not extracted again, a song
    already in the catalogue is not added twice, and a killed run leaves every committed
    shard and the previous releases.csv; run it again to finish.
    """
    name = choose_clip_model(workspace, model)  # before any work: a missing model is an error
    table = read_unique_tracks(tracks) if tracks is not None else {}
    mapping = {track: song for track, (song, _, _) in table.items()} or None
    listing = find_clips(folder, manifest=manifest, tracks=mapping)
    config_path = workspace.features_dir / "config.json"
    config = (
        ExtractConfig.from_dict(read_json(config_path, what="feature store", hint=""))
        if config_path.is_file()
        else ExtractConfig()
    )
    extracted = extract(
        folder,
        workspace.features_dir,
        config=config,
        manifest=manifest,
        tracks=mapping,
        workers=workers,
        in_process=in_process,
        on_progress=on_progress,
    )
    store = FeatureStore(workspace.features_dir)
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    with workspace.lock("releases"):  # two adds at once: both lists of songs land
        releases = read_releases(workspace)
        known = {str(s) for s in interactions.song_ids[split.warm_songs]}
        known |= {str(s) for s in interactions.song_ids[split.cold_songs]}
        known |= {row["song_id"] for row in releases}
        listed = list(dict.fromkeys(song for song, _ in listing.clips if song in store))
        new = [song for song in listed if song not in known]
        about = _metadata(manifest, table)
        today = datetime.date.today().isoformat()
        rows = releases + [
            {"song_id": s, "artist": about.get(s, ("", ""))[0], "title": about.get(s, ("", ""))[1],
             "added": today}
            for s in new
        ]  # fmt: skip
        if new:
            _write_releases(workspace.releases_path, rows)
        clip_model = load_clip_model(workspace, name)
        catalogue_predictions(workspace, clip_model, [row["song_id"] for row in rows])
    return AddSummary(
        extract=extracted,
        added=len(new),
        known=len(listed) - len(new),
        releases=len(rows),
        model=name,
        path=str(workspace.releases_path),
    )


def _metadata(manifest, table: dict[str, tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """song id -> (artist, title): the manifest's columns first, then the tracks table's."""
    about = {song: (artist, title) for song, artist, title in table.values()}
    if manifest is not None:
        text = Path(manifest).read_text(encoding="utf-8", errors="replace")
        dialect = "excel-tab" if "\t" in text.split("\n", 1)[0] else "excel"
        for row in csv.DictReader(io.StringIO(text), dialect=dialect):
            if row.get("song_id") and (row.get("artist") or row.get("title")):
                about[row["song_id"]] = (row.get("artist") or "", row.get("title") or "")
    return about


def _write_releases(path: Path, rows: list[dict[str, str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RELEASE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
