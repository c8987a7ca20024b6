"""Warm-up of cold songs from their first plays: a protocol that none of the reference
systems publishes, in the terms of section 5.2's.

For each cold song, k of its listeners are revealed (their plays, as the first plays a
service sees); the song's factors then come from

    audio            the content model's prediction y' alone, the revealed plays unused
    fold-in          eq. (3) for the song from the revealed plays alone, X fixed
    audio + fold-in  the same with y' as a prior: + w ||y - y'||^2 (cf.wmf.fold_in_songs)
    upper bound      eq. (3) from all of the song's plays, revealed and held out

and every user ranks the cold songs by x_u^T y against the cold songs they played that
were not revealed (AP@500 and AUC per user, as `protocol.evaluate_scores`; the mean
over users who still have one). A revealed (user, song) pair is neither relevant nor
irrelevant for that user: it is left out of their ranking, as a service never
recommends a song already played. A song with n listeners reveals min(k, n - 1), so
every song keeps one held-out listener and the cold songs are the same at every k.

Arrays in, numbers out; the step (steps.warmup) reads the workspace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.cf.wmf import WeightedMatrixFactorization
from coldtune.errors import ParameterError
from coldtune.eval.protocol import Evaluation, evaluate_scores, factor_scores

WARMUP_KS = (1, 2, 5, 10, 20)
ROWS = ("audio", "fold-in", "audio + fold-in", "upper bound")
# the prior fold-in with a weight chosen for each number of revealed listeners
PER_K_ROW = "audio + fold-in, w per k"


@dataclass(frozen=True)
class Reveal:
    """One draw of revealed listeners: plays split into revealed and held-out pairs."""

    k: int
    seed: int
    revealed: sp.csr_matrix  # [shape=(n_users, n_songs)] raw play counts
    held_out: sp.csr_matrix  # the rest of the plays; relevant for evaluation

    @property
    def n_capped(self) -> int:
        """Songs with fewer than k + 1 listeners (they reveal all but one)."""
        listeners = np.diff(sp.csc_matrix(self.revealed + self.held_out).indptr)
        return int(np.sum((listeners > 0) & (listeners < self.k + 1)))

    @property
    def mean_revealed(self) -> float:
        """Revealed listeners per song, on average."""
        return float(self.revealed.nnz / max(1, self.revealed.shape[1]))


def reveal_listeners(plays: sp.spmatrix, k: int, *, seed: int) -> Reveal:
    """Reveal min(k, n_i - 1) listeners of each song i, drawn at random.

    plays : sparse [shape=(n_users, n_songs)], raw counts. k : int >= 0.
    The same plays, k and seed give the same draw; the draws for k < k' are not nested.
    """
    if isinstance(k, bool) or not (isinstance(k, int | np.integer) and k >= 0):
        raise ParameterError(f"k must be an integer >= 0, got {k!r}")
    plays = sp.csc_matrix(plays, dtype=np.float64)
    plays.eliminate_zeros()
    plays.sort_indices()
    lengths = np.diff(plays.indptr)
    column = np.repeat(np.arange(plays.shape[1]), lengths)
    # a random order of each song's listeners: sort by (song, random key)
    keys = np.random.default_rng(seed).random(plays.nnz)
    order = np.lexsort((keys, column))
    place = np.empty(plays.nnz, dtype=np.int64)
    place[order] = np.arange(plays.nnz) - np.repeat(plays.indptr[:-1], lengths)
    shown = place < np.minimum(k, lengths - 1)[column]
    revealed, held_out = (
        sp.csc_matrix(
            (np.where(mask, plays.data, 0.0), plays.indices.copy(), plays.indptr.copy()),
            shape=plays.shape,
        )
        for mask in (shown, ~shown)
    )
    revealed.eliminate_zeros()
    held_out.eliminate_zeros()
    return Reveal(int(k), seed, revealed.tocsr(), held_out.tocsr())


def evaluate_revealed(
    user_factors: np.ndarray,
    song_factors: np.ndarray,
    reveal: Reveal,
    *,
    k: int = 500,
    device: torch.device | str | None = None,
) -> Evaluation:
    """AP@k and AUC per user of the scores x_u^T y_i against the held-out plays, each
    user's revealed songs left out of their ranking.

    Revealed songs are scored below every other song, which leaves AP@k as it would be
    without them (they come after every relevant song) and adds n_pos * n_revealed
    correctly ordered pairs to the AUC; those are taken out again, exactly.
    """
    held_out, revealed = reveal.held_out, reveal.revealed
    base = factor_scores(user_factors, song_factors, device=device)

    def score(rows: np.ndarray) -> torch.Tensor:
        scores = base(rows)
        block = revealed[rows].tocoo()
        lowest = torch.finfo(scores.dtype).min
        at = (
            torch.as_tensor(block.row, device=scores.device),
            torch.as_tensor(block.col, device=scores.device),
        )
        scores[at] = lowest
        return scores

    result = evaluate_scores(score, held_out, k=k, device=device)
    n_songs = held_out.shape[1]
    n_pos = np.diff(held_out.indptr)[result.users].astype(np.float64)
    n_rev = np.diff(revealed.indptr)[result.users].astype(np.float64)
    n_neg = n_songs - n_pos - n_rev
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (result.auc * n_pos * (n_neg + n_rev) - n_pos * n_rev) / (n_pos * n_neg)
    auc = np.where(n_neg > 0, auc, np.nan)
    return Evaluation(result.users, result.average_precision, auc)


def warmup_factors(
    model: WeightedMatrixFactorization,
    prior: np.ndarray,
    plays: sp.spmatrix,
    reveal: Reveal,
    *,
    prior_weight: float,
    prior_weight_per_k: Mapping[int, float] | None = None,
    rows: Sequence[str] = ROWS,
) -> dict[str, np.ndarray]:
    """The songs' factors [shape=(n_songs, k)] of each row of ROWS (and PER_K_ROW) for
    one draw.

    model : WMF fitted without these songs (its X is fixed). prior : y' [shape=(n_songs, k)].
    plays : all of the songs' plays (for the upper bound).
    prior_weight_per_k : {k: weight}, for PER_K_ROW.
    """
    makers: dict[str, Callable[[], np.ndarray]] = {
        PER_K_ROW: lambda: model.fold_in_songs(
            reveal.revealed, prior=prior, prior_weight=prior_weight_per_k[reveal.k]
        ),
        "audio": lambda: np.asarray(prior, dtype=np.float32),
        "fold-in": lambda: model.fold_in_songs(reveal.revealed),
        "audio + fold-in": lambda: model.fold_in_songs(
            reveal.revealed, prior=prior, prior_weight=prior_weight
        ),
        "upper bound": lambda: model.fold_in_songs(plays),
    }
    unknown = [row for row in rows if row not in makers]
    if unknown:
        raise ParameterError(f"unknown rows {unknown}; rows are {', '.join(makers)}")
    if PER_K_ROW in rows and (prior_weight_per_k is None or reveal.k not in prior_weight_per_k):
        raise ParameterError(f"{PER_K_ROW!r} needs prior_weight_per_k with k = {reveal.k}")
    return {row: makers[row]() for row in rows}


def warmup_figures(
    model: WeightedMatrixFactorization,
    prior: np.ndarray,
    plays: sp.spmatrix,
    *,
    prior_weight: float,
    prior_weight_per_k: Mapping[int, float] | None = None,
    ks: Sequence[int] = WARMUP_KS,
    seeds: Sequence[int] = (0, 1, 2),
    k_map: int = 500,
    rows: Sequence[str] = ROWS,
    device: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[int, dict[int, dict]]:
    """The warm-up table's figures: {k: {seed: {row: (mAP@k_map, AUC), ...} plus
    "_draw": {n_users, n_capped, mean_revealed}}}.

    plays : sparse [shape=(n_users, n_songs)] every play of the songs (the users of
        `model`); prior : y' [shape=(n_songs, factors)]. Each seed draws the revealed
        listeners anew; the upper bound does not depend on the draw's factors but is
        scored on the draw's held-out plays.
    """
    plays = sp.csr_matrix(plays)
    done, total = 0, len(ks) * len(seeds)
    figures: dict[int, dict[int, dict]] = {}
    for k in ks:
        figures[k] = {}
        for seed in seeds:
            reveal = reveal_listeners(plays, k, seed=seed)
            factors = warmup_factors(
                model,
                prior,
                plays,
                reveal,
                prior_weight=prior_weight,
                prior_weight_per_k=prior_weight_per_k,
                rows=rows,
            )
            entry: dict = {}
            for row, song_factors in factors.items():
                result = evaluate_revealed(
                    model.user_factors_, song_factors, reveal, k=k_map, device=device
                )
                entry[row] = (result.mean_average_precision, result.mean_auc)
            entry["_draw"] = {
                "n_users": len(result.users),
                "n_capped": reveal.n_capped,
                "mean_revealed": reveal.mean_revealed,
            }
            figures[k][seed] = entry
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    return figures


def prior_weight_curve(
    model: WeightedMatrixFactorization,
    prior: np.ndarray,
    plays: sp.spmatrix,
    *,
    weights: Sequence[float],
    ks: Sequence[int] = WARMUP_KS,
    seeds: Sequence[int] = (0, 1, 2),
    k_map: int = 500,
    device: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[float, dict[int, dict[int, tuple[float, float]]]]:
    """For each prior weight w, the "audio + fold-in" row's (mAP, AUC) per k and seed:
    {w: {k: {seed: (map, auc)}}}. Meant for songs the model and the prior did not
    learn from (warm songs held out of both, see steps.warmup), never cold songs."""
    plays = sp.csr_matrix(plays)
    out: dict[float, dict[int, dict[int, tuple[float, float]]]] = {w: {} for w in weights}
    done, total = 0, len(ks) * len(seeds)
    for k in ks:
        for w in weights:
            out[w][k] = {}
        for seed in seeds:
            reveal = reveal_listeners(plays, k, seed=seed)
            for w in weights:
                factors = model.fold_in_songs(reveal.revealed, prior=prior, prior_weight=w)
                result = evaluate_revealed(
                    model.user_factors_, factors, reveal, k=k_map, device=device
                )
                out[w][k][seed] = (result.mean_average_precision, result.mean_auc)
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    return out


def best_prior_weight(
    curve: Mapping[float, Mapping[int, Mapping[int, tuple[float, float]]]], *, metric: str = "auc"
) -> float:
    """The weight of `prior_weight_curve` whose metric, averaged over k and seeds, is
    highest (the smallest such weight on a tie)."""
    at = {"map": 0, "auc": 1}.get(metric)
    if at is None:
        raise ParameterError(f"metric must be 'map' or 'auc', got {metric!r}")
    if not curve:
        raise ParameterError("no prior weights were tried")
    scores = {
        w: float(np.mean([v[at] for by_seed in by_k.values() for v in by_seed.values()]))
        for w, by_k in curve.items()
    }
    return min(scores, key=lambda w: (-scores[w], w))
