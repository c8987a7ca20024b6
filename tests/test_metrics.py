import numpy as np
import pytest
import scipy.sparse as sp
import torch
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


def ap_by_tie_groups(scores, relevant, k):
    """AP@k walking down one user's ranking a tie group at a time, as metrics.py defines it:
    a group shares the precision at its end, and counts for its places above the cut-off."""
    if not relevant.any():
        return np.nan
    total, place, found = 0.0, 0, 0
    for value in np.unique(scores)[::-1]:
        group = scores == value
        size, hits = int(group.sum()), int(relevant[group].sum())
        found += hits
        places_above_cut = min(max(k - place, 0), size)
        total += hits * (places_above_cut / size) * found / (place + size)
        place += size
    return total / min(k, relevant.sum())


def auc_by_pairs(scores, relevant):
    """The share of (relevant, irrelevant) pairs ranked rightly, ties counting one half."""
    pos, neg = scores[relevant], scores[~relevant]
    if not len(pos) or not len(neg):
        return np.nan
    return np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))


# The ways of counting: the compiled CPU kernel comparing every score with each relevant
# one, the same kernel searching (above _SEARCH_ABOVE songs), and the GPU's torch path.
METHODS = ["compare", "search", "torch"]


def use_method(method, monkeypatch):
    if method == "torch":
        monkeypatch.setattr(metrics, "_COMPILED", False)
    else:
        monkeypatch.setattr(metrics, "_SEARCH_ABOVE", 0 if method == "search" else 1 << 30)


def metrics_of(scores, relevant, k):
    ap, auc = metrics.ranking_metrics(np.atleast_2d(scores), np.atleast_2d(relevant), k=k)
    return ap[0], auc[0]


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
@pytest.mark.parametrize("method", METHODS)
def test_equal_to_scikit_learn(rng, ties, method, monkeypatch):
    use_method(method, monkeypatch)
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


@pytest.mark.parametrize("method", METHODS)
def test_equal_to_the_slow_reference(rng, method, monkeypatch):
    """Random users, ties or none, any cut-off; every block's users split between threads,
    so each path of the kernel runs (one user or many per call, padding in every block)."""
    use_method(method, monkeypatch)
    monkeypatch.setattr(metrics, "_PARALLEL_ABOVE", 0)  # users split between threads
    for trial in range(120):
        n_users, n_songs = int(rng.integers(1, 8)), int(rng.integers(1, 90))
        if trial % 2:
            scores = rng.integers(0, int(rng.integers(1, 6)), (n_users, n_songs)).astype(np.float32)
        else:
            scores = rng.standard_normal((n_users, n_songs)).astype(np.float32)
        relevant = rng.random((n_users, n_songs)) < rng.uniform(0.0, 0.7)
        k = int(rng.integers(1, n_songs + 4))
        ap, auc = metrics.ranking_metrics(torch.as_tensor(scores), relevant, k=k)
        want_ap = [ap_by_tie_groups(scores[u], relevant[u], k) for u in range(n_users)]
        want_auc = [auc_by_pairs(scores[u], relevant[u]) for u in range(n_users)]
        np.testing.assert_allclose(ap, want_ap, rtol=0, atol=1e-12)
        np.testing.assert_allclose(auc, want_auc, rtol=0, atol=1e-12)


def test_the_reference_equals_scikit_learn(rng):
    """The slow reference is itself held to scikit-learn where both are defined."""
    for _ in range(100):
        n_songs = int(rng.integers(2, 60))
        scores = rng.integers(0, 5, n_songs).astype(float)
        relevant = rng.random(n_songs) < 0.3
        relevant[rng.integers(n_songs)] = True
        relevant[rng.integers(n_songs)] = False
        if relevant.all() or not relevant.any():
            continue
        want = average_precision_score(relevant, scores)
        assert ap_by_tie_groups(scores, relevant, n_songs) == pytest.approx(want, abs=1e-12)
        assert auc_by_pairs(scores, relevant) == pytest.approx(
            roc_auc_score(relevant, scores), abs=1e-12
        )


