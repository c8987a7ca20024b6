"""The arithmetic of eq. (2)-(3) that every WMF solver shares: confidences, the exact
objective, and balancing factors whose penalty another solver left unbalanced.
NumPy and implicit's C++ only (no torch), so the implicit path stays light."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from coldtune.errors import ParameterError


def confidence(plays: sp.spmatrix, *, alpha: float, epsilon: float) -> sp.csr_matrix:
    """eq. (2): c_ui = 1 + alpha * log(1 + r_ui / epsilon) on the played pairs.

    plays : sparse [shape=(n_users, n_songs)] raw play counts r_ui >= 0.
    Returns a float32 CSR matrix with the same sparsity; unplayed pairs (c_ui = 1,
    p_ui = 0) are implicit, as every solver here expects.
    """
    plays = sp.csr_matrix(plays, copy=True)
    plays.eliminate_zeros()  # r_ui = 0 is no play: p_ui = 0, c_ui = 1, not stored
    data = plays.data.astype(np.float64)
    if data.size and data.min() < 0:
        raise ParameterError("play counts must be non-negative")
    conf = sp.csr_matrix(
        ((1.0 + alpha * np.log1p(data / epsilon)).astype(np.float32), plays.indices, plays.indptr),
        shape=plays.shape,
    )
    return conf


def wmf_objective(
    conf: sp.csr_matrix, user_factors: np.ndarray, song_factors: np.ndarray, regularization: float
) -> float:
    """eq. (3), exactly, over all n_users x n_songs pairs (see the module docstring).

    conf : CSR [shape=(n_users, n_songs)] confidences c_ui of the played pairs (eq. 2).

    implicit's C++ `calculate_loss` evaluates this very sum (Gram matrices for the
    unplayed pairs, a multi-threaded loop over the played ones, accumulated in double),
    divided by (sum of c_ui over played pairs + number of unplayed pairs); we undo that
    normalisation. It runs about 25x faster than the same sum in torch on a CPU, which
    keeps tracking the objective every iteration cheap. tests/test_wmf.py holds the
    result to the literal double sum over every pair.
    """
    from implicit.cpu._als import calculate_loss

    conf = sp.csr_matrix(conf, dtype=np.float32)
    X = np.ascontiguousarray(user_factors, dtype=np.float32)
    Y = np.ascontiguousarray(song_factors, dtype=np.float32)
    n_users, n_songs = conf.shape
    normaliser = float(conf.data.sum(dtype=np.float64)) + n_users * n_songs - conf.nnz
    with threadpool_limits(1, "blas"):
        loss = calculate_loss(conf, X, Y, float(regularization), num_threads=0)
    return float(loss) * normaliser


def balance_factors(
    user_factors: np.ndarray, song_factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The factors of the same scores X Y^T with the smallest penalty |X|^2 + |Y|^2.

    eq. (3)'s scores do not change under X -> X A, Y -> Y A^-T; its penalty does, and is
    smallest, 2 x the nuclear norm of X Y^T, when X^T X = Y^T Y (which holds at every
    stationary point of eq. 3). With X^T X = Rx Rx^T, Y^T Y = Ry Ry^T and the SVD
    Rx^T Ry = U S V^T, that is X' = X Rx^-T U S^1/2, Y' = Y Ry^-T V S^1/2.
    A solver with another penalty (MLlib's, which grows with each row's plays) returns
    unbalanced factors; balancing them gives the eq. (3) penalty its lowest value for
    the scores it found. O((n_users + n_songs) k^2).
    """
    X = np.asarray(user_factors, dtype=np.float64)
    Y = np.asarray(song_factors, dtype=np.float64)

    def root(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # gram = R R^T with R = E D^1/2; returns R and R^-T (pseudo-inverse where D ~ 0)
        values, vectors = np.linalg.eigh(gram)
        values = np.clip(values, 0.0, None)
        keep = values > values.max(initial=0.0) * 1e-12
        sqrt = np.sqrt(values)
        inv = np.where(keep, 1.0 / np.where(keep, sqrt, 1.0), 0.0)
        return vectors * sqrt, vectors * inv

    Rx, Rx_inv_t = root(X.T @ X)
    Ry, Ry_inv_t = root(Y.T @ Y)
    U, S, Vt = np.linalg.svd(Rx.T @ Ry)
    half = np.sqrt(S)
    X_new = X @ (Rx_inv_t @ (U * half))
    Y_new = Y @ (Ry_inv_t @ (Vt.T * half))
    return X_new.astype(np.float32), Y_new.astype(np.float32)
