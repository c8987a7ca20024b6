"""The exact row solver of eq. (3) in torch, on any device: every row's least squares
with the other side fixed, in padded batches. Used by the torch backend and by fold-in,
with or without a prior (the warm-up of a cold song from its first plays)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.padded import padded_rows


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

    With a prior x'_u of weight w (the term + w ||x_u - x'_u||^2 added to eq. (3)):

        x_u = (Y^T Y + Y^T (C_u - I) Y + (lambda + w) I)^-1 (Y^T C_u p(u) + w x'_u)

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
            cols, values, _ = padded_rows(conf[rows], width=int(sorted_len[start + size - 1]))
            values = values.astype(np.float32)
            self.batches.append(
                _Batch(
                    torch.from_numpy(rows.astype(np.int64)).to(self.device),
                    torch.from_numpy(cols.astype(np.int64)).to(self.device),
                    torch.from_numpy(values).to(self.device),
                )
            )
            start += size

    def solve(
        self,
        other: torch.Tensor,
        regularization: float,
        *,
        prior: torch.Tensor | None = None,
        prior_weight: float = 0.0,
    ) -> torch.Tensor:
        """New factors for every row given `other` (n_cols, k) on self.device.

        prior : (n_rows, k) on self.device, or None; each row is pulled toward its own
            prior with weight `prior_weight` >= 0 (the class docstring's formula). A row
            without plays is not solved: it keeps its prior (zeros without one).
        """
        k = other.shape[1]
        if prior is None:
            out = torch.zeros(self.conf.shape[0], k, dtype=other.dtype, device=other.device)
            prior_weight = 0.0
        else:
            assert prior.shape == (self.conf.shape[0], k), (tuple(prior.shape), k)
            prior = prior.to(other.dtype)
            out = prior.clone()
        gram = other.T @ other + (regularization + prior_weight) * torch.eye(
            k, dtype=other.dtype, device=other.device
        )
        for batch in self.batches:
            Yb = other[batch.cols]  # (B, L, k)
            weight = (batch.conf - 1.0).clamp_min(0.0)  # c_ui - 1, 0 on padding
            A = gram + torch.bmm(Yb.transpose(1, 2), Yb * weight.unsqueeze(-1))  # (B, k, k)
            b = torch.bmm(batch.conf.unsqueeze(1), Yb).squeeze(1)  # Y^T C_u p(u): (B, k)
            if prior_weight:
                b = b + prior_weight * prior[batch.rows]
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
    prior: np.ndarray | None = None,
    prior_weight: float = 0.0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Exact least-squares factors of every row of `conf` given the other side (eq. 3).

    conf : CSR [shape=(n_rows, n_other)] confidences of eq. (2).
    other_factors : [shape=(n_other, k)].
    prior : [shape=(n_rows, k)] or None, the factors each row is pulled toward with
        weight `prior_weight` >= 0 (`RowSolver`'s formula).
    Returns [shape=(n_rows, k)] float32; a row without plays gets its prior (zeros
    without one).
    """
    device = torch.device(device) if device is not None else default_device()
    other = torch.as_tensor(np.ascontiguousarray(other_factors, dtype=np.float32), device=device)
    solver = RowSolver(sp.csr_matrix(conf), device, other.shape[1])
    if prior is not None:
        prior = torch.as_tensor(np.ascontiguousarray(prior, dtype=np.float32), device=device)
    return solver.solve(other, regularization, prior=prior, prior_weight=prior_weight).cpu().numpy()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
