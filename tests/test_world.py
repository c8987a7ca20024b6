"""The demo world: real corpus pieces rendered to clips, simulated listeners, MSD formats."""

import csv
import json
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SMALL_SONGS, SMALL_USERS

from coldtune import read_plays
from coldtune.audio.decode import decode_clip
from coldtune.audio.features import mfcc
from coldtune.errors import ParameterError
from coldtune.steps.experiment import EXPERIMENTS
from coldtune.world import corpus
from coldtune.world.build import INSTRUMENTS, WorldConfig, build_world, msd_id, world_config
from coldtune.world.listeners import AUDIO_ATTRIBUTES, ListenerConfig, simulate_listeners
from coldtune.world.render import Rendering, render_clip

CNN_MSE, CNN_WPE, CNN_UNIT = (run.row for run in EXPERIMENTS["demo"].models if run.model == "cnn")


def read_tracks(world: Path) -> list[dict]:
    with open(world / "tracks.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_are_in_the_msd_formats(small_world):
    world, summary = small_world
    assert (summary.songs, summary.users) == (SMALL_SONGS, SMALL_USERS)
    # Taste Profile triplets: user<TAB>song<TAB>count, read by the ingest of issue 2
    lines = (world / "train_triplets.txt").read_text().splitlines()
    assert all(len(line.split("\t")) == 3 for line in lines[:1000])
    plays = read_plays(world / "train_triplets.txt")
    assert plays.matrix.shape == (SMALL_USERS, SMALL_SONGS)
    assert plays.matrix.nnz == summary.triplets == len(lines)
    assert plays.matrix.data.min() >= 1
    # every user has at least 10 songs, as in the Taste Profile
    assert np.diff(plays.matrix.indptr).min() >= 10

    tracks = read_tracks(world)
    assert len(tracks) == SMALL_SONGS
    assert len({t["song_id"] for t in tracks}) == SMALL_SONGS
    for track in tracks:
        assert re.fullmatch(r"SO[A-Z0-9]{16}", track["song_id"])
        assert re.fullmatch(r"TR[A-Z0-9]{16}", track["track_id"])
        assert track["title"] and track["artist"] and track["collection"]
    assert set(plays.song_ids) == {t["song_id"] for t in tracks}
    unique = (world / "unique_tracks.txt").read_text().splitlines()
    assert unique[0].split("<SEP>")[:2] == [tracks[0]["track_id"], tracks[0]["song_id"]]

    # Last.fm layout: one JSON per track under A/B/C/ of the track id
    track = tracks[0]
    tid = track["track_id"]
    record = json.loads((world / "lastfm" / tid[2] / tid[3] / tid[4] / f"{tid}.json").read_text())
    assert {"track_id", "artist", "title", "tags", "timestamp"} <= set(record)
    assert record["track_id"] == tid and record["artist"] == track["artist"]
    assert all(isinstance(t, str) and 0 <= w <= 100 for t, w in record["tags"])

    # clips: 30 s ogg/vorbis, one per song, listed in the manifest
    manifest = list(csv.DictReader(open(world / "clips.csv")))
    assert len(manifest) == SMALL_SONGS
    for row in manifest[:5]:
        info = sf.info(world / row["path"])
        assert (info.format, info.subtype) == ("OGG", "VORBIS")
        assert info.duration == pytest.approx(30.0, abs=0.01)
        assert decode_clip(world / row["path"]).size == 30 * 22050

    # the hidden variables sit apart, with a warning
    assert "diagnostics only" in (world / "hidden" / "README.txt").read_text()


def test_every_collection_is_used_and_none_is_one_instrument(small_world):
    world, _ = small_world
    tracks = read_tracks(world)
    by_collection = defaultdict(set)
    for track in tracks:
        by_collection[track["collection"]].add(track["instrument"])
    assert len(by_collection) == len(corpus.COLLECTIONS)
    large = [c for c in by_collection if sum(t["collection"] == c for t in tracks) >= 10]
    assert large and all(len(by_collection[c]) >= 2 for c in large)


def test_artists_share_a_rendering_and_sound_alike(small_world):
    world, _ = small_world
    tracks = read_tracks(world)
    by_artist = defaultdict(list)
    for track in tracks:
        by_artist[track["artist_id"]].append(track)
    for songs in by_artist.values():
        assert len({s["program"] for s in songs}) == 1
        assert len({s["collection"] for s in songs}) == 1
    # the tags name the instrument the artist plays, when present
    for track in tracks:
        tid = track["track_id"]
        tags = json.loads((world / "lastfm" / tid[2] / tid[3] / tid[4] / f"{tid}.json").read_text())
        names = {t for t, _ in tags["tags"]}
        known = {name for family in INSTRUMENTS.values() for _, name, _ in family}
        assert names & known <= {track["instrument"]}
    # and the audio agrees: a song's timbre (mean MFCC) is nearer its artist's other
    # songs than other artists' songs, for most songs
    manifest = {r["song_id"]: r["path"] for r in csv.DictReader(open(world / "clips.csv"))}
    artists = [a for a, songs in by_artist.items() if len(songs) >= 3][:8]
    songs = [(a, s["song_id"]) for a in artists for s in by_artist[a][:4]]
    timbre = np.stack(
        [
            mfcc(y=decode_clip(world / manifest[s]), sr=22050, deltas=False)[1:].mean(1)
            for _, s in songs
        ]
    )
    labels = np.array([a for a, _ in songs])
    distances = np.linalg.norm(timbre[:, None] - timbre[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest_same = labels[distances.argmin(axis=1)] == labels
    assert nearest_same.mean() >= 0.6, nearest_same.mean()


def test_a_second_build_is_instant_and_the_same_seed_gives_the_same_world(small_world, tmp_path):
    world, summary = small_world
    start = time.perf_counter()
    again = build_world(world, world_config("small", seed=0))
    assert again.cached and time.perf_counter() - start < 1.0
    assert again.triplets == summary.triplets

    # a fresh folder with the clips already there (rendering is tested on its own below):
    # every other file comes out byte for byte the same
    copy = tmp_path / "copy"
    shutil.copytree(world / "clips", copy / "clips", copy_function=os.link)
    build_world(copy, world_config("small", seed=0))
    for name in ("train_triplets.txt", "tracks.csv", "clips.csv", "unique_tracks.txt"):
        assert (copy / name).read_bytes() == (world / name).read_bytes(), name
    tid = read_tracks(world)[7]["track_id"]
    tag_path = Path("lastfm") / tid[2] / tid[3] / tid[4] / f"{tid}.json"
    assert (copy / tag_path).read_bytes() == (world / tag_path).read_bytes()

    with pytest.raises(Exception, match="other settings"):
        build_world(world, world_config("small", seed=1))


def test_which_tags_a_song_carries_does_not_follow_its_listeners(small_world, tmp_path):
    """Tags stand for editorial metadata: how many a song has is not a sign of its plays
    (else the metadata row would read the cold songs' popularity)."""
    from scipy import stats

    world, _ = small_world
    tracks = read_tracks(world)
    n_tags = []
    for track in tracks:
        tid = track["track_id"]
        record = json.loads(
            (world / "lastfm" / tid[2] / tid[3] / tid[4] / f"{tid}.json").read_text()
        )
        n_tags.append(len(record["tags"]))
    plays = read_plays(world / "train_triplets.txt")
    listeners = dict(zip(plays.song_ids, np.diff(plays.matrix.tocsc().indptr), strict=True))
    rho = stats.spearmanr(n_tags, [listeners[t["song_id"]] for t in tracks]).statistic
    # 150 songs: under independence rho has a standard error of 1 / sqrt(149) = 0.08;
    # tags drawn by listener percentile, as before, gave +0.8
    assert abs(rho) < 0.3, rho
    assert 0.5 < np.mean(n_tags) / 9 < 0.8 and min(n_tags) < max(n_tags)

    # the same songs with other listeners: other plays, every tag file the same
    copy = tmp_path / "other-listeners"
    shutil.copytree(world / "clips", copy / "clips", copy_function=os.link)
    build_world(copy, world_config("small", seed=0, audio_share=0.2))
    assert (copy / "train_triplets.txt").read_bytes() != (world / "train_triplets.txt").read_bytes()
    for path in (world / "lastfm").rglob("*.json"):
        assert (copy / path.relative_to(world)).read_bytes() == path.read_bytes(), path


def test_rendering_is_deterministic(tmp_path):
    piece = corpus.parse_piece(corpus.list_pieces("ryansMammoth")[3])
    rendering = Rendering(program=40, bpm=180, transpose=0, velocity=80, level=0.8)
    render_clip(piece.notes, rendering, tmp_path / "a.ogg", seconds=5.0)
    render_clip(piece.notes, rendering, tmp_path / "b.ogg", seconds=5.0)
    # the same samples (the files differ only in the ogg stream's random serial number)
    np.testing.assert_array_equal(sf.read(tmp_path / "a.ogg")[0], sf.read(tmp_path / "b.ogg")[0])
    # the clip is the length asked for, looped from a shorter tune if need be
    assert sf.info(tmp_path / "a.ogg").duration == pytest.approx(5.0, abs=0.01)


def test_audio_extract_takes_every_clip_of_the_world(small_world, tmp_path):
    from coldtune.audio.store import FeatureStore, extract

    world, _ = small_world
    summary = extract(None, tmp_path / "features", manifest=world / "clips.csv")
    assert (summary.extracted, summary.rejected_total) == (SMALL_SONGS, 0)
    store = FeatureStore(tmp_path / "features")
    assert store.n_frames(read_tracks(world)[0]["song_id"]) == 1 + 30 * 22050 // 512


def test_demo_runs_every_step_on_the_small_world(small_demo):
    workspace, results = small_demo
    rows = {row["model"]: row for row in results["rows"]}
    assert rows["upper bound"]["auc"] > rows["random"]["auc"] + 0.1
    # every content model learns something from the audio (or tags), even from the small
    # world's 120 warm songs: above chance (an AUC of 0.5) and above the random row
    content = ("bow-linear", "bow-mlp-mse", "bow-mlp-wpe", "mlr", "metadata", CNN_MSE)
    for model in content:
        assert rows[model]["auc"] > max(0.53, rows["random"]["auc"]), rows[model]
    for model in (CNN_MSE, CNN_WPE):
        report = json.loads((workspace.models_dir(model) / "report.json").read_text())
        assert report["epochs"] >= 1 and report["windows_per_s"] > 0
        with np.load(workspace.models_dir(model) / "predictions.npz") as saved:
            assert saved["factors"].shape == (report["cold_songs"], 50)
            assert np.isfinite(saved["factors"]).all()
    assert (workspace.features_dir / "rejects.tsv").exists()
    # Table 2's layout, with the stage times, in the workspace
    table = (workspace.results_dir / "experiment.md").read_text()
    assert "| mlr | metric learning to rank |" in table
    assert "| Stage | Seconds |" in table and "build the small demo world" in table
    # and ends with the report (tests/test_analyses.py checks what it holds)
    assert "id='similar'" in (workspace.results_dir / "report.html").read_text()


@pytest.mark.xfail(
    strict=False,
    reason="issue 14: since taste rests on rhythm, tempo, mode and register as much as on "
    "timbre (world version 3), the paper's CNN trained with WPE on the small world's 120 "
    "warm songs scored at chance (AUC 0.493 at seed 0); the WPE row of the small network "
    "(the new default) is not yet validated on warm songs",
)
def test_the_wpe_cnn_learns_on_the_small_world(small_demo):
    _, results = small_demo
    rows = {row["model"]: row for row in results["rows"]}
    assert rows[CNN_WPE]["auc"] > max(0.53, rows["random"]["auc"]), rows[CNN_WPE]


# --------------------------------------------------------------------------- listeners


def synthetic_songs(rng, n_songs=3000, n_artists=300):
    songs = {
        a: rng.integers(0, k, n_songs)
        for a, k in zip(AUDIO_ATTRIBUTES, (6, 8, 12, 5, 3, 2, 3), strict=True)
    }
    songs["artist"] = rng.integers(0, n_artists, n_songs)
    return songs


def test_listeners_have_the_taste_profiles_long_tails(rng):
    plays = simulate_listeners(synthetic_songs(rng), ListenerConfig(users=3000), rng).plays
    listeners = np.sort(np.diff(plays.tocsc().indptr))[::-1]
    # a power law of popularity: the top 10% of songs have far more than 10% of listeners
    assert listeners[: len(listeners) // 10].sum() / listeners.sum() > 0.35
    activity = np.diff(plays.indptr)
    assert activity.min() >= 10 and activity.max() > 5 * np.median(activity)
    counts = plays.data
    assert np.median(counts) <= 3 and np.percentile(counts, 99.9) > 10 * np.median(counts)


def test_audio_share_sets_how_much_audio_explains(rng):
    songs = synthetic_songs(rng)

    def audible_agreement(share):
        result = simulate_listeners(
            songs, ListenerConfig(users=800, audio_share=share), np.random.default_rng(5)
        )
        taste = result.hidden_users["taste_style"]  # (users, styles)
        plays = result.plays.tocoo()
        # how much more than chance users play their own favourite style
        picked = taste[plays.row, songs["style"][plays.col]]
        return picked.mean() / taste.mean()

    assert audible_agreement(1.0) > audible_agreement(0.5) > audible_agreement(0.0)
    assert audible_agreement(0.0) == pytest.approx(1.0, abs=0.15)


def test_taste_shares_set_which_attributes_listeners_follow(rng):
    songs = synthetic_songs(rng)

    def agreement(result, attribute):
        # how much more than chance users play songs of the values they like
        taste = result.hidden_users[f"taste_{attribute}"]  # (users, values)
        plays = result.plays.tocoo()
        return taste[plays.row, songs[attribute][plays.col]].mean() / taste.mean()

    def simulate(shares):
        config = ListenerConfig(users=800, audio_share=1.0, taste_shares=shares)
        return simulate_listeners(songs, config, np.random.default_rng(5))

    only_tempo = simulate(dict.fromkeys(AUDIO_ATTRIBUTES, 0.0) | {"tempo_class": 1.0})
    assert agreement(only_tempo, "tempo_class") > 1.5
    assert agreement(only_tempo, "style") == pytest.approx(1.0, abs=0.1)
    shared = simulate({"tempo_class": 0.5, "style": 0.5})
    assert agreement(shared, "tempo_class") > 1.2 and agreement(shared, "style") > 1.2
    with pytest.raises(ParameterError, match="sum to 1"):
        ListenerConfig(taste_shares={"style": 0.5}).validate()
    with pytest.raises(ParameterError, match="songs lack the attributes"):
        simulate_listeners(
            songs, ListenerConfig(users=10, taste_shares={"colour": 1.0}), np.random.default_rng(0)
        )


def test_same_seed_same_plays_other_seed_other_plays():
    songs = synthetic_songs(np.random.default_rng(0), n_songs=500)
    config = ListenerConfig(users=300)
    a = simulate_listeners(songs, config, np.random.default_rng(1)).plays
    b = simulate_listeners(songs, config, np.random.default_rng(1)).plays
    c = simulate_listeners(songs, config, np.random.default_rng(2)).plays
    assert (a != b).nnz == 0 and (a != c).nnz > 0


# --------------------------------------------------------------------------- corpus


def test_corpus_pieces_parse_with_their_metadata():
    refs = corpus.list_pieces("oneills1850")
    assert len(refs) > 1900  # O'Neill's 1850 tunes, split out of 39 ABC files
    piece = corpus.parse_piece(next(r for r in refs if r.number == 1))
    assert piece.title == "The Enchanted Valley"
    assert (piece.meter, piece.mode) == ("2/4", "minor")  # M: 2/4, K:Gm
    assert piece.notes.shape[1] == 3 and len(piece.notes) > 50
    reel = next(
        corpus.parse_piece(r)
        for r in corpus.list_pieces("ryansMammoth")
        if "Reel" in corpus._abc_file(r.path)[r.number].split("\n", 3)[1]
    )
    assert reel.tune_type == "reel"


@pytest.mark.parametrize(
    ("collection", "number"),
    [("oneills1850", 0), ("essenFolksong", 5), ("bach", 2)],
)
def test_parsed_notes_and_metadata_equal_music21_read_plainly(collection, number):
    # parse_piece skips the ABC reader's beaming and merges ties in place, not in a copy:
    # the notes must be music21's own, and the meter and mode read before the merge
    from music21 import converter, stream
    from reference import piece_notes_music21

    ref = corpus.list_pieces(collection)[number]
    piece = corpus.parse_piece(ref)
    assert "makeBeams" not in stream.Part.__dict__  # the ABC reader beams again
    spec = corpus.COLLECTIONS[collection]
    if spec.abc:
        score = converter.parse(corpus._abc_file(ref.path)[ref.number], format="abc")
    else:
        score = converter.parse(corpus.corpus_root() / ref.path)
    np.testing.assert_array_equal(piece.notes, piece_notes_music21(score))
    if not spec.abc:
        assert piece.meter == (corpus._score_meter(score) or "4/4")
        assert piece.mode == corpus._score_mode(score)


def test_unusable_pieces_say_why(monkeypatch):
    monkeypatch.setattr(corpus, "_abc_file", lambda path: {1: "X:1\nT:Empty\nK:C\n"})
    with pytest.raises(corpus.PieceUnusable, match="only 0 notes"):
        corpus.parse_piece(corpus.PieceRef("oneills1850", "oneills1850/x.abc", 1))


def test_a_collection_short_of_usable_pieces_leaves_its_share_to_the_others(monkeypatch):
    """A paper-size world asks for every piece of the small collections; where some of
    them do not parse, the other collections give the songs instead (the default world
    never comes near, so its pieces stay the same), and only a corpus with fewer usable
    pieces than songs is an error."""
    from coldtune.world import build

    sizes = dict.fromkeys(build.COLLECTION_SHARES, 30) | {"essenFolksong": 400}
    refs = {n: [corpus.PieceRef(n, f"{n}/{i}.abc", i) for i in range(k)] for n, k in sizes.items()}

    def parse(ref, _cache):  # every third piece of bach cannot be used
        if ref.collection == "bach" and ref.number % 3 == 0:
            return "only 0 notes"
        return corpus.Piece(ref, "t", "reel", "r", "4/4", "major", np.zeros((1, 3)))

    monkeypatch.setattr(build, "list_pieces", lambda name: refs[name])
    monkeypatch.setattr(build, "_parse_cached", parse)
    monkeypatch.setattr(build, "_run", lambda _pool, calls, *_a, **_k: [f(*a) for f, a in calls])
    n_songs = sum(sizes.values()) - 15
    pieces, unusable = build._choose_pieces(WorldConfig(songs=n_songs), None, "", None)
    taken = defaultdict(int)
    for piece in pieces:
        taken[piece.ref.collection] += 1
    assert len(pieces) == n_songs == len({p.ref.key for p in pieces})
    assert taken["bach"] == 20 and len(unusable) == 10  # its 20 usable pieces
    shares = build._quotas(n_songs, sizes)  # what each would give with every piece usable
    gained = {n: taken[n] - shares[n] for n in sizes if n != "bach"}
    assert min(gained.values()) >= 0 and sum(gained.values()) == 10  # bach's 10 missing
    with pytest.raises(ParameterError, match="fewer usable pieces than"):
        build._choose_pieces(WorldConfig(songs=sum(sizes.values()) - 5), None, "", None)


def test_msd_ids_are_stable_and_shaped_like_the_msds():
    assert msd_id("TR", "x") == msd_id("TR", "x") != msd_id("TR", "y")
    assert re.fullmatch(r"TR[A-Z0-9]{16}", msd_id("TR", "anything"))


def test_no_model_reads_the_hidden_variables():
    """The simulation's hidden folder is written by the world builder and read by nothing."""
    package = Path(__file__).parent.parent / "coldtune"
    readers = [
        path
        for path in package.rglob("*.py")
        if re.search(r"hidden/|hidden_users|hidden_songs|users\.npz", path.read_text())
        and path.parent.name != "world"
    ]
    assert readers == [], readers
    # inside the world, only the builder names the folder it writes (and the ceiling,
    # the one reader of the world's records for reference rows, reads tracks.csv only)
    naming = sorted(
        p.name for p in (package / "world").rglob("*.py") if '"hidden"' in p.read_text()
    )
    assert naming == ["build.py"]
    ceiling = (package / "world" / "ceiling.py").read_text()
    assert '"hidden"' not in ceiling and "hidden/" not in ceiling


def test_audio_extract_on_real_music_in_mixed_formats_and_rates(small_world, tmp_path):
    """Issue 3's acceptance: rendered music transcoded to every format, rate and channel
    count, with bad files among them; every good file extracted, every bad one named."""
    from conftest import write_clip

    from coldtune.audio.store import FeatureStore, extract

    world, _ = small_world
    manifest = list(csv.DictReader(open(world / "clips.csv")))[:5]
    folder = tmp_path / "music"
    folder.mkdir()
    formats = [("mp3", 44100, 2), ("flac", 48000, 1), ("wav", 16000, 2), ("opus", 48000, 2),
               ("ogg", 32000, 1)]  # fmt: skip
    import soxr

    for row, (suffix, rate, channels) in zip(manifest, formats, strict=True):
        audio, sr = sf.read(world / row["path"], dtype="float32")
        audio = soxr.resample(audio, sr, rate)
        audio = np.stack([audio] * channels, axis=1)
        write_clip(folder / f"{row['song_id']}.{suffix}", audio, rate)
    cut = folder / f"{manifest[0]['song_id']}-cut.mp3"
    cut.write_bytes((folder / f"{manifest[0]['song_id']}.mp3").read_bytes()[:20000])
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not audio")
    summary = extract(folder, tmp_path / "features", workers=2)
    assert (summary.extracted, summary.rejected_total) == (5, 2)
    rejects = (tmp_path / "features" / "rejects.tsv").read_text()
    assert "cut.mp3" in rejects and "truncated" in rejects
    assert "cover.jpg" in rejects and "not a readable audio file" in rejects
    store = FeatureStore(tmp_path / "features")
    for row in manifest:
        # 30 s at any rate becomes 1,292 frames at 22,050 Hz (lossy codecs: a frame or so)
        assert abs(store.n_frames(row["song_id"]) - 1292) <= 2
