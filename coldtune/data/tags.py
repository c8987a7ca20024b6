"""Last.fm tags in, as the Last.fm dataset (the MSD's companion) lays them out.

One JSON file per track, in folders by the 3rd-5th characters of the track id:
`{"track_id": "TR...", "artist": ..., "title": ..., "tags": [[tag, weight], ...]}` with
weights 0-100. Play counts name songs (SO... ids) and tags name tracks (TR... ids);
the MSD's `unique_tracks.txt` (`track<SEP>song<SEP>artist<SEP>title`) maps one to the
other. Bad files are counted and listed, not fatal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from coldtune.errors import ParameterError
from coldtune.workspace import Workspace, atomic_path


@dataclass
class TagReport:
    files: int = 0
    tagged_songs: int = 0
    tags: int = 0
    unknown_tracks: int = 0  # track ids the tracks table does not map to a song
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        text = (
            f"{self.files:,} tag files, {self.tagged_songs:,} songs with {self.tags:,} tags; "
            f"{self.unknown_tracks:,} tracks not in the tracks table"
        )
        if self.bad_files:
            text += f"; {len(self.bad_files):,} bad files skipped, e.g. {self.bad_files[0][0]}: "
            text += self.bad_files[0][1]
        return text


def read_unique_tracks(path: str | os.PathLike) -> dict[str, tuple[str, str, str]]:
    """track id -> (song id, artist, title) from the MSD's unique_tracks.txt
    (track<SEP>song<SEP>artist<SEP>title; artist and title may be missing)."""
    if not Path(path).is_file():
        raise ParameterError(f"{path}: tracks table not found; give the MSD's unique_tracks.txt")
    tracks = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("<SEP>")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise ParameterError(
                    f"{path}:{number}: expected track<SEP>song<SEP>artist<SEP>title, got {line!r}"
                )
            artist, title = (parts[2:4] + ["", ""])[:2]
            tracks[parts[0]] = (parts[1], artist, title)
    return tracks


def read_track_songs(path: str | os.PathLike) -> dict[str, str]:
    """track id -> song id from the MSD's unique_tracks.txt (`<SEP>`-separated)."""
    return {track: song for track, (song, _, _) in read_unique_tracks(path).items()}


def read_lastfm_tags(folder: str | os.PathLike, tracks: dict[str, str]):
    """(song id, tag, weight) rows from every JSON file under `folder`, and a report."""
    report = TagReport()
    songs, names, weights = [], [], []
    seen: set[str] = set()
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = Path(directory) / name
            report.files += 1
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                track = record["track_id"]
                tags = record.get("tags", [])
                pairs = [(str(tag), float(weight)) for tag, weight in tags]
            except (OSError, ValueError, KeyError, TypeError) as error:
                report.bad_files.append((str(path), f"{type(error).__name__}: {error}"))
                continue
            song = tracks.get(track)
            if song is None:
                report.unknown_tracks += 1
                continue
            if pairs and song not in seen:
                seen.add(song)
                for tag, weight in pairs:
                    songs.append(song)
                    names.append(tag.strip().lower())
                    weights.append(weight)
    report.tagged_songs, report.tags = len(seen), len(songs)
    table = pa.table({"song_id": songs, "tag": names, "weight": pa.array(weights, pa.float32())})
    return table, report


def ingest_tags(
    folder: str | os.PathLike, tracks_path: str | os.PathLike, workspace: Workspace
) -> TagReport:
    """`coldtune tags ingest`: W/tags/tags.parquet (song_id, tag, weight)."""
    if not Path(folder).is_dir():
        raise ParameterError(f"{folder}: not a folder of Last.fm JSON files")
    table, report = read_lastfm_tags(folder, read_track_songs(tracks_path))
    with atomic_path(workspace.tags_path) as tmp:
        pq.write_table(table, tmp)
    return report


def read_song_tags(workspace: Workspace) -> dict[str, dict[str, float]]:
    """song id -> {tag: weight 0-100}, from W/tags/tags.parquet (`coldtune tags ingest`)."""
    path = workspace.require(
        workspace.tags_path,
        what="tags",
        hint="run `coldtune tags ingest LASTFM_DIR --tracks unique_tracks.txt --workspace W` first",
    )
    table = pq.read_table(path).to_pydict()
    tags: dict[str, dict[str, float]] = {}
    for song, tag, weight in zip(table["song_id"], table["tag"], table["weight"], strict=True):
        tags.setdefault(song, {})[tag] = weight
    return tags
