"""Validation figures of CNN settings on WARM songs only (issue 14): the ablation of
docs/models.md.

For each seed, a workspace ROOT/seedS holds the demo preset's split and WMF fit for
that seed (made here once, from ROOT's plays/, features/ and tags/). A CNN is trained
with the demo preset's schedule and the given options; the figures are the mean AUC and
mAP of the validation songs (10% of the warm songs, held out of training) ranked by
WMF's user factors, for the network's own output and for two read-outs of its mean
last hidden layer fitted on the other warm songs: the CNN's ridge (alpha chosen on the
validation songs by AUC) and bow-linear's PCA + ridge (alpha by MSE on its own split
of the training songs). bow-linear itself is scored on the same validation songs.
No cold song is predicted or scored.

    python benchmarks/cnn_validation.py ROOT --seeds 0 1 2 --name NAME [key=value ...]

One JSON line per seed is appended to ROOT/validation.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coldtune import content
from coldtune.content.bow import PCARidge
from coldtune.content.cnn import clip_embeddings
from coldtune.content.configs import BowConfig
from coldtune.content.validation import split_rows
from coldtune.steps import experiment
from coldtune.steps import plays as plays_step
from coldtune.steps import train as train_step
from coldtune.steps import wmf as wmf_step
from coldtune.workspace import Workspace

DEMO_SCHEDULE = {"max_epochs": 30, "patience": 10}  # the demo preset's (steps/experiment.py)


def seed_workspace(root: Path, seed: int) -> Workspace:
    folder = root / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("plays", "features", "tags"):
        link = folder / name
        if not link.exists():
            link.symlink_to((root / name).resolve())
    workspace = Workspace(folder)
    if not (folder / "wmf.done").exists():
        config = experiment.experiment_config("demo", seed=seed)
        plays_step.split(workspace, config.split)
        wmf_step.fit(workspace, config.wmf)
        (folder / "wmf.done").write_text("ok")
    return workspace


def convert(value: str):
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    if value.startswith("(") or "," in value:
        return tuple(float(v) for v in value.strip("()").split(",") if v)
    return value


def bow_linear_figures(workspace: Workspace, songs, val_rows, ranking) -> dict:
    cache = workspace.root / "bow-linear-validation.json"
    if cache.exists():
        return json.loads(cache.read_text())
    n_warm = len(songs.training.song_ids)
    words = int(min(1000, max(16, n_warm // 2)))  # the demo preset's rule
    config = BowConfig(words=words)
    _, warm, _ = train_step.bow_features(workspace, config, songs)
    train = np.setdiff1d(np.arange(n_warm), val_rows)
    Y = songs.training.factors
    predicted = PCARidge(config).fit(warm[train], Y[train]).predict(warm[val_rows])
    figures = ranking(predicted)
    cache.write_text(json.dumps(figures))
    return figures


def arguments(argv, config: str, defaults: dict) -> tuple[argparse.Namespace, dict]:
    """ROOT, --seeds, --name and the model's key=value options (over `defaults`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", required=True)
    parser.add_argument("options", nargs="*", help=f"{config} key=value")
    args = parser.parse_intermixed_args(argv)
    options = dict(defaults)
    for item in args.options:
        key, value = item.split("=", 1)
        options[key] = convert(value)
    return args, options


def main(argv=None) -> None:
    args, options = arguments(argv, "CNNConfig", DEMO_SCHEDULE)
    for seed in args.seeds:
        workspace = seed_workspace(args.root, seed)
        songs = train_step.training_set(workspace, reads="mel")
        data = songs.training
        config = content.make_config("cnn", seed=seed, **options).validate()
        if config.tag_weight > 0:  # as `coldtune train cnn` does: warm songs' tags only
            data.tags = train_step.warm_tags(workspace, data.song_ids)
        start = time.perf_counter()
        model = content.make("cnn", **config.to_dict()).fit(data)
        seconds = time.perf_counter() - start
        val_rows, ranking = model.validation_
        assert np.array_equal(val_rows, split_rows(len(data.song_ids), fraction=0.1, seed=seed)[0])
        store = data.features
        E = clip_embeddings(
            model.network_, [np.asarray(store.song(s, "mel")) for s in data.song_ids]
        )
        network = ranking(model._outputs(E[val_rows]))
        train = np.setdiff1d(np.arange(len(data.song_ids)), val_rows)
        pca_ridge = ranking(
            PCARidge(BowConfig()).fit(E[train], data.factors[train]).predict(E[val_rows])
        )
        ridge = model.fit_report_.get("readout") or model._fit_readout(
            data, val_rows, ranking, config.replace(readout="ridge", selection="auc")
        )
        best_alpha = ridge["alpha"]
        ridge_best = ridge["validation"][str(best_alpha)]  # auc, map, minus the MSE
        # the refitted read-out is chosen on these songs: its AUC there is optimistic by
        # the choice of alpha only (5 candidates); the fit itself excluded them
        row = {
            "name": args.name,
            "seed": seed,
            "options": {k: v for k, v in options.items()},
            "epochs": model.fit_report_["epochs"],
            "best_epoch": model.fit_report_["best_epoch"],
            "seconds": round(seconds, 1),
            "windows_per_s": model.fit_report_.get("windows_per_s"),
            "network": network,
            "ridge": ridge_best,
            "ridge_alpha": best_alpha,
            "ridge_all": ridge["validation"],
            "pca_ridge": pca_ridge,
            "bow_linear": bow_linear_figures(workspace, songs, val_rows, ranking),
            "history": [
                [
                    h["epoch"],
                    round(h["train_loss"], 4),
                    round(h["validation_loss"], 4),
                    round(h.get("validation_score", float("nan")), 4),
                ]
                for h in model.history_
            ],
        }
        with open(args.root / "validation.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
