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

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from coldtune.cf.algebra import confidence, wmf_objective
from coldtune.cf.backends import WMF_BACKENDS
from coldtune.errors import ParameterError
from coldtune.workspace import atomic_path, write_json


@dataclass(frozen=True)
class WMFConfig:
    """Hyper-parameters of eq. (2)-(3) and how to solve them; saved beside the factors."""

    factors: int = field(default=50, metadata={"help": "Latent factors k."})
    alpha: float = field(default=2.0, metadata={"help": "alpha of eq. (2)."})
    epsilon: float = field(default=1.0, metadata={"help": "epsilon of eq. (2)."})
    regularization: float = field(default=1.0, metadata={"help": "lambda of eq. (3)."})
    iterations: int = field(default=15, metadata={"help": "ALS sweeps."})
    backend: str = field(
        default="implicit",
        metadata={"help": "implicit (CPU), torch (GPU/CPU) or spark (MLlib ALS)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the initial factors."})


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
    seed : seed of the initial factors, N(0, 0.01^2), the same for every backend.
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
        seed: int = 0,
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
        self.seed = seed
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
            self.seed,
        )

    def _validate(self) -> None:
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
        self._validate()
        conf = confidence(plays, alpha=self.alpha, epsilon=self.epsilon)
        rng = np.random.default_rng(self.seed)
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
            seed=self.seed,
        )
        return self

    def fold_in_songs(
        self,
        plays: sp.spmatrix,
        *,
        prior: np.ndarray | None = None,
        prior_weight: float | None = None,
    ) -> np.ndarray:
        """Factors of new songs from their plays by the fitted users, X fixed (eq. 3 per song).

        plays : sparse [shape=(n_users, n_new_songs)] raw play counts by the fitted users.
        prior : [shape=(n_new_songs, k)] or None, factors to start from (a content model's
            prediction y' from audio); with it each song solves

                min_y  sum_u c_ui (p_ui - x_u^T y)^2 + lambda ||y||^2
                       + prior_weight ||y - y'||^2

            i.e. (X^T X + X^T (C_i - I) X + (lambda + prior_weight) I) y
                 = X^T C_i p(i) + prior_weight y'.
            WMF's lambda stays, so prior_weight -> 0 is the plain fold-in and
            prior_weight -> inf is y'. A song without plays keeps y' (nothing is known
            about it yet; it is not solved).
        prior_weight : float >= 0 (inf allowed: y' itself); needed with `prior`.
            `coldtune.steps.warmup` chooses one on warm songs (docs/evaluation.md).
        Returns [shape=(n_new_songs, k)]. Without a prior this is the "upper bound" of
        Table 3 when given every held-out play.
        """
        self._check_fitted()
        if plays.shape[0] != self.user_factors_.shape[0]:
            raise ParameterError(
                f"plays has {plays.shape[0]} users, the model {self.user_factors_.shape[0]}"
            )
        from coldtune.cf.rows import solve_rows

        if prior is not None:
            prior = np.asarray(prior, dtype=np.float32)
            if prior.shape != (plays.shape[1], self.factors):
                raise ParameterError(
                    f"prior has shape {prior.shape}, expected (songs, factors) = "
                    f"{(plays.shape[1], self.factors)}: one row of factors per song of plays"
                )
            if prior_weight is None or not prior_weight >= 0:
                raise ParameterError(
                    f"prior_weight must be a number >= 0 with a prior, got {prior_weight!r}; "
                    "`coldtune warm-up --choose` picks one on the warm songs"
                )
            if np.isinf(prior_weight):
                return prior.copy()
        conf = confidence(sp.csr_matrix(plays).T, alpha=self.alpha, epsilon=self.epsilon)
        return solve_rows(
            conf,
            self.user_factors_,
            regularization=self.regularization,
            prior=prior,
            prior_weight=0.0 if prior is None else float(prior_weight),
            device=self.device,
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
        from coldtune.cf.rows import solve_rows

        conf = confidence(plays, alpha=self.alpha, epsilon=self.epsilon)
        return solve_rows(
            conf, self.song_factors_, regularization=self.regularization, device=self.device
        )

    # ------------------------------------------------------------------ files

    @classmethod
    def from_factors(
        cls, config: WMFConfig, user_factors: np.ndarray, song_factors: np.ndarray, **fitted
    ) -> WeightedMatrixFactorization:
        """A fitted model from factors another solver found (Spark on Parquet plays)."""
        model = cls(**asdict(config))
        model.user_factors_, model.song_factors_ = user_factors, song_factors
        model.objective_ = list(fitted.get("objective", []))
        model.seconds_per_iteration_ = list(fitted.get("seconds_per_iteration", []))
        return model

    def save(self, folder: str | Path, *, history: dict | None = None) -> None:
        """Write folder/factors.npz (user_factors, song_factors), config.json (WMFConfig)
        and history.json (objective and seconds per iteration, and `history`), atomically."""
        self._check_fitted()
        folder = Path(folder)
        with atomic_path(folder / "factors.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, user_factors=self.user_factors_, song_factors=self.song_factors_)
        write_json(folder / "config.json", self.config)
        fitted = {
            "objective": self.objective_,
            "seconds_per_iteration": self.seconds_per_iteration_,
        }
        write_json(folder / "history.json", fitted | (history or {}))

    @classmethod
    def load(cls, folder: str | Path) -> WeightedMatrixFactorization:
        """The model `save` wrote in `folder`."""
        folder = Path(folder)
        for name in ("factors.npz", "config.json"):
            if not (folder / name).exists():
                raise ParameterError(f"{folder / name}: not found; fit WMF first")
        config = WMFConfig(**json.loads((folder / "config.json").read_text()))
        history = folder / "history.json"
        fitted = json.loads(history.read_text()) if history.exists() else {}
        with np.load(folder / "factors.npz", allow_pickle=False) as saved:
            return cls.from_factors(config, saved["user_factors"], saved["song_factors"], **fitted)

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise ParameterError("call fit() first: the model has no factors yet")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())
        return f"WeightedMatrixFactorization({args})"
