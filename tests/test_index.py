"""SongIndex: exact below the threshold (today's answers, row for row), faiss's inverted
file above it with recall@10 >= 0.95, exclusions honoured whichever way it searches."""

import subprocess
import sys

import numpy as np
import pytest

from coldtune.errors import ParameterError
from coldtune.eval.similar import top_k
from coldtune.index import EXACT_BELOW, SongIndex
from coldtune.steps.catalogue import load_catalogue


def clustered(n, k, rng, *, clusters=200, spread=0.5):
    centres = rng.standard_normal((clusters, k)).astype(np.float32)
    return centres[rng.integers(0, clusters, size=n)] + spread * rng.standard_normal((n, k)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def large():
    """20,000 clustered songs x 50 and their inverted file (a second to build)."""
    factors = clustered(20_000, 50, np.random.default_rng(0))
    index = SongIndex(factors, exact_below=10_000)
    assert index.approximate
    index.groups  # noqa: B018
    return index


def test_auto_is_exact_below_the_threshold_and_approximate_from_it():
    factors = np.zeros((10, 3), dtype=np.float32)
    assert not SongIndex(factors).approximate and EXACT_BELOW > 10
    assert SongIndex(factors, exact_below=10).approximate
    # the threshold counts the rows that may be returned
    assert not SongIndex(factors, allowed=np.arange(10) < 9, exact_below=10).approximate
    with pytest.raises(ParameterError, match="kind"):
        SongIndex(factors, kind="fast")
    with pytest.raises(ParameterError, match="3 factors"):
        SongIndex(factors).search(np.zeros(4), 2)


def test_recall_at_10_of_the_inverted_file_is_at_least_095(large):
    rng = np.random.default_rng(1)
    recalls = []
    for row in rng.integers(0, len(large), size=200):
        query, exclude = large.factors[row], np.array([row])
        got, _ = large.search(query, 10, exclude=exclude)
        right, _ = large.exact(query, 10, exclude=exclude)
        assert row not in got and len(got) == 10
        recalls.append(len(set(got) & set(right)) / 10)
    assert np.mean(recalls) >= 0.95


def test_the_approximate_scores_are_exact_and_ranked_as_top_k_ranks(large):
    query = large.factors[5]
    rows, scores = large.search(query, 20)
    np.testing.assert_array_equal(scores, large.factors[rows] @ query)
    assert list(rows) == sorted(rows, key=lambda r: (-float(large.factors[r] @ query), r))


def test_exclusions_hold_approximately_and_many_fall_back_to_exact(large):
    query = large.factors[7]
    best, _ = large.exact(query, 50)
    # the true top 30 excluded: the answer is the exact one's next ten
    rows, _ = large.search(query, 10, exclude=best[:30])
    assert not set(rows) & set(best[:30]) and len(rows) == 10
    assert len(set(rows) & set(best[30:40])) >= 9
    # a user who played most of the catalogue: too many to over-fetch, the exact answer
    played = np.random.default_rng(2).choice(len(large), size=15_000, replace=False)
    rows, scores = large.search(query, 10, exclude=played)
    exact_rows, exact_scores = large.exact(query, 10, exclude=played)
    np.testing.assert_array_equal(rows, exact_rows)
    np.testing.assert_array_equal(scores, exact_scores)


def test_allowed_rows_and_nan_rows_are_never_returned():
    rng = np.random.default_rng(3)
    factors = clustered(3_000, 8, rng)
    factors[::7] = np.nan
    allowed = np.arange(3_000) % 3 != 0
    for kind in ("exact", "approximate"):
        index = SongIndex(factors, allowed=allowed, kind=kind)
        rows, scores = index.search(factors[1], 100)
        assert allowed[rows].all() and np.isfinite(scores).all() and (rows % 7 != 0).all()
        assert len(rows) == 100


def test_n_larger_than_the_catalogue_returns_every_row_once():
    rng = np.random.default_rng(4)
    factors = rng.standard_normal((40, 5)).astype(np.float32)
    query = rng.standard_normal(5).astype(np.float32)
    expected = top_k(factors @ query, 10**6, exclude=np.array([3]))
    for kind in ("exact", "approximate"):
        rows, _ = SongIndex(factors, kind=kind).search(query, 10**6, exclude=np.array([3]))
        np.testing.assert_array_equal(rows, expected)
        assert len(rows) == 39
        rows, _ = SongIndex(factors, kind=kind).search(query, 0)
        assert len(rows) == 0


def test_empty_exclusions_are_no_exclusions_and_one_factor_works():
    rng = np.random.default_rng(5)
    factors = rng.standard_normal((500, 1)).astype(np.float32)
    for kind in ("exact", "approximate"):
        index = SongIndex(factors, kind=kind)
        none, _ = index.search(np.ones(1, dtype=np.float32), 5)
        empty, _ = index.search(np.ones(1, dtype=np.float32), 5, exclude=np.array([], int))
        np.testing.assert_array_equal(none, empty)
        np.testing.assert_array_equal(none, np.argsort(-factors[:, 0], kind="stable")[:5])
    rows, scores = SongIndex(factors).search_many(np.ones((2, 1)), 600)
    assert rows.shape == (2, 600) and (rows[:, 500:] == -1).all()
    assert np.isneginf(scores[:, 500:]).all()


def recall_at_10(index, factors, queries):
    """Mean recall@10 of the index's answers against the exact top 10."""
    found = [set(index.search(q, 10)[0].tolist()) for q in queries]
    right = [set(np.argsort(-(factors @ q), kind="stable")[:10].tolist()) for q in queries]
    return np.mean([len(f & r) / 10 for f, r in zip(found, right, strict=True)])


def test_sample_queries_raise_the_share_scanned_until_the_recall_is_reached():
    """Isotropic Gaussian rows, raw inner products, a scan of 1% of the groups: too little
    for 0.97. Given sample queries, the index scans more until they reach RECALL, and
    other queries of the same kind then reach 0.95 too; without, it scans what it is told."""
    from coldtune.index import RECALL

    rng = np.random.default_rng(11)
    factors = rng.standard_normal((60_000, 16)).astype(np.float32)
    asked = rng.standard_normal((100, 16)).astype(np.float32)
    other = rng.standard_normal((100, 16)).astype(np.float32)
    told = SongIndex(factors, kind="approximate", probed=0.01)
    calibrated = SongIndex(factors, kind="approximate", probed=0.01, queries=asked)
    calibrated.groups  # noqa: B018  (built, then calibrated)
    assert told.probes == calibrated.calibration[0][0]  # the first share tried is the one told
    assert recall_at_10(told, factors, asked) < RECALL
    assert calibrated.probed > 0.01 and calibrated.probes > told.probes
    shares = [probes for probes, _ in calibrated.calibration]
    recalls = [recall for _, recall in calibrated.calibration]
    assert shares == sorted(shares) and recalls[-1] >= RECALL > max(recalls[:-1])
    assert calibrated.probes == shares[-1]
    assert recall_at_10(calibrated, factors, asked) == pytest.approx(recalls[-1], abs=0.011)
    assert recall_at_10(calibrated, factors, other) >= 0.95
    with pytest.raises(ParameterError, match="queries"):
        SongIndex(factors, queries=np.zeros((3, 4)))


# ------------------------------------------------------------------ in the catalogue


@pytest.fixture(scope="module")
def catalogues(small_workspace):
    exact = load_catalogue(small_workspace)
    approximate = load_catalogue(small_workspace)
    approximate.index = "approximate"
    return exact, approximate


def test_below_the_threshold_the_catalogue_answers_as_it_always_did(catalogues):
    """Today's arithmetic, written out: top_k over the product with every song."""
    catalogue, _ = catalogues
    assert not catalogue._usage_index.approximate and len(catalogue) < EXACT_BELOW
    for row in (0, 7, 140):
        found = catalogue.similar(str(catalogue.song_ids[row]), n=8)
        for space, unit, barred in (
            ("usage", catalogue._usage_unit, []),
            ("predicted", catalogue._predicted_unit, list(np.flatnonzero(~catalogue.has_audio))),
        ):
            scores = unit @ unit[row]
            if not unit[row].any():
                continue
            expected = top_k(scores, 8, exclude=np.array([*barred, row], dtype=np.int64))
            assert [nb.index for nb in found[space]] == list(expected)
            assert [nb.similarity for nb in found[space]] == [float(scores[i]) for i in expected]
    plays = catalogue.training_plays
    for u in (0, 3, 11):
        played = plays.indices[plays.indptr[u] : plays.indptr[u + 1]]
        scores = catalogue.scoring_factors @ catalogue.user_factors[u]
        for cold_only in (False, True):
            excluded = np.asarray(played, dtype=np.int64)
            if cold_only:
                excluded = np.union1d(excluded, np.flatnonzero(~catalogue.cold))
            expected = top_k(scores, 12, exclude=excluded)
            picks = catalogue.recommend(str(catalogue.user_ids[u]), n=12, cold_only=cold_only)
            assert [p["row"] for p in picks] == list(expected)
            assert [p["score"] for p in picks] == [float(scores[i]) for i in expected]
    y = catalogue.predicted_factors[140]
    scores = catalogue.predicted_user_factors @ y
    assert [u for u, _ in catalogue.listeners(y, n=5)] == list(top_k(scores, 5))


def test_a_catalogue_forced_onto_the_inverted_file_gives_the_same_songs(catalogues):
    # 150 songs: a query scans at least MIN_SCANNED rows, so every row here, and the
    # answer must be the exact one; what is tested is the plumbing (spaces, exclusions)
    exact, approximate = catalogues
    assert approximate._usage_index.approximate and approximate._cold_scoring_index.approximate
    for row in (0, 7, 140):
        song = str(exact.song_ids[row])
        a, b = exact.similar(song, n=8), approximate.similar(song, n=8)
        for space in ("usage", "predicted"):
            assert [nb.index for nb in a[space]] == [nb.index for nb in b[space]]
            np.testing.assert_allclose(
                [nb.similarity for nb in a[space]], [nb.similarity for nb in b[space]], atol=1e-6
            )
    for user in exact.user_ids[:5]:
        for cold_only in (False, True):
            a = exact.recommend(str(user), n=10, cold_only=cold_only)
            b = approximate.recommend(str(user), n=10, cold_only=cold_only)
            assert [p["row"] for p in a] == [p["row"] for p in b]
            if cold_only:
                assert all(p["cold"] for p in b)
    y = exact.predicted_factors[3]
    assert [u for u, _ in exact.listeners(y)] == [u for u, _ in approximate.listeners(y)]


def test_importing_the_catalogue_does_not_import_faiss():
    code = "import sys, coldtune.catalogue, coldtune.index\nassert 'faiss' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
