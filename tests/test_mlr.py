"""Metric learning to rank (section 4.1): neighbours, triplets, the AUC loss, scoring."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from coldtune.content.mlr import (
    Metric,
    MLRConfig,
    distance_songs,
    distance_users,
    listener_neighbours,
    sample_triplets,
    triplet_auc_loss,
    usage_factors,
)
from coldtune.content.training import TrainConfig, train_loop
from coldtune.errors import ParameterError


def test_neighbours_are_the_nearest_by_cosine_of_listener_sets(rng):
    plays = sp.random(60, 40, density=0.15, random_state=3, format="csr") * 7
    got = listener_neighbours(plays, 5, block=7)  # blocks that do not divide 40
    dense = (plays.toarray() > 0).astype(float)
    norms = np.sqrt(dense.sum(axis=0))
    norms[norms == 0] = 1
    cosine = dense.T @ dense / np.outer(norms, norms)
    np.fill_diagonal(cosine, -1)
    for song in range(40):
        expected = [j for j in np.argsort(-cosine[song], kind="stable")[:5] if cosine[song, j] > 0]
        assert list(got[song][got[song] >= 0]) == expected
        assert (got[song][len(expected) :] == -1).all()


def test_triplets_take_a_neighbour_and_a_non_neighbour(rng):
    near = np.array([[1, 2, -1], [0, -1, -1], [0, 1, 3], [2, -1, -1]] + [[0, 1, 2]] * 4)
    queries = np.repeat(np.arange(8), 50)
    relevant, irrelevant = sample_triplets(queries, near, 8, rng)
    for q, r, n in zip(queries, relevant, irrelevant, strict=True):
        assert r in near[q][near[q] >= 0]
        assert n != q and n not in near[q]
    with pytest.raises(ParameterError, match="neighbour"):
        sample_triplets(np.array([0]), np.array([[-1, -1]]), 4, rng)


def test_usage_factors_score_the_mean_similarity_to_played_songs(rng):
    embedded = rng.standard_normal((12, 4))
    new = rng.standard_normal((7, 4))
    plays = sp.csr_matrix((rng.random((5, 12)) < 0.4) * rng.integers(1, 9, (5, 12)))
    plays = sp.vstack([plays[:4], sp.csr_matrix((1, 12))]).tocsr()  # user 4 played nothing
    users, songs = usage_factors(embedded, plays, new)
    scores = users.astype(np.float64) @ songs.T
    for u in range(4):
        played = np.flatnonzero(plays[u].toarray())
        np.testing.assert_allclose(scores[u], (embedded[played] @ new.T).mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(scores[4], 0.0)


def test_the_auc_loss_counts_pairs_in_the_wrong_order():
    q, r, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert float(triplet_auc_loss(torch.cat([q, r, n]), margin=1.0)) == 0.0  # 1 - 3 + 1 < 0
    assert float(triplet_auc_loss(torch.cat([q, n, r]), margin=1.0)) == pytest.approx(3.0)


def test_learned_metric_finds_the_dimensions_usage_cares_about(rng):
    """Songs share listeners by their cluster, which 8 dimensions tell, hidden among 8
    noisy ones of larger variance: the most similar song by the plain inner product is
    mostly of another cluster, by the learned metric mostly of the same one."""
    n = 400
    cluster = rng.integers(0, 8, n)
    x = np.hstack(
        [np.eye(8)[cluster] + 0.1 * rng.standard_normal((n, 8)), 2 * rng.standard_normal((n, 8))]
    )
    near = np.stack(
        [
            rng.choice(np.flatnonzero((cluster == c) & (np.arange(n) != i)), 10)
            for i, c in enumerate(cluster)
        ]
    )
    features = torch.as_tensor(x, dtype=torch.float32)
    metric = Metric(16, 16)

    def make_batch(rows, batch_rng):
        relevant, irrelevant = sample_triplets(rows, near, n, batch_rng)
        return features[np.concatenate([rows, relevant, irrelevant])]

    def same_cluster_share(embedded):
        similarity = embedded @ embedded.T
        np.fill_diagonal(similarity, -np.inf)
        return float((cluster[similarity.argmax(axis=1)] == cluster).mean())

    before = same_cluster_share(x)
    train_loop(
        metric,
        n_items=n,
        make_batch=make_batch,
        objective=lambda e, _rows: triplet_auc_loss(e, 1.0),
        config=TrainConfig(learning_rate=0.01, max_epochs=30, patience=30, batch_size=64),
        device="cpu",
    )
    with torch.no_grad():
        after = same_cluster_share(metric(features).numpy())
    assert before < 0.5 and after > 0.9, (before, after)


def test_bad_settings_are_named():
    for bad, word in (
        ({"neighbours": 0}, "neighbours"),
        ({"margin": 0}, "margin"),
        ({"dims": -1}, "dims"),
        ({"similarity": "cosine"}, "similarity"),
    ):
        with pytest.raises(ParameterError, match=word):
            MLRConfig(**bad).validate()


def test_distance_factors_score_minus_the_mean_squared_distance(rng):
    """With similarity "distance", a user's score of a song is the mean of minus its
    squared distance to the songs they played, up to a constant per user."""
    songs = rng.standard_normal((30, 4))
    new = rng.standard_normal((7, 4))
    played_mask = rng.random((5, 30)) < 0.3
    played_mask[:, 0] = True  # every user played a song
    plays = sp.csr_matrix(played_mask * 1.0)
    means, _ = usage_factors(songs, plays, new)
    scores = distance_users(means) @ distance_songs(new).T
    for u in range(5):
        played = songs[plays[u].indices]
        want = -((played[:, None, :] - new[None, :, :]) ** 2).sum(2).mean(0)
        offset = scores[u] - want
        np.testing.assert_allclose(offset, offset[0], atol=1e-4)
        assert np.argsort(scores[u]).tolist() == np.argsort(want).tolist()