@pytest.mark.parametrize("method", METHODS)
def test_ties_across_the_cut_off(method, monkeypatch):
    use_method(method, monkeypatch)
    scores = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    relevant = np.array([False, True, False, False, True])
    # the group at 2 fills places 2-4, one relevant song, precision 1/4 at its end; cut at
    # 2, one of its three places is above the cut: 1 * 1/3 * 1/4, over min(2, 2)
    ap, auc = metrics_of(scores, relevant, k=2)
    assert ap == pytest.approx(1 / 24, abs=1e-15)
    # uncut: 1/4 for the group, 2/5 for place 5
    assert metrics_of(scores, relevant, k=5)[0] == pytest.approx((1 / 4 + 2 / 5) / 2)
    # cut at 4 takes the whole group but not place 5
    assert metrics_of(scores, relevant, k=4)[0] == pytest.approx(1 / 8)
    # cut at 1: the group starts below it
    assert metrics_of(scores, relevant, k=1)[0] == 0.0
    # pairs with the 3 irrelevant songs (3, 2, 2): 2 -> 0 + 1/2 + 1/2, 1 -> 0
    assert auc == pytest.approx(1 / 6)


def test_one_relevant_song():
    # relevant at place 3 of 6: AP = 1/3; 3 of the 5 irrelevant songs are below it
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    relevant = np.array([0, 0, 1, 0, 0, 0], dtype=bool)
    assert metrics_of(scores, relevant, k=500) == pytest.approx((1 / 3, 3 / 5))
    assert metrics_of(scores, relevant, k=3)[0] == pytest.approx(1 / 3)
    assert metrics_of(scores, relevant, k=2)[0] == 0.0
    # top of the ranking, bottom of the ranking
    relevant = np.eye(6, dtype=bool)
    ap, auc = metrics.ranking_metrics(np.tile(scores, (6, 1)), relevant, k=500)
    np.testing.assert_allclose(ap, 1 / np.arange(1, 7))
    np.testing.assert_allclose(auc, np.arange(5, -1, -1) / 5)


def test_every_song_relevant():
    scores = np.array([[0.3, 0.1, 0.2, 0.1]])
    ap, auc = metrics.ranking_metrics(scores, np.ones((1, 4), dtype=bool), k=500)
    assert ap[0] == 1.0 and np.isnan(auc[0])
    # cut below the number of relevant songs: every place is a hit, normalised by k
    assert metrics_of(scores[0], np.ones(4, dtype=bool), k=2)[0] == 1.0


@pytest.mark.parametrize("method", METHODS)
def test_relevant_songs_tied_with_each_other(method, monkeypatch):
    use_method(method, monkeypatch)
    # both relevant songs share places 2-3: precision 2/3 each; each beats 0, loses to 2
    scores = np.array([2.0, 1.0, 1.0, 0.0])
    relevant = np.array([False, True, True, False])
    assert metrics_of(scores, relevant, k=500) == pytest.approx((2 / 3, 1 / 2))
    # a cut at 2 keeps half the group: 2 * 1/2 * 2/3, over min(2, 2)
    assert metrics_of(scores, relevant, k=2)[0] == pytest.approx(1 / 3)
    # tied at the top
    assert metrics_of(scores[::-1].copy(), relevant, k=500) == pytest.approx((2 / 3, 1 / 2))
    assert metrics_of(np.array([1.0, 1.0, 0.0]), np.array([True, True, False]), k=1) == (
        pytest.approx(1.0),
        1.0,
    )


@pytest.mark.parametrize("method", METHODS)
def test_relevant_song_tied_with_irrelevant_ones(method, monkeypatch):
    use_method(method, monkeypatch)
    # one relevant song in a group of 3 at the top: precision 1/3; pairs 1/2, 1/2, 1
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    relevant = np.array([True, False, False, False])
    assert metrics_of(scores, relevant, k=500) == pytest.approx((1 / 3, 2 / 3))
    assert metrics_of(scores, relevant, k=1)[0] == pytest.approx(1 / 9)
    # and a second relevant song at the bottom, tied with nothing: pairs with the two
    # irrelevant songs 1/2 + 1/2 for the first, 0 + 0 for the second, over 4
    relevant[3] = True
    assert metrics_of(scores, relevant, k=500) == pytest.approx(((1 / 3 + 2 / 4) / 2, 1 / 4))


def test_cut_off_at_or_beyond_the_number_of_songs(rng):
    scores = rng.integers(0, 3, (20, 7)).astype(float)
    relevant = rng.random((20, 7)) < 0.4
    relevant[:, 0] = True
    at = metrics.average_precision_at_k(scores, relevant, k=7)
    beyond = metrics.average_precision_at_k(scores, relevant, k=10_000)
    np.testing.assert_array_equal(at, beyond)
    want = [average_precision_score(relevant[u], scores[u]) for u in range(20)]
    np.testing.assert_allclose(beyond, want, rtol=0, atol=1e-12)


