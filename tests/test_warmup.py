"""Warm-up of cold songs from their first plays: the prior fold-in, the protocol that
measures it, the choice of its weight on warm songs, and the command."""

import numpy as np
import pytest
import scipy.sparse as sp
from reference import confidence_dense

from coldtune import WeightedMatrixFactorization
from coldtune.errors import ParameterError

ALPHA, EPS, LAM = 2.0, 0.5, 0.3


def prior_fold_in_dense(plays, X, prior, weight, alpha, epsilon, regularization):
    # y_i = argmin sum_u c_ui (p_ui - x_u^T y)^2 + lambda ||y||^2 + w ||y - y'_i||^2,
    # by its normal equations with a dense C_i, one song at a time; unplayed: y'_i
    C = confidence_dense(plays, alpha, epsilon)
    P = (plays > 0).astype(float)
    k = X.shape[1]
    out = np.array(prior, dtype=float)
    for i in range(plays.shape[1]):
        if not P[:, i].any():
            continue
        Ci = np.diag(C[:, i])
        A = X.T @ Ci @ X + (regularization + weight) * np.eye(k)
        out[i] = np.linalg.solve(A, X.T @ Ci @ P[:, i] + weight * prior[i])
    return out


@pytest.fixture
def fitted(rng):
    plays = (rng.random((40, 12)) < 0.3) * rng.zipf(2.0, (40, 12))
    model = WeightedMatrixFactorization(4, ALPHA, EPS, LAM, 10, "torch", seed=1, device="cpu")
    return model.fit(sp.csr_matrix(plays.astype(float)))


@pytest.fixture
def new_songs(rng):
    plays = (rng.random((40, 6)) < 0.2) * rng.zipf(2.0, (40, 6))
    plays[:, 2] = 0  # a song nobody has played yet
    plays[:, 4] = 0
    plays[7, 4] = 3  # a song with one listener
    prior = rng.standard_normal((6, 4)).astype(np.float32)
    return plays.astype(float), prior


@pytest.mark.parametrize("weight", [0.0, 0.5, 7.0])
def test_prior_fold_in_equals_the_dense_solve(fitted, new_songs, weight):
    plays, prior = new_songs
    fast = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=weight)
    slow = prior_fold_in_dense(plays, fitted.user_factors_, prior, weight, ALPHA, EPS, LAM)
    np.testing.assert_allclose(fast, slow, atol=2e-5)


def test_prior_weight_zero_is_the_plain_fold_in(fitted, new_songs):
    plays, prior = new_songs
    plain = fitted.fold_in_songs(sp.csr_matrix(plays))
    blended = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=1e-9)
    played = plays.any(0)
    np.testing.assert_allclose(blended[played], plain[played], atol=1e-6)
    assert np.all(plain[~played] == 0)  # without a prior an unplayed song stays at 0


def test_an_infinite_prior_weight_keeps_the_prior(fitted, new_songs):
    plays, prior = new_songs
    for weight in (1e9, np.inf):
        kept = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=weight)
        np.testing.assert_allclose(kept, prior, atol=1e-5)


def test_a_song_without_plays_keeps_its_prior(fitted, new_songs):
    plays, prior = new_songs
    folded = fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=0.5)
    np.testing.assert_array_equal(folded[2], prior[2])
    assert np.abs(folded[4] - prior[4]).max() > 1e-3  # one listener already moves it


def test_the_prior_fold_in_checks_its_arguments(fitted, new_songs):
    plays, prior = new_songs
    with pytest.raises(ParameterError, match="prior_weight"):
        fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior)
    with pytest.raises(ParameterError, match="prior_weight"):
        fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior, prior_weight=-1.0)
    with pytest.raises(ParameterError, match="shape"):
        fitted.fold_in_songs(sp.csr_matrix(plays), prior=prior[:3], prior_weight=1.0)


# ----------------------------------------------------------------------- the protocol


def random_cold_plays(rng, n_users=60, n_songs=15):
    plays = (rng.random((n_users, n_songs)) < 0.25) * rng.zipf(2.0, (n_users, n_songs))
    plays[:, 3] = 0
    plays[5, 3] = 2  # a song with a single listener
    return sp.csr_matrix(plays.astype(float))


@pytest.mark.parametrize("k", [0, 1, 3, 100])
def test_reveal_keeps_one_listener_per_song(rng, k):
    from coldtune.eval.warmup import reveal_listeners

    plays = random_cold_plays(rng)
    reveal = reveal_listeners(plays, k, seed=4)
    assert abs(reveal.revealed + reveal.held_out - plays).max() == 0  # a partition
    assert reveal.revealed.multiply(reveal.held_out).nnz == 0
    listeners = np.diff(plays.tocsc().indptr)
    shown = np.diff(reveal.revealed.tocsc().indptr)
    np.testing.assert_array_equal(shown, np.minimum(k, listeners - 1))
    assert reveal.n_capped == int(np.sum(listeners < k + 1))
    again = reveal_listeners(plays, k, seed=4)
    assert (again.revealed != reveal.revealed).nnz == 0  # the seed fixes the draw
    if k == 1:
        other = reveal_listeners(plays, k, seed=5)
        assert (other.revealed != reveal.revealed).nnz > 0


def evaluate_revealed_slow(X, Y, reveal):
    # per user: drop the revealed songs, rank the rest; sklearn's AP (k >= songs) and AUC
    from sklearn.metrics import average_precision_score, roc_auc_score

    held = reveal.held_out.toarray() > 0
    shown = reveal.revealed.toarray() > 0
    ap, auc = [], []
    for u in range(X.shape[0]):
        if not held[u].any():
            continue
        keep = ~shown[u]
        scores, relevant = (X[u] @ Y.T)[keep], held[u][keep]
        ap.append(average_precision_score(relevant, scores))
        auc.append(roc_auc_score(relevant, scores) if not relevant.all() else np.nan)
    return np.array(ap), np.array(auc)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_evaluate_revealed_leaves_revealed_songs_out(rng, k):
    from coldtune.eval.warmup import evaluate_revealed, reveal_listeners

    plays = random_cold_plays(rng)
    reveal = reveal_listeners(plays, k, seed=k)
    X = rng.standard_normal((60, 3))
    Y = rng.standard_normal((15, 3))
    Y[7] = Y[8]  # ties
    result = evaluate_revealed(X, Y, reveal, k=500)
    ap, auc = evaluate_revealed_slow(X.astype(np.float32), Y.astype(np.float32), reveal)
    order = np.argsort(result.users)  # Evaluation keeps users in row order already
    np.testing.assert_allclose(result.average_precision[order], ap, atol=1e-9)
    np.testing.assert_allclose(result.auc[order], auc, atol=1e-9)
