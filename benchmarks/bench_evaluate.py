"""Evaluation speed for the paper's full setting: users/s against 46,728 cold songs.

    python benchmarks/bench_evaluate.py --users 20000 --factors 50 --repeats 3

coldtune's blocked evaluation (AP@500 and AUC for every user) against a plain Python
loop over scikit-learn's average_precision_score and roc_auc_score on a sample of the
same users. Each user has about 6 cold plays, as in the Taste Profile (48 plays per
user, 12% of songs cold).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from common import command, machine, median_seconds
from sklearn.metrics import average_precision_score, roc_auc_score

from coldtune.eval.protocol import evaluate_scores, factor_scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--cold-songs", type=int, default=46_728)
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--plays-per-user", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn-users", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, m, k = args.users, args.cold_songs, args.factors
    X = rng.standard_normal((n, k), dtype=np.float32)
    Y = rng.standard_normal((m, k), dtype=np.float32)
    counts = np.maximum(1, rng.poisson(args.plays_per_user, n))
    rows = np.repeat(np.arange(n), counts)
    cold = sp.csr_matrix((np.ones(len(rows)), (rows, rng.integers(0, m, len(rows)))), (n, m))
    print(f"# {command()}\n# {machine()}")
    print(f"{n:,} users x {m:,} cold songs, {k} factors, {cold.nnz:,} cold plays")

    seconds, runs = median_seconds(lambda: evaluate_scores(factor_scores(X, Y), cold), args.repeats)
    ours = n / seconds
    print(
        f"coldtune evaluate_scores: median {seconds:.2f} s of {[round(t, 2) for t in runs]}"
        f" -> {ours:,.0f} users/s; 1M users would take {1e6 / ours / 60:.1f} min"
    )

    sample = np.arange(args.sklearn_users)
    start = time.perf_counter()
    for u in sample:
        scores = Y @ X[u]
        relevant = cold[u].toarray().ravel() > 0
        average_precision_score(relevant, scores)
        roc_auc_score(relevant, scores)
    theirs = len(sample) / (time.perf_counter() - start)
    print(f"loop over scikit-learn: {theirs:,.0f} users/s ({len(sample)} users)")
    print(f"ratio: coldtune is {ours / theirs:.0f}x the loop")


if __name__ == "__main__":
    main()
