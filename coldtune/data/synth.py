"""Play-count matrices shaped like the Echo Nest Taste Profile, for tests and benchmarks.

The Taste Profile has 1,019,318 users, 384,546 songs and 48,373,586 (user, song, count)
triplets: song popularity and user activity follow power laws, and counts have a heavy
tail (median 1, mean about 2.9, maximum in the thousands). This generator reproduces
those shapes, and plants a taste structure (genres) so that factorization has something
to find and cold-start evaluation gives non-trivial numbers:

- song i has a genre g_i (genre sizes follow a power law) and a popularity weight
  w_i = rank_i ** -popularity_exponent (a Zipf law over a random ranking);
- user u plays n_u distinct songs, n_u log-normal (heavy right tail), scaled so that
  the total is about `plays`;
- user u has genre preferences theta_u ~ Dirichlet(taste_concentration); each play
  comes from a genre drawn from theta_u with probability `taste_strength`, else from
  the genre sizes, then from a song of that genre drawn proportionally to w_i;
- the count of a (user, song) pair is Zipf(count_exponent), capped at 10,000.

Everything is vectorised numpy; 48M triplets take about a minute and a few GB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import scipy.sparse as sp

from coldtune.errors import ParameterError
from coldtune.workspace import atomic_path


@dataclass(frozen=True)
class SynthConfig:
    users: int
    songs: int
    plays: int  # target number of distinct (user, song) pairs
    genres: int = 24
    popularity_exponent: float = 0.9
    activity_sigma: float = 1.0
    taste_concentration: float = 0.15
    taste_strength: float = 0.85
    count_exponent: float = 2.3
    max_count: int = 10_000
    seed: int = 0


# Sizes from tiny (unit tests) to the Taste Profile itself.
SYNTH_SIZES: dict[str, SynthConfig] = {
    "tiny": SynthConfig(users=300, songs=200, plays=6_000, genres=6),
    "small": SynthConfig(users=2_000, songs=1_500, plays=60_000, genres=12),
    "medium": SynthConfig(users=20_000, songs=9_330, plays=800_000),
    "large": SynthConfig(users=100_000, songs=50_000, plays=5_000_000),
    "taste-profile": SynthConfig(users=1_019_318, songs=384_546, plays=48_373_586, genres=40),
}


def synth_config(size: str = "small", **overrides: int | float | None) -> SynthConfig:
    """The preset `size`, with any non-None keyword overriding a field."""
    if size not in SYNTH_SIZES:
        raise ParameterError(f"size must be one of {', '.join(SYNTH_SIZES)}, got {size!r}")
    changes = {key: value for key, value in overrides.items() if value is not None}
    config = replace(SYNTH_SIZES[size], **changes)
    for name in ("users", "songs", "plays", "genres"):
        if getattr(config, name) < 1:
            raise ParameterError(f"{name} must be at least 1, got {getattr(config, name)}")
    if config.plays > config.users * config.songs // 2:
        raise ParameterError(
            f"plays={config.plays:,} is more than half of users x songs "
            f"({config.users:,} x {config.songs:,}); ask for fewer plays or more users/songs"
        )
    return config


@dataclass
class SynthPlays:
    """Generated play counts: `matrix` (users x songs, int32) and the ids of rows/columns."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    song_ids: np.ndarray
    song_genres: np.ndarray
    config: SynthConfig

    def summary(self) -> str:
        m = self.matrix
        return (
            f"{m.shape[0]:,} users x {m.shape[1]:,} songs, {m.nnz:,} triplets, "
            f"{int(m.sum()):,} plays"
        )


