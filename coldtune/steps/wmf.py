"""`coldtune wmf fit`: WMF (eq. 1-3) on the warm songs' plays only; W/wmf/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from coldtune.cf.spark import PlaysColumns, SparkConfig, fit_from_parquet, spark_session
from coldtune.cf.wmf import IterationCallback, WeightedMatrixFactorization, WMFConfig
from coldtune.data.plays import Interactions, load_ids, load_interactions
from coldtune.data.splits import ColdStartSplit, load_split
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.workspace import Workspace


@dataclass
class WMFResult:
    model: WeightedMatrixFactorization
    split: ColdStartSplit
    interactions: Interactions


def fit(
    workspace: Workspace,
    config: WMFConfig,
    *,
    device: str | None = None,
    callback: IterationCallback | None = None,
) -> WMFResult:
    """WMF on the split's users and warm songs (cold songs' plays never enter here);
    writes W/wmf/ (factors.npz, config.json, history.json)."""
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    train = split.training_plays(interactions.matrix)
    model = WeightedMatrixFactorization(
        **asdict(config) | {"device": device, "callback": callback}
    ).fit(train)
    model.save(
        workspace.wmf_dir,
        history={
            "n_users": int(train.shape[0]),
            "n_songs": int(train.shape[1]),
            "plays": int(train.nnz),
        },
    )
    return WMFResult(model, split, interactions)


def fit_spark(
    workspace: Workspace,
    config: WMFConfig,
    plays: str,
    *,
    spark=None,
    columns=None,
    on_stage: Callable[[str], None] | None = None,
):
    """`coldtune wmf fit --backend spark --plays URI`: Spark reads the plays, fits MLlib ALS.

    plays : Parquet file or folder, as a path or URI Spark reads (hdfs://, s3a://, file:).
    The workspace gives the ids (W/plays/users.parquet, songs.parquet) and the split:
    only the split's users and warm songs are kept, so the factors land in the same
    rows as `fit`'s and `coldtune evaluate` and the content models use them unchanged.
    The plays matrix itself is never loaded here.
    """
    ids = load_ids(workspace)  # the ids of rows and columns, without the plays matrix
    split = load_split(workspace, ids)
    fitted = fit_from_parquet(
        plays,
        users=ids.user_ids[split.users],
        songs=ids.song_ids[split.warm_songs],
        factors=config.factors,
        alpha=config.alpha,
        epsilon=config.epsilon,
        regularization=config.regularization,
        iterations=config.iterations,
        seed=config.seed,
        config=spark or SparkConfig(),
        columns=columns or PlaysColumns(),
        on_stage=on_stage,
    )
    report = fitted.plays
    model = WeightedMatrixFactorization.from_factors(
        replace(config, backend="spark"),
        fitted.user_factors,
        fitted.song_factors,
        # eq. (3) after the last iteration; MLlib reports nothing in between
        objective=[fitted.objective],
        seconds_per_iteration=[fitted.seconds / config.iterations] * config.iterations,
    )
    model.save(
        workspace.wmf_dir,
        history={
            "n_users": len(split.users),
            "n_songs": len(split.warm_songs),
            "plays": report.plays,
            "source": plays,
            "rows_read": report.rows_read,
            "rows_bad": report.rows_bad,
            "rows_outside_split": report.rows_outside,
            "reg_param": fitted.reg_param,
            "spark": fitted.spark,
        },
    )
    return fitted


def load_wmf(
    workspace: Workspace, *, split: ColdStartSplit | None = None
) -> WeightedMatrixFactorization:
    """The fitted model of W/wmf/: factors of the split's users and warm songs.

    split : when given, the factors must have one row per user and per warm song of it;
        a split made again after `wmf fit` is an error, not a silent misalignment.
    """
    folder = workspace.wmf_dir
    workspace.require(
        folder / "factors.npz",
        what="WMF factors",
        hint="run `coldtune wmf fit --workspace W` first",
    )
    try:
        model = WeightedMatrixFactorization.load(folder)
    except ParameterError as error:
        raise WorkspaceError(f"{error}; run `coldtune wmf fit --workspace W`") from None
    if split is not None and (
        model.user_factors_.shape[0] != len(split.users)
        or model.song_factors_.shape[0] != len(split.warm_songs)
    ):
        raise WorkspaceError(
            f"{folder}: factors of {model.user_factors_.shape[0]} users and "
            f"{model.song_factors_.shape[0]} songs do not match {workspace.split_path} "
            f"({len(split.users)} users, {len(split.warm_songs)} warm songs; was the split "
            "made again?); run `coldtune wmf fit` again"
        )
    return model


def with_spark_settings(spark: SparkConfig, conf: list[str] | None) -> SparkConfig:
    """`spark` with further Spark settings given as KEY=VALUE words (`--spark-conf`)."""
    pairs = []
    for item in conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"a Spark setting must be KEY=VALUE, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return replace(spark, conf=(*spark.conf, *pairs))


def run(
    workspace: Workspace,
    config: WMFConfig,
    *,
    plays: str | None = None,
    spark=None,
    columns=None,
    device: str | None = None,
    callback: IterationCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
):
    """`coldtune wmf fit`: the backend `config` names. With backend "spark", `plays`
    (a Parquet path or URI) is read by Spark itself (`fit_spark`); without it Spark fits
    the ingested plays on a session made from `spark` (a SparkConfig)."""
    if config.backend != "spark":
        if plays is not None:
            raise ParameterError("plays= (--plays) is read by Spark: use backend spark")
        return fit(workspace, config, device=device, callback=callback)
    if plays is not None:
        return fit_spark(workspace, config, plays, spark=spark, columns=columns, on_stage=on_stage)

    with spark_session(spark):  # the backend runs on this session
        return fit(workspace, config, callback=callback)
