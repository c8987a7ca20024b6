"""The spark backend: MLlib ALS on a local Spark, held to eq. (2)-(3) and to implicit.

One SparkSession (local[2]) serves the whole module; coldtune's code finds it active
and leaves it running, as it would inside spark-submit or a notebook.
"""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from reference import least_squares_rows, objective_dense
from typer.testing import CliRunner

pytest.importorskip("pyspark", reason="the spark extra is not installed")

from coldtune import WeightedMatrixFactorization, steps  # noqa: E402
from coldtune.cf import spark as cf_spark  # noqa: E402
from coldtune.cf.algebra import balance_factors, confidence, wmf_objective  # noqa: E402
from coldtune.cf.rows import solve_rows  # noqa: E402
from coldtune.cli import app  # noqa: E402
from coldtune.data.plays import Interactions  # noqa: E402
from coldtune.data.splits import SplitConfig, split_songs  # noqa: E402
from coldtune.data.synth import synth_config, synth_plays, write_plays  # noqa: E402
from coldtune.errors import ColdtuneError, PlaysFormatError  # noqa: E402
from coldtune.eval.protocol import evaluate_scores, factor_scores  # noqa: E402
from coldtune.workspace import Workspace  # noqa: E402

ALPHA, EPS, LAM = 2.0, 0.5, 1.0
# what spark_session may set for the JVM's launch only, as it was before any session
LAUNCH_ENV = ("SPARK_LOCAL_IP", *cf_spark.BLAS_THREAD_VARIABLES)
ENV_BEFORE = {name: os.environ.get(name) for name in LAUNCH_ENV}


@pytest.fixture(scope="module")
def spark():
    with cf_spark.spark_session(cf_spark.SparkConfig(master="local[2]", driver_memory="1g")) as s:
        yield s
    # stopped on leaving the block: the next module starts clean
    from pyspark.sql import SparkSession

    assert SparkSession.getActiveSession() is None


def test_mllib_runs_native_single_threaded_blas(spark):
    """`make setup` installs OpenBLAS as libblas.so.3: MLlib's ALS must load it (its Java
    fallback is 3x slower) with one thread per task, without changing our environment."""
    jvm = spark.sparkContext._jvm
    blas = jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getSimpleName()
    lapack = jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance().getClass().getSimpleName()
    assert (blas, lapack) == ("JNIBLAS", "JNILAPACK"), "apt-get install libopenblas0-serial"
    for name in cf_spark.BLAS_THREAD_VARIABLES:
        assert jvm.java.lang.System.getenv(name) == (ENV_BEFORE[name] or "1")
        assert spark.sparkContext.getConf().get(f"spark.executorEnv.{name}") == "1"
    assert {name: os.environ.get(name) for name in LAUNCH_ENV} == ENV_BEFORE


def test_confidence_is_eq_2_and_regularisation_grows_with_plays(spark, rng):
    # MLlib's last half-sweep solves every user with Y fixed. Redo it with the dense
    # reference: eq. (2)'s confidences (our alpha, epsilon) and lambda_u = regParam * n_u.
    plays = (rng.random((40, 25)) < 0.3) * rng.zipf(2.0, (40, 25)).astype(float)
    plays[0] = 0  # a user without plays: MLlib returns no factors, eq. (3) gives 0
    conf = confidence(sp.csr_matrix(plays), alpha=ALPHA, epsilon=EPS)
    ratings = cf_spark.ratings_from_confidence(conf, alpha=ALPHA)
    np.testing.assert_allclose(
        ratings.column("rating").to_numpy(), np.log1p(plays[plays > 0] / EPS), rtol=1e-6
    )
    # alpha = 0: every c_ui is 1 and only p_ui = I(rating > 0) matters to MLlib
    flat = cf_spark.ratings_from_confidence(
        confidence(sp.csr_matrix(plays), alpha=0, epsilon=1), alpha=0
    )
    assert flat.num_rows == (plays > 0).sum() and set(flat.column("rating").to_numpy()) == {1.0}
    config = cf_spark.SparkConfig(blocks=2)
    users, songs = cf_spark.fit_als(
        spark.createDataFrame(ratings),
        factors=3,
        alpha=ALPHA,
        reg_param=0.05,
        iterations=4,
        seed=1,
        config=config,
    )
    X = cf_spark.collect_factors(users, 40, 3)
    Y = cf_spark.collect_factors(songs, 25, 3)
    assert np.all(X[0] == 0) and np.abs(X[1:]).sum() > 0
    n_u = (plays > 0).sum(axis=1)
    for u in range(1, 40):
        expected = least_squares_rows(plays[u : u + 1], Y.astype(float), ALPHA, EPS, 0.05 * n_u[u])
        np.testing.assert_allclose(X[u], expected[0], rtol=1e-3, atol=1e-5)
    # and our lambda unscaled would not give them: the difference is real
    ours = least_squares_rows(plays, Y.astype(float), ALPHA, EPS, 0.05)
    assert np.abs(ours[1:] - X[1:]).max() > 1e-2


