"""Objectives of section 4.3: WPE computed fast equals the literal sum over all users."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from coldtune.cf.algebra import confidence
from coldtune.content.objectives import WPELoss, mse_loss


def literal_wpe(X, conf_dense, played, Y, songs):
    """eq. (5) as written: every user, every song of the batch, one term at a time."""
    total = []
    for b, i in enumerate(songs):
        value = 0.0
        for u in range(X.shape[0]):
            p = 1.0 if played[u, i] else 0.0
            c = conf_dense[u, i] if played[u, i] else 1.0
            value += c * (p - X[u] @ Y[b]) ** 2
        total.append(value)
    return np.array(total)


def test_wpe_fast_equals_the_literal_sum(rng):
    n_users, n_songs, k = 60, 25, 4
    plays = sp.random(n_users, n_songs, density=0.15, random_state=3, format="csr")
    plays.data = np.ceil(plays.data * 20)
    conf = confidence(plays, alpha=2.0, epsilon=1.0)
    X = rng.standard_normal((n_users, k)).astype(np.float32)
    songs = np.array([3, 0, 24, 7, 7, 12])  # repeats allowed, some songs without listeners
    Y = rng.standard_normal((len(songs), k)).astype(np.float32)
    loss = WPELoss(X, conf)
    fast = loss.per_song(torch.as_tensor(Y), songs).numpy()
    slow = literal_wpe(X, conf.toarray(), plays.toarray() > 0, Y, songs)
    np.testing.assert_allclose(fast, slow, rtol=1e-4)
    assert loss(torch.as_tensor(Y), songs).item() == pytest.approx(slow.mean() / n_users, rel=1e-4)


def test_wpe_gradient_flows_and_is_zero_at_the_least_squares_solution(rng):
    n_users, k = 40, 3
    plays = sp.random(n_users, 5, density=0.3, random_state=1, format="csr")
    plays.data[:] = 3
    conf = confidence(plays, alpha=2.0, epsilon=1.0)
    X = rng.standard_normal((n_users, k)).astype(np.float32)
    # the minimiser of eq. (5) for one song is its WMF fold-in without regularisation
    c = conf.toarray()[:, 0]
    c[c == 0] = 1.0
    p = (plays.toarray()[:, 0] > 0).astype(np.float64)
    best = np.linalg.solve(X.T @ (c[:, None] * X), X.T @ (c * p))
    y = torch.tensor(best[None].astype(np.float32), requires_grad=True)
    WPELoss(X, conf)(y, np.array([0])).backward()
    np.testing.assert_allclose(y.grad.numpy(), 0.0, atol=1e-4)


def test_mse_is_eq_4_per_song():
    predicted = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    assert mse_loss(predicted, target).item() == pytest.approx((4.0 + 25.0) / 2)


def test_wpe_gradient_equals_the_literal_sums(rng):
    """Each listener's term reaches its own song of the batch: one song played by most
    users beside songs with one listener or none, repeats included."""
    n_users, n_songs, k = 50, 6, 3
    played = np.zeros((n_users, n_songs), dtype=bool)
    played[:45, 0] = True  # the popular song
    played[7, 1] = played[20, 3] = played[3, 4] = played[30, 4] = True
    plays = sp.csr_matrix(played * rng.integers(1, 9, size=played.shape).astype(np.float64))
    conf = confidence(plays, alpha=2.0, epsilon=1.0)
    X = rng.standard_normal((n_users, k))
    songs = np.array([1, 0, 2, 4, 0, 3])
    Y = rng.standard_normal((len(songs), k))
    fast_y = torch.tensor(Y, dtype=torch.float32, requires_grad=True)
    WPELoss(X, conf)(fast_y, songs).backward()
    # the literal double sum of eq. (5) in float64, differentiated by torch
    slow_y = torch.tensor(Y, requires_grad=True)
    c = torch.as_tensor(np.where(played, conf.toarray(), 1.0))[:, songs].T  # (B, users)
    p = torch.as_tensor(played[:, songs].T.astype(np.float64))
    terms = c * (p - slow_y @ torch.as_tensor(X).T) ** 2
    (terms.sum(dim=1).mean() / n_users).backward()
    np.testing.assert_allclose(fast_y.grad.numpy(), slow_y.grad.numpy(), rtol=1e-4, atol=1e-6)
