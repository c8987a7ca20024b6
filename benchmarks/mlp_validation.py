"""Validation figures of bow-mlp settings on WARM songs only (issue 14): where the
MLP's dropout defaults in docs/models.md come from.

The workspaces are cnn_validation.py's (ROOT/seedS: the demo preset's split and WMF fit
for seed S, made once from ROOT's plays/ and features/). For each seed and each
setting, bow-mlp is trained with the given options; the training loop holds out 10% of
the warm songs (its validation songs, which choose its epoch by the validation loss) and
those songs' predictions are scored as cnn_validation.py scores the CNN's: the mean AUC
and mAP over users of x_u^T y' against the validation songs they played (training plays
only, WMF's user factors). No cold song is predicted or scored.

    python benchmarks/mlp_validation.py ROOT --seeds 0 1 2 --name NAME [key=value ...]

One JSON line per seed is appended to ROOT/mlp_validation.jsonl.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from cnn_validation import arguments, seed_workspace

from coldtune import content
from coldtune.content.base import stored_songs
from coldtune.content.training import train_config
from coldtune.content.validation import RankingValidation, split_rows
from coldtune.steps import train as train_step


def main(argv=None) -> None:
    args, options = arguments(argv, "BowMLPConfig", {})
    for seed in args.seeds:
        workspace = seed_workspace(args.root, seed)
        data = train_step.training_set(workspace).training
        n_warm = len(data.song_ids)
        words = int(min(1000, max(16, n_warm // 2)))  # the demo preset's rule
        config = content.make_config("bow-mlp", seed=seed, words=words, **options).validate()
        start = time.perf_counter()
        model = content.make("bow-mlp", **config.to_dict()).fit(data)
        seconds = time.perf_counter() - start
        loop = train_config(config)  # the training loop's split of the warm songs
        val_rows, _ = split_rows(n_warm, fraction=loop.validation_fraction, seed=loop.seed)
        ranking = RankingValidation(data.user_factors, data.confidence, val_rows)
        ids = [str(s) for s in np.asarray(data.song_ids)[val_rows]]
        figures = ranking(model.predict(stored_songs(data.features, ids)))
        row = {
            "name": args.name,
            "seed": seed,
            "options": options,
            "epochs": model.fit_report_["epochs"],
            "best_epoch": model.fit_report_["best_epoch"],
            "seconds": round(seconds, 1),
            "validation": figures,
        }
        with open(args.root / "mlp_validation.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
