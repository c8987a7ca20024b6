"""The feature store: extraction in processes, rejects, resuming after a kill, windows."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone, write_clip

from coldtune.audio.store import (
    ExtractConfig,
    FeatureStore,
    ShardSpec,
    extract,
    extract_clip,
    find_clips,
)
from coldtune.content.cnn import window_batch
from coldtune.errors import ParameterError, WorkspaceError

# bad files, each with the words its reason must contain
BAD = {
    "empty.mp3": "empty file",
    "notaudio.ogg": "not a readable audio file",
    "readme.txt": "not a readable audio file",
    "cut.flac": "truncated",
    "quiet.wav": "silent",
    "short.opus": "too short",
}


def make_folder(root: Path, n_good: int = 6) -> dict[str, Path]:
    """Good clips of mixed formats, rates and channels, in nested folders, plus BAD."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "more").mkdir(exist_ok=True)
    formats = [("wav", 44100, 2), ("flac", 48000, 1), ("ogg", 32000, 2), ("mp3", 44100, 1)]
    good = {}
    for i in range(n_good):
        suffix, sr, channels = formats[i % len(formats)]
        folder = root if i % 2 == 0 else root / "more"
        song_id = f"TRGOOD{i:03d}"
        seconds = 4.0 + 0.5 * i
        good[song_id] = write_clip(
            folder / f"{song_id}.{suffix}", tone(seconds, sr, 220 * (i + 1), channels), sr
        )
    (root / "empty.mp3").write_bytes(b"")
    (root / "notaudio.ogg").write_bytes(os.urandom(3000))
    (root / "readme.txt").write_text("these are clips\n")
    cut = write_clip(root / "cut.flac", tone(8.0, 44100), 44100)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    write_clip(root / "quiet.wav", tone(5.0, 22050, level=0.0), 22050)
    write_clip(root / "short.opus", tone(1.5, 48000), 48000)
    (root / ".hidden.wav").write_bytes(b"ignored: hidden files are not clips")
    return good


def read_rejects(features_dir: Path) -> dict[str, str]:
    lines = (features_dir / "rejects.tsv").read_text().splitlines()
    assert lines[0] == "song_id\tpath\treason"
    return {Path(path).name: reason for _, path, reason in (line.split("\t") for line in lines[1:])}


def test_extract_stores_every_good_clip_and_lists_every_bad_one(tmp_path):
    good = make_folder(tmp_path / "clips")
    features = tmp_path / "W" / "features"
    summary = extract(tmp_path / "clips", features, workers=2, clips_per_shard=3)
    assert summary.clips_found == len(good) + len(BAD)
    assert (summary.extracted, summary.rejected_now, summary.songs_in_store) == (6, 6, 6)
    rejects = read_rejects(features)
    assert set(rejects) == set(BAD)
    for name, words in BAD.items():
        assert words in rejects[name], (name, rejects[name])

    store = FeatureStore(features)
    assert sorted(store.song_ids) == sorted(good)
    config = ExtractConfig()
    for song_id, path in good.items():
        direct = extract_clip(str(path), config)
        for kind, width in (("mel", 128), ("mfcc", 39)):
            stored = store.song(song_id, kind)
            assert stored.dtype == np.float16 and stored.shape == (direct[kind].shape[0], width)
            # float16 keeps 11 bits: 0.03 dB at 64 dB, 1/2048 relative
            np.testing.assert_allclose(stored, direct[kind], rtol=1e-3, atol=2e-3)
    # frames follow the clip's length: 1 + samples // 512 at 22,050 Hz
    assert store.n_frames("TRGOOD000") == 1 + (4 * 22050) // 512


