"""Per-user ranking metrics of section 5.2: average precision at 500 and ROC AUC.

Both take a dense score matrix (users x songs) and the songs each user actually played
(boolean, dense or sparse), and return one value per user, NaN where it is undefined,
so callers choose how to aggregate (the paper reports the mean over users). Work is
vectorised in torch over blocks of users; pass torch tensors on a GPU to run there.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from coldtune.errors import ParameterError

_BLOCK_ELEMENTS = 1 << 24  # users per block = this // n_songs: bounds temporary memory


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
    if not (isinstance(k, int | np.integer) and k > 0):
        raise ParameterError(f"k must be a positive integer, got {k!r}")
    return _per_block(scores, relevant, lambda s, r: _ap_at_k(s, r, int(k)))


def roc_auc(scores, relevant) -> np.ndarray:
    """Area under the ROC curve of each user's ranking (ties count one half).

    scores, relevant : as in `average_precision_at_k`.
    Computed from the Mann-Whitney statistic with average ranks for ties, which equals
    scikit-learn's `roc_auc_score(relevant[u], scores[u])`.

    Returns [shape=(n_users,)] float64; NaN for a user whose songs are all relevant or
    all irrelevant.
    """
    return _per_block(scores, relevant, _auc)


def _per_block(scores, relevant, metric) -> np.ndarray:
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
    out = []
    for lo in range(0, n_users, block):
        positives = Positives.from_csr(relevant[lo : lo + block], scores_t.device)
        out.append(metric(scores_t[lo : lo + block], positives).cpu())
    if not out:
        return np.zeros(0)
    return torch.cat(out).numpy()


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


def _ap_at_k(scores: torch.Tensor, positives: Positives, k: int) -> torch.Tensor:
    """AP@k for a block of users (see average_precision_at_k). scores: (B, N)."""
    B, N = scores.shape
    k = min(k, N)
    n_pos = positives.count.double()
    # One place more than k shows whether the last tie group runs past the cut-off.
    vals, idx = scores.topk(min(k + 1, N), dim=1)  # (B, k [+1]), descending
    straddles = vals[:, k] == vals[:, k - 1] if N > k else torch.zeros(B, dtype=torch.bool)
    vals, idx = vals[:, :k], idx[:, :k]
    # padding goes to a spare last column, so it cannot overwrite a relevant column 0
    relevant = torch.zeros(B, N + 1, dtype=torch.bool, device=scores.device)
    relevant.scatter_(1, torch.where(positives.mask, positives.index, N), True)
    r = relevant.gather(1, idx).double()

    v = vals[:, -1:]  # value of the last tie group in the top k
    start_last = (vals > v).sum(1).double()  # every score above v is in the top k
    size_last = (vals == v).sum(1).double()
    if bool(straddles.any()):  # rare: measure the group on the whole row
        rows = straddles.nonzero(as_tuple=True)[0]
        size_last[rows] = (scores[rows] == v[rows]).sum(1).double()
    pos_scores = positives.scores(scores)
    pos_last = ((pos_scores == v) & positives.mask).sum(1).double()
    pos_before_last = ((pos_scores > v) & positives.mask).sum(1).double()

    new_group = torch.ones_like(vals, dtype=torch.bool)
    new_group[:, 1:] = vals[:, 1:] != vals[:, :-1]
    group = new_group.long().cumsum(1) - 1  # (B, k)
    places = torch.arange(k, device=scores.device).expand(B, k)
    group_end = torch.zeros_like(group).scatter_reduce(1, group, places, "amax", include_self=False)
    end = group_end.gather(1, group)  # last place of each place's group
    precision_at_end = r.cumsum(1).gather(1, end) / (end + 1).double()
    in_last = vals == v
    main = (r * precision_at_end * ~in_last).sum(1)
    last = (
        pos_last
        * (k - start_last)
        / size_last
        * (pos_before_last + pos_last)
        / (start_last + size_last)
    )
    ap = (main + last) / n_pos.clamp(max=k)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, float("nan")))


_SORT_ABOVE = 48  # relevant songs per user above which sorting the row is cheaper


def _auc(scores: torch.Tensor, positives: Positives) -> torch.Tensor:
    """ROC AUC for a block of users: Mann-Whitney U over average ranks. (B, N) -> (B,)

    The statistic needs only the average rank of each relevant song among the N,
    rank = (number of lower scores) + (number of equal scores + 1) / 2, equal counting
    the song itself. With few relevant songs per user it is cheapest to count them
    directly; with many, to sort the row once and binary-search it.
    """
    B, N = scores.shape
    n_pos = positives.count.double()
    n_neg = N - n_pos
    rank = _AUC_RANKS[_auc_method(scores, positives)](scores, positives.scores(scores))
    rank_sum = (rank * positives.mask).sum(1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


def _auc_method(scores: torch.Tensor, positives: Positives) -> str:
    if positives.index.shape[1] > _SORT_ABOVE:
        return "sort"
    # numpy's compare-and-count runs about 6x faster than torch's on a CPU
    return "count" if scores.device.type == "cpu" else "sign"


def _ranks_by_counting(scores: torch.Tensor, pos_scores: torch.Tensor) -> torch.Tensor:
    s, q = scores.numpy(), pos_scores.numpy()
    rank = np.empty(q.shape, dtype=np.float64)
    for p in range(q.shape[1]):
        column = q[:, p : p + 1]
        lower = np.count_nonzero(s < column, axis=1)
        through = np.count_nonzero(s <= column, axis=1)
        rank[:, p] = lower + (through - lower + 1) / 2
    return torch.from_numpy(rank)


def _ranks_by_sign(scores: torch.Tensor, pos_scores: torch.Tensor) -> torch.Tensor:
    # sum_j sign(q - s_j) = lower - higher, and lower + higher + equal = N
    N = scores.shape[1]
    rank = torch.empty_like(pos_scores, dtype=torch.float64)
    for p in range(pos_scores.shape[1]):
        signs = torch.sign(pos_scores[:, p : p + 1] - scores).sum(1, dtype=torch.float64)
        rank[:, p] = (signs + N + 1) / 2
    return rank


def _ranks_by_sorting(scores: torch.Tensor, pos_scores: torch.Tensor) -> torch.Tensor:
    ordered = scores.sort(1).values
    below = torch.searchsorted(ordered, pos_scores, right=False)
    through = torch.searchsorted(ordered, pos_scores, right=True)
    return (below + through + 1).double() / 2


_AUC_RANKS = {
    "count": _ranks_by_counting,
    "sign": _ranks_by_sign,
    "sort": _ranks_by_sorting,
}
