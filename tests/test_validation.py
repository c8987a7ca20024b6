"""The ranking criterion on warm validation songs, held to a loop over users."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score, roc_auc_score

from coldtune.content.validation import RankingValidation, split_rows
from coldtune.errors import ParameterError


def test_it_is_the_mean_over_users_of_their_auc_and_ap_on_the_validation_songs(rng):
    n_users, n_songs, k = 40, 30, 4
    X = rng.standard_normal((n_users, k)).astype(np.float32)
    plays = sp.random(n_users, n_songs, density=0.2, random_state=3, format="csr")
    rows = np.array([1, 4, 5, 9, 12, 17, 20, 28])
    Y = rng.standard_normal((len(rows), k)).astype(np.float32)
    figures = RankingValidation(X, plays, rows)(Y)
    dense = plays.toarray()[:, rows] > 0
    aucs, aps = [], []
    for u in range(n_users):
        if not dense[u].any():
            continue  # a user with no validation song is not scored
        scores = X[u] @ Y.T
        aps.append(average_precision_score(dense[u], scores))
        aucs.append(roc_auc_score(dense[u], scores) if not dense[u].all() else np.nan)
    assert figures["auc"] == pytest.approx(np.nanmean(aucs), abs=1e-9)
    assert figures["map"] == pytest.approx(np.mean(aps), abs=1e-9)
    # the right factors rank better than reversed ones
    assert RankingValidation(X, plays, rows)(-Y)["auc"] == pytest.approx(1 - figures["auc"])


def test_bad_input_is_named(rng):
    plays = sp.random(5, 6, density=0.5, random_state=0, format="csr")
    X = rng.standard_normal((5, 2))
    with pytest.raises(ParameterError, match="at least 2"):
        RankingValidation(X, plays, np.array([0]))
    with pytest.raises(ParameterError, match="shape"):
        RankingValidation(X, plays, np.array([0, 1]))(np.zeros((3, 2)))


def test_the_split_is_the_training_loops():
    val, train = split_rows(50, fraction=0.1, seed=4)
    assert len(val) == 5 and sorted([*val, *train]) == list(range(50))
    order = np.random.default_rng([4, 0]).permutation(50)
    assert list(val) == sorted(order[:5])
