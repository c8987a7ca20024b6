"""Everything a workspace knows about its songs and users, loaded once, to be asked.

`coldtune similar`, `recommend`, `embed`, `map`, the report and the service all ask
the same questions: who is this song, which songs are like it, what would this user
like, who would like this new clip. A `Catalogue` answers them from the artefacts of
the earlier steps:

- the split (warm and cold songs, the users kept) and WMF's factors X, Y;
- a *clip model*: a content model that can turn a brand-new clip into factors (today
  the CNNs of section 4.2, whose weights.pt is kept); its predictions for every song
  with audio, cold and warm, are computed once and cached beside it
  (W/models/NAME/catalogue.npz). For warm songs they are in-sample: the model was
  trained to reproduce those songs' factors;
- artists and titles, where the workspace has them (see `song_metadata`), and where
  each song's clip is, to play it.

Three sets of song factors, each an answer to a different question:

- `usage_factors`: what the plays say. WMF's factors for warm songs; for cold songs
  the factors folded in from their held-out plays (X fixed, the "upper bound" row of
  the results table). Only for showing, beside the predictions, what usage would say:
  no prediction or recommendation reads them.
- `predicted_factors`: what the audio says, the clip model's prediction for every
  song with audio (NaN rows for songs without).
- `scoring_factors`: what a live service knows, used to recommend: WMF's factors for
  warm songs, the predicted ones for cold songs (nobody has played them yet).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from coldtune.errors import NotFoundError, ParameterError, WorkspaceError
from coldtune.eval.similar import gram, top_k, unit_rows, usage_embedding
from coldtune.threads import one_thread
from coldtune.workspace import Workspace, atomic_path, read_json

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
"""What a song or user id may look like: letters, digits, `_ . : -`, not starting with
a dot, at most 128 characters; no slash, no `..` path, no spaces. The MSD's ids
(SOAAAGQ12A8C1420C8, b80344d063b5ccb3212f76538f3d9e43d87dca9e) are of this form."""


def check_id(value: str, *, what: str) -> str:
    """`value` if it is shaped like an id; a ParameterError naming the problem if not."""
    if not isinstance(value, str) or not ID_PATTERN.match(value) or ".." in value:
        raise ParameterError(
            f"{what} id {value!r} is not an id: use letters, digits and _ . : - only "
            "(no slashes or '..', at most 128 characters)"
        )
    return value


# --------------------------------------------------------------------------- metadata

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
    """song id -> its audio file, for playing it: the demo world's manifest if there is
    one, else the paths the feature store was extracted from (those that still exist)."""
    manifest = workspace.root / "world" / "clips.csv"
    if manifest.is_file():
        with open(manifest, newline="") as handle:
            return {row["song_id"]: manifest.parent / row["path"] for row in csv.DictReader(handle)}
    import pyarrow.compute as pc

    from coldtune.audio.store import _read_indexes

    index = _read_indexes(workspace.features_dir / "shards")
    index = index.filter(pc.is_null(index["reason"]))
    found = {}
    for song, path in zip(index["song_id"].to_pylist(), index["path"].to_pylist(), strict=True):
        candidate = Path(path)  # absolute, or relative to where `extract` ran
        if candidate.is_file():
            found[song] = candidate
    return found


# --------------------------------------------------------------------------- clip models


def clip_models(workspace: Workspace) -> list[str]:
    """Content models of the workspace that can predict factors from a new clip (those
    that kept their weights: the CNNs), best cold-start AUC first when the results table
    exists, else by name."""
    root = workspace.root / "models"
    names = sorted(p.parent.name for p in root.glob("*/weights.pt")) if root.exists() else []
    results = workspace.results_dir / "evaluation.json"
    if results.exists():
        auc = {row["model"]: row["auc"] for row in read_json(results, what="", hint="")["rows"]}
        names.sort(key=lambda name: -auc.get(name, -1.0))
    return names


def choose_clip_model(workspace: Workspace, model: str | None = None) -> str:
    available = clip_models(workspace)
    if model is not None:
        check_id(model, what="model")
        if model not in available:
            raise WorkspaceError(
                f"{workspace.models_dir(model)}: no clip model named {model!r} (one with "
                f"weights.pt); available: {', '.join(available) or 'none'}"
            )
        return model
    if not available:
        raise WorkspaceError(
            f"{workspace.root / 'models'}: no model that predicts factors from a clip; "
            "train one with `coldtune train cnn --workspace W`"
        )
    return available[0]


class ClipModel:
    """A trained CNN with the feature settings of its workspace: file -> factors."""

    def __init__(self, workspace: Workspace, name: str):
        import torch

        from coldtune.audio.store import ExtractConfig
        from coldtune.models.cnn import CNNConfig, build_cnn

        folder = workspace.models_dir(name)
        hint = f"train it again with `coldtune train cnn --workspace W` ({name})"
        config = read_json(folder / "config.json", what="model config", hint=hint)
        self.name = name
        self.folder = folder
        self.config = CNNConfig(**config["cnn"])
        self.network = build_cnn(self.config)
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval()
        self.extract_config = ExtractConfig.from_dict(
            read_json(
                workspace.features_dir / "config.json",
                what="feature store",
                hint="run `coldtune audio extract` first",
            )
        )

    def predict_frames(self, mel: np.ndarray) -> np.ndarray:
        """Factors [shape=(k,)] of a clip's log-mel frames [shape=(frames, n_mels)]."""
        from coldtune.models.cnn import predict_clip

        # eval mode, no gradients: concurrent calls (the service's threads) share nothing
        return predict_clip(self.network, mel).astype(np.float32)

    def predict_file(self, path: str | Path) -> np.ndarray:
        """Decode a clip as the feature store did, and predict its factors.

        Raises ClipRejected (with the reason) for a file that gives no clip.
        """
        from coldtune.audio.store import extract_clip

        mel = extract_clip(str(path), self.extract_config)["mel"]
        # the store keeps float16: round the same way, so a clip already in the
        # catalogue gets exactly its catalogue prediction
        return self.predict_frames(mel.astype(np.float16))


