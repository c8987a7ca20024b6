"""The cold-start protocol of section 5.2: score every cold song for every user.

For each user u who played at least one cold song, every cold song i gets the score
x_u^T y'_i, where y'_i are the factors under test (predicted from audio, random, or
folded in from real usage for the upper bound). The user's ranking of the cold songs is
scored by AP@500 and AUC against the cold songs they actually played; the table reports
the mean over those users.

Users are processed in blocks: one matrix product gives a block's scores, and the
metrics run on the whole block at once in torch, so there is no Python loop over users
or songs, and the same code runs on a GPU. On a CPU, scores that are a product of
factors (`factor_scores`) are counted a tile of songs at a time instead, each tile while
it is in the cache (`metrics.ap_and_auc_of_factors`): the same figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.errors import ParameterError
from coldtune.metrics import Positives, ap_and_auc, ap_and_auc_of_factors

ScoreFn = Callable[[np.ndarray], torch.Tensor]  # user rows -> (B, n_cold) scores


@dataclass(frozen=True)
class Evaluation:
    """Per-user results of one model; `users` are the rows evaluated."""

    users: np.ndarray
    average_precision: np.ndarray
    auc: np.ndarray

    @property
    def mean_average_precision(self) -> float:
        return float(np.nanmean(self.average_precision)) if len(self.users) else float("nan")

    @property
    def mean_auc(self) -> float:
        return float(np.nanmean(self.auc)) if len(self.users) else float("nan")


def evaluated_users(cold_plays: sp.csr_matrix) -> np.ndarray:
    """Rows of the users who played at least one cold song: the users the paper scores."""
    return np.flatnonzero(np.diff(sp.csr_matrix(cold_plays).indptr) > 0)


def evaluate_scores(
    score: ScoreFn,
    cold_plays: sp.csr_matrix,
    *,
    k: int = 500,
    users: np.ndarray | None = None,
    block_elements: int = 1 << 23,
    device: torch.device | str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """AP@k and AUC of the scores `score(user_rows)` against each user's cold plays.

    cold_plays : CSR [shape=(n_users, n_cold)], the held-out plays (count > 0 = relevant).
    users : rows to evaluate; default: every user with at least one cold play.
    on_progress : called with (users done, users to do) after every block.
    """
    cold_plays = sp.csr_matrix(cold_plays)
    cold_plays.eliminate_zeros()
    users = evaluated_users(cold_plays) if users is None else np.asarray(users)
    n_cold = cold_plays.shape[1]
    device = torch.device(device) if device is not None else torch.device("cpu")
    block = max(1, block_elements // max(1, n_cold))
    # Users with similar numbers of cold plays go in one block: little padding in the
    # (B, P) matrix of their relevant songs.
    order = np.argsort(np.diff(cold_plays.indptr)[users], kind="stable")
    ap = np.full(len(users), np.nan)
    auc = np.full(len(users), np.nan)
    for lo in range(0, len(users), block):
        places = order[lo : lo + block]
        rows = users[places]
        positives = Positives.from_csr(cold_plays[rows], device)
        if isinstance(score, FactorScores) and score.songs_t.device == device:
            block_users = score.users[torch.as_tensor(rows, device=score.users.device)]
            block_ap, block_auc = ap_and_auc_of_factors(block_users, score.songs_t, positives, k=k)
        else:
            block_ap, block_auc = ap_and_auc(score(rows).to(device), positives, k=k)
        ap[places] = block_ap.cpu().numpy()
        auc[places] = block_auc.cpu().numpy()
        if on_progress is not None:
            on_progress(min(lo + block, len(users)), len(users))
    return Evaluation(users, ap, auc)


def factor_scores(
    user_factors: np.ndarray, song_factors: np.ndarray, *, device: torch.device | str | None = None
) -> ScoreFn:
    """Scores x_u^T y'_i for a block of users against every song of `song_factors`."""
    if user_factors.shape[1] != song_factors.shape[1]:
        raise ParameterError(
            f"user factors have {user_factors.shape[1]} dimensions, "
            f"song factors {song_factors.shape[1]}"
        )
    device = torch.device(device) if device is not None else torch.device("cpu")
    songs = np.ascontiguousarray(song_factors, dtype=np.float32)
    return FactorScores(
        torch.as_tensor(np.ascontiguousarray(user_factors, dtype=np.float32), device=device),
        torch.as_tensor(np.ascontiguousarray(songs.T), device=device),
    )


@dataclass(frozen=True)
class FactorScores:
    """A ScoreFn whose scores are x_u^T y_i: users (n_users, F), songs_t (F, n_songs)
    contiguous, float32 tensors on one device. `evaluate_scores` reads the factors
    themselves, to compute and count a block's scores a tile at a time."""

    users: torch.Tensor
    songs_t: torch.Tensor

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        return self.users[torch.as_tensor(rows, device=self.users.device)] @ self.songs_t


def random_factors(like: np.ndarray, n_songs: int, *, seed: int = 0) -> np.ndarray:
    """The "random" row of the tables: Gaussian factors with the spread of real ones."""
    rng = np.random.default_rng(seed)
    scale = float(like.std()) if like.size else 1.0
    return (rng.standard_normal((n_songs, like.shape[1])) * scale).astype(np.float32)