def synth_plays(config: SynthConfig) -> SynthPlays:
    rng = np.random.default_rng(config.seed)
    n_users, n_songs, n_genres = config.users, config.songs, min(config.genres, config.songs)

    genre_sizes = rng.dirichlet(np.full(n_genres, 2.0)) * (np.arange(1, n_genres + 1) ** -0.7)
    genre_sizes /= genre_sizes.sum()
    song_genres = rng.choice(n_genres, size=n_songs, p=genre_sizes)
    song_genres[:n_genres] = np.arange(n_genres)  # every genre has a song
    popularity = (rng.permutation(n_songs) + 1.0) ** -config.popularity_exponent

    # Songs grouped by genre; cumulative popularity rescaled into [g, g + 1) per genre, so
    # one searchsorted on `g + u` draws a song of genre g proportionally to popularity.
    order = np.argsort(song_genres, kind="stable")
    sorted_genres = song_genres[order]
    cumulative = np.cumsum(popularity[order])
    starts = np.searchsorted(sorted_genres, np.arange(n_genres))
    ends = np.append(starts[1:], n_songs)
    base = np.where(starts > 0, cumulative[starts - 1], 0.0)
    totals = cumulative[ends - 1] - base
    scaled = sorted_genres + (cumulative - base[sorted_genres]) / totals[sorted_genres]
    scaled[ends - 1] = np.arange(n_genres) + 1.0 - 1e-12  # guard the top of each genre
    genre_weight = np.bincount(song_genres, weights=popularity, minlength=n_genres)
    genre_weight /= genre_weight.sum()

    # Oversample by the expected share of repeated draws, then keep distinct pairs.
    activity = rng.lognormal(0.0, config.activity_sigma, size=n_users)
    draws = np.maximum(1, np.round(activity / activity.sum() * config.plays * 1.15)).astype(
        np.int64
    )
    draws = np.minimum(draws, max(1, n_songs // 2))
    tastes = rng.dirichlet(np.full(n_genres, config.taste_concentration), size=n_users)
    taste_cdf = np.cumsum(tastes, axis=1)

    keys = []
    user_of_draw = np.repeat(np.arange(n_users, dtype=np.int64), draws)
    chunk = 4_000_000
    for lo in range(0, len(user_of_draw), chunk):
        users = user_of_draw[lo : lo + chunk]
        personal = rng.random(len(users)) < config.taste_strength
        genre = np.where(
            personal,
            (taste_cdf[users] < rng.random((len(users), 1))).sum(axis=1),
            rng.choice(n_genres, size=len(users), p=genre_weight),
        )
        genre = np.minimum(genre, n_genres - 1)
        position = np.searchsorted(scaled, genre + rng.random(len(users)), side="right")
        songs = order[np.minimum(position, n_songs - 1)]
        keys.append(users * n_songs + songs)
    pairs = np.unique(np.concatenate(keys))
    if len(pairs) > config.plays:
        pairs = np.sort(rng.choice(pairs, size=config.plays, replace=False))
    rows, cols = pairs // n_songs, pairs % n_songs
    counts = np.minimum(rng.zipf(config.count_exponent, size=len(pairs)), config.max_count)
    matrix = sp.csr_matrix(
        (counts.astype(np.int32), (rows.astype(np.int32), cols.astype(np.int32))),
        shape=(n_users, n_songs),
    )
    return SynthPlays(matrix, _user_ids(rng, n_users), _song_ids(rng, n_songs), song_genres, config)


def _user_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    # Taste Profile user ids are 40 hexadecimal characters.
    text = rng.integers(0, 256, size=(n, 20), dtype=np.uint8).tobytes().hex()
    return np.array([text[40 * u : 40 * (u + 1)] for u in range(n)], dtype=object)


def _song_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    # MSD song ids: "SO" and 16 characters of [A-Z0-9].
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    text = alphabet[rng.integers(0, 36, size=(n, 16))].tobytes().decode()
    ids = np.array(["SO" + text[16 * i : 16 * (i + 1)] for i in range(n)], dtype=object)
    if len(set(ids)) != n:  # 36**16 ids: a collision would mean a broken generator
        raise RuntimeError("song id collision")
    return ids


def write_plays(plays: SynthPlays, path: str | os.PathLike, *, format: str | None = None) -> Path:
    """Write the triplets file (user<TAB>song<TAB>count, grouped by user), CSV or Parquet.

    format : triplets, csv or parquet; None: from the suffix (.parquet/.pq, .csv/.tsv),
        else triplets.
    """
    path = Path(path)
    if format is None:
        suffixes = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}
        format = suffixes.get(path.suffix.lower(), "triplets")
    coo = plays.matrix.tocoo()
    users = pa.array(plays.user_ids, pa.string())
    songs = pa.array(plays.song_ids, pa.string())
    chunk = 2_000_000
    with atomic_path(path) as tmp:
        writer = None
        try:
            for lo in range(0, coo.nnz, chunk):
                table = pa.table(
                    {
                        "user": users.take(pa.array(coo.row[lo : lo + chunk])),
                        "song": songs.take(pa.array(coo.col[lo : lo + chunk])),
                        "count": pa.array(coo.data[lo : lo + chunk], pa.int32()),
                    }
                )
                if writer is None:
                    writer = _writer(tmp, table.schema, format)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return path


def _writer(path: Path, schema: pa.Schema, format: str):
    if format == "parquet":
        return pq.ParquetWriter(path, schema)
    if format == "triplets":
        options = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    elif format == "csv":
        options = pcsv.WriteOptions(include_header=True, quoting_style="needed")
    else:
        raise ParameterError(f"format must be triplets, csv or parquet, got {format!r}")
    return pcsv.CSVWriter(path, schema, write_options=options)