def catalogue_predictions(
    workspace: Workspace, model: ClipModel, song_ids: np.ndarray, *, on_progress=None
) -> np.ndarray:
    """The clip model's factors for `song_ids` [shape=(n, k)], NaN for songs without
    audio; cached in W/models/NAME/catalogue.npz, keyed by the weights and the store."""
    from coldtune.audio.store import FeatureStore

    store = FeatureStore(workspace.features_dir)
    digest = hashlib.blake2b(digest_size=12)
    for path in [model.folder / "weights.pt", *sorted((store.root / "shards").glob("*.parquet"))]:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    key = digest.hexdigest()
    cache = model.folder / "catalogue.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                index = {song: i for i, song in enumerate(saved["song_ids"])}
                if all(song in index for song in song_ids):
                    return saved["factors"][[index[song] for song in song_ids]]
    factors = np.full((len(song_ids), model.config.factors), np.nan, dtype=np.float32)
    with one_thread():
        for i, song in enumerate(song_ids):
            if song in store:
                factors[i] = model.predict_frames(store.song(song, "mel"))
            if on_progress is not None:
                on_progress(i + 1, len(song_ids))
    with atomic_path(cache) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle, key=np.array(key), song_ids=np.asarray(song_ids, dtype=str), factors=factors
        )
    return factors


def inputs_key(workspace: Workspace, model: str) -> str:
    """A digest of the artefacts the analyses read (split, WMF, tags, the clip model's
    weights, the feature store): saved with tags.json and map.json, so the report knows
    whether they are current."""
    paths = [
        workspace.split_path,
        workspace.wmf_dir / "factors.npz",
        workspace.root / "tags" / "tags.parquet",
        workspace.models_dir(model) / "weights.pt",
        *sorted((workspace.features_dir / "shards").glob("*.parquet")),
    ]
    digest = hashlib.blake2b(model.encode(), digest_size=12)
    for path in paths:
        if path.exists():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Neighbour:
    index: int
    similarity: float


