"""`coldtune recommend --all` at Taste Profile scale: every user's top songs, batched.

    python bench_recommend_all.py --users 1019318 --songs 384546 --n 100     # the MSD
    python bench_recommend_all.py --users 20000 --songs 384546 --repeats 3    # a share

Factors are generated (Gaussian, 50 per user and song), and so are the training plays:
a geometric number of songs per user with the Taste Profile's mean (48,373,586 plays over
1,019,318 users: 47.5), capped at 2,000. Timed: `Catalogue.recommend_all` over every user
(the product x_u^T y with every song, the played songs excluded, the top n kept and
sorted), with the product alone beside it (the same blocks), so that their ratio says
what the ranking costs on top of the arithmetic. With `--parquet FOLDER`, also the
command's whole work on the catalogue: the same, each batch written to a Parquet file
there (`steps.catalogue.write_recommendations`, what `coldtune recommend --all -o`
runs after loading the workspace), deleted afterwards. Peak memory is the process's
maximum resident set, read from the kernel after the run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from common import command, machine

from coldtune.catalogue import Catalogue
from coldtune.steps.catalogue import write_recommendations

TASTE_PROFILE_MEAN_SONGS = 48_373_586 / 1_019_318


def generated_catalogue(users: int, songs: int, factors: int, seed: int) -> Catalogue:
    rng = np.random.default_rng(seed)
    per_user = np.minimum(rng.geometric(1 / TASTE_PROFILE_MEAN_SONGS, size=users), 2000)
    indptr = np.concatenate([[0], np.cumsum(per_user)])
    indices = rng.integers(0, songs, size=int(indptr[-1]), dtype=np.int32)
    plays = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(users, songs)
    )
    plays.sum_duplicates()
    song_factors = rng.standard_normal((songs, factors), dtype=np.float32)
    return Catalogue(
        song_ids=np.array([f"S{i}" for i in range(songs)]),
        cold=np.zeros(songs, dtype=bool),
        user_ids=np.array([f"U{u}" for u in range(users)]),
        user_factors=rng.standard_normal((users, factors), dtype=np.float32),
        usage_factors=song_factors,
        predicted_factors=song_factors,
        training_plays=plays,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--songs", type=int, default=384_546)
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--parquet", metavar="FOLDER", help="also time the Parquet writing")
    parser.add_argument("--skip-library", action="store_true", help="only with --parquet")
    args = parser.parse_args()
    print(f"# {command()}")
    print(f"# {machine()}")
    start = time.perf_counter()
    catalogue = generated_catalogue(args.users, args.songs, args.factors, seed=0)
    print(
        f"generated {args.users:,} users x {args.songs:,} songs, "
        f"{catalogue.training_plays.nnz:,} plays, {args.factors} factors in "
        f"{time.perf_counter() - start:.1f} s"
    )
    whole, product, written = [], [], []
    for _ in range(args.repeats):
        if not args.skip_library:
            start = time.perf_counter()
            rows = sum(int((r >= 0).sum()) for _, r, _ in catalogue.recommend_all(
                n=args.n, batch=args.batch))  # fmt: skip
            whole.append(time.perf_counter() - start)
        if args.parquet:
            out = Path(args.parquet) / "recs.parquet"
            start = time.perf_counter()
            rows = write_recommendations(catalogue, out, n=args.n, batch=args.batch)
            written.append(time.perf_counter() - start)
            size_mib = out.stat().st_size / 2**20
            out.unlink()
        start = time.perf_counter()
        for first in range(0, args.users, args.batch):
            catalogue.user_factors[first : first + args.batch] @ catalogue.scoring_factors.T
        product.append(time.perf_counter() - start)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    p = statistics.median(product)

    def line(label: str, times: list[float]) -> str:
        t = statistics.median(times)
        runs = ", ".join(f"{x:.1f}" for x in times)
        return f"{label}: {t:.1f} s (runs {runs}), {args.users / t:,.0f} users/s, {t / p:.2f}x"

    print(f"{rows:,} rows; the product alone: {p:.1f} s")
    if whole:
        print(line(f"recommend_all, top {args.n}", whole))
    if written:
        print(line(f"recommend --all's work, Parquet included ({size_mib:,.0f} MiB)", written))
    print(f"peak resident memory: {peak_gib:.2f} GiB")


if __name__ == "__main__":
    main()
