"""Similar songs and recommendations at a million songs: exact search vs faiss's IVF.

    python benchmarks/bench_index.py --songs 1000000 --factors 50 --service
    python benchmarks/bench_index.py --songs 200000 --factors 400

Song factors are generated: `--clusters` centres drawn N(0, 1), each song a centre plus
N(0, `--spread`^2) noise (`--clusters 0`: isotropic Gaussian songs, the hardest case
for any graph); users N(0, 1); training plays as in bench_recommend_all.py (a geometric
number per user, the Taste Profile's mean); the last 10 % of songs are cold. The
catalogue is built from these arrays directly (no workspace: a million-song workspace
would need a million clips), with `index="approximate"` (coldtune.index: an inverted
file of about sqrt(songs) groups, the candidates re-scored exactly).

For the usage space (`similar`) and the scoring space (`recommend`), in this process:
the index's build time and the growth of the resident set it caused, then for
`--queries` random songs (their own row excluded) and users (their plays excluded),
at each `--probed` share of the groups scanned and at the share the index chose by
calibrating on the catalogue's own sample queries (coldtune.index.RECALL; other
queries than these): recall@10 of the answer against the exact one and the latency per
query, one thread, beside the exact search's (the product with every row and top_k,
what `index="exact"` does).

With `--service`, the catalogue (its indexes built) is handed to the service in a forked
process (uvicorn on 127.0.0.1, as `coldtune serve` runs it), and one keep-alive client
asks GET /api/songs/{song}/similar?n=10 (both spaces) and
GET /api/users/{user}/recommendations?n=20 for `--seconds` each: p50 and p99, once
with the approximate catalogue and once with an exact one.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp
from bench_recommend_all import TASTE_PROFILE_MEAN_SONGS
from bench_serve import free_port, run_clients, summary
from common import command, machine

from coldtune.catalogue import Catalogue


def resident_gib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def generated_factors(n: int, k: int, *, clusters: int, spread: float, rng) -> np.ndarray:
    if clusters == 0:
        return rng.standard_normal((n, k), dtype=np.float32)
    centres = rng.standard_normal((clusters, k), dtype=np.float32)
    songs = rng.standard_normal((n, k), dtype=np.float32)
    songs *= spread
    songs += centres[rng.integers(0, clusters, size=n)]
    return songs


def generated_catalogue(args, factors: int, index: str) -> Catalogue:
    rng = np.random.default_rng(0)
    songs = generated_factors(
        args.songs, factors, clusters=args.clusters, spread=args.spread, rng=rng
    )
    users = rng.standard_normal((args.users, factors), dtype=np.float32)
    cold = np.zeros(args.songs, dtype=bool)
    cold[int(0.9 * args.songs) :] = True
    per_user = np.minimum(rng.geometric(1 / TASTE_PROFILE_MEAN_SONGS, size=args.users), 2000)
    indptr = np.concatenate([[0], np.cumsum(per_user)])
    indices = rng.integers(0, int(0.9 * args.songs), size=int(indptr[-1]), dtype=np.int32)
    plays = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr),
        shape=(args.users, args.songs),
    )
    plays.sum_duplicates()
    return Catalogue(
        song_ids=np.array([f"S{i}" for i in range(args.songs)]),
        cold=cold,
        user_ids=np.array([f"U{u}" for u in range(args.users)]),
        user_factors=users,
        usage_factors=songs,
        predicted_factors=songs,  # the same array: one copy of 1.6 GB at 400 factors
        training_plays=plays,
        index=index,
    )


def measure_space(name: str, index, queries: list, shares: list[float]) -> float:
    """Build the index, then recall@10 and latency of exact vs approximate at each share
    of the groups scanned, the share its calibration chose last; returns that share."""
    import faiss
    from threadpoolctl import threadpool_limits

    before, start = resident_gib(), time.perf_counter()
    index.groups  # noqa: B018 (built on first use)
    build = time.perf_counter() - start
    print(
        f"\n{name}: {len(index._rows):,} rows x {index.factors.shape[1]}, "
        f"{index.groups.nlist:,} groups built in "
        f"{build:.1f} s, resident set +{resident_gib() - before:.2f} GiB "
        f"(now {resident_gib():.2f} GiB)"
    )
    chosen = index.probed
    tried = ", ".join(f"{probes} groups: {recall:.3f}" for probes, recall in index.calibration)
    print(f"calibration on the catalogue's {len(index.queries)} sample queries: {tried}")
    faiss.omp_set_num_threads(1)
    with threadpool_limits(limits=1):
        truth, exact_ms = [], []
        for query, exclude in queries:
            start = time.perf_counter()
            rows, _ = index.exact(query, 10, exclude=exclude)
            exact_ms.append((time.perf_counter() - start) * 1000)
            truth.append(set(rows.tolist()))
        print(f"| {name} | groups scanned | recall@10 | p50 ms | p99 ms |")
        print("| --- | ---: | ---: | ---: | ---: |")
        print(
            f"| exact | - | 1.000 | {np.percentile(exact_ms, 50):.2f} | "
            f"{np.percentile(exact_ms, 99):.2f} |"
        )
        for share in [*shares, chosen]:
            index.probed = share
            recalls, graph_ms = [], []
            for (query, exclude), right in zip(queries, truth, strict=True):
                start = time.perf_counter()
                rows, _ = index.search(query, 10, exclude=exclude)
                graph_ms.append((time.perf_counter() - start) * 1000)
                recalls.append(len(right & set(rows.tolist())) / max(len(right), 1))
            print(
                f"| ivf | {index.probes} ({share:g}) | "
                f"{statistics.mean(recalls):.3f} (min {min(recalls):.1f}) | "
                f"{np.percentile(graph_ms, 50):.2f} | {np.percentile(graph_ms, 99):.2f} |"
            )
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index.probed = chosen
    return chosen


def serve(catalogue: Catalogue, port: int) -> None:
    """In the forked child: the service on a catalogue already in memory."""
    import uvicorn

    import coldtune.serve.app as service

    service.load_catalogue = lambda workspace, model=None: catalogue
    service._load_map = lambda workspace, catalogue: None
    app = service.create_app("/nonexistent-generated-catalogue")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def measure_service(catalogue: Catalogue, label: str, seconds: float) -> None:
    port = free_port()
    child = multiprocessing.get_context("fork").Process(
        target=serve, args=(catalogue, port), daemon=True
    )
    child.start()
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/api/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or not child.is_alive():
                    raise SystemExit("the service did not start") from None
                time.sleep(0.5)
        n_songs, n_users = len(catalogue), catalogue.n_users
        scenarios = {
            "similar": lambda rng: (
                "GET", f"/api/songs/S{rng.integers(n_songs)}/similar?n=10", None, {}
            ),
            "recommend": lambda rng: (
                "GET", f"/api/users/U{rng.integers(n_users)}/recommendations?n=20", None, {}
            ),
        }  # fmt: skip
        for name, make in scenarios.items():
            run_clients(port, make, 1, 2.0)  # warm-up: first requests, caches
            found = summary(run_clients(port, make, 1, seconds), seconds)
            print(
                f"| {label} | {name} | {found['requests']:,} | {found['p50_ms']:.1f} | "
                f"{found['p99_ms']:.1f} |"
            )
    finally:
        child.terminate()
        child.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=1_000_000)
    parser.add_argument("--factors", type=int, nargs="+", default=[50])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--probed", type=float, nargs="+", default=[0.0625, 0.125, 0.25])
    parser.add_argument("--service", action="store_true")
    parser.add_argument(
        "--skip-exact-service",
        action="store_true",
        help="no second, exact catalogue through the service (memory at 400 factors)",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"# {command()}\n# {machine()}")
    for factors in args.factors:
        start = time.perf_counter()
        catalogue = generated_catalogue(args, factors, "approximate")
        print(
            f"\n## {args.songs:,} songs x {factors} factors, {args.users:,} users, "
            f"{args.clusters} clusters (spread {args.spread:g}): generated in "
            f"{time.perf_counter() - start:.1f} s, resident {resident_gib():.2f} GiB"
        )
        rng = np.random.default_rng(1)
        songs = rng.integers(0, args.songs, size=args.queries)
        users = rng.integers(0, args.users, size=args.queries)
        plays = catalogue.training_plays
        usage_share = measure_space(
            "usage (similar)",
            catalogue._usage_index,
            [(catalogue._usage_unit[r], np.array([r])) for r in songs],
            args.probed,
        )
        scoring_share = measure_space(
            "scoring (recommend)",
            catalogue._scoring_index,
            [
                (catalogue.user_factors[u], plays.indices[plays.indptr[u] : plays.indptr[u + 1]])
                for u in users
            ],
            args.probed,
        )
        if args.service:  # the catalogue's own shares, as calibrated
            catalogue._usage_index.probed = usage_share
            catalogue._scoring_index.probed = scoring_share
            # predicted factors are the usage ones here (and every song has audio), so the
            # predicted space's rows are the usage space's: its index is shared
            assert np.array_equal(catalogue._predicted_unit, catalogue._usage_unit)
            catalogue._predicted_index.__dict__["groups"] = catalogue._usage_index.groups
            print(f"\n| catalogue | route | requests in {args.seconds:g} s | p50 ms | p99 ms |")
            print("| --- | --- | ---: | ---: | ---: |")
            measure_service(catalogue, "approximate", args.seconds)
            if not args.skip_exact_service:
                exact = generated_catalogue(args, factors, "exact")
                measure_service(exact, "exact", args.seconds)
                del exact
        del catalogue


if __name__ == "__main__":
    main()
