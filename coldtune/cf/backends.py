"""Solvers of eq. (3) behind `WeightedMatrixFactorization`, registered by name.

Each backend takes the confidence matrix of eq. (2) and initial factors, runs
`iterations` ALS sweeps (users, then songs) and calls `on_iteration(i, X, Y)` after each,
so the estimator can log the exact objective whatever the solver. A solver that runs
all sweeps in one call (Spark) calls it once, with i = iterations - 1.
`alpha` and `seed` are for solvers that apply eq. (2)'s alpha themselves or draw
their own initial factors (Spark); the others take c_ui and the initial factors given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


class WMFBackend(Protocol):
    def fit(
        self,
        conf: sp.csr_matrix,
        user_factors: np.ndarray,
        song_factors: np.ndarray,
        *,
        regularization: float,
        iterations: int,
        device: str | None,
        on_iteration: Callable[[int, np.ndarray, np.ndarray], None],
        alpha: float,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray]: ...


class ImplicitBackend:
    """benfred/implicit's CPU ALS (conjugate gradient), fed our eq. (2) confidences.

    implicit reads the stored values as c_ui itself (its `alpha` stays 1.0) and adds
    `regularization * I` to each row's normal equations, which is eq. (3)'s lambda.
    """

    def fit(
        self,
        conf,
        user_factors,
        song_factors,
        *,
        regularization,
        iterations,
        device,
        on_iteration,
        alpha=None,
        seed=None,
    ):
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit parallelises over rows itself; a multi-threaded BLAS underneath it
        # only oversubscribes the cores.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=user_factors.shape[1],
                regularization=regularization,
                alpha=1.0,
                iterations=iterations,
                calculate_training_loss=False,
            )
            # implicit keeps factors it is given instead of drawing its own, so every
            # backend starts from the same point.
            model.user_factors = user_factors.copy()
            model.item_factors = song_factors.copy()

            def callback(iteration: int, _elapsed: float, _loss: float | None) -> None:
                on_iteration(iteration, model.user_factors, model.item_factors)

            model.fit(conf, show_progress=False, callback=callback)
        return model.user_factors, model.item_factors


class TorchBackend:
    """Exact ALS in torch: every row's normal equations solved by batched Cholesky.

    Runs on CUDA when present (or on `device`), else on the CPU.
    """

    def fit(
        self,
        conf,
        user_factors,
        song_factors,
        *,
        regularization,
        iterations,
        device,
        on_iteration,
        alpha=None,
        seed=None,
    ):
        import torch

        from coldtune.cf.rows import RowSolver, default_device

        device = torch.device(device) if device is not None else default_device()
        k = user_factors.shape[1]
        by_user = RowSolver(conf, device, k)
        by_song = RowSolver(conf.T.tocsr(), device, k)
        X = torch.as_tensor(user_factors, device=device)
        Y = torch.as_tensor(song_factors, device=device)
        for iteration in range(iterations):
            X = by_user.solve(Y, regularization)
            Y = by_song.solve(X, regularization)
            on_iteration(iteration, _numpy(X), _numpy(Y))
        return _numpy(X), _numpy(Y)


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _spark_backend():
    # pyspark is an optional extra: imported only when this backend is asked for
    from coldtune.cf.spark import SparkBackend

    return SparkBackend()


WMF_BACKENDS: dict[str, Callable[[], WMFBackend]] = {
    "implicit": ImplicitBackend,
    "torch": TorchBackend,
    "spark": _spark_backend,
}