class Catalogue:
    """The songs and users of a workspace, their factors, and the questions above.

    Songs are those of the split (warm, then cold, each in column order); users are
    the split's users, in WMF's row order.
    """

    def __init__(self, workspace: Workspace, *, model: str | None = None, on_progress=None):
        from coldtune.data.plays import load_interactions
        from coldtune.data.splits import load_split
        from coldtune.pipeline import load_wmf

        self.workspace = workspace
        interactions = load_interactions(workspace)
        split = load_split(workspace, interactions)
        wmf = load_wmf(workspace, split=split)
        columns = np.concatenate([split.warm_songs, split.cold_songs])
        n_warm = len(split.warm_songs)
        self.song_ids = np.asarray(interactions.song_ids[columns], dtype=str)
        self.cold = np.arange(len(columns)) >= n_warm
        self.user_ids = np.asarray(interactions.user_ids[split.users], dtype=str)
        self._song_index = {song: i for i, song in enumerate(self.song_ids)}
        self._user_index = {user: u for u, user in enumerate(self.user_ids)}

        metadata = song_metadata(workspace)
        self.artists = np.array([metadata.get(s, ("", ""))[0] for s in self.song_ids], dtype=object)
        self.titles = np.array([metadata.get(s, ("", ""))[1] for s in self.song_ids], dtype=object)
        self.clips = clip_paths(workspace)

        self.user_factors = np.asarray(wmf.user_factors_, dtype=np.float32)
        self.gram = gram(self.user_factors)
        # users x songs of this catalogue: the plays WMF saw (warm) and the held-out ones
        plays = interactions.matrix[split.users]
        self.training_plays = sp.hstack(
            [plays[:, split.warm_songs], sp.csr_matrix((len(split.users), len(split.cold_songs)))]
        ).tocsr()
        self.held_out_plays = sp.hstack(
            [sp.csr_matrix((len(split.users), n_warm)), plays[:, split.cold_songs]]
        ).tocsr()
        folded = wmf.fold_in_songs(split.cold_plays(interactions.matrix))
        self.usage_factors = np.vstack([wmf.song_factors_, folded]).astype(np.float32)

        self.model_name = choose_clip_model(workspace, model)
        self.clip_model = ClipModel(workspace, self.model_name)
        self.predicted_factors = catalogue_predictions(
            workspace, self.clip_model, self.song_ids, on_progress=on_progress
        )
        self.has_audio = np.isfinite(self.predicted_factors).all(axis=1)
        self.scoring_factors = self.usage_factors.copy()
        self.scoring_factors[self.cold] = self.predicted_factors[self.cold]

    # ----------------------------------------------------------------- ids and songs

    def __len__(self) -> int:
        return len(self.song_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def song_row(self, song_id: str) -> int:
        check_id(song_id, what="song")
        try:
            return self._song_index[song_id]
        except KeyError:
            raise NotFoundError(
                f"unknown song id {song_id!r}: not among the {len(self):,} songs of the "
                f"split in {self.workspace.root} (search by artist or title to find an id)"
            ) from None

    def user_row(self, user_id: str) -> int:
        check_id(user_id, what="user")
        try:
            return self._user_index[user_id]
        except KeyError:
            raise NotFoundError(
                f"unknown user id {user_id!r}: not among the {self.n_users:,} users of the "
                f"split in {self.workspace.root}"
            ) from None

    def describe(self, row: int) -> dict:
        """A song as JSON: id, artist, title, whether it is cold, whether it has a clip."""
        song = str(self.song_ids[row])
        return {
            "song_id": song,
            "artist": self.artists[row],
            "title": self.titles[row],
            "cold": bool(self.cold[row]),
            "has_clip": song in self.clips,
        }

    def label(self, row: int) -> str:
        """ "Artist - Title" where known, else the song id."""
        if self.artists[row] or self.titles[row]:
            return f"{self.artists[row]} - {self.titles[row]}"
        return str(self.song_ids[row])

    def search(self, query: str, *, n: int = 20) -> list[int]:
        """Rows of songs whose artist, title or id contains every word of `query`
        (case-insensitive), in catalogue order."""
        words = query.lower().split()
        if not words:
            raise ParameterError("give some words of an artist or a title to search for")
        found = []
        for row, text in enumerate(self._search_text):
            if all(word in text for word in words):
                found.append(row)
                if len(found) == n:
                    break
        return found

    @cached_property
    def _search_text(self) -> list[str]:
        return [
            f"{a} {t} {s}".lower()
            for a, t, s in zip(self.artists, self.titles, self.song_ids, strict=True)
        ]

    # ----------------------------------------------------------------- similarity

    @cached_property
    def _usage_unit(self) -> np.ndarray:
        return unit_rows(usage_embedding(self.usage_factors, self.gram))

    @cached_property
    def _predicted_unit(self) -> np.ndarray:
        factors = np.where(self.has_audio[:, None], self.predicted_factors, 0.0)
        return unit_rows(usage_embedding(factors, self.gram))

    def predicted_embedding(self, factors: np.ndarray) -> np.ndarray:
        """Unit-length usage embedding of predicted factors [shape=(n, k)] -> (n, k)."""
        return unit_rows(usage_embedding(np.atleast_2d(factors), self.gram))

    def similar(self, song_id: str, *, n: int = 10) -> dict[str, list[Neighbour]]:
        """Table 4: the n songs whose usage patterns are closest (cosine) to the song's,
        by WMF's factors ("usage") and by the clip model's predictions ("predicted")."""
        row = self.song_row(song_id)
        out = {"usage": self._nearest(self._usage_unit, self._usage_unit[row], n, row)}
        out["predicted"] = (
            self._nearest(self._predicted_unit, self._predicted_unit[row], n, row)
            if self.has_audio[row]
            else []
        )
        return out

    def similar_to_factors(self, factors: np.ndarray, *, n: int = 10) -> list[Neighbour]:
        """Songs closest to a new clip's predicted factors, among the catalogue's
        predicted factors: audio against audio, the same model on both sides."""
        return self._nearest(self._predicted_unit, self.predicted_embedding(factors)[0], n, None)

    def _nearest(
        self, unit: np.ndarray, query: np.ndarray, n: int, row: int | None
    ) -> list[Neighbour]:
        scores = unit @ query
        exclude = np.flatnonzero(~self.has_audio) if unit is self._predicted_unit else None
        if row is not None:
            exclude = np.append(exclude if exclude is not None else [], row).astype(np.int64)
        return [Neighbour(int(i), float(scores[i])) for i in top_k(scores, n, exclude=exclude)]

    # ----------------------------------------------------------------- users

    def recommend(self, user_id: str, *, n: int = 20, cold_only: bool = False) -> list[dict]:
        """The n songs with the highest x_u^T y for the user, never one they played
        (among the plays WMF saw): warm songs by their WMF factors, cold songs by their
        predicted ones. Each: row, score, cold, held_out_plays (the user's plays of a
        cold song that the split hid: a hit the system could not have known)."""
        u = self.user_row(user_id)
        scores = self.scoring_factors @ self.user_factors[u]
        excluded = self.training_plays.indices[
            self.training_plays.indptr[u] : self.training_plays.indptr[u + 1]
        ]
        if cold_only:
            excluded = np.union1d(excluded, np.flatnonzero(~self.cold))
        held = self.held_out_plays.getrow(u).toarray()[0]
        return [
            {
                "row": int(i),
                "score": float(scores[i]),
                "cold": bool(self.cold[i]),
                "held_out_plays": int(held[i]),
            }
            for i in top_k(scores, n, exclude=excluded)
        ]

    def listeners(self, factors: np.ndarray, *, n: int = 10) -> list[tuple[int, float]]:
        """The n users with the highest predicted preference x_u^T y for a song with
        factors y [shape=(k,)]: (user row, score)."""
        scores = self.user_factors @ np.asarray(factors, dtype=np.float32)
        return [(int(u), float(scores[u])) for u in top_k(scores, n)]

    def user_summary(self, u: int, *, n: int = 3) -> dict:
        """A user as JSON: id, how many songs they played, their most played songs."""
        start, end = self.training_plays.indptr[u], self.training_plays.indptr[u + 1]
        songs, counts = self.training_plays.indices[start:end], self.training_plays.data[start:end]
        order = np.lexsort((songs, -counts))[:n]
        return {
            "user_id": str(self.user_ids[u]),
            "songs_played": int(end - start),
            "top_songs": [self.label(int(songs[i])) for i in order],
        }

    # ----------------------------------------------------------------- new clips

    def embed_file(self, path: str | Path) -> np.ndarray:
        """Predicted factors [shape=(k,)] of an audio file (ClipRejected if unusable)."""
        return self.clip_model.predict_file(path)

    def clip_path(self, song_id: str) -> Path:
        row = self.song_row(song_id)
        path = self.clips.get(str(self.song_ids[row]))
        if path is None or not path.is_file():
            raise NotFoundError(f"song {song_id!r} has no clip in this workspace")
        return path
