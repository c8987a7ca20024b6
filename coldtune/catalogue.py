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

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from coldtune.audio.store import extract_clip
from coldtune.data.ids import IdMap
from coldtune.errors import NotFoundError, ParameterError, WorkspaceError
from coldtune.eval.similar import gram, top_k, unit_rows, usage_embedding
from coldtune.index import CALIBRATION_QUERIES, RANKING_PROBED, SongIndex

ID_PATTERN = re.compile(r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_:\-])*\.?$")
"""What a song or user id may look like: letters, digits, `_ . : -`, starting with a
letter or digit, never two dots in a row; no slash, no `..` path, no spaces. The MSD's
ids (SOAAAGQ12A8C1420C8, b80344d063b5ccb3212f76538f3d9e43d87dca9e) are of this form.
The pattern means the same to Python's `re` (matched whole), to pydantic's Rust regex
and to a JSON Schema validator, so the service's OpenAPI document can state it."""

MAX_ID_LENGTH = 128

MAX_PLAY_COUNT = 1e9
"""The most plays of one song a new listener may report: far above any listener's (the
Taste Profile's largest count is under 10,000), and low enough that the fold-in's
float32 confidences stay finite (a count of 1e300 overflowed to factors of NaN)."""


def check_id(value: str, *, what: str) -> str:
    """`value` if it is shaped like an id (ID_PATTERN, at most MAX_ID_LENGTH characters);
    a ParameterError naming the problem if not."""
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not ID_PATTERN.fullmatch(value):
        raise ParameterError(
            f"{what} id {value!r} is not an id: use letters, digits and _ . : - only "
            "(no slashes or '..', at most 128 characters)"
        )
    return value


class ClipModel:
    """A trained content model that reads audio, with the feature settings of its
    workspace: clip -> factors (bow-linear, bow-mlp, mlr, cnn)."""

    def __init__(self, name: str, model, extract_config, folder: Path | None = None):
        self.name, self.model, self.extract_config, self.folder = (
            name,
            model,
            extract_config,
            folder,
        )
        # mlr scores with users of its own (each one's mean embedding of their songs)
        self.user_factors = getattr(model, "user_factors_", None)

    def predict_songs(self, songs) -> np.ndarray:
        """Factors [shape=(len(songs), k)] float32 of songs' features (mappings)."""
        return np.asarray(self.model.predict(songs), dtype=np.float32)

    def predict_file(self, path: str | Path) -> np.ndarray:
        """Decode a clip as the feature store did, and predict its factors [shape=(k,)].

        Raises ClipRejected (with the reason) for a file that gives no clip.
        """
        features = extract_clip(str(path), self.extract_config)
        # the store keeps float16: round the same way, so a clip already in the
        # catalogue gets exactly its catalogue prediction
        rounded = {kind: features[kind].astype(np.float16) for kind in ("mel", "mfcc")}
        return self.predict_songs([rounded])[0]