def test_windows_are_slices_of_memory_maps(tmp_path):
    make_folder(tmp_path / "clips", n_good=3)
    features = tmp_path / "features"
    extract(tmp_path / "clips", features, workers=1)
    store = FeatureStore(features)
    whole = store.song("TRGOOD002")
    window = store.window("TRGOOD002", start=40, frames=130)
    np.testing.assert_array_equal(window, whole[40:170])
    # a song and its windows are views of one memory-mapped shard, never copies
    assert np.shares_memory(window, whole) and not window.flags.writeable
    assert np.shares_memory(store.song("TRGOOD001"), store.window("TRGOOD001", start=0, frames=1))
    batch = store.random_windows(
        ["TRGOOD000", "TRGOOD001", "TRGOOD002"], frames=130, rng=np.random.default_rng(0)
    )
    assert batch.shape == (3, 130, 128) and batch.dtype == np.float16
    # the same windows as drawing each song's start in turn and slicing it out
    songs, rng = ["TRGOOD002", "TRGOOD000", "TRGOOD002", "TRGOOD001"], np.random.default_rng(5)
    expected = [
        store.window(s, start=int(rng.integers(0, store.n_frames(s) - 129)), frames=130)
        for s in songs
    ]
    np.testing.assert_array_equal(
        store.random_windows(songs, frames=130, rng=np.random.default_rng(5)), expected
    )
    widened = window_batch(store, songs, rng=np.random.default_rng(5))
    assert widened.dtype == torch.float32
    np.testing.assert_array_equal(widened.numpy(), np.asarray(expected, np.float32))
    assert store.random_windows([], frames=130, rng=rng).shape == (0, 130, 128)
    with pytest.raises(ParameterError, match="'TRGOOD000' has .* fewer than a window of"):
        store.random_windows(["TRGOOD000", "TRGOOD001"], frames=10**6, rng=rng)
    with pytest.raises(ParameterError, match="outside"):
        store.window("TRGOOD000", start=100, frames=1000)
    with pytest.raises(WorkspaceError, match="not in the feature store"):
        store.song("readme")


def test_a_second_run_redoes_nothing_and_cleans_up_a_killed_run(tmp_path):
    make_folder(tmp_path / "clips")
    features = tmp_path / "features"
    extract(tmp_path / "clips", features, workers=1, clips_per_shard=4)
    shards = features / "shards"
    committed = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    # what a kill leaves: arrays of a shard whose index never got written, a temp file
    (shards / "part1of1-deadbeef0000.mel.npy").write_bytes(b"half")
    (shards / ".part1of1-deadbeef0000.parquet.x.part").write_bytes(b"half")
    summary = extract(tmp_path / "clips", features, workers=1, clips_per_shard=4)
    assert summary.extracted == summary.rejected_now == 0
    assert summary.already_done == 12
    assert {p.name: p.stat().st_mtime_ns for p in shards.iterdir()} == committed


def test_new_files_are_added_to_an_existing_store(tmp_path):
    make_folder(tmp_path / "clips", n_good=2)
    features = tmp_path / "features"
    extract(tmp_path / "clips", features, workers=1)
    write_clip(tmp_path / "clips" / "TRNEW.wav", tone(4.0, 22050, 330), 22050)
    summary = extract(tmp_path / "clips", features, workers=1)
    assert (summary.extracted, summary.songs_in_store) == (1, 3)


