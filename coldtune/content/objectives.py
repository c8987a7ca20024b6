"""Training objectives of section 4.3: MSE on the factors, eq. (4), and the weighted
prediction error, eq. (5), registered by name.

eq. (4):  min_theta  sum_i || y_i - y'_i ||^2
eq. (5):  min_theta  sum_u sum_i c_ui (p_ui - x_u^T y'_i)^2

with y'_i = f(audio of i; theta) the predicted factors, y_i the WMF song factors, x_u
the WMF user factors (fixed), c_ui and p_ui the confidence and preference of eq. (1-2).

WPE sums over ALL users, which is computed exactly without visiting them: for a song
with predicted factors y and listeners L_i (p_ui = 1; every other user has p_ui = 0,
c_ui = 1),

    sum_u c_ui (p_ui - x_u^T y)^2
        = y^T (X^T X) y + sum_{u in L_i} [ c_ui (1 - x_u^T y)^2 - (x_u^T y)^2 ]

so a batch costs one k x k product per song plus its listeners, not n_users. The Gram
matrix X^T X is computed once. tests/test_objectives.py holds it to the literal double
sum. Both objectives are returned as a mean per song (and WPE also per user), so that
learning rates do not depend on the batch size or the number of users.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch


def mse_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """eq. (4), averaged over the songs of the batch: mean_i ||y_i - y'_i||^2."""
    return ((predicted - target) ** 2).sum(dim=1).mean()


class WPELoss:
    """eq. (5) for batches of songs, exact over every user.

    user_factors : X [shape=(n_users, k)], WMF's, fixed.
    confidence : CSR or CSC [shape=(n_users, n_songs)] of c_ui for the played pairs of the
        training songs (eq. 2); unplayed pairs are p = 0, c = 1.
    """

    def __init__(self, user_factors: np.ndarray, confidence: sp.spmatrix, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        X = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.n_users = X.shape[0]
        self.X = torch.as_tensor(X, device=self.device)
        self.gram = self.X.T @ self.X  # X^T X, once
        self.by_song = sp.csc_matrix(confidence, dtype=np.float32)

    def _listeners(self, songs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every listener of the batch's songs, flat: (position in the batch, user, c_ui),
        one entry per played pair, so a batch costs its plays, not its songs times its
        most-played song's listeners (padding to those made a batch an order of
        magnitude dearer with 20,000 users: docs/benchmarks.md, "The WPE objective")."""
        indptr, users, conf = self.by_song.indptr, self.by_song.indices, self.by_song.data
        starts, lengths = indptr[songs], indptr[songs + 1] - indptr[songs]
        owner = np.repeat(np.arange(len(songs)), lengths)
        offsets = np.cumsum(lengths) - lengths
        slots = np.arange(int(lengths.sum())) - np.repeat(offsets - starts, lengths)
        return owner, users[slots], conf[slots]

    def per_song(self, predicted: torch.Tensor, songs: np.ndarray) -> torch.Tensor:
        """sum_u c_ui (p_ui - x_u^T y'_i)^2 for each song of the batch [shape=(B,)]."""
        owner, users, conf = self._listeners(np.asarray(songs, dtype=np.int64))
        owner_t = torch.as_tensor(owner, device=self.device)
        c = torch.as_tensor(conf, device=self.device)
        dense = ((predicted @ self.gram) * predicted).sum(dim=1)  # y^T X^T X y
        x = self.X[torch.as_tensor(users, dtype=torch.int64, device=self.device)]
        scores = (x * predicted[owner_t]).sum(dim=1)  # x_u^T y, one per listener
        listened = c * (1.0 - scores) ** 2 - scores**2
        return dense.index_add(0, owner_t, listened.to(dense.dtype))

    def __call__(self, predicted: torch.Tensor, songs: np.ndarray) -> torch.Tensor:
        """Mean over the batch's songs and over users of eq. (5)'s terms."""
        return self.per_song(predicted, songs).mean() / self.n_users


OBJECTIVES: dict[str, Callable] = {"mse": mse_loss, "wpe": WPELoss}
