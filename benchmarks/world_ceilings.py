"""The demo world's reference rows over seeds, from its records alone: no audio rendered,
no content model trained or scored.

    python benchmarks/world_ceilings.py --size default --seeds 0,1,2
    python benchmarks/world_ceilings.py --set audio_share=0.5 --set artist_loyalty=1.5

The world's pieces are chosen, parsed (the machine's parse cache) and dealt to artists
exactly as `coldtune world build` does; its listeners are simulated with the world's
ListenerConfig, changed by `--set name=value` (a JSON value, e.g.
--set 'taste_shares={"style": 0.2, ...}'). Then, for each seed, as the demo experiment
does: the cold-start split (20% of songs cold), WMF on the warm songs (the demo preset's
settings, random_state = seed), and four rows scored by the protocol of section 5.2:
random factors, the timbre and audible ceilings (coldtune.world.ceiling), and the upper
bound (cold songs folded in from their real plays). Also printed: the rank correlation
between a song's number of tags and its number of listeners (the tags as the builder
writes them), which should be near 0.

These rows alone guide the world's listener settings: a content model's score is not
looked at while choosing them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from common import command, machine
from scipy import stats

from coldtune.cf.wmf import WeightedMatrixFactorization, WMFConfig
from coldtune.data.plays import Interactions
from coldtune.data.splits import SplitConfig, split_songs
from coldtune.eval.protocol import evaluate_scores, factor_scores, random_factors
from coldtune.eval.seeds import seeds_markdown
from coldtune.world import build
from coldtune.world.ceiling import AUDIBLE, TIMBRE, ceiling_factors
from coldtune.world.listeners import simulate_listeners


def seed_rows(world_dir: Path, interactions: Interactions, seed: int) -> dict:
    """{row: (mAP@500, AUC)} of one seed: split, WMF, the four reference rows."""
    split = split_songs(interactions, SplitConfig(cold_fraction=0.2, seed=seed))
    wmf = dataclasses.asdict(WMFConfig(factors=50, random_state=seed))
    model = WeightedMatrixFactorization(**wmf, track_objective=False)
    model.fit(split.training_plays(interactions.matrix))
    cold_plays = split.cold_plays(interactions.matrix)
    warm_ids = list(interactions.song_ids[split.warm_songs])
    cold_ids = list(interactions.song_ids[split.cold_songs])

    def ceiling(attributes):
        return ceiling_factors(
            world_dir,
            warm_ids=warm_ids,
            warm_factors=model.song_factors_,
            cold_ids=cold_ids,
            attributes=attributes,
        )

    candidates = {
        "random": lambda: random_factors(model.song_factors_, len(cold_ids), seed=seed),
        "timbre ceiling": lambda: ceiling(TIMBRE),
        "audible ceiling": lambda: ceiling(AUDIBLE),
        "upper bound": lambda: model.fold_in_songs(cold_plays),
    }
    rows = {}
    for name, factors in candidates.items():
        result = evaluate_scores(factor_scores(model.user_factors_, factors()), cold_plays)
        rows[name] = (result.mean_average_precision, result.mean_auc)
    return rows


def tag_counts(world_dir: Path, plan: build.SongPlan) -> np.ndarray:
    """Tags per song, as the builder wrote them into world_dir/lastfm."""
    counts = []
    for track_id in plan.track_ids:
        path = world_dir / build._shard_path("lastfm", track_id, ".json")
        counts.append(len(json.loads(path.read_text())["tags"]))
    return np.array(counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="default", choices=list(build.WORLD_SIZES))
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = build.world_config(args.size, seed=args.world_seed)
    changes = {}
    for item in args.set:
        name, _, value = item.partition("=")
        changes[name] = json.loads(value)
    listeners = dataclasses.replace(config.listeners, **changes).validate()
    config = dataclasses.replace(config, listeners=listeners)
    print(f"# {command()}\n# {machine()}")
    print(f"# listeners: {json.dumps(listeners.to_dict())}")

    start = time.perf_counter()
    with build._pool(args.workers) as pool:
        plan = build._plan_songs(config, pool, str(build.cache_root()), None)
    simulated = simulate_listeners(
        build.listener_codes(plan, listeners),
        listeners,
        np.random.default_rng([config.seed, 3]),
    )
    plays = simulated.plays
    print(
        f"# {plays.shape[1]:,} songs, {plays.shape[0]:,} users, {plays.nnz:,} triplets "
        f"({time.perf_counter() - start:.0f} s to plan and simulate)"
    )
    with tempfile.TemporaryDirectory() as folder:
        world_dir = Path(folder)
        tracks = build._tracks_table(plan)
        pacsv.write_csv(pa.table(tracks), world_dir / "tracks.csv")
        build._write_tags(world_dir, plan, tracks, config.seed)
        listeners_per_song = np.diff(plays.tocsc().indptr)
        rho = stats.spearmanr(tag_counts(world_dir, plan), listeners_per_song).statistic
        print(f"# Spearman(number of tags, number of listeners) = {rho:+.3f}")

        interactions = Interactions(
            plays,
            np.array([f"u{u}" for u in range(plays.shape[0])], dtype=object),
            np.array(plan.song_ids, dtype=object),
        )
        per_seed = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            per_seed[seed] = seed_rows(world_dir, interactions, seed)
            cells = ", ".join(f"{n} {m:.4f}/{a:.4f}" for n, (m, a) in per_seed[seed].items())
            print(f"# seed {seed}: {cells} ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print(seeds_markdown(per_seed, reference="timbre ceiling"))


if __name__ == "__main__":
    main()
