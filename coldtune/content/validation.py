"""Choosing a content model's settings on warm songs only: a ranking criterion.

Every choice a content model makes while it learns (the epoch to keep, a read-out's
regularisation) is made on validation songs drawn from the warm songs, never on the
cold ones. The criterion is the one the tables report, applied to those songs: each
user who played at least one validation song ranks the validation songs by x_u^T y'_i
(WMF's user factors, the predicted factors of the songs), and the mean over those users
of the AUC (or AP@k) against the validation songs they played (training plays only) is
the score. A loss on the factors says how close the predictions are; this says whether
they rank the songs the way the listeners do, which is what the tables measure.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from coldtune.errors import ParameterError
from coldtune.metrics import ranking_metrics

SELECTIONS = ("loss", "auc", "map")
"""What chooses the epoch to keep: the validation loss (lowest), or the ranking AUC or
mAP of the validation songs (highest)."""


class RankingValidation:
    """The mean AUC and AP@k over users of predicted factors of validation songs.

    user_factors : X [shape=(n_users, factors)], WMF's.
    plays : [shape=(n_users, n_songs)] sparse, > 0 where a user played a song (the
        training set's confidence or counts: warm songs, training plays only).
    rows : the validation songs, columns of `plays`.
    k : AP's cut-off (500, as the tables; with fewer validation songs it is full AP).
    """

    def __init__(self, user_factors: np.ndarray, plays: sp.spmatrix, rows: np.ndarray, *, k=500):
        self.rows = np.asarray(rows)
        if len(self.rows) < 2:
            raise ParameterError(f"ranking needs at least 2 validation songs, got {len(rows)}")
        relevant = sp.csr_matrix(sp.csc_matrix(plays)[:, self.rows])
        relevant.eliminate_zeros()
        self.users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        self.relevant = relevant[self.users]
        self.X = np.ascontiguousarray(user_factors[self.users], dtype=np.float32)
        self.k = k

    def __call__(self, predicted: np.ndarray) -> dict[str, float]:
        """predicted [shape=(len(rows), factors)] -> {"auc", "map"}, means over users."""
        predicted = np.asarray(predicted, dtype=np.float32)
        if predicted.shape != (len(self.rows), self.X.shape[1]):
            raise ParameterError(
                f"expected predictions of shape {(len(self.rows), self.X.shape[1])}, "
                f"got {predicted.shape}"
            )
        ap, auc = ranking_metrics(self.X @ predicted.T, self.relevant, k=self.k)
        return {"auc": float(np.nanmean(auc)), "map": float(np.nanmean(ap))}


def split_rows(n_items: int, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows sorted, training rows) of items 0..n_items-1: the training loop's
    split, so that a read-out fitted after training holds out the same songs."""
    order = np.random.default_rng([seed, 0]).permutation(n_items)
    n_val = max(1, int(round(fraction * n_items)))
    if n_items - n_val < 1:
        raise ParameterError(f"{n_items} training items cannot be split for validation")
    return np.sort(order[:n_val]), order[n_val:]