def search_texts(texts: list[str], query: str, *, n: int = 20) -> list[int]:
    """Indices of the (lower-case) texts that contain every word of `query`, in order,
    at most n: the one search of songs by artist, title or id."""
    words = query.lower().split()
    if not words:
        raise ParameterError("give some words of an artist or a title to search for")
    found = []
    for row, text in enumerate(texts):
        if all(word in text for word in words):
            found.append(row)
            if len(found) == n:
                break
    return found


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

    def __init__(
        self,
        *,
        song_ids: np.ndarray,
        cold: np.ndarray,
        user_ids: np.ndarray,
        user_factors: np.ndarray,
        usage_factors: np.ndarray,
        predicted_factors: np.ndarray,
        training_plays: sp.csr_matrix,
        held_out_plays: sp.csr_matrix | None = None,
        clip_model: ClipModel | None = None,
        metadata: dict[str, tuple[str, str]] | None = None,
        clips: dict[str, Path] | None = None,
        fold_in: Callable[[sp.csr_matrix], np.ndarray] | None = None,
        source: str = "",
        index: str = "auto",
    ):
        """Songs are the catalogue's columns (warm, then cold); users its rows.

        song_ids, cold : [shape=(n_songs,)] ids and whether each song is cold.
        user_ids, user_factors : [shape=(n_users,)], WMF's X [shape=(n_users, k)].
        usage_factors : what the plays say of each song [shape=(n_songs, k)] (see above).
        predicted_factors : the clip model's factors, NaN rows for songs without audio.
        training_plays : users x songs, the plays WMF saw (zero on cold songs).
        held_out_plays : users x songs, the plays the split hid (cold songs only).
        clip_model : what turns a new clip into factors (None: `embed_file` refuses).
        fold_in : a new listener's factors from their plays of the warm songs, raw
            counts [shape=(1, n_warm)] (WMF's `fold_in_users`, eq. 3 for one user row
            with the song factors fixed; None: `recommend_for_plays` refuses).
        source : where the catalogue came from, for messages (a workspace folder).
        index : how songs (and listeners) are searched: "exact" (the product with every
            row), "approximate" (faiss IVF, re-scored exactly; coldtune.index) or "auto"
            (approximate from `coldtune.index.EXACT_BELOW` rows). Built on first use.
        """
        n_songs, n_users = len(song_ids), len(user_ids)
        self.source = source
        self.index = index
        self.song_ids = np.asarray(song_ids, dtype=str)
        self.cold = np.asarray(cold, dtype=bool)
        self.user_ids = np.asarray(user_ids, dtype=str)
        self.songs, self.users = IdMap(self.song_ids), IdMap(self.user_ids)
        metadata = metadata or {}
        self.artists = np.array([metadata.get(s, ("", ""))[0] for s in self.song_ids], dtype=object)
        self.titles = np.array([metadata.get(s, ("", ""))[1] for s in self.song_ids], dtype=object)
        self.clips = clips or {}
        self.fold_in = fold_in
        self.user_factors = np.asarray(user_factors, dtype=np.float32)
        self.gram = gram(self.user_factors)
        self.training_plays = sp.csr_matrix(training_plays)
        self.held_out_plays = sp.csr_matrix(
            held_out_plays if held_out_plays is not None else (n_users, n_songs)
        )
        self.held_out_plays.sum_duplicates()  # one entry per (user, song): read as a dict
        self.usage_factors = np.asarray(usage_factors, dtype=np.float32)
        self.clip_model = clip_model
        self.model_name = clip_model.name if clip_model is not None else ""
        self.predicted_factors = np.asarray(predicted_factors, dtype=np.float32)
        self.has_audio = np.isfinite(self.predicted_factors).all(axis=1)
        # a model that scores with users of its own (mlr) is asked with them
        own = clip_model.user_factors if clip_model is not None else None
        self.predicted_user_factors = self.user_factors if own is None else own
        self.predicted_gram = gram(self.predicted_user_factors) if own is not None else self.gram
        self.scoring_factors = self.usage_factors.copy()
        if own is None:
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
            return self.songs.row(song_id)
        except KeyError:
            raise NotFoundError(
                f"unknown song id {song_id!r}: not among the {len(self):,} songs of the "
                f"split in {self.source} (search by artist or title to find an id)"
            ) from None

    def user_row(self, user_id: str) -> int:
        check_id(user_id, what="user")
        try:
            return self.users.row(user_id)
        except KeyError:
            raise NotFoundError(
                f"unknown user id {user_id!r}: not among the {self.n_users:,} users of the "
                f"split in {self.source}"
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
        return search_texts(self._search_text, query, n=n)

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
        return unit_rows(usage_embedding(factors, self.predicted_gram))

    def predicted_embedding(self, factors: np.ndarray) -> np.ndarray:
        """Unit-length usage embedding of predicted factors [shape=(n, k)] -> (n, k)."""
        return unit_rows(usage_embedding(np.atleast_2d(factors), self.predicted_gram))

    def similar(self, song_id: str, *, n: int = 10) -> dict[str, list[Neighbour]]:
        """Table 4: the n songs whose usage patterns are closest (cosine) to the song's,
        by WMF's factors ("usage") and by the clip model's predictions ("predicted")."""
        row = self.song_row(song_id)
        usage = self._usage_unit[row]
        # a new release has no plays, so no usage pattern: nothing is near it by usage
        out = {"usage": self._nearest(self._usage_index, usage, n, row) if usage.any() else []}
        out["predicted"] = (
            self._nearest(self._predicted_index, self._predicted_unit[row], n, row)
            if self.has_audio[row]
            else []
        )
        return out

    def similar_to_factors(self, factors: np.ndarray, *, n: int = 10) -> list[Neighbour]:
        """Songs closest to a new clip's predicted factors, among the catalogue's
        predicted factors: audio against audio, the same model on both sides."""
        return self._nearest(self._predicted_index, self.predicted_embedding(factors)[0], n, None)

    def _nearest(
        self, index: SongIndex, query: np.ndarray, n: int, row: int | None
    ) -> list[Neighbour]:
        exclude = None if row is None else np.array([row], dtype=np.int64)
        rows, scores = index.search(query, n, exclude=exclude)
        return [Neighbour(int(i), float(s)) for i, s in zip(rows, scores, strict=True)]

    # one index per question; each is built on its first question (faiss's inverted file
    # at a million songs takes seconds), and only if the catalogue is large (see `index`)

    # each index calibrates its scan on a sample of the questions it will be asked
    # (coldtune.index.RECALL): songs for similar songs, users for recommendations

    @cached_property
    def _usage_index(self) -> SongIndex:
        unit = self._usage_unit
        return SongIndex(unit, kind=self.index, queries=_sample_queries(unit))

    @cached_property
    def _predicted_index(self) -> SongIndex:
        unit = self._predicted_unit
        return SongIndex(
            unit,
            allowed=self.has_audio,
            kind=self.index,
            queries=_sample_queries(unit, self.has_audio),
        )

    @cached_property
    def _scoring_index(self) -> SongIndex:
        return self._ranking_index(self.scoring_factors, self.user_factors)

    @cached_property
    def _cold_scoring_index(self) -> SongIndex:
        # `cold_only` excludes every warm song: an index of the cold songs alone, so that
        # the exclusions left are the user's plays only
        return self._ranking_index(self.scoring_factors, self.user_factors, allowed=self.cold)

    @cached_property
    def _listener_index(self) -> SongIndex:
        return self._ranking_index(self.predicted_user_factors, self.scoring_factors)

    def _ranking_index(self, rows, askers, allowed=None) -> SongIndex:
        """An index of raw inner products over `rows`, calibrated on `askers`' rows."""
        return SongIndex(
            rows,
            allowed=allowed,
            kind=self.index,
            probed=RANKING_PROBED,
            queries=_sample_queries(askers),
        )

    # ----------------------------------------------------------------- users

    def recommend(self, user_id: str, *, n: int = 20, cold_only: bool = False) -> list[dict]:
        """The n songs with the highest x_u^T y for the user, never one they played
        (among the plays WMF saw): warm songs by their WMF factors, cold songs by their
        predicted ones. Each: row, score, cold, held_out_plays (the user's plays of a
        cold song that the split hid: a hit the system could not have known)."""
        u = self.user_row(user_id)
        played = self.training_plays.indices[
            self.training_plays.indptr[u] : self.training_plays.indptr[u + 1]
        ]
        own = self.predicted_user_factors[u] if self._own_users else None
        # the user's held-out plays as {song row: count}: a dense row of every song
        # would be a million-long array per request
        start, end = self.held_out_plays.indptr[u : u + 2]
        held = dict(
            zip(
                self.held_out_plays.indices[start:end].tolist(),
                self.held_out_plays.data[start:end].tolist(),
                strict=True,
            )
        )
        return self._rank(self.user_factors[u], own, played, held, n=n, cold_only=cold_only)

    def recommend_for_plays(
        self, plays: Mapping[str, float], *, n: int = 20, cold_only: bool = False
    ) -> dict:
        """Recommendations for a listener the catalogue has never seen, from their
        plays {song id: count}: folded in with the song factors fixed (eq. 3 with the
        confidences of eq. 2, over the warm songs, as WMF fitted them), then ranked as
        `recommend` does, never a song they played.

        Returns {"songs": picks as `recommend`'s, "factors": the listener's x_u,
        "used": songs the fold-in read, "unknown": ids not in the catalogue,
        "cold_played": played cold songs (no WMF factors: not read, not recommended)}.
        An unknown id is named, not fatal; no known warm song at all is an error.
        """
        if self.fold_in is None:
            raise WorkspaceError(
                "this catalogue cannot fold in listeners: it was built without WMF"
            )
        counts, unknown = {}, []
        for song, count in plays.items():
            check_id(song, what="song")
            if isinstance(count, bool) or not isinstance(count, int | float | np.number):
                raise ParameterError(
                    f"song {song!r}: the play count must be a number, got {count!r}"
                )
            if not np.isfinite(count) or not 0 <= count <= MAX_PLAY_COUNT:
                raise ParameterError(
                    f"song {song!r}: the play count must be >= 0 and <= {MAX_PLAY_COUNT:g}, "
                    f"got {count!r}"
                )
            if song in self.songs:
                counts[self.songs.row(song)] = float(count)
            else:
                unknown.append(song)
        warm = {row: c for row, c in counts.items() if not self.cold[row] and c > 0}
        if not warm:
            known = f"{len(counts)} known ({', '.join(map(repr, list(plays)[:5]))}...)"
            raise ParameterError(
                f"none of the {len(plays)} songs played is a warm song of the catalogue "
                f"with a play count above 0 ({len(unknown)} unknown, {known}): the "
                "fold-in needs plays of songs WMF has factors for"
            )
        n_warm = int((~self.cold).sum())
        rows = np.fromiter(warm, dtype=np.int64)
        row_plays = sp.csr_matrix(
            (np.fromiter(warm.values(), dtype=np.float32), (np.zeros(len(rows), int), rows)),
            shape=(1, n_warm),
        )
        factors = np.asarray(self.fold_in(row_plays), dtype=np.float32)[0]
        played = np.fromiter(counts, dtype=np.int64)
        own = None
        if self._own_users:  # mlr: the user is the mean of the played songs' embeddings
            with_audio = rows[self.has_audio[rows]]
            own = self.predicted_factors[with_audio].mean(axis=0) if len(with_audio) else None
        return {
            "songs": self._rank(factors, own, played, None, n=n, cold_only=cold_only),
            "factors": factors,
            "used": [str(self.song_ids[r]) for r in sorted(warm)],
            "unknown": unknown,
            "cold_played": [str(self.song_ids[r]) for r in sorted(counts) if self.cold[r]],
        }

    def recommend_all(
        self, *, n: int = 100, cold_only: bool = False, batch: int = 1024
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`recommend` for every user, `batch` users at a time: yields (user rows
        [shape=(b,)], song rows [shape=(b, n)], scores [shape=(b, n)]), best first, never
        a song the user played. A user with fewer than n songs left gets -1 rows (score
        -inf) at the end. With `cold_only`, only the cold columns are scored. The top n
        of each row are torch.topk's (one pass over the row, no sort of it); songs with
        equal scores may come in another order than `recommend`'s."""
        import torch

        if n < 1 or batch < 1:
            raise ParameterError(f"n and batch must be >= 1, got n={n!r}, batch={batch!r}")
        columns = np.flatnonzero(self.cold) if cold_only else np.arange(len(self))
        position = np.full(len(self), -1, dtype=np.int64)
        position[columns] = np.arange(len(columns))
        factors = self.scoring_factors[columns]
        # songs without audio are never recommended: their columns, usually none
        unusable = torch.from_numpy(np.flatnonzero(~np.isfinite(factors).all(axis=1)))
        songs = torch.from_numpy(np.nan_to_num(factors, nan=0.0))
        # one block of scores for every batch: a fresh (1,024 x 384,546) block each time
        # cost more in page faults (0.5 s) than its product (0.3 s), measured
        buffer = torch.empty(min(batch, self.n_users) * len(columns), dtype=songs.dtype)
        own = None
        if self._own_users:  # mlr: cold songs are scored in its own user space
            own = torch.from_numpy(np.nan_to_num(self.predicted_factors[columns], nan=0.0))
            cold = torch.from_numpy(self.cold[columns])
        keep = min(n, len(columns))
        for start in range(0, self.n_users, batch):
            users = np.arange(start, min(start + batch, self.n_users))
            scores = buffer[: len(users) * len(columns)].view(len(users), len(columns))
            user_factors = torch.from_numpy(self.user_factors[users]).to(songs.dtype)
            torch.mm(user_factors, songs.T, out=scores)
            if own is not None:
                mine = torch.from_numpy(self.predicted_user_factors[users]) @ own.T
                scores = torch.where(cold[None, :], mine, scores)
            if len(unusable):
                scores[:, unusable] = -torch.inf
            played = self.training_plays[users]
            user_of = np.repeat(np.arange(len(users)), np.diff(played.indptr))
            at = position[played.indices]
            scores[torch.from_numpy(user_of[at >= 0]), torch.from_numpy(at[at >= 0])] = -torch.inf
            best_scores, best = torch.topk(scores, keep, dim=1, sorted=True)
            best_scores, best = best_scores.numpy(), best.numpy()
            song_rows = np.where(np.isfinite(best_scores), columns[best], -1)
            if keep < n:
                pad = ((0, 0), (0, n - keep))
                song_rows = np.pad(song_rows, pad, constant_values=-1)
                best_scores = np.pad(best_scores, pad, constant_values=-np.inf)
            yield users, song_rows, best_scores.astype(np.float32)

    @property
    def _own_users(self) -> bool:
        return self.predicted_user_factors is not self.user_factors

    def _rank(self, user, own, played, held, *, n: int, cold_only: bool) -> list[dict]:
        """The n best songs for user factors `user` (and, for a model with users of its
        own, its user `own`; None: cold songs by `user`), `played` rows excluded;
        `held`: {song row: held-out plays} of the user, or None."""
        excluded = np.asarray(played, dtype=np.int64)
        if self._own_users:  # mlr: its own user space for the cold songs (exact search)
            scores = self.scoring_factors @ user
            cold_scores = self.predicted_factors @ own if own is not None else np.nan
            scores = np.where(self.cold, cold_scores, scores)
            if cold_only:
                excluded = np.union1d(excluded, np.flatnonzero(~self.cold))
            rows = top_k(scores, n, exclude=excluded)
            scores = scores[rows]
        else:
            index = self._cold_scoring_index if cold_only else self._scoring_index
            rows, scores = index.search(user, n, exclude=excluded)
        return [
            {
                "row": int(i),
                "score": float(s),
                "cold": bool(self.cold[i]),
                "held_out_plays": int(held.get(int(i), 0)) if held is not None else 0,
            }
            for i, s in zip(rows, scores, strict=True)
        ]

    def listeners(self, factors: np.ndarray, *, n: int = 10) -> list[tuple[int, float]]:
        """The n users with the highest predicted preference x_u^T y for a song with
        factors y [shape=(k,)]: (user row, score)."""
        query = np.asarray(factors, dtype=np.float32)
        rows, scores = self._listener_index.search(query, n)
        return [(int(u), float(s)) for u, s in zip(rows, scores, strict=True)]

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
        if self.clip_model is None:
            raise WorkspaceError("this catalogue has no clip model; train a content model first")
        return self.clip_model.predict_file(path)

    def clip_path(self, song_id: str) -> Path:
        row = self.song_row(song_id)
        path = self.clips.get(str(self.song_ids[row]))
        if path is None or not path.is_file():
            raise NotFoundError(f"song {song_id!r} has no clip in this workspace")
        return path


def _sample_queries(factors: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Up to CALIBRATION_QUERIES rows of `factors` (allowed, finite, not all zero), drawn
    with a fixed seed: the sample an approximate index calibrates its scan on. Only a few
    drawn rows are checked, not the whole matrix."""
    rows = np.arange(len(factors)) if allowed is None else np.flatnonzero(allowed)
    drawn = np.random.default_rng(0).permutation(rows)[: 4 * CALIBRATION_QUERIES]
    drawn = np.sort(drawn)
    sample = factors[drawn]
    usable = np.isfinite(sample).all(axis=1) & (sample != 0).any(axis=1)
    return sample[usable][:CALIBRATION_QUERIES]
