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
    n_users, n_songs = scores_t.shape
    block = max(1, _BLOCK_ELEMENTS // max(1, n_songs))
    out = []
    for lo in range(0, n_users, block):
        rel = _dense_bool(relevant, lo, lo + block, scores_t.device)
        out.append(metric(scores_t[lo : lo + block], rel).cpu())
    if not out:
        return np.zeros(0)
    return torch.cat(out).numpy()


def _dense_bool(relevant, lo: int, hi: int, device: torch.device) -> torch.Tensor:
    if isinstance(relevant, torch.Tensor):
        return relevant[lo:hi].to(device=device, dtype=torch.bool)
    if sp.issparse(relevant):
        block = sp.csr_matrix(relevant[lo:hi]).toarray() != 0
    else:
        block = np.asarray(relevant[lo:hi]).astype(bool)
    return torch.from_numpy(block).to(device)


def _ap_at_k(scores: torch.Tensor, rel: torch.Tensor, k: int) -> torch.Tensor:
    """AP@k for a block of users (see average_precision_at_k). scores, rel: (B, N)."""
    B, N = scores.shape
    k = min(k, N)
    n_pos = rel.sum(1).double()  # (B,)
    vals, idx = scores.topk(k, dim=1)  # (B, k), descending
    r = rel.gather(1, idx).double()
    # The last tie group in the top k (value v) may run past position k: measure it on
    # the whole row. Every other group ends inside the top k.
    v = vals[:, -1:]
    above = scores > v
    tied = scores == v
    start_last = above.sum(1).double()  # places before the last group
    size_last = tied.sum(1).double()
    pos_last = (tied & rel).sum(1).double()
    pos_before_last = (above & rel).sum(1).double()

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


def _auc(scores: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """ROC AUC for a block of users: Mann-Whitney U over average ranks. (B, N) -> (B,)"""
    B, N = scores.shape
    n_pos = rel.sum(1)
    n_neg = N - n_pos
    ordered = scores.sort(1).values
    # Gather each user's relevant scores into a padded (B, P) matrix: the ranks of the
    # few relevant songs are all the statistic needs.
    users, songs = rel.nonzero(as_tuple=True)
    P = int(n_pos.max()) if B else 0
    first = torch.cumsum(n_pos, 0) - n_pos
    slot = torch.arange(len(users), device=scores.device) - first[users]
    pos_scores = torch.zeros(B, max(P, 1), dtype=scores.dtype, device=scores.device)
    mask = torch.zeros(B, max(P, 1), dtype=torch.bool, device=scores.device)
    pos_scores[users, slot] = scores[users, songs]
    mask[users, slot] = True
    below = torch.searchsorted(ordered, pos_scores, right=False)
    through = torch.searchsorted(ordered, pos_scores, right=True)
    rank_sum = (((below + through + 1).double() / 2) * mask).sum(1)  # 1-based average ranks
    n_pos_d, n_neg_d = n_pos.double(), n_neg.double()
    auc = (rank_sum - n_pos_d * (n_pos_d + 1) / 2) / (n_pos_d * n_neg_d)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))
