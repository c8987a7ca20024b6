"""The steps of an experiment, each reading and writing a workspace (see DESIGN.md).

Each function is what one CLI command runs; Python users call them directly. A step
writes its artefacts atomically, so killing it leaves the previous state intact.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from coldtune.cf.spark import PlaysColumns, SparkConfig, SparkFit
from coldtune.cf.wmf import IterationCallback, WeightedMatrixFactorization, WMFConfig
from coldtune.data.plays import (
    Interactions,
    load_ids,
    load_interactions,
    read_plays,
    save_interactions,
)
from coldtune.data.splits import (
    ColdStartSplit,
    SplitConfig,
    load_split,
    save_split,
    split_songs,
)
from coldtune.errors import WorkspaceError
from coldtune.eval.protocol import evaluate_scores, factor_scores, random_factors
from coldtune.workspace import Workspace, atomic_path, read_json, write_json


def ingest(path: str | Path, workspace: Workspace, **read_options) -> Interactions:
    """`coldtune plays ingest`: read play counts and store them in W/plays/."""
    interactions = read_plays(path, **read_options)
    save_interactions(interactions, workspace)
    return interactions


def make_split(workspace: Workspace, config: SplitConfig) -> ColdStartSplit:
    """`coldtune split`: choose users, warm and cold songs; write W/split.json."""
    interactions = load_interactions(workspace)
    split = split_songs(interactions, config)
    save_split(split, interactions, workspace)
    return split


@dataclass
class WMFResult:
    model: WeightedMatrixFactorization
    split: ColdStartSplit
    interactions: Interactions


def fit_wmf(
    workspace: Workspace,
    config: WMFConfig,
    *,
    device: str | None = None,
    callback: IterationCallback | None = None,
) -> WMFResult:
    """`coldtune wmf fit`: WMF on the warm songs' plays only; write W/wmf/."""
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    train = split.training_plays(interactions.matrix)  # cold songs' plays never enter here
    model = WeightedMatrixFactorization(
        **asdict(config) | {"device": device, "callback": callback}
    ).fit(train)
    save_wmf(
        workspace,
        config,
        model.user_factors_,
        model.song_factors_,
        {
            "objective": model.objective_,
            "seconds_per_iteration": model.seconds_per_iteration_,
            "n_users": int(train.shape[0]),
            "n_songs": int(train.shape[1]),
            "plays": int(train.nnz),
        },
    )
    return WMFResult(model, split, interactions)


def save_wmf(
    workspace: Workspace,
    config: WMFConfig,
    user_factors: np.ndarray,
    song_factors: np.ndarray,
    history: dict,
) -> None:
    """Write W/wmf/: factors.npz (rows: the split's users, its warm songs), config.json
    and history.json (objective and seconds per iteration, sizes, anything else)."""
    folder = workspace.wmf_dir
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "factors.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, user_factors=user_factors, song_factors=song_factors)
    write_json(folder / "config.json", config)
    write_json(folder / "history.json", history)


