"""The rows of a factor matrix with the highest inner product with a query.

Every "which songs" question of the catalogue (similar songs, a user's recommendations,
a new clip's nearest songs, a song's likely listeners) is a top-n by inner product over
the rows of one matrix. Up to a few hundred thousand rows the product with every row is
the answer, in a few milliseconds; at a million rows it is tens of milliseconds per
question, and a service wants less. `SongIndex` answers both ways:

- exact: `top_k(factors @ query)`, the very arithmetic the catalogue has always done
  (the same rows, in the same order, with the same scores);
- approximate: faiss's inverted file (IVF-Flat: the rows grouped around k-means
  centres by inner product; a query scans the rows of the groups whose centres score
  highest), asked for more candidates than wanted; the candidates are scored exactly
  again, the excluded ones dropped, and ranked as `top_k` ranks. Where too few
  candidates are left (many exclusions, a search that came back short), the exact
  answer is given instead, so exclusions hold whatever the index does.

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
`similar` (two searches) stays well inside a 20 ms budget, exactly, and with no index
to build."""

PROBED = 0.125
"""Share of the inverted file's groups a query scans, for unit rows (`similar`'s usage
and predicted spaces); the groups number about sqrt(rows) (1,000 at a million).
Measured at a million clustered songs x 50 (bench_index.py's generator: 2,000 centres,
spread 1), recall@10 of the re-ranked answer against the exact one: 0.957 scanning 64
of 1,024 groups, 0.982 with 128, 0.997 with 256 (docs/benchmarks.md)."""

RANKING_PROBED = 0.25
"""The same for raw inner products (`recommend`'s scoring factors and `listeners`),
whose rows differ in length: at a million songs as above and Gaussian users, 0.867
scanning 64 of 1,024 groups, 0.936 with 128 and 0.981 with 256. faiss's HNSW graph,
used before, reached 0.818 there with efSearch 512 after a build of 109 s (the
inverted file: 9 s)."""


RECALL = 0.97
"""Mean recall@10 against the exact answer that an index given sample `queries` must
reach on them: from `probed` up, the share of groups scanned grows by half until it
does. The issue asks 0.95; 0.97 on a sample of 100 leaves room for the sample's error
(at a million songs x 400 factors the fixed 0.25 gave 0.944, docs/benchmarks.md)."""

CALIBRATION_QUERIES = 100
"""Sample queries an index is calibrated on (a catalogue's `_sample_queries`)."""

MIN_SCANNED = 4096
"""Rows a query scans at the least, whatever `probed` says: every row of a small
catalogue, so that there the answer is the exact one."""


def _groups(n_rows: int) -> int:
    """Groups of the inverted file: about the square root of the rows (faiss's usual
    order), so a query's scan of the centres costs no more than that of one group."""
    return max(1, int(round(np.sqrt(n_rows))))


