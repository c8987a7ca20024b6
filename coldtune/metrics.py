"""Per-user ranking metrics of section 5.2: average precision at 500 and ROC AUC.

Both take a dense score matrix (users x songs) and the songs each user actually played
(boolean, dense or sparse), and return one value per user, NaN where it is undefined,
so callers choose how to aggregate (the paper reports the mean over users). Work goes
over blocks of users: on a CPU the counting below is a compiled (numba) loop, on a GPU
(pass torch tensors there) a torch binary search.

One pass over the scores gives both metrics. Of a user's N scores only two counts per
relevant song j matter: g_j, the scores strictly above s_j, and e_j, the scores equal
to s_j (the song itself included). The song's average rank from the bottom is
N - g_j - (e_j - 1) / 2, which is all the AUC needs; the song's tie group occupies the
places g_j + 1 .. g_j + e_j of the ranking, which with the same counts among the
user's relevant songs alone is all AP@k needs. No top-k selection or sort of the row.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.errors import ParameterError

_BLOCK_ELEMENTS = 1 << 24  # users per block = this // n_songs: bounds temporary memory
# relevant songs per user above which one binary search per score (cost ~ log P, with
# a branch the CPU mispredicts) beats one comparison per (score, relevant song) (cost
# ~ P, vectorised): measured crossing near 142 on a 2-core EPYC, 46,728 songs (docs/
# benchmarks.md, "Evaluation kernel"). A GPU always searches.
_SEARCH_ABOVE = 144
# (scores x relevant songs) of a block below which one thread does all the counting
_PARALLEL_ABOVE = 1 << 22
# False: a CPU counts as a GPU does, by torch.searchsorted (the tests run both paths)
_COMPILED = True
# Songs per product tile in `ap_and_auc_of_factors`: each thread's tile (about 90 users x
# 8,192 songs, 3 MB) is counted while it is still in the cache. Measured on 2 cores
# (46,728 songs, 50 factors, 7 relevant songs a user): the whole evaluation of a block
# 1.11-1.34x its product alone with tiles of 4,096 songs, 1.06-1.23x with 8,192, 1.4x
# counting the block's product after it is written; 4,096 and 8,192 within the noise of
# each other in evaluate_scores (docs/benchmarks.md, "The product counted tile by tile").
_TILE_SONGS = 8192
# a user's product (50 factors) costs about as much as counting 11 relevant songs over
# the row, measured as above: the weight of the product when users are shared by threads
_PRODUCT_WORK = 11


def average_precision_at_k(scores, relevant, k: int = 500) -> np.ndarray:
    """Average precision of each user's ranking, cut off at `k` recommendations.

    scores : array [shape=(n_users, n_songs)], higher is recommended first.
    relevant : bool array or sparse matrix [shape=(n_users, n_songs)].
    k : int > 0, the cut-off (500 in the paper, as in the MSD Challenge).

    AP@k = (1 / min(k, n_relevant)) * sum_{j <= k} P@j * rel_j, the MSD Challenge's
    definition (McFee et al. 2012) that the paper's "mAP cut off at 500" follows: the
    normaliser min(k, n_relevant) is the best sum attainable in k places.

    Ties are treated as scikit-learn's `average_precision_score` treats them: a group of
    tied songs shares one precision, the precision at the end of the group. A group that
    straddles the cut-off contributes the expected share of its relevant songs above
    it, i.e. in proportion to its places above the cut-off. So when k >= n_songs the
    result equals `average_precision_score(relevant[u], scores[u])` exactly.

    Returns [shape=(n_users,)] float64; NaN for a user with no relevant song.
    """
    return ranking_metrics(scores, relevant, k=k)[0]


def roc_auc(scores, relevant) -> np.ndarray:
    """Area under the ROC curve of each user's ranking (ties count one half).

    scores, relevant : as in `average_precision_at_k`.
    Computed from the Mann-Whitney statistic with average ranks for ties, which equals
    scikit-learn's `roc_auc_score(relevant[u], scores[u])`.

    Returns [shape=(n_users,)] float64; NaN for a user whose songs are all relevant or
    all irrelevant.
    """
    return ranking_metrics(scores, relevant)[1]


def ranking_metrics(scores, relevant, *, k: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """AP@k and AUC of each user's ranking from one pass over the scores.

    scores, relevant, k : as in `average_precision_at_k`.
    Returns (average precision, AUC), each [shape=(n_users,)] float64 with the NaNs of
    `average_precision_at_k` and `roc_auc`.
    """
    k = _checked_k(k)
    scores_t = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(np.asarray(scores))
    if scores_t.ndim != 2:
        raise ParameterError(
            f"scores must be 2-D (n_users, n_songs), got shape {tuple(scores_t.shape)}"
        )
    if tuple(relevant.shape) != tuple(scores_t.shape):
        raise ParameterError(
            f"relevant has shape {tuple(relevant.shape)}, scores {tuple(scores_t.shape)}"
        )
    if not scores_t.is_floating_point():
        scores_t = scores_t.double()
    if isinstance(relevant, torch.Tensor):
        relevant = relevant.cpu().numpy()
    relevant = sp.csr_matrix(relevant)
    relevant.eliminate_zeros()
    n_users, n_songs = scores_t.shape
    block = max(1, _BLOCK_ELEMENTS // max(1, n_songs))
    ap, auc = [], []
    for lo in range(0, n_users, block):
        positives = Positives.from_csr(relevant[lo : lo + block], scores_t.device)
        block_ap, block_auc = ap_and_auc(scores_t[lo : lo + block], positives, k=k)
        ap.append(block_ap.cpu())
        auc.append(block_auc.cpu())
    if not ap:
        return np.zeros(0), np.zeros(0)
    return torch.cat(ap).numpy(), torch.cat(auc).numpy()


def _checked_k(k) -> int:
    if isinstance(k, bool) or not (isinstance(k, int | np.integer) and k > 0):
        raise ParameterError(f"k must be a positive integer, got {k!r}")
    return int(k)


class Positives:
    """The relevant songs of a block of users as a padded matrix of column indices.

    index : (B, P) long, the columns; padding repeats column 0
    mask : (B, P) bool, False on padding
    A user has few relevant songs among many, so kernels work on these (B, P) instead of
    a dense (B, N) relevance matrix.
    """

    def __init__(self, index: torch.Tensor, mask: torch.Tensor):
        self.index, self.mask = index, mask
        self.count = mask.sum(1)

    @classmethod
    def from_csr(cls, block: sp.csr_matrix, device: torch.device) -> Positives:
        lengths = np.diff(block.indptr)
        width = max(1, int(lengths.max()) if len(lengths) else 1)
        rows = np.repeat(np.arange(block.shape[0]), lengths)
        slots = np.arange(block.nnz) - np.repeat(block.indptr[:-1], lengths)
        index = np.zeros((block.shape[0], width), dtype=np.int64)
        mask = np.zeros((block.shape[0], width), dtype=bool)
        index[rows, slots] = block.indices
        mask[rows, slots] = True
        return cls(torch.from_numpy(index).to(device), torch.from_numpy(mask).to(device))

    def scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.gather(1, self.index)


def ap_and_auc(
    scores: torch.Tensor, positives: Positives, *, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """AP@k and AUC of a block of users (definitions in `average_precision_at_k`, `roc_auc`).

    scores : (B, N) float tensor; positives : the block's relevant songs, (B, P).
    Returns two (B,) float64 tensors on the scores' device.
    """
    k = _checked_k(k)
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # exact, and sums of +-1 stay exact
    n_pos = positives.count
    # Relevant scores s_j in descending order, padding last; `valid` marks real ones.
    relevant = torch.where(positives.mask, positives.scores(scores), -torch.inf)
    relevant = relevant.sort(1, descending=True).values
    valid = torch.arange(relevant.shape[1], device=scores.device) < n_pos[:, None]
    # D_j = g_j - l_j (scores above minus scores below s_j) and e_j, every relevant song
    sign_sum, equal = _relevant_counts(scores, relevant, valid, n_pos)
    return _from_counts(relevant, valid, n_pos, sign_sum, equal, n_songs=scores.shape[1], k=k)


def _from_counts(relevant, valid, n_pos, sign_sum, equal, *, n_songs: int, k: int):
    """AP@k and AUC [shape=(B,)] from the counts of each relevant song (`ap_and_auc`).

    relevant : (B, P) the relevant scores, descending, padding last; valid marks real ones;
    sign_sum, equal : (B, P) float64, D_j = g_j - l_j and e_j (padding: anything).
    """
    N = n_songs
    n_pos = n_pos.double()

    # AUC, Mann-Whitney U over average ranks: rank_j = l_j + (e_j + 1) / 2 = (N + 1 - D_j) / 2
    rank_sum = torch.where(valid, (N + 1 - sign_sum) / 2, 0.0).sum(1)
    n_neg = N - n_pos
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc = torch.where((n_pos > 0) & (n_neg > 0), auc, torch.nan)

    # AP@k: song j's tie group fills places g_j + 1 .. g_j + e_j (N = g_j + l_j + e_j, so
    # g_j = (N + D_j - e_j) / 2) and shares the precision at its end, (relevant songs
    # scoring >= s_j) / (g_j + e_j). A group straddling the cut-off counts in
    # proportion to its places above it: (k - g_j) / e_j of them.
    equal = torch.where(valid, equal, 1.0)
    above = (N + sign_sum - equal) / 2  # g_j
    share = ((k - above) / equal).clamp(0.0, 1.0)
    # relevant songs scoring >= s_j: a binary search in the sorted relevant scores
    # (ascending once negated; the padding, +inf there, is never counted)
    descending = -relevant
    relevant_through = torch.searchsorted(descending, descending, right=True)
    precision = relevant_through / (above + equal)
    # summed in slot order, so a user's AP does not depend on the padding of its block
    ap = torch.where(valid, share * precision, 0.0).cumsum(1)[:, -1] / n_pos.clamp(max=k)
    ap = torch.where(n_pos > 0, ap, torch.nan)
    return ap, auc


def _relevant_counts(
    scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor, n_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, e) [shape=(B, P)] float64 for `ap_and_auc`: D_j = g_j - l_j and e_j for every
    relevant song (padding slots are left 0).

    On a GPU, one binary search per score for the whole block. On a CPU, a compiled
    kernel (numba) walks each user's row once per relevant song, counting the scores
    above and below it in registers: one read of the row from the cache per song, no
    temporaries. Above _SEARCH_ABOVE relevant songs it places each score among the
    sorted relevant ones instead. Torch's threads each take their own users, split by
    the work (sum of P) so that neither waits for the other.
    """
    if scores.device.type != "cpu" or not _COMPILED:
        return _counts_by_searching(scores, relevant, valid)
    B, N = scores.shape
    sign_sum = torch.zeros(relevant.shape, dtype=torch.float64)
    equal = torch.zeros(relevant.shape, dtype=torch.float64)
    counts = n_pos.numpy().astype(np.int64)
    arrays = (
        scores.contiguous().numpy(),
        relevant.to(scores.dtype).contiguous().numpy(),
        counts,
        sign_sum.numpy(),
        equal.numpy(),
    )
    kernel = _count_kernel()
    parts = _parts(counts, N, min(torch.get_num_threads(), B))
    if len(parts) == 1:
        kernel(*arrays, _SEARCH_ABOVE)
        return sign_sum, equal
    # the kernel releases the GIL
    list(
        _pool(len(parts)).map(lambda rows: kernel(*(a[rows] for a in arrays), _SEARCH_ABOVE), parts)
    )
    return sign_sum, equal


