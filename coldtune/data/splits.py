"""The cold-start split of section 5.2: songs held out, as if nobody had played them yet.

A split names the users kept and divides the songs kept into warm songs (their plays
train WMF and, later, the content models) and cold songs (their plays are only read by
evaluation). `training_plays` and `cold_plays` are the only two ways to get plays out of
a split, so a cold song's plays cannot reach WMF by accident.

The paper's "subset" (Table 2) keeps the 9,330 most popular songs and 20,000 users and
holds out 1,881 songs; its full setting (Table 3) keeps every song with a clip and every
user and holds out 46,728 songs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp

from coldtune.data.plays import Interactions
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.workspace import Workspace, read_json, write_json


@dataclass(frozen=True)
class SplitConfig:
    """How songs and users are chosen; saved in split.json beside the chosen ids."""

    cold_fraction: float = field(default=0.2, metadata={"help": "Share of songs held out."})
    n_cold_songs: int | None = field(
        default=None,
        metadata={
            "help": "Exact number of cold songs (overrides the share).",
            "flag": "--cold-songs",
        },
    )
    n_top_songs: int | None = field(
        default=None,
        metadata={"help": "Keep the N songs with most listeners.", "flag": "--top-songs"},
    )
    n_users: int | None = field(
        default=None,
        metadata={
            "help": "Keep M users drawn among those who played a kept song.",
            "flag": "--users",
        },
    )
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def replace(self, **changes) -> SplitConfig:
        return dataclasses.replace(self, **changes)


# The paper's two settings (section 5.2).
SPLIT_PRESETS: dict[str, SplitConfig] = {
    "paper-subset": SplitConfig(n_cold_songs=1_881, n_top_songs=9_330, n_users=20_000),
    "paper-full": SplitConfig(n_cold_songs=46_728),
}


@dataclass(frozen=True)
class ColdStartSplit:
    """Rows and columns of an `Interactions` matrix: kept users, warm and cold songs."""

    users: np.ndarray  # row indices kept, sorted
    warm_songs: np.ndarray  # column indices, sorted
    cold_songs: np.ndarray  # column indices, sorted
    config: SplitConfig

    def training_plays(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Plays of the kept users on warm songs only [shape=(n_users, n_warm)]."""
        return sp.csr_matrix(matrix[self.users][:, self.warm_songs])

    def cold_plays(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Plays of the kept users on cold songs [shape=(n_users, n_cold)]: evaluation only."""
        return sp.csr_matrix(matrix[self.users][:, self.cold_songs])


def split_songs(interactions: Interactions, config: SplitConfig = SplitConfig()) -> ColdStartSplit:
    """Choose users and songs as `config` says, then hold out cold songs at random."""
    matrix = interactions.matrix
    n_users, n_songs = matrix.shape
    rng = np.random.default_rng(config.seed)
    listeners = np.diff(matrix.tocsc().indptr)

    songs = np.flatnonzero(listeners > 0)
    if config.n_top_songs is not None:
        if config.n_top_songs < 2:
            raise ParameterError(f"n_top_songs must be at least 2, got {config.n_top_songs}")
        # most listeners first; ties broken by column so the choice is deterministic
        order = np.lexsort((songs, -listeners[songs]))
        songs = np.sort(songs[order[: config.n_top_songs]])

    users = np.flatnonzero(np.diff(matrix[:, songs].tocsr().indptr) > 0)
    if config.n_users is not None:
        if config.n_users < 1:
            raise ParameterError(f"n_users must be at least 1, got {config.n_users}")
        if config.n_users < len(users):
            users = np.sort(rng.choice(_by_id(users, interactions.user_ids), config.n_users, False))

    if config.n_cold_songs is not None:
        n_cold = config.n_cold_songs
    else:
        if not 0.0 < config.cold_fraction < 1.0:
            raise ParameterError(
                f"cold_fraction must be between 0 and 1, got {config.cold_fraction}"
            )
        n_cold = int(round(config.cold_fraction * len(songs)))
    if not 1 <= n_cold < len(songs):
        raise ParameterError(
            f"cannot hold out {n_cold} cold songs out of {len(songs)} played songs; "
            "ask for fewer cold songs"
        )
    cold = np.sort(rng.choice(_by_id(songs, interactions.song_ids), size=n_cold, replace=False))
    warm = np.setdiff1d(songs, cold)
    return ColdStartSplit(users, warm, cold, config)


def _by_id(rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    # Draw from rows ordered by id, not by position, so that the same ids give the same
    # split whatever order the plays file listed them in.
    return rows[np.argsort(ids[rows].astype(str), kind="stable")]


def save_split(split: ColdStartSplit, interactions: Interactions, workspace: Workspace) -> None:
    """Write split.json with ids (not row numbers), so it survives a re-ingest."""
    everyone = len(split.users) == interactions.n_users
    write_json(
        workspace.split_path,
        {
            "config": asdict(split.config),
            "n_users": len(split.users),
            "n_warm_songs": len(split.warm_songs),
            "n_cold_songs": len(split.cold_songs),
            "users": None if everyone else interactions.user_ids[split.users].tolist(),
            "warm_songs": interactions.song_ids[split.warm_songs].tolist(),
            "cold_songs": interactions.song_ids[split.cold_songs].tolist(),
        },
    )


def load_split(workspace: Workspace, interactions: Interactions) -> ColdStartSplit:
    data = read_json(
        workspace.split_path,
        what="the cold-start split",
        hint="run `coldtune split --workspace W` first",
    )
    songs = interactions.songs()

    def columns(ids: list[str], what: str) -> np.ndarray:
        missing = songs.missing(ids)
        if missing:
            raise WorkspaceError(
                f"{workspace.split_path}: {len(missing)} {what} songs are not in the ingested "
                f"plays (e.g. {missing[0]!r}); run `coldtune split` again"
            )
        return np.sort(songs.rows(ids))

    if data["users"] is None:
        users = np.arange(interactions.n_users)
    else:
        users = np.sort(interactions.users().rows(data["users"]))
    return ColdStartSplit(
        users,
        columns(data["warm_songs"], "warm"),
        columns(data["cold_songs"], "cold"),
        SplitConfig(**data["config"]),
    )
