"""The rows of a factor matrix with the highest inner product with a query.

Every "which songs" question of the catalogue (similar songs, a user's recommendations,
a new clip's nearest songs, a song's likely listeners) is a top-n by inner product over
the rows of one matrix. Up to a few hundred thousand rows the product with every row is
the answer, in a few milliseconds; at a million rows it is tens of milliseconds per
question, and a service wants less. `SongIndex` answers both ways:

- exact: `top_k(factors @ query)`, the very arithmetic the catalogue has always done
  (the same rows, in the same order, with the same scores);
- approximate: faiss's HNSW graph (Malkov and Yashunin 2018) with the inner product,
  asked for more candidates than wanted; the candidates are scored exactly again, the
  excluded ones dropped, and ranked as `top_k` ranks. Where too few candidates are
  left (many exclusions, a graph search that came back short), the exact answer is
  given instead, so exclusions hold whatever the graph does.

`kind="auto"` is exact below `EXACT_BELOW` rows and approximate from there.
faiss is imported when an approximate index is first built, never before.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from coldtune.errors import ParameterError
from coldtune.eval.similar import top_k

KINDS = ("auto", "exact", "approximate")

EXACT_BELOW = 200_000
"""Rows below which `auto` searches exactly. Measured on the 2 shared cores of the
development machine, 50 factors: the exact product and top n take about 1.6 ms a query
at 50,000 rows (numpy), faiss's flat index 3.6-5.3 ms at 200,000, so below this a
`similar` (two searches) stays well inside a 20 ms budget, exactly, and with no graph
to build (one takes about 13 s at 50,000 rows there, minutes at a million)."""

HNSW_M = 32
"""Neighbours per node of the HNSW graph: faiss's usual 32. Memory is M x 8 bytes
per row on top of the float32 factors (256 MB for a million rows)."""

EF_CONSTRUCTION = 40
"""Candidate list while building the graph: faiss's default."""

EF_SEARCH = 256
"""Candidate list while searching (at least the number of candidates asked for), for
unit rows (`similar`'s usage and predicted spaces). Measured (benchmarks/bench_index.py,
docs/benchmarks.md), recall@10 of the re-ranked answer: at 200,000 isotropic Gaussian
unit rows x 50 (the hardest case for `similar`), 0.89 with 128 and 0.97 with 256; at
200,000 clustered songs x 50, `similar` 0.986 with 128 and 0.994 with 256."""

RANKING_EF_SEARCH = 512
"""The same for raw inner products (`recommend`'s scoring factors and `listeners`),
whose rows differ in length, which HNSW's graph serves less well: at 200,000 clustered
songs x 50 and Gaussian users (bench_index.py's defaults), recall@10 0.800 with 128,
0.914-0.921 with 256, 0.973 with 512 and 0.993 with 1,024 (one scratch run of the same
generator, efConstruction 40; docs/benchmarks.md). 512 is the least that reaches 0.95.
The usual reduction of inner product to cosine (an extra coordinate sqrt(M^2 - |y|^2)
per row) did worse on such data in that run (0.45 with 256 at 100,000 songs)."""