def test_killed_extraction_resumes_without_loss_or_duplicates(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    # enough shards (60) that the kill lands mid-run however fast the machine: with 12
    # shards a quiet machine finished between two polls of the test
    for i in range(120):
        write_clip(clips / f"TR{i:04d}.wav", tone(3.5, 22050, 200 + 7 * i), 22050)
    workspace = tmp_path / "W"
    command = [
        sys.executable, "-m", "coldtune.cli", "audio", "extract", str(clips),
        "--workspace", str(workspace), "--workers", "1", "--clips-per-shard", "2",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = workspace / "features" / "shards"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(shards.glob("*.parquet"))) < 2:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len(list(shards.glob("*.parquet")))
    assert 2 <= partial < 60, "the kill came too late to test resuming"
    # no sleep here: the workers die with their parent (PR_SET_PDEATHSIG), so none of
    # them can still be writing while the second run cleans up
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    store = FeatureStore(workspace / "features")
    assert sorted(store.song_ids) == [f"TR{i:04d}" for i in range(120)]
    assert "already done" in done.stdout
    for song_id in store.song_ids:
        assert store.n_frames(song_id) == 1 + int(3.5 * 22050) // 512


def test_parts_split_the_songs_disjointly(tmp_path):
    make_folder(tmp_path / "clips")
    features = tmp_path / "features"
    first = extract(tmp_path / "clips", features, workers=1, shard=ShardSpec.parse("1/2"))
    second = extract(tmp_path / "clips", features, workers=1, shard=ShardSpec.parse("2/2"))
    assert first.extracted + second.extracted == 6
    assert first.clips_found + second.clips_found == 12
    assert len(FeatureStore(features)) == 6
    with pytest.raises(ParameterError, match="i/n"):
        ShardSpec.parse("3/2")


def test_manifest_names_songs_and_duplicate_ids_are_rejected(tmp_path):
    good = make_folder(tmp_path / "clips", n_good=3)
    manifest = tmp_path / "clips" / "manifest.csv"
    rows = [f"song_{i},{path.relative_to(manifest.parent)}" for i, path in enumerate(good.values())]
    rows.append(f"song_0,{good['TRGOOD001'].relative_to(manifest.parent)}")
    manifest.write_text("song_id,path\n" + "\n".join(rows) + "\n")
    listing = find_clips(None, manifest=manifest)
    assert [song_id for song_id, _ in listing.clips] == ["song_0", "song_1", "song_2"]
    assert listing.rejected[0][0] == "song_0" and "duplicate" in listing.rejected[0][2]
    summary = extract(None, tmp_path / "features", manifest=manifest, workers=1)
    assert (summary.extracted, summary.rejected_total) == (3, 1)

    bad = tmp_path / "bad.csv"
    bad.write_text("id,file\nx,y\n")
    with pytest.raises(ParameterError, match="needs columns song_id and path"):
        find_clips(None, manifest=bad)


def test_a_store_refuses_other_settings(tmp_path):
    from coldtune.audio.decode import ClipConfig

    make_folder(tmp_path / "clips", n_good=1)
    extract(tmp_path / "clips", tmp_path / "features", workers=1)
    other = ExtractConfig(clip=ClipConfig(seconds=10.0))
    with pytest.raises(WorkspaceError, match="built with"):
        extract(tmp_path / "clips", tmp_path / "features", config=other, workers=1)


def test_cli_exit_status_says_whether_files_were_rejected(tmp_path):
    from typer.testing import CliRunner

    from coldtune.cli import app

    clean = tmp_path / "clean"
    clean.mkdir()
    write_clip(clean / "TRA.flac", tone(4.0, 44100), 44100)
    runner = CliRunner()
    result = runner.invoke(app, ["audio", "extract", str(clean), "-w", str(tmp_path / "A")])
    assert result.exit_code == 0, result.output
    assert "1 extracted" in result.output

    make_folder(tmp_path / "mixed", n_good=1)
    result = runner.invoke(
        app, ["audio", "extract", str(tmp_path / "mixed"), "-w", str(tmp_path / "B")]
    )
    assert result.exit_code == 1
    assert "6 files rejected" in result.output and "rejects.tsv" in result.output

    result = runner.invoke(
        app, ["audio", "extract", str(tmp_path / "nope"), "-w", str(tmp_path / "C")]
    )
    assert result.exit_code == 2 and "not a folder" in result.output


# MSD ids in the MSD's shape: TR/SO and 16 capitals or digits
TRACK_A, TRACK_B, TRACK_C, TRACK_UNKNOWN = (
    "TRAAAAW128F429D538", "TRAAABD128F429CF47", "TRAAADZ128F9348C2E", "TRZZZZZ128F000000Z",
)  # fmt: skip
SONG_A, SONG_C, SONG_OWN = "SOMZWCG12A8C13C480", "SOCIWDW12A8C13D406", "SOXVLOJ12AB0189215"


def make_msd_folder(root: Path) -> tuple[Path, dict[str, str]]:
    """Clips named by track id in the MSD's nested folders (3rd-5th characters), one
    named by its song id, and the unique_tracks.txt that maps them: tracks A and B are
    two tracks of one song (B in a folder listed first), the unknown track is in no table."""
    for track, freq in ((TRACK_A, 220), (TRACK_B, 330), (TRACK_C, 440), (TRACK_UNKNOWN, 550)):
        folder = root / "0-first" if track == TRACK_B else root / track[2] / track[3] / track[4]
        folder.mkdir(parents=True, exist_ok=True)
        write_clip(folder / f"{track}.wav", tone(4.0, 22050, freq), 22050)
    write_clip(root / f"{SONG_OWN}.wav", tone(4.0, 22050, 660), 22050)
    tracks = {TRACK_A: SONG_A, TRACK_B: SONG_A, TRACK_C: SONG_C}
    table = root.parent / "unique_tracks.txt"
    table.write_text("".join(f"{t}<SEP>{s}<SEP>An Artist<SEP>A Title\n" for t, s in tracks.items()))
    return table, tracks


def test_tracks_table_names_clips_by_song_and_rejects_unknown_tracks(tmp_path):
    table, tracks = make_msd_folder(tmp_path / "clips")
    listing = find_clips(tmp_path / "clips", tracks=tracks)
    assert sorted(song for song, _ in listing.clips) == sorted([SONG_A, SONG_C, SONG_OWN])
    kept = dict(listing.clips)
    # two tracks of one song: the track id that sorts first is kept, wherever it lies
    assert Path(kept[SONG_A]).name == f"{TRACK_A}.wav"
    assert Path(kept[SONG_C]).name == f"{TRACK_C}.wav"
    assert len(listing.mapped) == 3 and len(listing.rejected) == 2
    assert [r[1] for r in listing.duplicate_tracks] == [
        str(tmp_path / "clips" / "0-first" / f"{TRACK_B}.wav")
    ]

    features = tmp_path / "W" / "features"
    summary = extract(tmp_path / "clips", features, tracks=tracks, workers=1)
    assert (summary.extracted, summary.songs_in_store, summary.rejected_total) == (3, 3, 2)
    assert (summary.tracks_mapped, summary.unknown_tracks, summary.duplicate_tracks) == (2, 1, 1)
    assert "1 tracks not in the tracks table" in summary.summary()
    assert "1 further tracks of a song already kept" in summary.summary()
    assert sorted(FeatureStore(features).song_ids) == sorted([SONG_A, SONG_C, SONG_OWN])
    rejects = read_rejects(features)
    unknown = rejects[f"{TRACK_UNKNOWN}.wav"]
    assert f"{TRACK_UNKNOWN}.wav" in unknown and "not in the tracks table" in unknown
    duplicate = rejects[f"{TRACK_B}.wav"]
    assert f"another track of song {SONG_A}" in duplicate and f"kept {TRACK_A}" in duplicate
    # the stored clip is track A's (220 Hz), not track B's
    direct = extract_clip(kept[SONG_A], ExtractConfig())["mel"]
    np.testing.assert_allclose(FeatureStore(features).song(SONG_A), direct, atol=2e-3, rtol=1e-3)
    # a second run with the table redoes nothing
    again = extract(tmp_path / "clips", features, tracks=tracks, workers=1)
    assert (again.already_done, again.extracted, again.rejected_total) == (3, 0, 2)


def test_without_a_tracks_table_file_names_stay_the_ids(tmp_path):
    make_msd_folder(tmp_path / "clips")
    listing = find_clips(tmp_path / "clips")
    names = {TRACK_A, TRACK_B, TRACK_C, TRACK_UNKNOWN, SONG_OWN}
    assert {song for song, _ in listing.clips} == names and not listing.rejected


def test_cli_extract_maps_tracks_with_unique_tracks_txt(tmp_path):
    from typer.testing import CliRunner

    from coldtune.cli import app

    table, _ = make_msd_folder(tmp_path / "clips")
    runner = CliRunner()
    args = ["audio", "extract", str(tmp_path / "clips"), "-w", str(tmp_path / "W")]
    result = runner.invoke(app, [*args, "--tracks", str(table), "--workers", "1"])
    assert result.exit_code == 1, result.output  # the unknown track and track B: rejected
    assert "3 extracted" in result.output
    assert "2 files named by track id, stored by song id" in result.output
    assert "1 tracks not in the tracks table" in result.output
    assert sorted(FeatureStore(tmp_path / "W" / "features").song_ids) == sorted(
        [SONG_A, SONG_C, SONG_OWN]
    )
    result = runner.invoke(app, [*args, "--tracks", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "tracks table not found" in result.output
