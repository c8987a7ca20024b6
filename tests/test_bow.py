"""Bag-of-words baseline (section 4.1): codebook, word frequencies, PCA + ridge."""

import numpy as np
import pytest

from coldtune.content.bow import BagOfWords, PCARidge, _ridge
from coldtune.content.configs import BowConfig
from coldtune.errors import ParameterError


def test_words_follow_well_separated_clusters(rng):
    centres = rng.standard_normal((4, 5)) * 20
    # song s draws its frames from cluster s % 4 only
    songs = [centres[s % 4] + rng.standard_normal((300, 5)) for s in range(8)]
    bag = BagOfWords(BowConfig(words=4, frames_per_song=300, kmeans_restarts=10, seed=0)).fit(songs)
    frequencies = bag.transform(songs)
    assert frequencies.shape == (8, 4)
    np.testing.assert_allclose(frequencies.sum(axis=1), 1.0, rtol=1e-6)
    # each song uses one word, and songs of one cluster use the same word
    assert (frequencies.max(axis=1) == 1.0).all()
    words = frequencies.argmax(axis=1)
    assert len(set(words[:4])) == 4 and (words[:4] == words[4:]).all()


def test_ridge_matches_its_normal_equations(rng):
    Z, Y = rng.standard_normal((50, 6)), rng.standard_normal((50, 3))
    W = _ridge(Z, Y, alpha=2.0)
    design = np.hstack([Z, np.ones((50, 1))])
    gradient = design.T @ (design @ W - Y) + 2.0 * np.vstack([W[:-1], np.zeros((1, 3))])
    np.testing.assert_allclose(gradient, 0.0, atol=1e-9)


def test_pca_ridge_recovers_a_linear_map_and_chooses_little_regularisation(rng):
    basis = rng.standard_normal((10, 30))  # the songs live in a 10-dimensional subspace
    X = rng.standard_normal((400, 10)) @ basis
    true = rng.standard_normal((30, 4))
    Y = X @ true + 0.5
    model = PCARidge(BowConfig(variance=0.999999)).fit(X, Y)
    assert model.components_.shape[0] == 10  # the rank, found by the variance rule
    assert model.alpha_ <= 1.0
    X_new = rng.standard_normal((20, 10)) @ basis  # songs it has not seen
    np.testing.assert_allclose(model.predict(X_new), X_new @ true + 0.5, atol=0.05)


def test_bad_settings_are_named():
    with pytest.raises(ParameterError, match="words"):
        BowConfig(words=1).validate()
    with pytest.raises(ParameterError, match="frames cannot make"):
        BagOfWords(BowConfig(words=100)).fit([np.zeros((10, 3), np.float32)])
