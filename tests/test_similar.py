"""Similarity of usage patterns through X^T X, held to the patterns formed explicitly."""

import numpy as np
import pytest

from coldtune.errors import ParameterError
from coldtune.eval.similar import gram, top_k, unit_rows, usage_embedding


def explicit_cosines(X, Y):
    """The slow reference: every song's usage pattern X y [shape=(n_users,)], formed."""
    patterns = X @ Y.T  # (n_users, n_songs)
    norms = np.linalg.norm(patterns, axis=0)
    return (patterns.T @ patterns) / np.outer(norms, norms)


def test_cosines_through_the_gram_matrix_equal_those_of_the_patterns(rng):
    X = rng.standard_normal((300, 8))
    Y = rng.standard_normal((40, 8))
    Z = unit_rows(usage_embedding(Y, gram(X)))
    np.testing.assert_allclose(Z @ Z.T, explicit_cosines(X, Y), atol=1e-10)


def test_distances_of_the_embedding_are_those_of_the_patterns(rng):
    X = rng.standard_normal((200, 5))
    Y = rng.standard_normal((6, 5))
    Z = usage_embedding(Y, gram(X))
    patterns = (X @ Y.T).T
    for i in range(6):
        for j in range(6):
            assert np.linalg.norm(Z[i] - Z[j]) == pytest.approx(
                np.linalg.norm(patterns[i] - patterns[j]), rel=1e-9, abs=1e-9
            )


def test_the_cosine_is_not_that_of_the_raw_factors(rng):
    # users who all lean one way make two songs' patterns alike even when their
    # factors are orthogonal: the geometry is that of X y, not of y
    X = np.column_stack([np.ones(50), 0.01 * rng.standard_normal(50)]) + [0, 1]
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    Z = unit_rows(usage_embedding(Y, gram(X)))
    assert float(unit_rows(Y)[0] @ unit_rows(Y)[1]) == 0.0
    assert float(Z[0] @ Z[1]) == pytest.approx(explicit_cosines(X, Y)[0, 1])
    assert float(Z[0] @ Z[1]) > 0.7


def test_top_k_agrees_with_a_full_sort_breaking_ties_by_index(rng):
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    exclude = np.array([3, 7, 11])
    got = top_k(scores, 25, exclude=exclude)
    masked = scores.copy()
    masked[exclude] = -np.inf
    expected = sorted(range(200), key=lambda i: (-masked[i], i))[:25]
    assert got.tolist() == expected
    assert not set(got) & set(exclude)


def test_top_k_returns_what_there_is():
    assert top_k(np.array([0.5, 0.2]), 10).tolist() == [0, 1]
    assert top_k(np.array([0.5, 0.2]), 10, exclude=np.array([0])).tolist() == [1]
    assert top_k(np.array([1.0]), 0).tolist() == []


def test_a_zero_row_stays_zero_and_shapes_are_checked():
    assert unit_rows(np.zeros((2, 3))).tolist() == [[0.0] * 3] * 2
    with pytest.raises(ParameterError, match="do not match"):
        usage_embedding(np.zeros((4, 3)), np.eye(2))
