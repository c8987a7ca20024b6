"""Per-user ranking metrics of section 5.2: average precision at 500 and ROC AUC.

Both take a dense score matrix (users x songs) and the songs each user actually played
(boolean, dense or sparse), and return one value per user, NaN where it is undefined,
so callers choose how to aggregate (the paper reports the mean over users). Work is
vectorised in torch over blocks of users; pass torch tensors on a GPU to run there.

One pass over the scores gives both metrics. Of a user's N scores only two counts per
relevant song j matter: g_j, the scores strictly above s_j, and e_j, the scores equal
to s_j (the song itself included). The song's average rank from the bottom is
N - g_j - (e_j - 1) / 2, which is all the AUC needs; the song's tie group occupies the
places g_j + 1 .. g_j + e_j of the ranking, which with the same counts among the
user's relevant songs alone is all AP@k needs. No top-k selection or sort of the row.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.errors import ParameterError

_BLOCK_ELEMENTS = 1 << 24  # users per block = this // n_songs: bounds temporary memory
# (users x relevant songs x songs) per comparing pass: a few MiB, so each pass works
# in the CPU's cache; a GPU gets one pass per block.
_CHUNK_ELEMENTS = 1 << 20
_GPU_CHUNK_ELEMENTS = 1 << 27
# relevant songs per user above which one binary search per score (cost ~ log P) beats
# one comparison per (score, relevant song) (cost ~ P) on a CPU; torch.searchsorted is
# scalar code there, one comparison pass is vectorised. A GPU always searches.
_SEARCH_ABOVE = 128


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
    B, N = scores.shape
    n_pos = positives.count
    # Relevant scores s_j in descending order, padding last; `valid` marks real ones.
    relevant = torch.where(positives.mask, positives.scores(scores), -torch.inf)
    relevant = relevant.sort(1, descending=True).values
    valid = torch.arange(relevant.shape[1], device=scores.device) < n_pos[:, None]
    # D_j = g_j - l_j (scores above minus scores below s_j) for every relevant song, and
    # e_j where song j may lie in the top k (NaN elsewhere: there g_j >= k for sure).
    sign_sum, equal = _relevant_counts(scores, relevant, valid, n_pos, k)
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
    known = valid & ~equal.isnan()
    equal = torch.where(known, equal, 1.0)
    above = (N + sign_sum - equal) / 2  # g_j
    share = ((k - above) / equal).clamp(0.0, 1.0)
    relevant_through = ((relevant[:, None, :] >= relevant[:, :, None]) & valid[:, None, :]).sum(2)
    precision = relevant_through / (above + equal)
    # summed in slot order, so a user's AP does not depend on the padding of its block
    ap = torch.where(known, share * precision, 0.0).cumsum(1)[:, -1] / n_pos.clamp(max=k)
    ap = torch.where(n_pos > 0, ap, torch.nan)
    return ap, auc


def _relevant_counts(
    scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor, n_pos: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, e) [shape=(B, P)] float64 for `ap_and_auc`.

    D_j for every relevant song; e_j wherever song j may reach the top k, NaN elsewhere
    (there g_j >= k for sure). Users go in groups of similar P, so little is padding.
    """
    B, N = scores.shape
    counts = n_pos.cpu().numpy()
    if np.any(np.diff(counts) < 0):  # the protocol hands users in this order already
        perm = torch.from_numpy(np.argsort(counts, kind="stable")).to(scores.device)
        sign_sum, equal = _relevant_counts(
            scores[perm], relevant[perm], valid[perm], n_pos[perm], k
        )
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(B, device=scores.device)
        return sign_sum[inverse], equal[inverse]
    sign_sum = torch.zeros(relevant.shape, dtype=torch.float64, device=scores.device)
    equal = torch.full(relevant.shape, torch.nan, dtype=torch.float64, device=scores.device)
    lo = int(np.searchsorted(counts, 1))  # users without relevant songs need no pass
    # On a CPU, each of torch's threads takes its own users, one thread per pass: a pass
    # takes a fraction of a millisecond, and threads splitting every pass wait for each
    # other whenever another process holds a core (measured 2-3x slower on 2 shared cores).
    workers = min(torch.get_num_threads(), B - lo) if scores.device.type == "cpu" else 1
    work = np.cumsum(counts[lo:])
    cuts = lo + np.searchsorted(work, work[-1] * np.arange(1, workers) / workers) if B > lo else []
    parts = [slice(a, b) for a, b in zip([lo, *cuts], [*cuts, B], strict=True) if b > a]

    def count(rows: slice) -> None:
        _count_users(
            scores[rows], relevant[rows], valid[rows], counts[rows], k, sign_sum[rows], equal[rows]
        )

    if len(parts) < 2:
        for rows in parts:
            count(rows)
        return sign_sum, equal
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(count, parts))
    finally:
        torch.set_num_threads(threads)
    return sign_sum, equal


