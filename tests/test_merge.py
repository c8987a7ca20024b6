"""`coldtune audio merge`: parts extracted apart make the store one run makes."""

import shutil

import numpy as np
import pytest
from conftest import tone, write_clip
from test_store import make_folder
from typer.testing import CliRunner

from coldtune.audio.merge import merge_stores
from coldtune.audio.store import FeatureStore, ShardSpec, extract
from coldtune.cli import app
from coldtune.errors import WorkspaceError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run over every clip, and parts 1/2 and 2/2 each in a store of its own."""
    root = tmp_path_factory.mktemp("merge")
    clips = root / "clips"
    make_folder(clips)
    # a second file for one song id: rejected before decoding, in no shard index
    write_clip(clips / "more" / "TRGOOD000.flac", tone(4.0, 22050, 990), 22050)
    extract(clips, root / "one" / "features", workers=1, clips_per_shard=3)
    for i in (1, 2):
        extract(
            clips,
            root / f"part{i}" / "features",
            workers=1,
            clips_per_shard=3,
            shard=ShardSpec(i, 2),
        )
    return root


def assert_same_store(merged, single):
    a, b = FeatureStore(merged), FeatureStore(single)
    assert sorted(a.song_ids) == sorted(b.song_ids) and len(a) == 6
    for song_id in b.song_ids:
        for kind in ("mel", "mfcc"):
            np.testing.assert_array_equal(a.song(song_id, kind), b.song(song_id, kind))
    rejects = (merged / "rejects.tsv").read_text()
    assert rejects == (single / "rejects.tsv").read_text()
    assert len(rejects.splitlines()) == 1 + 7  # header, 6 bad files, 1 duplicate id
    assert "duplicate song id" in rejects


def test_stores_of_two_parts_merge_into_the_store_of_one_run(runs, tmp_path):
    target = tmp_path / "W" / "features"
    parts = [runs / "part1", runs / "part2"]
    summary = merge_stores(target, parts)
    assert summary.parts == ["1/2", "2/2"]
    assert (summary.songs_in_store, summary.rejected_total) == (6, 7)
    assert summary.shards_imported == len(list(runs.glob("part*/features/shards/*.parquet")))
    assert summary.songs_imported == 6 + 7 - 1  # the duplicate is in no index
    assert_same_store(target, runs / "one" / "features")

    # idempotent: a second merge imports nothing and touches no shard
    before = {p.name: p.stat().st_mtime_ns for p in (target / "shards").iterdir()}
    again = merge_stores(target, parts)
    assert (again.shards_imported, again.shards_already_there) == (0, summary.shards_imported)
    assert {p.name: p.stat().st_mtime_ns for p in (target / "shards").iterdir()} == before
    assert_same_store(target, runs / "one" / "features")


def test_parts_extracted_into_one_shared_store_are_finished_by_a_merge(runs, tmp_path):
    shared = tmp_path / "shared" / "features"
    for part in ("part1", "part2"):  # what two machines writing one folder leave
        shutil.copytree(runs / part / "features", shared, dirs_exist_ok=True)
    summary = merge_stores(shared)
    assert (summary.shards_imported, summary.parts) == (0, ["1/2", "2/2"])
    assert_same_store(shared, runs / "one" / "features")


def test_a_missing_part_an_unfinished_part_and_overlapping_parts_are_refused(runs, tmp_path):
    target = tmp_path / "W" / "features"
    with pytest.raises(WorkspaceError, match="parts 2/2 are missing"):
        merge_stores(target, [runs / "part1"])
    assert not target.exists()  # checks come before any write
    partial = merge_stores(target, [runs / "part1"], allow_missing_parts=True)
    assert partial.parts == ["1/2"] and 0 < partial.songs_in_store < 6

    with pytest.raises(WorkspaceError, match="in two shards"):
        merge_stores(tmp_path / "X" / "features", [runs / "part1", runs / "one"])
    assert not (tmp_path / "X").exists()

    killed = tmp_path / "killed"
    shutil.copytree(runs / "part2", killed)
    (killed / "features" / "parts" / "part2of2.json").unlink()  # the run never finished
    with pytest.raises(WorkspaceError, match="part 2/2 has shards but its run did not finish"):
        merge_stores(target, [killed])


def test_cli_merges_workspaces(runs, tmp_path):
    result = CliRunner().invoke(
        app,
        ["audio", "merge", "-w", str(tmp_path / "W"), str(runs / "part1"), str(runs / "part2")],
    )
    assert result.exit_code == 0, result.output
    assert "6 songs in the store" in result.output and "parts 1/2, 2/2" in result.output
    result = CliRunner().invoke(app, ["audio", "merge", "-w", str(tmp_path / "W"), str(tmp_path)])
    assert result.exit_code == 2 and "no feature store here" in result.output
