"""The paper's full experiment at Taste Profile scale on one machine: stage by stage,
seconds and peak memory.

    python bench_scale.py                       # every stage, in order
    python bench_scale.py --stages wmf --factors 50,400 --iterations 3
    python bench_scale.py --stages spark --spark-fraction 0.1

Stages (each runs in its own process, so its peak memory is its own; what a stage
writes under --cache is reused by the next, and a finished stage is not run again
unless --force):

- generate: the play-count matrix of the Taste Profile's size (1,019,318 users x
  384,546 songs x 48,373,586 triplets) from coldtune.data.synth, written as triplets
  (the Echo Nest file's layout) and as Parquet (for Spark)
- ingest:   `coldtune plays ingest` of the triplets file
- split:    the paper's full setting, 46,728 cold songs (`coldtune split --preset paper-full`)
- wmf:      implicit backend, seconds per iteration at each of --factors (objective off)
- spark:    MLlib ALS on local Spark (every core), on a fraction of the users: the
            Parquet read and join, then seconds per iteration as the difference
            between a fit of --spark-iterations and one of none (blocks and initial
            factors only)
- evaluate: the upper bound's cold-song factors by fold-in, then mAP@500 and AUC of
            every user with a cold play against all 46,728 cold songs

Peak memory is the largest total resident memory of the stage's process and its
children (the JVM for Spark), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import command, machine

STAGES = ("generate", "ingest", "split", "wmf", "spark", "evaluate")
HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- memory


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * page
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def run_stage(stage: str, args: argparse.Namespace) -> dict:
    """Run one stage in a child process; return its figures with wall time and peak RSS."""
    argv = [sys.executable, __file__, "--child", stage] + sys.argv[1:]
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(process.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"stage {stage} failed with status {process.returncode}")
    figures = json.loads(output.strip().splitlines()[-1])
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    figures["peak_rss_gib"] = round(peak[0] / 2**30, 2)
    return figures


# --------------------------------------------------------------------------- stages


def load(cache: Path):
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split
    from coldtune.workspace import Workspace

    workspace = Workspace(cache / "w")
    interactions = load_interactions(workspace)
    return workspace, interactions, load_split(workspace, interactions)


def stage_generate(args: argparse.Namespace) -> dict:
    from coldtune.data.synth import synth_config, synth_plays, write_plays

    start = time.perf_counter()
    generated = synth_plays(synth_config("taste-profile", seed=0))
    seconds_generate = time.perf_counter() - start
    start = time.perf_counter()
    write_plays(generated, args.cache / "train_triplets.txt")
    seconds_triplets = time.perf_counter() - start
    start = time.perf_counter()
    write_plays(generated, args.cache / "plays.parquet", format="parquet")
    m = generated.matrix
    return {
        "users": m.shape[0],
        "songs": m.shape[1],
        "triplets": int(m.nnz),
        "generate_s": round(seconds_generate, 1),
        "write_triplets_s": round(seconds_triplets, 1),
        "write_parquet_s": round(time.perf_counter() - start, 1),
        "triplets_gb": round((args.cache / "train_triplets.txt").stat().st_size / 1e9, 2),
        "parquet_gb": round((args.cache / "plays.parquet").stat().st_size / 1e9, 2),
    }


def stage_ingest(args: argparse.Namespace) -> dict:
    from coldtune import steps
    from coldtune.workspace import Workspace

    start = time.perf_counter()
    interactions = steps.plays.ingest(
        args.cache / "train_triplets.txt", Workspace(args.cache / "w")
    )
    report = interactions.report
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "rows": report.rows_read,
        "rows_per_s": round(report.rows_read / (time.perf_counter() - start)),
        "users": report.users,
        "songs": report.songs,
    }


def stage_split(args: argparse.Namespace) -> dict:
    from coldtune import steps
    from coldtune.data.splits import SPLIT_PRESETS
    from coldtune.workspace import Workspace

    start = time.perf_counter()
    split = steps.plays.split(Workspace(args.cache / "w"), SPLIT_PRESETS["paper-full"])
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "users": len(split.users),
        "warm_songs": len(split.warm_songs),
        "cold_songs": len(split.cold_songs),
    }


def stage_wmf(args: argparse.Namespace) -> dict:
    import numpy as np

    from coldtune import WeightedMatrixFactorization

    _, interactions, split = load(args.cache)
    train = split.training_plays(interactions.matrix)
    del interactions
    figures = {"plays": int(train.nnz)}
    for k in (int(f) for f in args.factors.split(",")):
        model = WeightedMatrixFactorization(
            k, iterations=args.iterations, track_objective=False
        ).fit(train)
        times = model.seconds_per_iteration_
        figures[f"k{k}_s_per_iteration"] = round(statistics.median(times), 1)
        figures[f"k{k}_runs"] = [round(t, 1) for t in times]
        if k == 50:  # the paper's factors, for the evaluate stage
            np.savez(
                args.cache / "factors.npz",
                user_factors=model.user_factors_,
                song_factors=model.song_factors_,
            )
        del model
    return figures


def stage_spark(args: argparse.Namespace) -> dict:
    import numpy as np

    from coldtune.cf.spark import (
        SparkConfig,
        fit_als,
        matching_reg_param,
        read_plays_spark,
        spark_session,
    )

    _, interactions, split = load(args.cache)
    rng = np.random.default_rng(0)
    n_users = int(round(args.spark_fraction * len(split.users)))
    users = interactions.user_ids[np.sort(rng.choice(split.users, n_users, replace=False))]
    songs = interactions.song_ids[split.warm_songs]
    del interactions
    config = SparkConfig(master="local[*]", driver_memory=args.spark_memory)
    figures: dict = {"fraction": args.spark_fraction, "users": n_users}
    with spark_session(config) as spark:
        # MLlib's linear algebra: native (JNIBLAS, JNILAPACK: the system's libblas.so.3
        # and liblapack.so.3, OpenBLAS here) or Java's fallbacks
        jvm = spark.sparkContext._jvm
        figures["blas"] = jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getSimpleName()
        lapack = jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance()
        figures["lapack"] = lapack.getClass().getSimpleName()
        start = time.perf_counter()
        plays = read_plays_spark(
            spark, str(args.cache / "plays.parquet"), users=users, songs=songs, epsilon=1.0
        )
        figures["read_join_s"] = round(time.perf_counter() - start, 1)
        figures["plays"] = plays.plays
        reg = matching_reg_param(1.0, n_users=n_users, n_songs=len(songs), plays=plays.plays)
        for k in (int(f) for f in args.spark_factors.split(",")):
            # ALS with maxIter=0 builds and shuffles the rating blocks and draws the
            # initial factors, as every fit does first; the difference to a fit of n
            # iterations is n iterations' own time. The longer fit runs first, so that
            # the JVM's warm-up counts against the iterations, not for them.
            totals = {}
            for iterations in (args.spark_iterations, 0):
                start = time.perf_counter()
                user_frame, song_frame = fit_als(
                    plays.ratings,
                    factors=k,
                    alpha=2.0,
                    reg_param=reg,
                    iterations=iterations,
                    seed=0,
                    config=config,
                )
                user_frame.count(), song_frame.count()  # the factors are lazy until read
                totals[iterations] = time.perf_counter() - start
            per = (totals[args.spark_iterations] - totals[0]) / args.spark_iterations
            figures[f"k{k}_s_per_iteration"] = round(per, 1)
            figures[f"k{k}_fit_s"] = {str(i): round(t, 1) for i, t in totals.items()}
        plays.cached.unpersist()
    return figures


def stage_evaluate(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from coldtune.cf.wmf import WeightedMatrixFactorization
    from coldtune.eval.protocol import evaluate_scores, factor_scores

    _, interactions, split = load(args.cache)
    cold = split.cold_plays(interactions.matrix)
    del interactions
    with np.load(args.cache / "factors.npz") as saved:
        model = WeightedMatrixFactorization(int(saved["user_factors"].shape[1]))
        model.user_factors_, model.song_factors_ = saved["user_factors"], saved["song_factors"]
    start = time.perf_counter()
    folded = model.fold_in_songs(cold)
    seconds_fold = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate_scores(factor_scores(model.user_factors_, folded), cold)
    seconds = time.perf_counter() - start
    return {
        "users": cold.shape[0],
        "users_evaluated": len(result.users),
        "cold_songs": cold.shape[1],
        "cold_plays": int(cold.nnz),
        "torch_threads": torch.get_num_threads(),
        "fold_in_s": round(seconds_fold, 1),
        "evaluate_s": round(seconds, 1),
        "users_per_s": round(len(result.users) / seconds),
        "map_upper_bound": round(result.mean_average_precision, 4),
        "auc_upper_bound": round(result.mean_auc, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=HERE.parent / ".cache" / "scale")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--force", action="store_true", help="run stages already done again")
    parser.add_argument("--factors", default="50,400", help="wmf: factors to time")
    parser.add_argument("--iterations", type=int, default=3, help="wmf: iterations per fit")
    parser.add_argument("--spark-fraction", type=float, default=0.1, help="share of users")
    parser.add_argument("--spark-factors", default="50")
    parser.add_argument("--spark-iterations", type=int, default=2, help="at least 1")
    parser.add_argument("--spark-memory", default="8g", help="Spark's driver heap")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child:
        figures = globals()[f"stage_{args.child}"](args)
        print(json.dumps(figures))
        return

    results_path = args.cache / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"# {command()}\n# {machine()}")
    for stage in args.stages.split(","):
        if stage not in STAGES:
            raise SystemExit(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        key = {
            "wmf": f"wmf k={args.factors} iterations={args.iterations}",
            "spark": f"spark k={args.spark_factors} fraction={args.spark_fraction}",
        }.get(stage, stage)
        if key in results and not args.force:
            print(f"{key} (done before) {json.dumps(results[key])}")
            continue
        load_before = os.getloadavg()[0]
        figures = run_stage(stage, args)
        figures["load_before"] = round(load_before, 1)
        figures["load_after"] = round(os.getloadavg()[0], 1)
        results[key] = figures
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{key}: {json.dumps(figures)}", flush=True)


if __name__ == "__main__":
    main()
