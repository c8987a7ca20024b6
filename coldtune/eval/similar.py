"""Similar songs by their usage patterns (section 5.3, Table 4), without the patterns.

A song's usage pattern is the column of predicted preferences X y over all users
[shape=(n_users,)]: what WMF says every user thinks of it. The paper compares songs by
the cosine similarity of these patterns. With a million users, forming X y for every
song is out of the question, and it is never needed: every inner product of two
patterns goes through the k x k Gram matrix G = X^T X,

    <X y_i, X y_j> = y_i^T (X^T X) y_j = y_i^T G y_j,

so with the Cholesky factor G = L L^T, z = L^T y is a k-vector whose Euclidean
geometry is that of the pattern: <X y_i, X y_j> = <z_i, z_j>, ||X y_i - X y_j|| =
||z_i - z_j||. `usage_embedding` gives these z; the cosine of two patterns is the
cosine of their z, and t-SNE of the patterns (Figure 1) is t-SNE of the z.
"""

from __future__ import annotations

import numpy as np

from coldtune.errors import ParameterError


def gram(user_factors: np.ndarray) -> np.ndarray:
    """G = X^T X [shape=(k, k)], float64, from user factors X [shape=(n_users, k)]."""
    X = np.asarray(user_factors, dtype=np.float64)
    return X.T @ X


def usage_embedding(song_factors: np.ndarray, gram_matrix: np.ndarray) -> np.ndarray:
    """z = L^T y per song, where G = L L^T [shape=(n_songs, k)]: <z_i, z_j> = <X y_i, X y_j>.

    song_factors [shape=(n_songs, k)]; gram_matrix [shape=(k, k)], from `gram`.
    """
    Y = np.asarray(song_factors, dtype=np.float64)
    G = np.asarray(gram_matrix, dtype=np.float64)
    if Y.ndim != 2 or G.shape != (Y.shape[1], Y.shape[1]):
        raise ParameterError(f"song factors {Y.shape} do not match a Gram matrix of {G.shape}")
    # a tiny ridge keeps the factorisation defined when some users' factors are degenerate
    jitter = 1e-10 * max(float(np.trace(G)) / len(G), 1e-300)
    L = np.linalg.cholesky(G + jitter * np.eye(len(G)))
    return Y @ L  # rows are (L^T y_i)^T


def unit_rows(Z: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero): inner products become cosines."""
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return np.divide(Z, norms, out=np.zeros_like(Z, dtype=np.float64), where=norms > 0)


def top_k(scores: np.ndarray, n: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the n highest scores [shape=(min(n, available),)], best first; ties
    are broken by index so the answer does not depend on the sort's whims.

    exclude : indices that may not be returned (the query song itself).
    """
    scores = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude)] = -np.inf
    available = int(np.isfinite(scores).sum())
    n = min(n, available)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    # the partition may cut through a tie at the n-th score: take every tied index too
    cut = scores[candidates].min()
    candidates = np.flatnonzero(scores >= cut)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:n].astype(np.int64)
