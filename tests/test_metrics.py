import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score, roc_auc_score

from coldtune import metrics
from coldtune.errors import ParameterError


def ap_loop(scores, relevant, k):
    """AP@k by the MSD Challenge's definition, for rankings without ties."""
    hits, total = 0, 0.0
    for place, song in enumerate(np.argsort(-scores)[:k]):
        if relevant[song]:
            hits += 1
            total += hits / (place + 1)
    return total / min(k, relevant.sum())


def test_hand_computed_example():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    relevant = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    # relevant at places 1 and 3: AP = (1/1 + 2/3) / 2
    assert metrics.average_precision_at_k(scores, relevant)[0] == pytest.approx(5 / 6)
    # cut at 2: only place 1 counts, normalised by min(2, 2) = 2
    assert metrics.average_precision_at_k(scores, relevant, k=2)[0] == pytest.approx(0.5)
    # 5 of the 6 (relevant, irrelevant) pairs are ordered rightly: (0.7, 0.8) is not
    assert metrics.roc_auc(scores, relevant)[0] == pytest.approx(5 / 6)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("method", ["compare", "search"])
def test_equal_to_scikit_learn(rng, ties, method, monkeypatch):
    monkeypatch.setattr(metrics, "_counts_method", lambda device, n_slots: method)
    for _ in range(150):
        n_users, n_songs = rng.integers(1, 6), rng.integers(2, 80)
        if ties:
            scores = rng.integers(0, 4, (n_users, n_songs)).astype(float)
        else:
            scores = rng.standard_normal((n_users, n_songs))
        relevant = rng.random((n_users, n_songs)) < rng.uniform(0.02, 0.6)
        relevant[0] = False
        relevant[0, rng.integers(n_songs)] = True  # a user with a single relevant song
        ap = metrics.average_precision_at_k(scores, relevant, k=500)
        auc = metrics.roc_auc(scores, sp.csr_matrix(relevant))
        for u in range(n_users):
            if not relevant[u].any():
                assert np.isnan(ap[u]) and np.isnan(auc[u])
                continue
            assert ap[u] == pytest.approx(
                average_precision_score(relevant[u], scores[u]), abs=1e-12
            )
            if relevant[u].all():
                assert np.isnan(auc[u])
            else:
                assert auc[u] == pytest.approx(roc_auc_score(relevant[u], scores[u]), abs=1e-12)


def test_cut_off_equals_the_definition(rng):
    for _ in range(100):
        n_songs = int(rng.integers(20, 200))
        scores = rng.standard_normal((3, n_songs))
        relevant = rng.random((3, n_songs)) < 0.3
        relevant[:, 0] = True
        k = int(rng.integers(1, n_songs))
        ap = metrics.average_precision_at_k(scores, relevant, k=k)
        for u in range(3):
            assert ap[u] == pytest.approx(ap_loop(scores[u], relevant[u], k), abs=1e-12)


def test_tie_group_straddling_the_cut_off():
    # places 1-2 tied (one relevant), cut at 1: half of the group's relevant song counts,
    # at the group's precision 1/2
    scores = np.array([[1.0, 1.0, 0.0]])
    relevant = np.array([[True, False, False]])
    assert metrics.average_precision_at_k(scores, relevant, k=1)[0] == pytest.approx(0.25)


def test_every_score_tied_gives_chance():
    scores = np.zeros((1, 10))
    relevant = np.zeros((1, 10), dtype=bool)
    relevant[0, :2] = True
    assert metrics.roc_auc(scores, relevant)[0] == 0.5
    assert metrics.average_precision_at_k(scores, relevant)[0] == pytest.approx(0.2)


def test_blocks_do_not_change_results(rng, monkeypatch):
    scores = rng.standard_normal((50, 40))
    relevant = rng.random((50, 40)) < 0.2
    whole = metrics.average_precision_at_k(scores, relevant), metrics.roc_auc(scores, relevant)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 100)  # 2 users per block
    blocked = metrics.average_precision_at_k(scores, relevant), metrics.roc_auc(scores, relevant)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


def test_bad_arguments():
    with pytest.raises(ParameterError, match="shape"):
        metrics.roc_auc(np.zeros((2, 3)), np.zeros((2, 4), dtype=bool))
    with pytest.raises(ParameterError, match="k must be"):
        metrics.average_precision_at_k(np.zeros((1, 3)), np.ones((1, 3), dtype=bool), k=0)
