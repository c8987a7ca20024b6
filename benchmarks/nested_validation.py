"""The cold-start protocol inside the warm songs (nested validation, issue 14).

cnn_validation.py scores settings on validation songs whose plays took part in WMF:
their listeners' factors were fitted to them. The test does not work that way: a cold
song's plays reach neither WMF nor any model. This script runs the test's own protocol
on the warm songs alone. For each seed S, ROOT/nestedS/ holds the plays of the demo
preset's warm songs of seed S (the outer split; no outer cold song's play is written)
and links to ROOT's features and tags; `coldtune experiment --preset demo --seed S`
then splits those songs again (20% inner cold), fits WMF on the inner warm ones, trains
and scores the inner cold ones. Its table chooses settings without a cold song.

    python benchmarks/nested_validation.py ROOT --seeds 0 1 2 --name NAME \\
        [--row cnn-small-mse ...] [--model cnn] [key=value ...]

key=value options go to every row of `--model` (cnn by default: CNNConfig fields; mlr:
MLRConfig's). Each seed's inner table is appended to ROOT/nested_validation.jsonl, one
JSON line per seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from cnn_validation import convert

from coldtune.data.plays import Interactions, load_interactions, save_interactions
from coldtune.data.splits import split_songs
from coldtune.steps import experiment
from coldtune.workspace import Workspace


def nested_workspace(root: Path, seed: int) -> Workspace:
    """ROOT/nestedS: the outer warm songs' plays of seed S only, ROOT's features and tags."""
    folder = root / f"nested{seed}"
    workspace = Workspace(folder)
    if (folder / "plays.done").exists():
        return workspace
    outer = Workspace(root)
    interactions = load_interactions(outer)
    config = experiment.experiment_config("demo", seed=seed)
    split = split_songs(interactions, config.split)
    warm = split.warm_songs
    matrix = interactions.matrix.tocsc()[:, warm].tocsr()
    users = np.flatnonzero(np.diff(matrix.indptr) > 0)
    inner = Interactions(
        matrix=matrix[users], user_ids=interactions.user_ids[users],
        song_ids=interactions.song_ids[warm],
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("features", "tags"):
        if (root / name).exists() and not (folder / name).exists():
            (folder / name).symlink_to((root / name).resolve())
    save_interactions(inner, workspace)
    (folder / "plays.done").write_text("ok")
    return workspace


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", required=True)
    parser.add_argument("--row", action="append", default=[])
    parser.add_argument("--model", default="cnn", help="whose rows take the options")
    parser.add_argument("options", nargs="*", help="that model's config: key=value")
    args = parser.parse_intermixed_args(argv)
    options = {k: convert(v) for k, v in (item.split("=", 1) for item in args.options)}
    rows = args.row or ["cnn-small-mse"]
    for seed in args.seeds:
        workspace = nested_workspace(args.root, seed)
        config = experiment.experiment_config("demo", seed=seed, rows=rows)
        models = tuple(
            replace(run, options=(*run.options, *options.items()))
            if run.model == args.model
            else run
            for run in config.models
        )
        results = experiment.run_experiment(workspace, replace(config, models=models))
        row = {
            "name": args.name,
            "seed": seed,
            "options": options,
            "rows": {r["model"]: {"map": r["map"], "auc": r["auc"]} for r in results["rows"]},
        }
        with open(args.root / "nested_validation.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
