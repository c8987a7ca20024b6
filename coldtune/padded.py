"""Sparse rows as padded dense blocks: the one helper the batched kernels share (the
WMF row solver, the WPE objective, the ranking metrics)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def padded_rows(
    matrix: sp.csr_matrix, *, width: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's stored columns and values, left-aligned, padded to `width` (default:
    the longest row, at least 1).

    matrix : CSR [shape=(n_rows, n_cols)].
    Returns (columns int64, values of the matrix's dtype, mask bool), each
    [shape=(n_rows, width)]; padding has column 0, value 0 and mask False.
    """
    matrix = sp.csr_matrix(matrix)
    lengths = np.diff(matrix.indptr)
    if width is None:
        width = max(1, int(lengths.max()) if len(lengths) else 1)
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    slots = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    columns = np.zeros((matrix.shape[0], width), dtype=np.int64)
    values = np.zeros((matrix.shape[0], width), dtype=matrix.dtype)
    mask = np.zeros((matrix.shape[0], width), dtype=bool)
    columns[rows, slots] = matrix.indices
    values[rows, slots] = matrix.data
    mask[rows, slots] = True
    return columns, values, mask