class SongIndex:
    """Top-n rows of `factors` [shape=(n_rows, k)] by inner product with a query.

    factors : the rows to search, any float dtype (the exact path computes in it).
    allowed : [shape=(n_rows,)] bool, rows that may be returned (None: every row).
        Rows with a non-finite factor are never returned by the approximate path; the
        exact one gives them a NaN score, which `top_k` never ranks.
    kind : "exact", "approximate", or "auto" (approximate from `exact_below` allowed rows).
    ef_search : HNSW's candidate list when searching.
    """

    def __init__(
        self,
        factors: np.ndarray,
        *,
        allowed: np.ndarray | None = None,
        kind: str = "auto",
        exact_below: int = EXACT_BELOW,
        ef_search: int = EF_SEARCH,
    ):
        if kind not in KINDS:
            raise ParameterError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
        factors = np.asarray(factors)
        if factors.ndim != 2:
            raise ParameterError(f"factors must be (n_rows, k), got shape {factors.shape}")
        if allowed is not None and np.shape(allowed) != (len(factors),):
            raise ParameterError(
                f"allowed must be one bool per row ({len(factors)}), got shape {np.shape(allowed)}"
            )
        self.factors = factors
        self.allowed = None if allowed is None else np.asarray(allowed, dtype=bool)
        self.n_allowed = len(factors) if allowed is None else int(self.allowed.sum())
        self.kind = kind
        if kind == "auto":
            self.kind = "approximate" if self.n_allowed >= exact_below else "exact"
        self.ef_search = ef_search

    def __len__(self) -> int:
        return len(self.factors)

    @property
    def approximate(self) -> bool:
        return self.kind == "approximate"

    def search(
        self, query: np.ndarray, n: int, *, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The n best rows for `query` [shape=(k,)], best first, never an excluded one:
        (rows [shape=(min(n, available),)] int64, their exact scores), ties by row."""
        query = np.asarray(query)
        if query.shape != (self.factors.shape[1],):
            raise ParameterError(
                f"a query has {self.factors.shape[1]} factors, got shape {query.shape}"
            )
        exclude = np.zeros(0, dtype=np.int64) if exclude is None else np.asarray(exclude)
        exclude = exclude.astype(np.int64, copy=False)
        if self.approximate:
            found = self._search_graph(query, n, exclude)
            if found is not None:
                return found
        return self.exact(query, n, exclude=exclude)

    def search_many(
        self, queries: np.ndarray, n: int, *, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` for each row of `queries` [shape=(m, k)], the same exclusions for all:
        rows [shape=(m, n)] (-1 past what there is) and scores (-inf there)."""
        queries = np.atleast_2d(np.asarray(queries))
        rows = np.full((len(queries), n), -1, dtype=np.int64)
        scores = np.full((len(queries), n), -np.inf)
        for i, query in enumerate(queries):
            found, score = self.search(query, n, exclude=exclude)
            rows[i, : len(found)], scores[i, : len(found)] = found, score
        return rows, scores

    def exact(
        self, query: np.ndarray, n: int, *, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact answer: the product with every row, then `top_k`."""
        scores = self.factors @ query
        if self.allowed is not None:
            barred = np.flatnonzero(~self.allowed)
            exclude = barred if exclude is None else np.append(barred, exclude)
        rows = top_k(scores, n, exclude=exclude)
        return rows, scores[rows]

    # ------------------------------------------------------------------ the graph

    @cached_property
    def _rows(self) -> np.ndarray:
        """Catalogue row of each of the graph's nodes: the allowed rows with finite factors."""
        usable = np.isfinite(self.factors).all(axis=1)
        if self.allowed is not None:
            usable &= self.allowed
        return np.flatnonzero(usable)

    @cached_property
    def graph(self):
        """faiss.IndexHNSWFlat over the usable rows, float32, inner product (built once)."""
        import faiss

        graph = faiss.IndexHNSWFlat(self.factors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = EF_CONSTRUCTION
        graph.add(np.ascontiguousarray(self.factors[self._rows], dtype=np.float32))
        return graph

    def _search_graph(self, query, n, exclude) -> tuple[np.ndarray, np.ndarray] | None:
        """The graph's answer, re-scored exactly; None where it cannot be trusted to
        hold n rows after the exclusions (the caller then searches exactly)."""
        rows = self._rows
        excluded = np.unique(exclude[np.isin(exclude, rows)]) if len(exclude) else exclude
        want = min(n, len(rows) - len(excluded))
        if want <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.factors.dtype)
        fetch = want + len(excluded)
        if fetch > max(4 * self.ef_search, len(rows) // 4):
            return None  # asking the graph for most of its nodes: the product is cheaper
        graph = self.graph
        graph.hnsw.efSearch = max(self.ef_search, fetch)
        _, nodes = graph.search(np.ascontiguousarray(query[None, :], dtype=np.float32), fetch)
        nodes = nodes[0][nodes[0] >= 0]
        candidates = rows[nodes]
        if len(excluded):
            candidates = candidates[~np.isin(candidates, excluded)]
        if len(candidates) < want:
            return None
        scores = self.factors[candidates] @ query
        order = np.lexsort((candidates, -scores.astype(np.float64)))[:want]
        return candidates[order].astype(np.int64), scores[order]
