"""Weighted matrix factorization of play counts (section 3; Hu, Koren and Volinsky 2008).

Notation follows the paper: r_ui is the play count of user u for song i,

    eq. (1)  p_ui = I(r_ui > 0)
    eq. (2)  c_ui = 1 + alpha * log(1 + r_ui / epsilon)
    eq. (3)  min_{x, y}  sum_{u,i} c_ui (p_ui - x_u^T y_i)^2
                         + lambda (sum_u ||x_u||^2 + sum_i ||y_i||^2)

The first sum of eq. (3) runs over ALL user-song pairs. Pairs never played have c_ui = 1
and p_ui = 0, so the objective splits into a dense part that needs only the Gram
matrices and a sparse part over the observed pairs:

    sum_{u,i} (x_u^T y_i)^2 = sum(X^T X * Y^T Y)
    + sum_{(u,i) played} [c_ui (1 - s_ui)^2 - s_ui^2],  s_ui = x_u^T y_i

which `wmf_objective` computes exactly in O((n_users + n_songs) k^2 + nnz k).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from coldtune.errors import ParameterError


@dataclass(frozen=True)
class WMFConfig:
    """Hyper-parameters of eq. (2)-(3) and how to solve them; saved beside the factors."""

    factors: int = 50
    alpha: float = 2.0
    epsilon: float = 1.0
    regularization: float = 1.0
    iterations: int = 15
    backend: str = "implicit"
    random_state: int = 0


def confidence(plays: sp.spmatrix, *, alpha: float, epsilon: float) -> sp.csr_matrix:
    """eq. (2): c_ui = 1 + alpha * log(1 + r_ui / epsilon) on the played pairs.

    plays : sparse [shape=(n_users, n_songs)] raw play counts r_ui >= 0.
    Returns a float32 CSR matrix with the same sparsity; unplayed pairs (c_ui = 1,
    p_ui = 0) are implicit, as every solver here expects.
    """
    plays = sp.csr_matrix(plays)
    data = plays.data.astype(np.float64)
    if data.size and data.min() < 0:
        raise ParameterError("play counts must be non-negative")
    conf = sp.csr_matrix(
        ((1.0 + alpha * np.log1p(data / epsilon)).astype(np.float32), plays.indices, plays.indptr),
        shape=plays.shape,
    )
    conf.eliminate_zeros()  # r_ui = 0 is no play: p_ui = 0, c_ui = 1, not stored
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


# --------------------------------------------------------------------------- exact row solver


@dataclass
class _Batch:
    rows: torch.Tensor  # (B,) row ids
    cols: torch.Tensor  # (B, L) column ids, 0 where padded
    conf: torch.Tensor  # (B, L) c_ui, 0 where padded


@dataclass
class RowSolver:
    """Solves every row of eq. (3) with the other side fixed, in padded batches on a device.

    For row u with played columns I_u (x_u, Y, C_u as in Hu et al.):

        x_u = (Y^T Y + Y^T (C_u - I) Y + lambda I)^-1 Y^T C_u p(u)

    Rows are sorted by their number of plays and cut into batches whose padded size
    stays under `budget` elements, so padding wastes little and memory is bounded.
    The batching plan depends only on the matrix, so it is built once and reused by
    every ALS iteration.
    """

    conf: sp.csr_matrix
    device: torch.device
    factors: int
    budget: int = 1 << 24
    batches: list[_Batch] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        conf = self.conf
        lengths = np.diff(conf.indptr)
        order = np.argsort(lengths, kind="stable")
        order = order[lengths[order] > 0]  # rows without plays solve to x_u = 0
        sorted_len = lengths[order]
        max_rows = max(1, self.budget // (self.factors * self.factors))
        start = 0
        while start < len(order):
            # largest end with (end - start) * sorted_len[end - 1] * factors <= budget
            span = np.arange(1, min(max_rows, len(order) - start) + 1)
            fits = span * sorted_len[start : start + len(span)] * self.factors <= self.budget
            size = max(1, int(np.searchsorted(~fits, True)))
            rows = order[start : start + size]
            width = int(sorted_len[start + size - 1])
            offsets = conf.indptr[rows][:, None] + np.arange(width)[None, :]
            mask = np.arange(width)[None, :] < lengths[rows][:, None]
            offsets = np.where(mask, offsets, 0)
            cols = np.where(mask, conf.indices[offsets], 0)
            values = np.where(mask, conf.data[offsets], 0.0).astype(np.float32)
            self.batches.append(
                _Batch(
                    torch.from_numpy(rows.astype(np.int64)).to(self.device),
                    torch.from_numpy(cols.astype(np.int64)).to(self.device),
                    torch.from_numpy(values).to(self.device),
                )
            )
            start += size

    def solve(self, other: torch.Tensor, regularization: float) -> torch.Tensor:
        """New factors for every row given `other` (n_cols, k) on self.device."""
        k = other.shape[1]
        out = torch.zeros(self.conf.shape[0], k, dtype=other.dtype, device=other.device)
        gram = other.T @ other + regularization * torch.eye(
            k, dtype=other.dtype, device=other.device
        )
        for batch in self.batches:
            Yb = other[batch.cols]  # (B, L, k)
            weight = (batch.conf - 1.0).clamp_min(0.0)  # c_ui - 1, 0 on padding
            A = gram + torch.bmm(Yb.transpose(1, 2), Yb * weight.unsqueeze(-1))  # (B, k, k)
            b = torch.bmm(batch.conf.unsqueeze(1), Yb).squeeze(1)  # Y^T C_u p(u): (B, k)
            out[batch.rows] = _spd_solve(A, b)
        return out


def _spd_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve A x = b for a batch of symmetric positive definite A (B, k, k), b (B, k)."""
    chol, info = torch.linalg.cholesky_ex(A)
    x = torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)
    failed = info != 0
    if bool(failed.any()):  # float32 round-off on an ill-conditioned row: redo in float64
        x[failed] = torch.linalg.solve(A[failed].double(), b[failed].double()).to(x.dtype)
    return x