def test_balanced_factors_keep_scores_and_lower_the_penalty(rng):
    X = rng.standard_normal((50, 4)) * [3.0, 1.0, 0.1, 2.0]
    Y = rng.standard_normal((30, 4)) * [0.2, 1.0, 5.0, 1.0]
    Xb, Yb = balance_factors(X, Y)
    np.testing.assert_allclose(Xb @ Yb.T, X @ Y.T, atol=1e-4)
    np.testing.assert_allclose(Xb.T @ Xb, Yb.T @ Yb, atol=1e-3)
    # the lowest penalty any factorization of X Y^T has: twice its nuclear norm
    nuclear = np.linalg.svd(X @ Y.T, compute_uv=False).sum()
    assert (Xb**2).sum() + (Yb**2).sum() == pytest.approx(2 * nuclear, rel=1e-5)


@pytest.fixture(scope="module")
def small_world():
    generated = synth_plays(synth_config("small", seed=5))
    interactions = Interactions(generated.matrix, generated.user_ids, generated.song_ids)
    split = split_songs(interactions, SplitConfig(cold_fraction=0.2, seed=0))
    return generated, interactions, split


def cold_start_metrics(split, interactions, genres, X, Y):
    """mAP@500 and AUC on the cold songs: the upper bound (fold-in from real plays,
    Table 3) and a content model that knows only each song's genre (the warm songs'
    mean factors per genre)."""
    cold = split.cold_plays(interactions.matrix)
    folded = solve_rows(
        confidence(cold.T.tocsr(), alpha=ALPHA, epsilon=EPS), X, regularization=LAM, device="cpu"
    )
    warm_genre, cold_genre = genres[split.warm_songs], genres[split.cold_songs]
    centroids = np.stack([Y[warm_genre == g].mean(axis=0) for g in range(genres.max() + 1)]).astype(
        np.float32
    )
    figures = {}
    for name, song_factors in (("upper bound", folded), ("genre", centroids[cold_genre])):
        result = evaluate_scores(factor_scores(X, song_factors), cold)
        figures[name] = (result.mean_average_precision, result.mean_auc)
    return figures


def test_spark_and_implicit_agree_on_cold_start_and_eq_3(spark, small_world):
    generated, interactions, split = small_world
    train = split.training_plays(interactions.matrix)
    models = {
        backend: WeightedMatrixFactorization(16, ALPHA, EPS, LAM, 15, backend).fit(train)
        for backend in ("implicit", "spark")
    }
    spark_model = models["spark"]
    assert len(spark_model.objective_) == 1 and len(spark_model.seconds_per_iteration_) == 15
    conf = confidence(train, alpha=ALPHA, epsilon=EPS)
    ours = models["implicit"].objective_[-1]
    theirs = wmf_objective(conf, spark_model.user_factors_, spark_model.song_factors_, LAM)
    assert spark_model.objective_[-1] == pytest.approx(theirs, rel=1e-6)
    assert theirs == pytest.approx(ours, rel=0.05)
    assert theirs > ours * 0.999  # implicit solves eq. (3) itself: Spark cannot beat it
    figures = {
        backend: cold_start_metrics(
            split, interactions, generated.song_genres, m.user_factors_, m.song_factors_
        )
        for backend, m in models.items()
    }
    for name in ("upper bound", "genre"):
        (map_i, auc_i), (map_s, auc_s) = figures["implicit"][name], figures["spark"][name]
        assert map_s == pytest.approx(map_i, rel=0.05), name
        assert auc_s == pytest.approx(auc_i, rel=0.05), name
        assert auc_s > 0.7 and map_s > 0.1  # far above chance (AUC 0.5, mAP ~0.01)