def test_cut_off_below_the_number_of_relevant_songs():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    # 3 relevant, cut at 2: the best attainable sum is 2
    assert metrics_of(scores, np.array([1, 1, 1, 0, 0], dtype=bool), k=2)[0] == 1.0
    assert metrics_of(scores, np.array([1, 0, 1, 1, 0], dtype=bool), k=2)[0] == 0.5
    assert metrics_of(scores, np.array([0, 1, 1, 1, 0], dtype=bool), k=2)[0] == 0.25


def test_users_order_and_padding_do_not_change_results(rng):
    """Users come to the kernel in blocks of mixed sizes; a user's numbers are its own."""
    scores = rng.standard_normal((30, 50)).astype(np.float32)
    relevant = rng.random((30, 50)) < rng.uniform(0.01, 0.5, (30, 1))
    order = rng.permutation(30)
    ap, auc = metrics.ranking_metrics(scores, relevant, k=5)
    ap_shuffled, auc_shuffled = metrics.ranking_metrics(scores[order], relevant[order], k=5)
    np.testing.assert_array_equal(ap[order], ap_shuffled)
    np.testing.assert_array_equal(auc[order], auc_shuffled)
    alone = [
        metrics.ranking_metrics(scores[u : u + 1], relevant[u : u + 1], k=5) for u in range(30)
    ]
    np.testing.assert_array_equal(ap, [a[0][0] for a in alone])
    np.testing.assert_array_equal(auc, [a[1][0] for a in alone])


def test_many_relevant_songs_search_on_a_cpu(rng):
    """Above _SEARCH_ABOVE relevant songs a user's counts come from binary search."""
    scores = rng.integers(0, 50, (3, 400)).astype(float)
    relevant = rng.random((3, 400)) < 0.5
    assert relevant.sum(1).min() > metrics._SEARCH_ABOVE
    ap, auc = metrics.ranking_metrics(scores, relevant, k=500)
    for u in range(3):
        assert ap[u] == pytest.approx(average_precision_score(relevant[u], scores[u]), abs=1e-12)
        assert auc[u] == pytest.approx(roc_auc_score(relevant[u], scores[u]), abs=1e-12)


def factor_metrics(X, Y, relevant, k):
    """ap_and_auc_of_factors over all users as one block, as numpy."""
    positives = metrics.Positives.from_csr(sp.csr_matrix(relevant), torch.device("cpu"))
    songs_t = torch.as_tensor(np.ascontiguousarray(Y.T))
    ap, auc = metrics.ap_and_auc_of_factors(torch.as_tensor(X), songs_t, positives, k=k)
    return ap.numpy(), auc.numpy()


def tied_factors(rng, n_users, n_songs, n_factors=3):
    """Small integer factors: exact products in float32, many scores tied."""
    X = rng.integers(-2, 3, (n_users, n_factors)).astype(np.float32)
    Y = rng.integers(-2, 3, (n_songs, n_factors)).astype(np.float32)
    return X, Y


@pytest.mark.parametrize("method", ["compare", "search"])
def test_product_tiles_equal_the_slow_reference(rng, method, monkeypatch):
    """The product counted a tile at a time: tiles of 7 songs (a short last one), users
    split between threads, ties within and across tiles and across the cut-off."""
    use_method(method, monkeypatch)
    monkeypatch.setattr(metrics, "_TILE_SONGS", 7)
    monkeypatch.setattr(metrics, "_PARALLEL_ABOVE", 0)
    for trial in range(60):
        n_users, n_songs = int(rng.integers(1, 8)), int(rng.integers(1, 60))
        if trial % 2:
            X, Y = tied_factors(rng, n_users, n_songs)
        else:
            X = rng.standard_normal((n_users, 4)).astype(np.float32)
            Y = rng.standard_normal((n_songs, 4)).astype(np.float32)
        relevant = rng.random((n_users, n_songs)) < rng.uniform(0.0, 0.7)
        relevant[0, rng.integers(n_songs)] = True  # a user with a relevant song
        k = int(rng.integers(1, n_songs + 4))
        ap, auc = factor_metrics(X, Y, relevant, k)
        scores = (torch.as_tensor(X) @ torch.as_tensor(Y).T).numpy()
        want_ap = [ap_by_tie_groups(scores[u], relevant[u], k) for u in range(n_users)]
        want_auc = [auc_by_pairs(scores[u], relevant[u]) for u in range(n_users)]
        np.testing.assert_allclose(ap, want_ap, rtol=0, atol=1e-12)
        np.testing.assert_allclose(auc, want_auc, rtol=0, atol=1e-12)