class SongIndex:
    """Top-n rows of `factors` [shape=(n_rows, k)] by inner product with a query.

    factors : the rows to search, any float dtype (the exact path computes in it).
    allowed : [shape=(n_rows,)] bool, rows that may be returned (None: every row).
        Rows with a non-finite factor are never returned by the approximate path; the
        exact one gives them a NaN score, which `top_k` never ranks.
    kind : "exact", "approximate", or "auto" (approximate from `exact_below` allowed rows).
    probed : share of the inverted file's groups a query scans, in (0, 1]; with
        `queries`, the least share tried.
    queries : [shape=(m, k)] questions like those the index will be asked (users for
        recommendations, songs for similar songs), or None. When the inverted file is
        built, the share scanned is raised until the answers to these reach `RECALL`
        (`calibration` records each share tried and its recall).
    """

    def __init__(
        self,
        factors: np.ndarray,
        *,
        allowed: np.ndarray | None = None,
        kind: str = "auto",
        exact_below: int = EXACT_BELOW,
        probed: float = PROBED,
        queries: np.ndarray | None = None,
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
        if not 0 < probed <= 1:
            raise ParameterError(f"probed must be in (0, 1], got {probed!r}")
        self.probed = probed
        if queries is not None and np.shape(queries)[1:] != (factors.shape[1],):
            raise ParameterError(
                f"queries must be (m, {factors.shape[1]}), got shape {np.shape(queries)}"
            )
        self.queries = queries
        self.calibration: list[tuple[int, float]] = []  # (groups scanned, recall@10)

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
            found = self._search_groups(query, n, exclude)
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

    # ------------------------------------------------------------------ the inverted file

    @cached_property
    def _usable(self) -> np.ndarray:
        """[shape=(n_rows,)] bool: the rows the index holds, the allowed ones with finite
        factors."""
        usable = np.isfinite(self.factors).all(axis=1)
        if self.allowed is not None:
            usable &= self.allowed
        return usable

    @cached_property
    def _rows(self) -> np.ndarray:
        """Catalogue row of each of the index's entries."""
        return np.flatnonzero(self._usable)

    @cached_property
    def groups(self):
        """faiss.IndexIVFFlat over the usable rows, float32, inner product (built once:
        k-means of the centres on up to 100 rows per group, then every row assigned)."""
        import faiss

        data = np.ascontiguousarray(self.factors[self._rows], dtype=np.float32)
        n_groups = _groups(len(data))
        centres = faiss.IndexFlatIP(data.shape[1])
        index = faiss.IndexIVFFlat(centres, data.shape[1], n_groups, faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = 100  # k-means on a sample: seconds at 1M rows
        index.cp.min_points_per_centroid = 1  # a few rows (a test, a small catalogue) too
        index.train(data)
        index.add(data)
        if self.queries is not None and len(self.queries):
            self._calibrate(index, data)
        return index

    def _calibrate(self, index, data: np.ndarray, n: int = 10) -> None:
        """Raise `probed` by half until the sample queries' mean recall@n reaches RECALL
        (or every group is scanned); the recall of the re-scored answer is that of the
        candidates the inverted file returns, as `_search_groups` asks n of them."""
        queries = np.ascontiguousarray(self.queries, dtype=np.float32)
        n = min(n, len(data))
        exact = np.empty((len(queries), n), dtype=np.int64)
        for lo in range(0, len(queries), 16):  # (16 x rows) scores at a time
            scores = queries[lo : lo + 16] @ data.T
            exact[lo : lo + 16] = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        while True:
            index.nprobe = self._probes_of(index)
            _, found = index.search(queries, n)
            recall = float(
                np.mean([len(np.intersect1d(f, e)) / n for f, e in zip(found, exact, strict=True)])
            )
            self.calibration.append((index.nprobe, recall))
            if recall >= RECALL or index.nprobe >= index.nlist:
                return
            self.probed = min(1.0, self.probed * 1.5)

    @property
    def probes(self) -> int:
        """Groups a query scans: `probed` of them, and at least MIN_SCANNED rows' worth."""
        return self._probes_of(self.groups)

    def _probes_of(self, index) -> int:
        n_groups, n_rows = index.nlist, max(1, len(self._rows))
        least = int(np.ceil(MIN_SCANNED * n_groups / n_rows))
        return min(n_groups, max(1, least, int(np.ceil(self.probed * n_groups))))

    def _search_groups(self, query, n, exclude) -> tuple[np.ndarray, np.ndarray] | None:
        """The inverted file's answer, re-scored exactly; None where it cannot be trusted
        to hold n rows after the exclusions (the caller then searches exactly)."""
        rows = self._rows
        # the excluded rows that the index holds, looked up in a mask: np.isin against
        # the million rows took 2-5 ms a query, more than the search
        inside = exclude[(exclude >= 0) & (exclude < len(self._usable))]
        excluded = np.unique(inside[self._usable[inside]])
        want = min(n, len(rows) - len(excluded))
        if want <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.factors.dtype)
        fetch = want + len(excluded)
        if fetch > max(1024, len(rows) // 4):
            return None  # asking for most of the rows: the product is cheaper
        self.groups.nprobe = self.probes
        _, found = self.groups.search(np.ascontiguousarray(query[None, :], dtype=np.float32), fetch)
        candidates = rows[found[0][found[0] >= 0]]
        if len(excluded):
            candidates = candidates[~np.isin(candidates, excluded)]
        if len(candidates) < want:
            return None
        scores = self.factors[candidates] @ query
        order = np.lexsort((candidates, -scores.astype(np.float64)))[:want]
        return candidates[order].astype(np.int64), scores[order]