def solve_rows(
    conf: sp.csr_matrix,
    other_factors: np.ndarray,
    *,
    regularization: float,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Exact least-squares factors of every row of `conf` given the other side (eq. 3).

    conf : CSR [shape=(n_rows, n_other)] confidences of eq. (2).
    other_factors : [shape=(n_other, k)].
    Returns [shape=(n_rows, k)] float32; a row without plays gets zeros.
    """
    device = torch.device(device) if device is not None else default_device()
    other = torch.as_tensor(np.ascontiguousarray(other_factors, dtype=np.float32), device=device)
    solver = RowSolver(sp.csr_matrix(conf), device, other.shape[1])
    return solver.solve(other, regularization).cpu().numpy()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- the estimator


# (iteration, objective of eq. (3) or None when not tracked, seconds of the sweep)
IterationCallback = Callable[[int, float | None, float], None]


class WeightedMatrixFactorization:
    """WMF (eq. 1-3) fit by alternating least squares on raw play counts.

    factors : int > 0, the dimension k of x_u and y_i.
    alpha, epsilon : the confidence of eq. (2).
    regularization : lambda of eq. (3), applied unscaled to every x_u and y_i.
    iterations : ALS sweeps (users, then songs).
    backend : a name in `coldtune.cf.backends.WMF_BACKENDS`: "implicit" (CPU, default),
        "torch" (CUDA when present, else CPU) or "spark" (MLlib ALS on the active
        SparkSession, else a local one; needs `coldtune[spark]`, see coldtune.cf.spark).
    track_objective : compute eq. (3) exactly after every sweep into `objective_`.
    random_state : seed of the initial factors, N(0, 0.01^2), the same for every backend.
    device : torch device for the "torch" backend and for fold-in.

    After `fit`: `user_factors_` (n_users, k), `song_factors_` (n_songs, k),
    `objective_` (one value per iteration; the spark backend: after the last one only),
    `seconds_per_iteration_` (one value per iteration; a backend that reports once
    gets its total time spread evenly).
    """

    def __init__(
        self,
        factors: int = 50,
        alpha: float = 2.0,
        epsilon: float = 1.0,
        regularization: float = 1.0,
        iterations: int = 15,
        backend: str = "implicit",
        *,
        track_objective: bool = True,
        random_state: int = 0,
        device: str | None = None,
        callback: IterationCallback | None = None,
    ):
        self.factors = factors
        self.alpha = alpha
        self.epsilon = epsilon
        self.regularization = regularization
        self.iterations = iterations
        self.backend = backend
        self.track_objective = track_objective
        self.random_state = random_state
        self.device = device
        self.callback = callback

    @property
    def config(self) -> WMFConfig:
        return WMFConfig(
            self.factors,
            self.alpha,
            self.epsilon,
            self.regularization,
            self.iterations,
            self.backend,
            self.random_state,
        )

    def _validate(self) -> None:
        from coldtune.cf.backends import WMF_BACKENDS

        if not (isinstance(self.factors, int | np.integer) and self.factors > 0):
            raise ParameterError(f"factors must be a positive integer, got {self.factors!r}")
        if not self.alpha >= 0:
            raise ParameterError(f"alpha must be >= 0, got {self.alpha!r}")
        if not self.epsilon > 0:
            raise ParameterError(f"epsilon must be > 0, got {self.epsilon!r}")
        if not self.regularization >= 0:
            raise ParameterError(f"regularization must be >= 0, got {self.regularization!r}")
        if not (isinstance(self.iterations, int | np.integer) and self.iterations >= 1):
            raise ParameterError(f"iterations must be >= 1, got {self.iterations!r}")
        if self.backend not in WMF_BACKENDS:
            raise ParameterError(
                f"backend must be one of {', '.join(WMF_BACKENDS)}, got {self.backend!r}"
            )

    def fit(self, plays: sp.spmatrix) -> WeightedMatrixFactorization:
        """Fit on raw play counts `plays` [shape=(n_users, n_songs)], sparse, r_ui >= 0."""
        from coldtune.cf.backends import WMF_BACKENDS

        self._validate()
        conf = confidence(plays, alpha=self.alpha, epsilon=self.epsilon)
        rng = np.random.default_rng(self.random_state)
        n_users, n_songs = conf.shape
        user_factors = rng.standard_normal((n_users, self.factors), dtype=np.float32) * 0.01
        song_factors = rng.standard_normal((n_songs, self.factors), dtype=np.float32) * 0.01
        self.objective_: list[float] = []
        self.seconds_per_iteration_: list[float] = []
        last = [time.perf_counter()]

        def on_iteration(iteration: int, X: np.ndarray, Y: np.ndarray) -> None:
            now = time.perf_counter()
            sweeps = iteration + 1 - len(self.seconds_per_iteration_)
            self.seconds_per_iteration_.extend([(now - last[0]) / sweeps] * sweeps)
            if self.track_objective:
                self.objective_.append(wmf_objective(conf, X, Y, self.regularization))
            if self.callback is not None:
                objective = self.objective_[-1] if self.track_objective else None
                self.callback(iteration, objective, self.seconds_per_iteration_[-1])
            last[0] = time.perf_counter()

        backend = WMF_BACKENDS[self.backend]()
        self.user_factors_, self.song_factors_ = backend.fit(
            conf,
            user_factors,
            song_factors,
            regularization=self.regularization,
            iterations=self.iterations,
            device=self.device,
            on_iteration=on_iteration,
            alpha=self.alpha,
            random_state=self.random_state,
        )
        return self

    def fold_in_songs(self, plays: sp.spmatrix) -> np.ndarray:
        """Factors of new songs from their plays by the fitted users, X fixed (eq. 3 per song).

        plays : sparse [shape=(n_users, n_new_songs)] raw play counts by the fitted users.
        Returns [shape=(n_new_songs, k)]. This is the "upper bound" of Table 3.
        """
        self._check_fitted()
        if plays.shape[0] != self.user_factors_.shape[0]:
            raise ParameterError(
                f"plays has {plays.shape[0]} users, the model {self.user_factors_.shape[0]}"
            )
        conf = confidence(sp.csr_matrix(plays).T, alpha=self.alpha, epsilon=self.epsilon)
        return solve_rows(
            conf, self.user_factors_, regularization=self.regularization, device=self.device
        )

    def fold_in_users(self, plays: sp.spmatrix) -> np.ndarray:
        """Factors of new users from their plays of the fitted songs, Y fixed.

        plays : sparse [shape=(n_new_users, n_songs)]. Returns [shape=(n_new_users, k)].
        """
        self._check_fitted()
        if plays.shape[1] != self.song_factors_.shape[0]:
            raise ParameterError(
                f"plays has {plays.shape[1]} songs, the model {self.song_factors_.shape[0]}"
            )
        conf = confidence(plays, alpha=self.alpha, epsilon=self.epsilon)
        return solve_rows(
            conf, self.song_factors_, regularization=self.regularization, device=self.device
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise ParameterError("call fit() before folding in new rows")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())
        return f"WeightedMatrixFactorization({args})"


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
