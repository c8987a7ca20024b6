"""Evaluation against the score product alone, Table 3's setting (section 5.2).

    python bench_evaluate.py --users 20000 --repeats 5
    python bench_evaluate.py --taste-profile            # 925,010 users, once; minutes

For every user, x_u^T y for each of 46,728 cold songs (50 factors), then AP@500 and AUC
of the user's ranking against the cold songs they played. Timed, in one run: (a) the
score product alone, in the blocks and user order `evaluate_scores` uses, and (b) the
whole evaluation (the same product + AP@500 + AUC); then their ratio. Runs of (a) and
(b) alternate so that a drift in the machine's load reaches both. (c), beside them: the
same products a tile of songs at a time into one reused buffer, the product's arithmetic
without writing each block of scores out to memory, a stricter reference than (a).

Factors are generated (Gaussian; with --aimed, each user's aimed at their cold songs, so
that the ranking work is that of a good model); so are the cold plays, with a heavy tail
like real listeners': a geometric number of cold songs per user (mean 6.6, as the Taste
Profile's 6,104,115 cold plays over 925,010 users), capped at 200. The evaluation is
checked against scikit-learn on a sample of users before timing.

Any coldtune can be measured: the script imports whichever is on the path, so
`PYTHONPATH=OLD python bench_evaluate.py`, with OLD holding an older commit's package
(`git archive COMMIT coldtune | tar -x -C OLD`), times that commit's evaluation on the
same data; the first lines say which was measured.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common import command, machine
from sklearn.metrics import average_precision_score, roc_auc_score

import coldtune
from coldtune.eval.protocol import evaluate_scores, factor_scores

TASTE_PROFILE_USERS = 925_010  # users with at least one cold play (docs/benchmarks.md)
BLOCK_ELEMENTS = inspect.signature(evaluate_scores).parameters["block_elements"].default


def heavy_tailed_plays(
    n_users: int, n_songs: int, *, mean: float, cap: int, rng: np.random.Generator
) -> sp.csr_matrix:
    """Cold plays [shape=(n_users, n_songs)]: Geometric(1 / mean) songs per user, <= cap."""
    counts = np.minimum(cap, rng.geometric(1.0 / mean, n_users))
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.integers(0, n_songs, len(rows))
    plays = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_songs))
    plays.sum_duplicates()  # a song drawn twice for one user is one relevant song
    return plays


def product_alone(score, cold: sp.csr_matrix, users: np.ndarray) -> None:
    """The score blocks evaluate_scores computes, in its order, and nothing else."""
    block = max(1, BLOCK_ELEMENTS // cold.shape[1])
    order = np.argsort(np.diff(cold.indptr)[users], kind="stable")
    for lo in range(0, len(users), block):
        score(users[order[lo : lo + block]])


def product_in_tiles(X: torch.Tensor, Yt: torch.Tensor, cold: sp.csr_matrix, users, width: int):
    """The same products, a tile of `width` songs at a time into one reused buffer: the
    arithmetic of the scores without writing a block of them out to memory.
    Yt : (F, n_songs) contiguous, the layout evaluate_scores multiplies."""
    block = max(1, BLOCK_ELEMENTS // cold.shape[1])
    order = np.argsort(np.diff(cold.indptr)[users], kind="stable")
    buffer = torch.empty(block * width)
    for lo in range(0, len(users), block):
        rows = X[torch.as_tensor(users[order[lo : lo + block]])]
        for a in range(0, Yt.shape[1], width):
            b = min(Yt.shape[1], a + width)
            torch.mm(rows, Yt[:, a:b], out=buffer[: len(rows) * (b - a)].view(len(rows), b - a))


def check_against_scikit_learn(X, Y, cold: sp.csr_matrix, n_check: int) -> str:
    """Largest differences from scikit-learn on the first users, AP uncut (k = n_songs)."""
    users = np.arange(min(n_check, cold.shape[0]))
    result = evaluate_scores(factor_scores(X, Y), cold, users=users, k=cold.shape[1])
    scores = factor_scores(X, Y)(users).numpy()
    relevant = cold[users].toarray() > 0
    ap = [average_precision_score(relevant[u], scores[u]) for u in users]
    auc = [roc_auc_score(relevant[u], scores[u]) for u in users]
    return (
        f"{len(users)} users, largest difference from scikit-learn: "
        f"AP {np.max(np.abs(result.average_precision - ap)):.1e}, "
        f"AUC {np.max(np.abs(result.auc - auc)):.1e}"
    )


def revision() -> str:
    """The commit of the coldtune package imported, and whether it has local changes."""
    folder = str(Path(coldtune.__file__).resolve().parent)

    def git(*words: str) -> str:
        run = subprocess.run(["git", "-C", folder, *words], capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else ""

    commit = git("log", "-1", "--format=%h %s")[:90]
    if not commit:
        return "a coldtune outside any git checkout"
    return commit + (" (+ uncommitted changes)" if git("status", "--porcelain", ".") else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--taste-profile", action="store_true", help="925,010 users, once")
    parser.add_argument("--cold-songs", type=int, default=46_728)
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--mean-plays", type=float, default=6.6)
    parser.add_argument("--max-plays", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices", type=int, default=8, help="alternation unit at one repeat")
    parser.add_argument("--check-users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=8192, help="songs a tile in (c)")
    parser.add_argument(
        "--aimed",
        type=float,
        metavar="NOISE",
        help="user factors aimed at their cold songs, plus NOISE x Gaussian: relevant songs "
        "rank high, as for the paper's upper bound (1.0: mAP@500 about 0.15)",
    )
    args = parser.parse_args()
    n = TASTE_PROFILE_USERS if args.taste_profile else args.users
    repeats = 1 if args.taste_profile else args.repeats
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((n, args.factors), dtype=np.float32)
    Y = rng.standard_normal((args.cold_songs, args.factors), dtype=np.float32)
    cold = heavy_tailed_plays(n, args.cold_songs, mean=args.mean_plays, cap=args.max_plays, rng=rng)
    if args.aimed is not None:  # x_u = mean of y_i over u's cold songs + noise
        per_user = np.diff(cold.indptr)[:, None]
        X = (cold @ Y) / per_user + args.aimed * X
        X = X.astype(np.float32)
    per_user = np.diff(cold.indptr)
    threads = torch.get_num_threads()
    print(f"# {command()}\n# {machine()}, torch {torch.__version__}, {threads} threads")
    print(f"# coldtune at: {revision()}")
    print(
        f"{n:,} users x {args.cold_songs:,} cold songs, {args.factors} factors; "
        f"{cold.nnz:,} cold plays, per user mean {per_user.mean():.2f}, "
        f"max {per_user.max()}, over 48: {np.mean(per_user > 48):.2%}"
    )
    print("check:", check_against_scikit_learn(X, Y, cold, args.check_users), flush=True)

    users = np.arange(n)
    score = factor_scores(X, Y)
    # one repeat over every user in slices (the Taste Profile run), or whole repeats
    slices = np.array_split(users, args.slices) if repeats == 1 else [users]
    product_s, evaluate_s, tiles_s = [], [], []
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(np.ascontiguousarray(Y.T))
    for _ in range(repeats):
        p = e = t = 0.0
        ap, auc = [], []
        for part in slices:
            start = time.perf_counter()
            product_alone(score, cold, part)
            p += time.perf_counter() - start
            start = time.perf_counter()
            product_in_tiles(Xt, Yt, cold, part, args.tile)
            t += time.perf_counter() - start
            start = time.perf_counter()
            result = evaluate_scores(score, cold, users=part)
            e += time.perf_counter() - start
            ap.append(result.average_precision)
            auc.append(result.auc)
        product_s.append(p)
        evaluate_s.append(e)
        tiles_s.append(t)
        print(f"  run: product {p:.2f} s, evaluation {e:.2f} s, product in tiles {t:.2f} s")
    p, e = statistics.median(product_s), statistics.median(evaluate_s)
    t = statistics.median(tiles_s)
    print(f"(a) score product alone: median {p:.2f} s of {len(product_s)}")
    print(
        f"(b) product + AP@500 + AUC: median {e:.2f} s of {len(evaluate_s)}, {n / e:,.0f} users/s"
    )
    print(f"(c) the product in tiles of {args.tile:,} songs, one buffer: median {t:.2f} s")
    print(f"ratio (b) / (a): {e / p:.2f}; (b) / (c): {e / t:.2f}")
    ap, auc = np.concatenate(ap), np.concatenate(auc)
    print(f"mAP@500 {np.nanmean(ap):.15f}, mean AUC {np.nanmean(auc):.15f} (to compare commits)")


if __name__ == "__main__":
    main()