def _count_users(
    scores: torch.Tensor,
    relevant: torch.Tensor,
    valid: torch.Tensor,
    counts: np.ndarray,
    k: int,
    sign_sum: torch.Tensor,
    equal: torch.Tensor,
) -> None:
    """Fill sign_sum and equal (as in `_relevant_counts`) for users sorted by count >= 1."""
    B, N = scores.shape
    buffer = torch.empty(
        max(N, _chunk_elements(scores.device)), dtype=scores.dtype, device=scores.device
    )
    lo = 0
    while lo < B:
        hi = lo + int(np.searchsorted(counts[lo:], counts[lo] + counts[lo] // 4, side="right"))
        rows, P = slice(lo, hi), int(counts[hi - 1])
        if _counts_method(scores.device, P) == "search":
            d, e = _counts_by_searching(scores[rows], relevant[rows, :P], valid[rows, :P])
            equal[rows, :P] = e
        else:  # e for the top song now; for the others that may reach the top k below
            d, e = _sign_passes(scores[rows], relevant[rows, :P], buffer, equal_slots=1)
            equal[rows, :1] = e
        sign_sum[rows, :P] = d
        lo = hi

    # Song j may reach the top k if song j - 1 may, and either ties with it or has fewer
    # than k scores at or above it (at least (N + D + 1) / 2 are, so: if D < 2k - N - 1).
    # Otherwise g_j >= (scores >= s_{j-1}) >= k. So those needing e_j are a prefix.
    continues = (sign_sum[:, :-1] < 2 * k - N - 1) | (relevant[:, 1:] == relevant[:, :-1])
    reach = torch.cat([valid[:, :1], continues], 1).cummin(1).values & valid
    # those still without e_j: slots 1 .. width of each user (slot 0 is done)
    missing = reach & equal.isnan()
    width = missing.sum(1).cpu().numpy()
    order = np.argsort(width, kind="stable")
    order = order[width[order] > 0]
    lo = 0
    while lo < len(order):  # again in groups of similar width
        hi = lo + int(np.searchsorted(width[order[lo:]], width[order[lo]] * 5 // 4, side="right"))
        users = torch.from_numpy(order[lo:hi]).to(scores.device)
        cols = slice(1, 1 + int(width[order[hi - 1]]))
        _, e = _sign_passes(
            scores[users], relevant[users, cols], buffer, equal_slots=cols.stop - 1, sums=False
        )
        equal[users, cols] = torch.where(missing[users, cols], e, equal[users, cols])
        lo = hi


def _chunk_elements(device: torch.device) -> int:
    return _CHUNK_ELEMENTS if device.type == "cpu" else _GPU_CHUNK_ELEMENTS


def _counts_method(device: torch.device, n_slots: int) -> str:
    return "compare" if device.type == "cpu" and n_slots <= _SEARCH_ABOVE else "search"


def _sign_passes(
    scores: torch.Tensor,
    thresholds: torch.Tensor,
    buffer: torch.Tensor,
    *,
    equal_slots: int,
    sums: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """D = sum_i sign(s_i - t) for each threshold t, one vectorised pass each.

    scores : (b, N); thresholds : (b, P); buffer : scratch, a few MiB.
    Also e = N - sum_i |sign(s_i - t)| = #{i : s_i = t} for the first `equal_slots`.
    Returns D [shape=(b, P)] (unset unless `sums`) and e [shape=(b, equal_slots)], float64.
    """
    b, N = scores.shape
    P = thresholds.shape[1]
    # sums of +-1 are exact in float32 up to 2^24
    exact = torch.float64 if N >= 1 << 24 and scores.dtype != torch.float64 else None
    sign_sum = torch.empty(b, P, dtype=torch.float64, device=scores.device)
    equal = torch.empty(b, equal_slots, dtype=torch.float64, device=scores.device)
    per_chunk = max(1, buffer.numel() // (P * N))
    for lo in range(0, b, per_chunk):
        hi = min(b, lo + per_chunk)
        step = max(1, buffer.numel() // ((hi - lo) * N))
        for a in range(0, P, step):
            z = min(P, a + step)
            signs = buffer[: (hi - lo) * (z - a) * N].view(hi - lo, z - a, N)
            torch.sub(scores[lo:hi, None, :], thresholds[lo:hi, a:z, None], out=signs).sign_()
            if sums:
                sign_sum[lo:hi, a:z] = signs.sum(2, dtype=exact)
            if a < equal_slots:
                c = min(z, equal_slots) - a
                equal[lo:hi, a : a + c] = N - signs[:, :c].abs_().sum(2, dtype=exact)
    return sign_sum, equal


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