def test_product_tiles_equal_the_block_product(rng, monkeypatch):
    """The same figures, bit for bit, as the block's scores counted whole (heavy users
    searching, light ones comparing, in one block)."""
    monkeypatch.setattr(metrics, "_TILE_SONGS", 64)
    monkeypatch.setattr(metrics, "_SEARCH_ABOVE", 20)
    X, Y = tied_factors(rng, 12, 300, n_factors=4)
    relevant = rng.random((12, 300)) < np.linspace(0.01, 0.4, 12)[:, None]
    ap, auc = factor_metrics(X, Y, relevant, k=50)
    want_ap, want_auc = metrics.ranking_metrics(X @ Y.T, relevant, k=50)
    assert (relevant.sum(1) > 20).any() and (relevant.sum(1) <= 20).any()
    np.testing.assert_array_equal(ap, want_ap)
    np.testing.assert_array_equal(auc, want_auc)


def test_a_relevant_score_unlike_its_tiles_is_counted_again(rng, monkeypatch):
    """A relevant song's own score one ulp away from its tile's value (another BLAS
    kernel's rounding) would not tie with itself; such users are counted from a row of
    their own, so the figures do not change."""
    monkeypatch.setattr(metrics, "_TILE_SONGS", 16)
    X, Y = tied_factors(rng, 6, 50)
    relevant = rng.random((6, 50)) < 0.3
    relevant[:, 0] = True
    exact = metrics._own_scores

    def off_by_an_ulp(users, songs_t, positives):
        own = exact(users, songs_t, positives)
        own[::2] = torch.nextafter(own[::2], torch.tensor(np.inf))
        return own

    want = metrics.ranking_metrics(X @ Y.T, relevant, k=10)
    recounted = []
    whole = metrics.ap_and_auc

    def spy(scores, positives, *, k):
        recounted.append(scores.shape[0])
        return whole(scores, positives, k=k)

    monkeypatch.setattr(metrics, "_own_scores", off_by_an_ulp)
    monkeypatch.setattr(metrics, "ap_and_auc", spy)
    got = factor_metrics(X, Y, relevant, k=10)
    assert recounted == [3]  # users 0, 2 and 4, from their own rows
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_a_forked_child_counts_with_threads_of_its_own(rng, monkeypatch):
    """The kernel's threads are kept for the process; a child forked after the parent
    used them (a service's workers, an extraction pool) gets its own, not a pool of
    threads it does not have."""
    import multiprocessing

    monkeypatch.setattr(metrics, "_PARALLEL_ABOVE", 0)  # the threads, even for this size
    scores = rng.standard_normal((6, 40)).astype(np.float32)
    relevant = rng.random((6, 40)) < 0.3
    relevant[:, 0] = True
    want = metrics.ranking_metrics(scores, relevant, k=5)  # the parent's pool, started
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as child:
        got = child.apply_async(metrics.ranking_metrics, (scores, relevant), {"k": 5}).get(60)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


_CACHED_KERNELS = """
import sys
import numpy as np, scipy.sparse as sp, torch
from coldtune import metrics
rng = np.random.default_rng(0)
users = rng.standard_normal((30, 6)).astype(np.float32)
songs = rng.standard_normal((200, 6)).astype(np.float32)
relevant = sp.csr_matrix(rng.random((30, 200)) < 0.1)
if sys.argv[1] == "tiles":  # an evaluation: the tile kernel, float32 counting only
    got = metrics.ap_and_auc_of_factors(
        torch.from_numpy(users), torch.from_numpy(songs.T.copy()),
        metrics.Positives.from_csr(relevant, "cpu"), k=50)
else:  # a CNN's validation: the block kernel, float32 scores
    got = metrics.ranking_metrics(users @ songs.T, relevant, k=50)
np.save(sys.argv[2], np.stack([np.asarray(g, np.float64) for g in got]))
"""


def test_kernels_cached_by_one_process_serve_the_next(tmp_path):
    """numba's disk cache is shared by every process of a machine: an evaluation that
    cached the tile kernel's float32 loop, then a first validation compiling the block
    kernel, must count the same as each alone (the float64 loop once ran the float32
    one's code and failed to compile)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    for run in ("tiles", "block", "tiles", "block"):
        subprocess.run(
            [sys.executable, "-c", _CACHED_KERNELS, run, str(tmp_path / f"{run}.npy")],
            env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    tiles, block = np.load(tmp_path / "tiles.npy"), np.load(tmp_path / "block.npy")
    np.testing.assert_allclose(tiles, block, rtol=1e-6)
    assert np.isfinite(tiles).all()