def test_parquet_on_spark_writes_the_workspace_that_evaluate_reads(spark, tmp_path):
    generated = synth_plays(synth_config("tiny", seed=2))
    source = write_plays(generated, tmp_path / "plays.parquet", format="parquet")
    w = Workspace(tmp_path / "w")
    interactions = steps.plays.ingest(source, w, format="parquet")
    split = steps.plays.split(w, SplitConfig(cold_fraction=0.25, seed=1))
    train = split.training_plays(interactions.matrix)
    # the lake's file has more: two more rows of a pair already played (summed with
    # it), a row without a user, a row of a user the workspace does not know
    song = int(train[0].indices[0])
    user_id = interactions.user_ids[split.users[0]]
    song_id = interactions.song_ids[split.warm_songs[song]]
    extra = pa.table(
        {
            "listener": pa.array([user_id, user_id, "nobody", None], pa.string()),
            "track": pa.array([song_id] * 3 + ["x"], pa.string()),
            "n": pa.array([2, 3, 1, 1], pa.int64()),
        }
    )
    base = pq.read_table(source).rename_columns(["listener", "track", "n"])
    lake = tmp_path / "lake" / "plays"
    lake.mkdir(parents=True)  # a folder of part files, as Spark and Hive write them
    pq.write_table(base.cast(extra.schema), lake / "part-0.parquet")
    pq.write_table(extra, lake / "part-1.parquet")

    result = CliRunner().invoke(
        app,
        [
            "wmf", "fit", "-w", str(w.root), "--backend", "spark", "--plays", lake.as_uri(),
            "--user-col", "listener", "--song-col", "track", "--count-col", "n",
            "--factors", "8", "--iterations", "6", "--alpha", str(ALPHA), "--epsilon", str(EPS),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    history = json.loads((w.wmf_dir / "history.json").read_text())
    # cold songs' plays never reach WMF: exactly the training matrix's pairs are used
    assert history["plays"] == train.nnz
    assert history["rows_bad"] == 1 and history["rows_read"] == base.num_rows + 4
    cold_rows = split.cold_plays(interactions.matrix).nnz
    assert history["rows_outside_split"] == cold_rows + 1  # + the unknown user
    model = steps.wmf.load_wmf(w)
    assert model.backend == "spark"
    assert model.user_factors_.shape == (len(split.users), 8)
    assert model.song_factors_.shape == (len(split.warm_songs), 8)
    # the objective Spark computed without the matrix is eq. (3) of the written factors
    # (the training plays, with the lake's extra plays summed in)
    plays = train.toarray().astype(float)
    plays[0, song] += 5
    expected = objective_dense(plays, model.user_factors_, model.song_factors_, ALPHA, EPS, LAM)
    assert history["objective"][0] == pytest.approx(expected, rel=1e-4)
    results = steps.evaluate.evaluate(w)
    rows = {row["model"]: row for row in results["rows"]}
    assert rows["upper bound"]["auc"] > rows["random"]["auc"] + 0.1


def test_missing_plays_and_columns_are_named(spark, tmp_path):
    generated = synth_plays(synth_config("tiny", seed=2))
    source = write_plays(generated, tmp_path / "plays.parquet", format="parquet")
    w = Workspace(tmp_path / "w")
    steps.plays.ingest(source, w, format="parquet")
    steps.plays.split(w, SplitConfig(cold_fraction=0.25))
    from coldtune.cf.wmf import WMFConfig

    with pytest.raises(PlaysFormatError, match="no user column 'listener'"):
        steps.wmf.fit_spark(
            w, WMFConfig(), str(source), columns=cf_spark.PlaysColumns(user="listener")
        )
    with pytest.raises(PlaysFormatError, match="cannot read it as Parquet"):
        steps.wmf.fit_spark(w, WMFConfig(), str(tmp_path / "nothing.parquet"))


def test_driver_memory_defaults_to_most_of_the_machine_in_local_mode():
    assert cf_spark.default_driver_memory("local[*]", machine_bytes=24 * 2**30) == "14g"
    assert cf_spark.default_driver_memory("local[2]", machine_bytes=2**30) == "1g"
    assert cf_spark.default_driver_memory("yarn", machine_bytes=24 * 2**30) == "4g"
    # this machine: 60% of its memory or of the container's limit, whichever is lower
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.exists() and limit.read_text().strip().isdigit():
        machine = min(machine, int(limit.read_text().strip()))
    expected = f"{max(1, int(0.6 * machine / 2**30))}g"
    assert cf_spark.default_driver_memory("local[*]") == expected


def test_a_java_heap_exhausted_is_explained_and_other_errors_pass(spark):
    # A real OutOfMemoryError can take the JVM down with it (and this module's session);
    # Spark reports a task's as this text inside its Py4JJavaError.
    oom = RuntimeError(
        "An error occurred while calling o123.fit.\n: org.apache.spark.SparkException: Job "
        "aborted due to stage failure: java.lang.OutOfMemoryError: Java heap space"
    )
    with pytest.raises(ColdtuneError, match=r"out of memory .*--spark-driver-memory") as caught:
        with cf_spark.spark_session():
            raise oom
    assert caught.value.__cause__ is oom
    with pytest.raises(ValueError, match="not about memory"):
        with cf_spark.spark_session():
            raise ValueError("not about memory")
    assert spark.range(3).count() == 3  # the session is still usable