def ap_and_auc_of_factors(
    users: torch.Tensor, songs_t: torch.Tensor, positives: Positives, *, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ap_and_auc` of the scores x_u^T y_i, without the block's score matrix.

    users : (B, F) the block's user factors; songs_t : (F, N) the song factors, one
    column a song (contiguous: MKL's product of one thread is 1.3x faster on it than on
    the transpose of an (N, F) matrix, measured).
    On a CPU the product is computed _TILE_SONGS songs at a time and each tile counted
    while it is in the cache: the counts g_j, l_j and e_j are sums over songs, so the
    tiles' counts add up, and the block's (B, N) scores never go out to memory and back.
    A relevant song's own score comes from one product over the block's relevant
    columns; it must be the very value its tile holds, or the song would not tie with
    itself, so each one is checked against its tile, and a user where any differs (a
    BLAS rounding a column differently in another product) is counted again from a full
    row of its own. Elsewhere (a GPU, other dtypes, `_COMPILED` off): the product, then
    `ap_and_auc`. Returns two (B,) float64 tensors.
    """
    k = _checked_k(k)
    on_cpu = users.device.type == "cpu" and songs_t.device.type == "cpu"
    if not (_COMPILED and on_cpu and users.dtype == songs_t.dtype == torch.float32):
        return ap_and_auc(users @ songs_t, positives, k=k)
    B, N = users.shape[0], songs_t.shape[1]
    n_pos = positives.count
    own = _own_scores(users, songs_t, positives)
    relevant, order = torch.where(positives.mask, own, -torch.inf).sort(1, descending=True)
    valid = torch.arange(relevant.shape[1]) < n_pos[:, None]
    counts = n_pos.numpy().astype(np.int64)
    searched = counts > _SEARCH_ABOVE
    width = relevant.shape[1] + 1 if searched.any() else 1
    above, below = np.zeros(relevant.shape), np.zeros(relevant.shape)
    seen = np.full(relevant.shape, np.nan, dtype=np.float32)
    right, left = np.zeros((B, width), np.int64), np.zeros((B, width), np.int64)
    arrays = (
        relevant.contiguous().numpy(),
        positives.index.gather(1, order).numpy(),
        counts,
        above,
        below,
        seen,
        right,
        left,
    )
    kernel = _tile_kernel()

    def count(rows: slice) -> None:  # a share of the users, every tile of songs
        share = users[rows]
        buffer = torch.empty(share.shape[0] * min(N, _TILE_SONGS), dtype=torch.float32)
        for lo in range(0, N, _TILE_SONGS):
            hi = min(N, lo + _TILE_SONGS)
            tile = buffer[: share.shape[0] * (hi - lo)].view(share.shape[0], hi - lo)
            torch.mm(share, songs_t[:, lo:hi], out=tile)
            kernel(tile.numpy(), lo, *(a[rows] for a in arrays), _SEARCH_ABOVE)

    threads = torch.get_num_threads()
    parts = _parts(counts + _PRODUCT_WORK, N, min(threads, B))
    if len(parts) == 1:
        count(parts[0])
    else:
        # each thread its own users' products and counts, torch's product on one thread
        # in each: the tiles stay in that core's cache (1.1x against 1.2x and more for
        # torch's two threads on each tile, then the counts split; docs/benchmarks.md)
        torch.set_num_threads(1)
        try:
            list(_pool(len(parts)).map(count, parts))  # both release the GIL
        finally:
            torch.set_num_threads(threads)
    sign_sum, equal = above - below, N - above - below
    for u in np.flatnonzero(searched):  # the histograms' places, as `_count_kernel`
        P = counts[u]
        under, over = np.cumsum(right[u, :P]), N - np.cumsum(left[u, :P])
        sign_sum[u, P - 1 :: -1], equal[u, P - 1 :: -1] = over - under, N - over - under
    ap, auc = _from_counts(
        relevant,
        valid,
        n_pos,
        torch.from_numpy(sign_sum),
        torch.from_numpy(equal),
        n_songs=N,
        k=k,
    )
    differs = np.flatnonzero((valid.numpy() & ~(seen == arrays[0])).any(1))
    if len(differs):
        again = Positives(positives.index[differs], positives.mask[differs])
        ap[differs], auc[differs] = ap_and_auc(users[differs] @ songs_t, again, k=k)
    return ap, auc


def _own_scores(users: torch.Tensor, songs_t: torch.Tensor, positives: Positives) -> torch.Tensor:
    """(B, P) each user's scores of their relevant songs: one product over the block's
    relevant columns (the same kernel as the tiles', so on MKL the same bits)."""
    columns, inverse = torch.unique(positives.index, return_inverse=True)
    return (users @ songs_t[:, columns]).gather(1, inverse)


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """Threads kept for the process: a pool started for each block cost about 15 ms a
    block, as much as the block's product (each new thread sets up torch's state). One
    per process id: a forked child has none of its parent's threads, and work handed to
    the parent's pool there would never run."""
    key = (os.getpid(), workers)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="coldtune-metrics")
    return _POOLS[key]


def _parts(counts: np.ndarray, n_songs: int, workers: int) -> list[slice]:
    """Consecutive users for each thread, split by the work (relevant songs x songs) so
    that neither waits for the other; one part when the work is too small to share."""
    work = np.cumsum(counts * n_songs, dtype=np.float64)
    B = len(counts)
    if workers < 2 or not B or work[-1] < _PARALLEL_ABOVE:
        return [slice(0, B)]
    cuts = np.searchsorted(work, work[-1] * np.arange(1, workers) / workers)
    return [slice(a, b) for a, b in zip([0, *cuts], [*cuts, B], strict=True) if b > a]


@functools.cache
def _tile_kernel():
    """The CPU kernel of `ap_and_auc_of_factors`: `_count_kernel`'s counting over one
    tile of songs (columns offset .. offset + W), added to the running counts: above and
    below each relevant score, or, for users above search_above relevant songs, the
    histograms of their places among the sorted relevant scores; and each relevant
    song's own value where its column lies in the tile (`seen`)."""
    import numba

    above_below = _passes(np.float32)  # a tile's counts stay below 2^24: exact
    place = _places()

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def count(tile, offset, relevant, columns, n_pos, above, below, seen, right, left, search):
        B, W = tile.shape
        for u in range(B):
            row, P = tile[u], n_pos[u]
            for j in range(P):
                c = columns[u, j] - offset
                if 0 <= c < W:
                    seen[u, j] = row[c]
            if P <= search:
                for j in range(P):  # the tile's row stays in the cache between songs
                    a, b = above_below(row, relevant[u, j])
                    above[u, j] += a
                    below[u, j] += b
                continue
            place(row, relevant[u, :P][::-1].copy(), right[u], left[u])  # ascending

    return count


@functools.cache
def _places():
    """A loop placing each score of a row among the ascending scores a by binary search:
    right[c] counts the scores with c of a <= s, left[c] those with c of a < s."""
    import numba

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def place(row, a, right, left):
        P = a.shape[0]
        for i in range(row.shape[0]):
            s, lo, hi = row[i], 0, P
            while lo < hi:
                mid = (lo + hi) >> 1
                if a[mid] <= s:
                    lo = mid + 1
                else:
                    hi = mid
            right[lo] += 1
            while lo > 0 and a[lo - 1] == s:
                lo -= 1
            left[lo] += 1

    return place


@functools.cache
def _passes(kind):
    """A loop counting the entries of a row above and below t, in `kind` lanes.

    Each lane type's loop is compiled under a name of its own (above_below_float32,
    _float64): numba names the machine code of a closure by its qualified name and a
    counter, so the float32 loop loaded from the disk cache and a float64 loop compiled
    in the same process could take the same name, and a kernel calling the second ran
    the first (numba refused it: "returns [2 x float] but resty=[2 x double]", seen when
    an evaluation had cached the float32 loop before a CNN's first validation)."""
    import numba

    def above_below(row, t):
        above, below = kind(0), kind(0)
        for i in range(row.shape[0]):  # vectorised by LLVM
            above += kind(row[i] > t)
            below += kind(row[i] < t)
        return above, below

    above_below.__name__ += f"_{np.dtype(kind).name}"
    above_below.__qualname__ += f"_{np.dtype(kind).name}"
    return numba.njit(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc"})(above_below)


@functools.cache
def _count_kernel():
    """The CPU kernel of `_relevant_counts`, compiled by numba on first use (and cached
    on disk by numba, so later processes load it).

    The comparing loop counts in float32: LLVM vectorises a sum of 0.0/1.0 floats (8 at
    a time, 3.3x faster than the same count in integers, measured), and the sums are
    exact while below 2^24; only re-association is allowed (`reassoc`: the order of the
    additions, which exact sums do not see), not the other fast-math assumptions (no
    NaN or infinity), so comparisons keep their IEEE meaning. Rows of 2^24 songs or more
    count in float64."""
    import numba

    exact32, exact64 = _passes(np.float32), _passes(np.float64)
    place = _places()

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def count(scores, relevant, n_pos, sign_sum, equal, search_above):
        B, N = scores.shape
        for u in range(B):
            row, P = scores[u], n_pos[u]
            if P <= search_above:
                for j in range(P):  # the row stays in the cache between songs
                    if N < 1 << 24:
                        above, below = exact32(row, relevant[u, j])
                    else:
                        above, below = exact64(row, relevant[u, j])
                    sign_sum[u, j] = above - below
                    equal[u, j] = N - above - below
                continue
            # relevant[u, :P] descends; a = its reverse ascends. right[c]: scores with c
            # of a <= s; left[c]: scores with c of a < s.
            right = np.zeros(P + 1, np.int64)
            left = np.zeros(P + 1, np.int64)
            place(row, relevant[u, :P][::-1].copy(), right, left)
            under, over = 0, N
            for m in range(P):  # s < a_m iff (#a <= s) <= m; s > a_m iff (#a < s) > m
                under += right[m]
                over -= left[m]
                sign_sum[u, P - 1 - m] = over - under
                equal[u, P - 1 - m] = N - over - under

    return count


def _counts_by_searching(
    scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, e) by placing every score among the sorted relevant ones (binary search).

    With the relevant scores ascending, r_1 <= .. <= r_P, a score s has below(s) of
    them < s and through(s) of them <= s; then g_m = #{s : below(s) > m} and
    g_m + e_m = #{s : through(s) > m}, from a histogram of each.
    """
    b, N = scores.shape
    P = relevant.shape[1]
    ascending = torch.where(valid, relevant, torch.inf).sort(1).values
    above, at_or_above = (
        _exceeding(torch.searchsorted(ascending, scores, right=right), P) for right in (False, True)
    )
    # ascending place of each descending slot j: n_pos - 1 - j
    place = (valid.sum(1, keepdim=True) - 1 - torch.arange(P, device=scores.device)).clamp(min=0)
    above, at_or_above = above.gather(1, place), at_or_above.gather(1, place)
    equal = (at_or_above - above).double()
    return 2 * above.double() + equal - N, equal


def _exceeding(places: torch.Tensor, P: int) -> torch.Tensor:
    """For each m < P, how many entries of each row of `places` (b, N) exceed m."""
    b, N = places.shape
    histogram = torch.zeros(b, P + 1, dtype=torch.int64, device=places.device)
    histogram.scatter_add_(1, places, torch.ones_like(places))
    return N - histogram.cumsum(1)[:, :P]
