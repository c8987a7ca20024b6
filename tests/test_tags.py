"""Last.fm tags in: the dataset's JSON layout, mapped from tracks to songs."""

import json

import pyarrow.parquet as pq
import pytest

from coldtune.data.tags import ingest_tags, read_lastfm_tags, read_track_songs
from coldtune.errors import ParameterError
from coldtune.workspace import Workspace


def write_tag(folder, track, tags):
    path = folder / track[2] / track[3] / track[4] / f"{track}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"track_id": track, "artist": "A", "title": "T", "tags": tags}))
    return path


def test_tags_are_read_by_song_and_bad_files_are_listed(tmp_path):
    tracks = tmp_path / "unique_tracks.txt"
    tracks.write_text("TRAAA1<SEP>SO1<SEP>A<SEP>T\nTRBBB2<SEP>SO2<SEP>B<SEP>U\n")
    folder = tmp_path / "lastfm"
    write_tag(folder, "TRAAA1", [["Irish", 100], ["fiddle", 40]])
    write_tag(folder, "TRBBB2", [])  # a track without tags
    write_tag(folder, "TRCCC3", [["rock", 10]])  # not in the tracks table
    (folder / "A" / "A" / "A" / "TRBAD9.json").write_text("{not json")
    table, report = read_lastfm_tags(folder, read_track_songs(tracks))
    rows = sorted(zip(*table.to_pydict().values(), strict=True))
    assert rows == [("SO1", "fiddle", 40.0), ("SO1", "irish", 100.0)]
    assert (report.files, report.tagged_songs, report.tags, report.unknown_tracks) == (4, 1, 2, 1)
    assert report.bad_files[0][0].endswith("TRBAD9.json")
    assert "bad files skipped" in report.summary()

    ingest_tags(folder, tracks, Workspace(tmp_path / "W"))
    assert pq.read_table(tmp_path / "W" / "tags" / "tags.parquet").num_rows == 2


def test_a_bad_tracks_line_is_named(tmp_path):
    tracks = tmp_path / "unique_tracks.txt"
    tracks.write_text("TRAAA1<SEP>SO1<SEP>A<SEP>T\njust one field\n")
    with pytest.raises(ParameterError, match="unique_tracks.txt:2"):
        read_track_songs(tracks)


def test_training_reads_the_warm_songs_tags_alone(small_workspace, monkeypatch):
    from coldtune.content.cnn import CNN
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.steps import train as train_step

    seen = {}

    class Stop(Exception):
        pass

    def fit(self, data):
        seen["songs"], seen["tags"] = set(data.song_ids), data.tags
        raise Stop

    monkeypatch.setattr(CNN, "fit", fit)
    with pytest.raises(Stop):
        train_step.run(small_workspace, "cnn", tag_weight=1.0, max_epochs=1)
    interactions = load_interactions(small_workspace)
    split = load_split(small_workspace, interactions)
    cold = set(interactions.song_ids[split.cold_songs])
    assert seen["tags"] and set(seen["tags"]) <= seen["songs"]
    assert not set(seen["tags"]) & cold
