"""Loading a workspace's catalogue: the one step `similar`, `recommend`, `embed`, the
map, the report and the service share. The `Catalogue` it builds only answers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import scipy.sparse as sp

from coldtune import content
from coldtune.audio.store import ExtractConfig, FeatureStore, _read_indexes
from coldtune.catalogue import Catalogue, ClipModel, check_id, search_texts
from coldtune.content.base import WEIGHTS, stored_songs
from coldtune.data.ids import IdMap
from coldtune.data.plays import load_interactions
from coldtune.data.splits import load_split
from coldtune.errors import WorkspaceError
from coldtune.steps.wmf import load_wmf
from coldtune.threads import one_thread
from coldtune.workspace import Workspace, atomic_path, fingerprint, read_json


def load_catalogue(
    workspace: Workspace, *, model: str | None = None, on_progress=None
) -> Catalogue:
    """The split's songs (warm, then cold, each in column order) and users (WMF's row
    order), WMF's factors, the cold songs folded in from their held-out plays (shown
    as "usage", never used to recommend) and clip model `model`'s predictions (default:
    `choose_clip_model`'s), cached beside the model. The new releases of
    W/releases.csv (`coldtune add`) come last, as cold songs nobody has played. Cold
    songs and releases with first plays (`coldtune warm-up apply`) have their warmed
    factors in place of the prediction, and those plays count as played."""
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    wmf = load_wmf(workspace, split=split)
    columns = np.concatenate([split.warm_songs, split.cold_songs])
    n_users, n_warm, n_cold = len(split.users), len(split.warm_songs), len(split.cold_songs)
    plays = interactions.matrix[split.users]
    training_plays = sp.hstack(
        [plays[:, split.warm_songs], sp.csr_matrix((n_users, n_cold))]
    ).tocsr()
    held_out_plays = sp.hstack([sp.csr_matrix((n_users, n_warm)), plays[:, split.cold_songs]])
    folded = wmf.fold_in_songs(split.cold_plays(interactions.matrix))
    song_ids = np.asarray(interactions.song_ids[columns], dtype=str)
    # new releases (coldtune add): cold songs with audio and no plays at all
    in_split = set(song_ids)
    releases = [row for row in read_releases(workspace) if row["song_id"] not in in_split]
    n_new = len(releases)
    song_ids = np.concatenate([song_ids, np.array([row["song_id"] for row in releases], str)])
    training_plays = sp.hstack([training_plays, sp.csr_matrix((n_users, n_new))]).tocsr()
    held_out_plays = sp.hstack([held_out_plays, sp.csr_matrix((n_users, n_new))]).tocsr()
    metadata = song_metadata(workspace)
    for row in releases:
        if row["artist"] or row["title"] or row["song_id"] not in metadata:
            metadata[row["song_id"]] = (row["artist"], row["title"])
    name = choose_clip_model(workspace, model)
    clip_model = load_clip_model(workspace, name)
    predicted = catalogue_predictions(workspace, clip_model, song_ids, on_progress=on_progress)
    warm_up = _warm_up(workspace, name, song_ids, interactions.user_ids[split.users])
    if warm_up is not None:
        rows, factors, first_plays = warm_up
        predicted[rows] = factors
        training_plays = (training_plays + first_plays).tocsr()
    return Catalogue(
        song_ids=song_ids,
        cold=np.arange(len(song_ids)) >= n_warm,
        user_ids=interactions.user_ids[split.users],
        user_factors=wmf.user_factors_,
        usage_factors=np.vstack(
            [wmf.song_factors_, folded, np.zeros((n_new, folded.shape[1]), np.float32)]
        ),
        predicted_factors=predicted,
        training_plays=training_plays,
        held_out_plays=held_out_plays,
        clip_model=clip_model,
        metadata=metadata,
        clips=clip_paths(workspace),
        fold_in=wmf.fold_in_users,
        source=str(workspace.root),
    )


def _warm_up(workspace: Workspace, model: str, song_ids: np.ndarray, user_ids: np.ndarray):
    """(rows, factors, plays) of `coldtune warm-up apply`: the catalogue rows of the
    warmed songs, their factors, and the first plays as a (users, songs) CSR matrix;
    None when nothing was applied with clip model `model` (the factors of another
    model's prior do not belong with this model's predictions)."""
    factors_path = workspace.warmup_dir / "factors.npz"
    plays_path = workspace.warmup_dir / "plays.npz"
    if not factors_path.exists() or not plays_path.exists():
        return None
    with np.load(factors_path, allow_pickle=False) as saved:
        if str(saved["model"]) != model:
            return None
        warmed, factors = saved["song_ids"].astype(str), saved["factors"]
    with np.load(plays_path, allow_pickle=False) as kept:
        users, songs = kept["user_ids"].astype(str), kept["song_ids"].astype(str)
        counts = kept["counts"]
    columns, people = IdMap(song_ids), IdMap(user_ids)
    known = np.array([s in columns for s in warmed], dtype=bool)
    played = np.array([s in columns for s in songs], dtype=bool)
    played &= np.array([u in people for u in users], dtype=bool)
    first_plays = sp.csr_matrix(
        (
            counts[played].astype(np.float32),
            (people.rows(users[played].tolist()), columns.rows(songs[played].tolist())),
        ),
        shape=(len(user_ids), len(song_ids)),
    )
    return columns.rows(warmed[known].tolist()), factors[known], first_plays


RELEASE_COLUMNS = ("song_id", "artist", "title", "added")
"""W/releases.csv: the songs `coldtune add` added (coldtune.steps.releases)."""


def read_releases(workspace: Workspace) -> list[dict[str, str]]:
    """The rows of W/releases.csv (song_id, artist, title, added), in the order added."""
    path = workspace.releases_path
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(RELEASE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise WorkspaceError(
                f"{path}: needs columns {', '.join(RELEASE_COLUMNS)}; missing "
                f"{', '.join(sorted(missing))} (written by `coldtune add`; do not edit it)"
            )
        return [{column: row[column] for column in RELEASE_COLUMNS} for row in reader]


METADATA_FILES = ("songs.csv", "world/tracks.csv", "unique_tracks.txt", "world/unique_tracks.txt")
"""Where a workspace may keep artists and titles, first found wins: a CSV with columns
song_id, artist, title (the demo world's tracks.csv is one), or the MSD's
unique_tracks.txt (track<SEP>song<SEP>artist<SEP>title)."""


def song_metadata(workspace: Workspace) -> dict[str, tuple[str, str]]:
    """song id -> (artist, title) from the first file of METADATA_FILES found; empty if
    the workspace has none (songs are then shown by id)."""
    for name in METADATA_FILES:
        path = workspace.root / name
        if not path.is_file():
            continue
        found: dict[str, tuple[str, str]] = {}
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            if path.suffix == ".csv":
                reader = csv.DictReader(handle)
                missing = {"song_id", "artist", "title"} - set(reader.fieldnames or ())
                if missing:
                    raise WorkspaceError(
                        f"{path}: needs columns song_id, artist, title; missing "
                        f"{', '.join(sorted(missing))}"
                    )
                for row in reader:
                    found.setdefault(row["song_id"], (row["artist"], row["title"]))
            else:
                for line in handle:
                    parts = line.rstrip("\n").split("<SEP>")
                    if len(parts) == 4:
                        found.setdefault(parts[1], (parts[2], parts[3]))
        return found
    return {}


def clip_paths(workspace: Workspace) -> dict[str, Path]:
    """song id -> its audio file, for playing it: the demo world's manifest where it has
    the song, else the path the feature store extracted it from (if it still exists)."""
    found = {}
    index = _read_indexes(workspace.features_dir / "shards")
    index = index.filter(pc.is_null(index["reason"]))
    for song, path in zip(index["song_id"].to_pylist(), index["path"].to_pylist(), strict=True):
        candidate = Path(path)  # absolute, or relative to where `extract` ran
        if candidate.is_file():
            found[song] = candidate
    manifest = workspace.root / "world" / "clips.csv"
    if manifest.is_file():
        with open(manifest, newline="") as handle:
            found |= {
                row["song_id"]: manifest.parent / row["path"] for row in csv.DictReader(handle)
            }
    return found


def clip_models(workspace: Workspace) -> list[str]:
    """Content models of the workspace that predict factors from a clip (every saved
    model that reads audio), in the order a default is chosen: the CNNs of section 4.2
    (the paper's proposal for new songs) first, then the others; within each, best
    cold-start AUC first when the results table exists, else by name."""
    root = workspace.models_root
    names = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        name = content.saved_model_name(folder)
        if name is not None and content.spec(name).reads != "tags":
            names.append((name, folder.name))
    auc: dict[str, float] = {}
    results = workspace.results_dir / "evaluation.json"
    if results.exists():
        auc = {row["model"]: row["auc"] for row in read_json(results, what="", hint="")["rows"]}
    names.sort(key=lambda found: (found[0] != "cnn", -auc.get(found[1], -1.0), found[1]))
    return [folder for _, folder in names]


def choose_clip_model(workspace: Workspace, model: str | None = None) -> str:
    available = clip_models(workspace)
    if model is not None:
        check_id(model, what="model")
        if model not in available:
            raise WorkspaceError(
                f"{workspace.models_dir(model)}: no clip model named {model!r} (a content "
                f"model that reads audio); available: {', '.join(available) or 'none'}"
            )
        return model
    if not available:
        raise WorkspaceError(
            f"{workspace.models_root}: no model that predicts factors from a clip; "
            "train one with `coldtune train cnn --workspace W` (or bow-linear, bow-mlp, mlr)"
        )
    return available[0]


def catalogue_predictions(
    workspace: Workspace, model: ClipModel, song_ids: np.ndarray, *, on_progress=None
) -> np.ndarray:
    """The clip model's factors for `song_ids` [shape=(n, k)], NaN for songs without
    audio; cached in W/models/NAME/catalogue.npz, keyed by the weights and the store's
    settings. Songs the cache holds are read from it; only the others are predicted (a
    day's new releases, not the whole catalogue again), then added to it. A song's
    features never change once stored (shards are written once), so neither does its
    prediction while the weights stay."""
    store = FeatureStore(workspace.features_dir)
    key = fingerprint([model.folder / WEIGHTS, workspace.features_dir / "config.json"])
    cache = model.folder / "catalogue.npz"
    cached_ids, cached = np.zeros(0, dtype=str), None
    if cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                cached_ids, cached = saved["song_ids"], saved["factors"]
    index = IdMap(cached_ids)
    have = [i for i, song in enumerate(song_ids) if song in index]
    need = [i for i, song in enumerate(song_ids) if song not in index and song in store]
    predicted = []
    with one_thread():
        for lo in range(0, len(need), 64):
            rows = need[lo : lo + 64]
            predicted.append(model.predict_songs(stored_songs(store, [song_ids[i] for i in rows])))
            if on_progress is not None:
                on_progress(lo + len(rows), len(need))
    width = cached.shape[1] if cached is not None else predicted[0].shape[1] if predicted else 0
    if not have and not need:
        raise WorkspaceError(f"{store.root}: none of the songs has audio features")
    factors = np.full((len(song_ids), width), np.nan, np.float32)
    if have:
        factors[have] = cached[index.rows([song_ids[i] for i in have])]
    if need:
        new = np.vstack(predicted).astype(np.float32)
        factors[need] = new
        all_ids = np.concatenate([cached_ids, np.asarray(song_ids, dtype=str)[need]])
        all_factors = new if cached is None else np.vstack([cached, new])
        with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, key=np.array(key), song_ids=all_ids, factors=all_factors)
    return factors


def inputs_key(workspace: Workspace, model: str) -> str:
    """A digest of the artefacts the analyses read (split, WMF, tags, the clip model's
    weights, the feature store): saved with tags.json and map.json, so the report knows
    whether they are current."""
    paths = [
        workspace.split_path,
        workspace.wmf_dir / "factors.npz",
        workspace.tags_path,
        workspace.models_dir(model) / WEIGHTS,
        *sorted((workspace.features_dir / "shards").glob("*.parquet")),
    ]
    return fingerprint(paths, root=workspace.root, model=model)


def load_clip_model(workspace: Workspace, name: str) -> ClipModel:
    """The content model saved in W/models/NAME, with the feature store's settings."""
    folder = workspace.models_dir(name)
    extract_config = ExtractConfig.from_dict(
        read_json(
            workspace.features_dir / "config.json",
            what="feature store",
            hint="run `coldtune audio extract` first",
        )
    )
    return ClipModel(name, content.load(folder), extract_config, folder)


def search(workspace: Workspace, query: str, *, n: int = 20) -> list[tuple[str, str, str]]:
    """`coldtune search`: (song id, artist, title) of the songs whose artist, title or
    id has every word of `query`, from the workspace's metadata alone (nothing else is
    loaded, so it answers at once)."""
    found = list(song_metadata(workspace).items())
    texts = [f"{artist} {title} {song}".lower() for song, (artist, title) in found]
    return [(found[i][0], *found[i][1]) for i in search_texts(texts, query, n=n)]


def recommend_all(
    workspace: Workspace,
    out: str | Path,
    *,
    n: int = 100,
    cold_only: bool = False,
    model: str | None = None,
    batch: int = 1024,
    on_progress=None,
) -> dict:
    """`coldtune recommend --all`: the n best songs for every user of the workspace
    (`Catalogue.recommend_all`), never one they played, written to the Parquet file
    `out` with columns user, rank (1 = best), song, score, one row per recommendation.
    Written atomically: a killed run leaves no partial file. on_progress(done, total)
    counts users. Returns a summary: users, rows, seconds."""
    import time

    start = time.perf_counter()
    catalogue = load_catalogue(workspace, model=model)
    written = write_recommendations(
        catalogue, out, n=n, cold_only=cold_only, batch=batch, on_progress=on_progress
    )
    return {
        "users": catalogue.n_users,
        "rows": written,
        "model": catalogue.model_name,
        "seconds": round(time.perf_counter() - start, 2),
        "out": str(out),
    }


def write_recommendations(
    catalogue: Catalogue,
    out: str | Path,
    *,
    n: int = 100,
    cold_only: bool = False,
    batch: int = 1024,
    on_progress=None,
) -> int:
    """The work of `recommend_all` on a loaded catalogue: every user's n best songs
    written atomically to the Parquet file `out`; returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("user", pa.string()), ("rank", pa.int16()), ("song", pa.string()),
         ("score", pa.float32())]
    )  # fmt: skip
    written = 0
    with atomic_path(Path(out)) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for users, rows, scores in catalogue.recommend_all(n=n, cold_only=cold_only, batch=batch):
            real = rows >= 0
            user_of, rank = np.nonzero(real)
            table = pa.table(
                {
                    "user": catalogue.user_ids[users][user_of],
                    "rank": (rank + 1).astype(np.int16),
                    "song": catalogue.song_ids[rows[real]],
                    "score": scores[real],
                },
                schema=schema,
            )
            writer.write_table(table)
            written += len(table)
            if on_progress is not None:
                on_progress(int(users[-1]) + 1, catalogue.n_users)
    return written