def fit_wmf_spark(
    workspace: Workspace,
    config: WMFConfig,
    plays: str,
    *,
    spark: SparkConfig | None = None,
    columns: PlaysColumns | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> SparkFit:
    """`coldtune wmf fit --backend spark --plays URI`: Spark reads the plays, fits MLlib ALS.

    plays : Parquet file or folder, as a path or URI Spark reads (hdfs://, s3a://, file:).
    The workspace gives the ids (W/plays/users.parquet, songs.parquet) and the split:
    only the split's users and warm songs are kept, so the factors land in the same
    rows as `fit_wmf`'s and `coldtune evaluate` and the content models use them unchanged.
    The plays matrix itself is never loaded here.
    """
    from coldtune.cf.spark import fit_from_parquet

    # the ids of rows and columns and the split, without the plays matrix
    ids = load_ids(workspace)
    split = load_split(workspace, ids)
    fit = fit_from_parquet(
        plays,
        users=ids.user_ids[split.users],
        songs=ids.song_ids[split.warm_songs],
        factors=config.factors,
        alpha=config.alpha,
        epsilon=config.epsilon,
        regularization=config.regularization,
        iterations=config.iterations,
        seed=config.random_state,
        config=spark or SparkConfig(),
        columns=columns or PlaysColumns(),
        on_stage=on_stage,
    )
    report = fit.plays
    save_wmf(
        workspace,
        replace(config, backend="spark"),
        fit.user_factors,
        fit.song_factors,
        {
            # eq. (3) after the last iteration; MLlib reports nothing in between
            "objective": [fit.objective],
            "seconds_per_iteration": [fit.seconds / config.iterations] * config.iterations,
            "n_users": len(split.users),
            "n_songs": len(split.warm_songs),
            "plays": report.plays,
            "source": plays,
            "rows_read": report.rows_read,
            "rows_bad": report.rows_bad,
            "rows_outside_split": report.rows_outside,
            "reg_param": fit.reg_param,
            "spark": fit.spark,
        },
    )
    return fit


def load_wmf(workspace: Workspace) -> WeightedMatrixFactorization:
    """The fitted model of W/wmf/: factors of the split's users and warm songs."""
    folder = workspace.wmf_dir
    hint = "run `coldtune wmf fit --workspace W` first"
    workspace.require(folder / "factors.npz", what="WMF factors", hint=hint)
    config = WMFConfig(**read_json(folder / "config.json", what="WMF config", hint=hint))
    model = WeightedMatrixFactorization(**asdict(config))
    with np.load(folder / "factors.npz") as factors:
        model.user_factors_ = factors["user_factors"]
        model.song_factors_ = factors["song_factors"]
    return model


TABLE_TITLE = "Cold-start recommendation (section 5.2)"


def evaluate(
    workspace: Workspace,
    *,
    k: int = 500,
    device: str | None = None,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """`coldtune evaluate`: the results table for every set of cold-song factors.

    on_progress : called with (row name, users done, users to do) as evaluation goes.

    Rows: random factors, every content model's predictions found in W/models/, and the
    upper bound (cold songs' factors folded in from their real plays, X fixed).
    Writes W/results/evaluation.json and evaluation.md; returns the JSON.
    """
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    model = load_wmf(workspace)
    if model.user_factors_.shape[0] != len(split.users) or model.song_factors_.shape[0] != len(
        split.warm_songs
    ):
        raise WorkspaceError(
            f"{workspace.wmf_dir}: factors do not match {workspace.split_path} "
            "(was the split made again?); run `coldtune wmf fit` again"
        )
    cold_plays = split.cold_plays(interactions.matrix)
    candidates: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("random", lambda: random_factors(model.song_factors_, len(split.cold_songs), seed=seed)),
        *_content_predictions(workspace, interactions, split),
        ("upper bound", lambda: model.fold_in_songs(cold_plays)),
    ]
    rows = []
    n_evaluated = None
    for name, song_factors in candidates:
        start = time.perf_counter()
        result = evaluate_scores(
            factor_scores(model.user_factors_, song_factors(), device=device),
            cold_plays,
            k=k,
            device=device,
            on_progress=(None if on_progress is None else functools.partial(on_progress, name)),
        )
        n_evaluated = len(result.users)
        rows.append(
            {
                "model": name,
                "map": result.mean_average_precision,
                "auc": result.mean_auc,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    results = {
        "title": TABLE_TITLE,
        "k": k,
        "n_users": len(split.users),
        "n_users_evaluated": n_evaluated,
        "n_songs": len(split.warm_songs) + len(split.cold_songs),
        "n_cold_songs": len(split.cold_songs),
        "factors": model.factors,
        "rows": rows,
    }
    folder = workspace.results_dir
    write_json(folder / "evaluation.json", results)
    with atomic_path(folder / "evaluation.md") as tmp:
        tmp.write_text(results_markdown(results))
    return results


def _content_predictions(
    workspace: Workspace, interactions: Interactions, split: ColdStartSplit
) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """Predicted cold-song factors saved by content models (W/models/<name>/predictions.npz)."""
    found = []
    root = workspace.root / "models"
    for path in sorted(root.glob("*/predictions.npz")) if root.exists() else []:

        def load(path: Path = path) -> np.ndarray:
            with np.load(path, allow_pickle=False) as saved:
                index = {song: i for i, song in enumerate(saved["song_ids"])}
                wanted = interactions.song_ids[split.cold_songs]
                missing = [song for song in wanted if song not in index]
                if missing:
                    raise WorkspaceError(
                        f"{path}: no prediction for {len(missing)} cold songs "
                        f"(e.g. {missing[0]!r}); predict again"
                    )
                return saved["factors"][[index[song] for song in wanted]]

        found.append((path.parent.name, load))
    return found


def results_markdown(results: dict) -> str:
    lines = [
        f"## {results['title']}",
        "",
        f"{results['n_users_evaluated']:,} users evaluated (of {results['n_users']:,}), "
        f"{results['n_songs']:,} songs of which {results['n_cold_songs']:,} cold, "
        f"{results['factors']} factors.",
        "",
        f"| Model | mAP@{results['k']} | AUC |",
        "| --- | ---: | ---: |",
    ]
    for row in results["rows"]:
        lines.append(f"| {row['model']} | {row['map']:.5f} | {row['auc']:.5f} |")
    return "\n".join(lines) + "\n"
