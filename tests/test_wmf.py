import numpy as np
import pytest
import scipy.sparse as sp
from reference import als_dense, confidence_dense, least_squares_rows, objective_dense

from coldtune import WeightedMatrixFactorization
from coldtune.cf.algebra import confidence, wmf_objective
from coldtune.cf.rows import solve_rows
from coldtune.data.synth import synth_config, synth_plays
from coldtune.errors import ParameterError

ALPHA, EPS, LAM = 2.0, 0.5, 0.3


def random_plays(rng, n_users=30, n_songs=20, density=0.25):
    plays = (rng.random((n_users, n_songs)) < density) * rng.zipf(2.0, (n_users, n_songs))
    plays[0, :] = 0  # a user without plays
    plays[1:, 0] = 0  # a song played once only
    plays[1, 0] = 4
    return plays.astype(float)


def checkerboard(n=12):
    # two groups of users, each plays only its group's songs: rank-2 structure
    plays = np.zeros((n, n))
    plays[: n // 2, : n // 2] = 3
    plays[n // 2 :, n // 2 :] = 1
    return plays


def test_confidence_is_eq_2():
    plays = sp.csr_matrix(np.array([[0, 1, 10], [100, 0, 0]]))
    conf = confidence(plays, alpha=ALPHA, epsilon=EPS)
    assert conf.nnz == 3  # unplayed pairs stay implicit (c = 1, p = 0)
    np.testing.assert_allclose(
        conf.toarray()[plays.toarray() > 0],
        1 + ALPHA * np.log(1 + np.array([1, 10, 100]) / EPS),
        rtol=1e-6,
    )


def test_objective_is_exact_over_all_pairs(rng):
    plays = random_plays(rng)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
    conf = confidence(sp.csr_matrix(plays), alpha=ALPHA, epsilon=EPS)
    expected = objective_dense(plays, X, Y, ALPHA, EPS, LAM)
    assert wmf_objective(conf, X, Y, LAM) == pytest.approx(expected, rel=1e-6)


def test_row_solver_equals_reference(rng):
    plays = random_plays(rng)
    Y = rng.standard_normal((20, 5)).astype(np.float32)
    conf = confidence(sp.csr_matrix(plays), alpha=ALPHA, epsilon=EPS)
    fast = solve_rows(conf, Y, regularization=LAM, device="cpu")
    slow = least_squares_rows(plays, Y.astype(float), ALPHA, EPS, LAM)
    np.testing.assert_allclose(fast, slow, atol=2e-5)
    assert np.all(fast[0] == 0)  # a user without plays: x_u = 0


@pytest.mark.parametrize("backend", ["implicit", "torch"])
def test_backends_follow_the_reference_als(rng, backend):
    plays = random_plays(rng)
    k, iterations = 4, 12
    model = WeightedMatrixFactorization(
        k, ALPHA, EPS, LAM, iterations, backend, seed=3, device="cpu"
    ).fit(sp.csr_matrix(plays))
    init = np.random.default_rng(3)
    X0 = init.standard_normal((30, k), dtype=np.float32) * 0.01
    Y0 = init.standard_normal((20, k), dtype=np.float32) * 0.01
    _, _, objectives = als_dense(
        plays, X0.astype(float), Y0.astype(float), ALPHA, EPS, LAM, iterations
    )
    assert len(model.objective_) == iterations
    # the exact objective logged per iteration is eq. (3) of the returned factors
    final = objective_dense(plays, model.user_factors_, model.song_factors_, ALPHA, EPS, LAM)
    assert model.objective_[-1] == pytest.approx(final, rel=1e-5)
    assert model.objective_[-1] == pytest.approx(objectives[-1], rel=0.01)
    # never increases (allow float32 round-off)
    assert np.all(np.diff(model.objective_) <= 1e-5 * model.objective_[0])


def test_torch_backend_is_exact_als(rng):
    plays = random_plays(rng)
    k = 3
    model = WeightedMatrixFactorization(k, ALPHA, EPS, LAM, 5, "torch", seed=0).fit(
        sp.csr_matrix(plays)
    )
    init = np.random.default_rng(0)
    X0 = (init.standard_normal((30, k), dtype=np.float32) * 0.01).astype(float)
    Y0 = (init.standard_normal((20, k), dtype=np.float32) * 0.01).astype(float)
    X, Y, objectives = als_dense(plays, X0, Y0, ALPHA, EPS, LAM, 5)
    np.testing.assert_allclose(model.user_factors_, X, atol=1e-4)
    np.testing.assert_allclose(model.song_factors_, Y, atol=1e-4)
    np.testing.assert_allclose(model.objective_, objectives, rtol=1e-5)


def test_checkerboard_is_recovered():
    plays = checkerboard()
    model = WeightedMatrixFactorization(2, 10.0, 1.0, 0.01, 30, "torch").fit(sp.csr_matrix(plays))
    scores = model.user_factors_ @ model.song_factors_.T
    # a user's own block scores near 1, the other block near 0
    assert scores[:6, :6].min() > 0.9 and scores[6:, 6:].min() > 0.9
    assert np.abs(scores[:6, 6:]).max() < 0.1 and np.abs(scores[6:, :6]).max() < 0.1


def test_both_backends_reach_the_same_objective():
    plays = synth_plays(synth_config("small")).matrix
    objectives = {
        backend: WeightedMatrixFactorization(16, iterations=15, backend=backend)
        .fit(plays)
        .objective_
        for backend in ("implicit", "torch")
    }
    assert objectives["implicit"][-1] == pytest.approx(objectives["torch"][-1], rel=0.01)


def test_fold_in_is_eq_3_for_one_row(rng):
    plays = random_plays(rng)
    model = WeightedMatrixFactorization(4, ALPHA, EPS, LAM, 8, "torch").fit(sp.csr_matrix(plays))
    # a song folded in from the same column as a fitted song gets that song's factors:
    # the last ALS half-sweep solved exactly this problem with X fixed.
    folded = model.fold_in_songs(sp.csr_matrix(plays[:, 3:6]))
    np.testing.assert_allclose(folded, model.song_factors_[3:6], atol=1e-4)
    new_plays = (rng.random((2, 20)) < 0.3) * 3.0
    users = model.fold_in_users(sp.csr_matrix(new_plays))
    expected = least_squares_rows(new_plays, model.song_factors_.astype(float), ALPHA, EPS, LAM)
    np.testing.assert_allclose(users, expected, atol=1e-4)
    with pytest.raises(ParameterError, match="songs"):
        model.fold_in_users(sp.csr_matrix(np.ones((1, 3))))


def test_tracking_off_and_bad_parameters(rng):
    plays = sp.csr_matrix(random_plays(rng))
    model = WeightedMatrixFactorization(3, iterations=2, track_objective=False).fit(plays)
    assert model.objective_ == [] and len(model.seconds_per_iteration_) == 2
    for kwargs, word in [
        ({"factors": 0}, "factors"),
        ({"epsilon": 0}, "epsilon"),
        ({"backend": "magic"}, "implicit, torch"),
        ({"iterations": 0}, "iterations"),
    ]:
        with pytest.raises(ParameterError, match=word):
            WeightedMatrixFactorization(**kwargs).fit(plays)


def test_confidence_is_eq_2_on_the_played_pairs_only():
    """eq. (2) by hand: r = 2, alpha = 2, epsilon = 1 -> c = 1 + 2 log 3; unplayed pairs
    (and a stored zero) are not stored, and equal the dense reference's 1."""
    plays = sp.csr_matrix(np.array([[0.0, 2.0, 0.0], [5.0, 0.0, 0.0]]))
    plays[0, 2] = 0.0  # a stored zero is no play
    conf = confidence(plays, alpha=2.0, epsilon=1.0)
    assert conf.nnz == 2
    np.testing.assert_allclose(conf[0, 1], 1 + 2 * np.log(3), rtol=1e-6)
    np.testing.assert_allclose(conf[1, 0], 1 + 2 * np.log(6), rtol=1e-6)
    dense = confidence_dense(plays.toarray(), 2.0, 1.0)
    np.testing.assert_allclose(np.where(conf.toarray() > 0, conf.toarray(), 1.0), dense, rtol=1e-6)


def test_padded_rows_left_align_each_rows_plays():
    from coldtune.padded import padded_rows

    matrix = sp.csr_matrix(np.array([[0, 5, 0, 7], [0, 0, 0, 0], [3, 0, 0, 0]], dtype=np.float32))
    columns, values, mask = padded_rows(matrix)
    assert columns.tolist() == [[1, 3], [0, 0], [0, 0]]
    assert values.tolist() == [[5, 7], [0, 0], [3, 0]]
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert padded_rows(matrix, width=3)[0].shape == (3, 3)
