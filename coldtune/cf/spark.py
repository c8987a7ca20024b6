"""WMF on Apache Spark: MLlib's ALS with implicit preferences, fed eq. (2) exactly.

MLlib's implicit ALS (Hu, Koren and Volinsky 2008, as in `ALS.scala`) builds, for each
row with observed entries j (rating r_j > 0):

    A = Y^T Y + sum_j c1_j y_j y_j^T + regParam * n_u * I,   b = sum_j (1 + c1_j) y_j,
    c1_j = alpha * |rating_j|

and solves A x_u = b. Fed rating = log(1 + r_ui / epsilon) and our alpha, its
confidence 1 + c1 is c_ui of eq. (2) exactly, and preference p_ui = 1 where r_ui > 0 is
eq. (1). The one difference from eq. (3) is the regularisation: MLlib multiplies
regParam by the row's number of observed entries n_u (the "ALS-WR" weighting of Zhou
et al. 2008), so the objective it minimises is

    sum_{u,i} c_ui (p_ui - x_u^T y_i)^2 + regParam (sum_u n_u |x_u|^2 + sum_i n_i |y_i|^2)

`matching_reg_param` turns eq. (3)'s lambda into the regParam that gives about the same
factors (docs/wmf.md shows how close). The per-row weighting also leaves the two sides
with unequal norms (heavy rows shrunk more); coldtune then applies
`coldtune.cf.wmf.balance_factors`, which keeps every score x_u^T y_i and gives the
eq. (3) penalty its lowest value for those scores. Spark draws its own initial factors
(unit-norm Gaussian rows from `seed`) and runs every iteration in one job, so the
objective is known after the last iteration only.

pyspark is an optional dependency: `pip install 'coldtune[spark]'`, and Java 17 or later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from coldtune.cf.algebra import balance_factors
from coldtune.errors import ColdtuneError, ParameterError, PlaysFormatError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT = "install it with `pip install 'coldtune[spark]'` (Spark also needs Java 17+)"

# Spark's own log4j profile prints every WARN to the console; ours keeps errors only.
_LOG4J2 = """\
# root at warn, as pyspark expects (else it prints a notice that it changed the level);
# the console shows errors only.
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = error
"""


@dataclass(frozen=True)
class SparkConfig:
    """Where Spark runs and how ALS is cut into tasks; saved beside the factors.

    master : "local[N]" / "local[*]" (this machine), "yarn", "spark://host:7077",
        "k8s://...". Ignored when a SparkSession is already active (spark-submit, a
        notebook): coldtune then uses that session and leaves it running.
    driver_memory : heap of the driver JVM (in local mode, of the whole of Spark). None:
        in local mode 60% of this machine's memory, on a cluster 4g (the executors hold
        the data). On the Taste Profile's 42 M plays, local Spark with a 16g heap peaked
        at 11 GiB resident at 50 factors and 15 GiB at 400; 4g failed once at 50.
    blocks : ALS's numUserBlocks and numItemBlocks; None: Spark's default parallelism
        (the number of cores in local mode). More blocks: smaller tasks, more shuffle.
    checkpoint_dir : where ALS checkpoints its lineage every `checkpoint_interval`
        iterations; must be shared storage on a cluster (hdfs://..., s3a://...).
        None: a temporary folder in local mode, no checkpoints on a cluster.
    conf : further Spark settings as (key, value) pairs, e.g. executor memory.
    """

    master: str = field(
        default="local[*]",
        metadata={
            "flag": "--spark-master",
            "help": "local[N], local[*], yarn, spark://HOST:7077, k8s://... (unused when a "
            "SparkSession is already running).",
        },
    )
    driver_memory: str | None = field(
        default=None,
        metadata={
            "flag": "--spark-driver-memory",
            "help": "Driver JVM heap, e.g. 16g. Default: 60% of this machine's memory in "
            "local mode (Spark runs inside the driver), 4g on a cluster.",
        },
    )
    blocks: int | None = field(
        default=None, metadata={"flag": "--spark-blocks", "help": "ALS's user and song blocks."}
    )
    checkpoint_dir: str | None = field(
        default=None,
        metadata={
            "flag": "--spark-checkpoint-dir",
            "help": "Shared folder for ALS checkpoints on a cluster.",
        },
    )
    checkpoint_interval: int = field(
        default=5, metadata={"flag": "--spark-checkpoint-interval", "help": "Iterations between."}
    )
    conf: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def default_driver_memory(master: str, *, machine_bytes: int | None = None) -> str:
    """SparkConfig.driver_memory when none is given: "4g" on a cluster; in local mode,
    where tasks run inside the driver, 60% of the machine's (or container's) memory,
    leaving the rest to this Python process and the JVM's own overhead; at least 1g."""
    if not master.startswith("local"):
        return "4g"
    if machine_bytes is None:
        machine_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        try:  # a container's limit (cgroup v2), when lower than the machine's
            limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
            if limit.isdigit():
                machine_bytes = min(machine_bytes, int(limit))
        except OSError:
            pass
    return f"{max(1, int(0.6 * machine_bytes / 2**30))}g"


@contextlib.contextmanager
def _explaining_out_of_memory(memory: str, local: bool) -> Iterator[None]:
    """Turn a Java heap exhausted inside Spark into a clear error; others pass as they are."""
    try:
        yield
    except Exception as error:
        if "java.lang.OutOfMemoryError" not in str(error):
            raise
        where = (
            f"the driver's heap ({memory}), which holds all of local Spark"
            if local
            else f"the driver's ({memory}) or an executor's heap"
        )
        raise ColdtuneError(
            f"Spark ran out of memory in {where}: give it more with --spark-driver-memory "
            "(SparkConfig.driver_memory; local Spark on the Taste Profile's 42 M plays ran "
            "in a 16g heap at 50 and 400 factors) or, on a cluster, --spark-conf "
            "spark.executor.memory=...; more ALS blocks (SparkConfig.blocks) make each "
            "task smaller"
        ) from error


# the thread counts of OpenBLAS and MKL, the native libraries MLlib loads
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _pyspark():
    # pyspark warns whenever it checks the pandas version (on import, on DataFrame
    # creation); coldtune passes Arrow tables and never pandas, so the warning is noise.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    try:
        import pyspark.ml.recommendation  # noqa: F401
        import pyspark.sql
    except ImportError as exc:
        raise ColdtuneError(
            f"the spark backend needs pyspark, which is missing: {INSTALL_HINT}"
        ) from exc
    return pyspark


@contextlib.contextmanager
def spark_session(config: SparkConfig | None = None) -> Iterator[SparkSession]:
    """The active SparkSession if there is one, else a new one, stopped on exit.

    A session started here keeps everything it writes (shuffle files, checkpoints, the
    SQL warehouse, JVM temp files) in one temporary folder that is removed on exit,
    shows no progress bars or web UI, and logs errors only.
    """
    config = config or SparkConfig()
    pyspark = _pyspark()
    active = pyspark.sql.SparkSession.getActiveSession()
    if active is not None:
        memory = active.sparkContext.getConf().get("spark.driver.memory", "1g")
        with _explaining_out_of_memory(memory, active.sparkContext.master.startswith("local")):
            yield active
        return
    memory = config.driver_memory or default_driver_memory(config.master)
    scratch = Path(tempfile.mkdtemp(prefix="coldtune-spark-"))
    (scratch / "log4j2.properties").write_text(_LOG4J2)
    java_options = f"-Dlog4j2.configurationFile=file:{scratch / 'log4j2.properties'}"
    java_options += f" -Djava.io.tmpdir={scratch}"
    builder = (
        pyspark.sql.SparkSession.builder.master(config.master)
        .appName("coldtune")
        .config("spark.driver.memory", memory)
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
    )
    local = config.master.startswith("local")
    if local:
        # Spark's 200 shuffle partitions are meant for clusters; on one machine they
        # are 200 tiny tasks per shuffle. A few per core keeps every core busy.
        threads = config.master.removeprefix("local").strip("[]").split(",")[0]
        cores = (os.cpu_count() or 1) if threads in ("", "*") else int(threads)
        builder = builder.config("spark.sql.shuffle.partitions", str(2 * cores))
    # MLlib's ALS calls BLAS and LAPACK once per row from every task, one task per core;
    # a native library that starts its own threads on top oversubscribes the cores
    # (Spark's linear-algebra guide recommends one thread). Executors get it as Spark
    # settings; the local JVM inherits this process's environment at launch.
    for name in BLAS_THREAD_VARIABLES:
        builder = builder.config(f"spark.executorEnv.{name}", "1")
    for key, value in config.conf:
        builder = builder.config(key, value)
    launch_env = {name: "1" for name in BLAS_THREAD_VARIABLES}
    # Without it Spark warns that the host name resolves to a loopback address.
    launch_env["SPARK_LOCAL_IP"] = "127.0.0.1"
    saved = {name: os.environ.get(name) for name in launch_env}
    if local:
        os.environ.update({k: v for k, v in launch_env.items() if saved[k] is None})
    spark = None
    try:
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # py4j and Java launch errors have no common base class
            raise ColdtuneError(
                f"could not start Spark (master {config.master!r}): {exc}; is Java 17+ "
                "installed and on PATH (JAVA_HOME)?"
            ) from exc
        finally:
            for name, value in saved.items():
                if local and value is None:
                    del os.environ[name]
        spark.sparkContext.setLogLevel("ERROR")
        checkpoint_dir = config.checkpoint_dir or (str(scratch / "checkpoints") if local else None)
        if checkpoint_dir is not None:
            spark.sparkContext.setCheckpointDir(checkpoint_dir)
        with _explaining_out_of_memory(memory, local):
            yield spark
    finally:
        if spark is not None:
            spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- regularisation


def matching_reg_param(regularization: float, *, n_users: int, n_songs: int, plays: int) -> float:
    """MLlib's regParam that regularises about as much as eq. (3)'s lambda.

    MLlib adds regParam * n_u to user u's normal equations and regParam * n_i to song
    i's, where eq. (3) adds lambda to every row. At an optimum of eq. (3) the two sides
    carry equal weight (rescaling x -> s x, y -> y / s leaves the fit unchanged, so
    lambda |X|^2 = lambda |Y|^2); if the norms do not depend much on the counts, MLlib's
    penalty is about regParam (n_users_mean + n_songs_mean) |X|^2 with
    n_users_mean = plays / n_users, n_songs_mean = plays / n_songs, and ours is
    2 lambda |X|^2. So regParam = 2 lambda / (plays / n_users + plays / n_songs).
    """
    if plays <= 0:
        raise ParameterError("there are no plays to factorize")
    return 2.0 * regularization / (plays / n_users + plays / n_songs)


# --------------------------------------------------------------------------- ALS


def _check_java_int(n: int, what: str) -> None:
    if n >= 2**31:
        raise ParameterError(f"MLlib's ALS takes 32-bit ids; {n:,} {what} is too many")


def fit_als(
    ratings: DataFrame,
    *,
    factors: int,
    alpha: float,
    reg_param: float,
    iterations: int,
    seed: int,
    config: SparkConfig,
) -> tuple[DataFrame, DataFrame]:
    """MLlib implicit ALS on (user int, song int, rating float > 0); returns its factors.

    ratings : one row per played (user, song) pair, rating = log(1 + r_ui / epsilon), so
        that MLlib's confidence 1 + alpha * rating is eq. (2). Pairs must be distinct:
        MLlib counts a repeated pair twice.
    Returns (user factors, song factors) as DataFrames of (id int, features array<float>).
    """
    from pyspark.ml.recommendation import ALS

    spark = ratings.sparkSession
    blocks = config.blocks or max(1, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=factors,
        maxIter=iterations,
        regParam=reg_param,
        implicitPrefs=True,
        alpha=alpha,
        userCol="user",
        itemCol="song",
        ratingCol="rating",
        seed=seed,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        # ignored by Spark unless a checkpoint folder is set (spark_session sets one locally)
        checkpointInterval=config.checkpoint_interval,
    )
    model = als.fit(ratings)
    return model.userFactors, model.itemFactors


def collect_factors(frame: DataFrame, n_rows: int, factors: int) -> np.ndarray:
    """(id, features) rows into a dense float32 [shape=(n_rows, factors)]; absent ids: 0.

    MLlib returns no factors for a row without plays; eq. (3) gives it x_u = 0.
    """
    table = frame.toArrow()
    out = np.zeros((n_rows, factors), dtype=np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        values = table.column("features").combine_chunks().flatten().to_numpy()
        out[ids] = values.reshape(len(ids), factors)
    return out


def ratings_from_confidence(conf: sp.csr_matrix, *, alpha: float) -> pa.Table:
    """Arrow (user, song, rating) of the played pairs, rating = (c_ui - 1) / alpha.

    That is log(1 + r_ui / epsilon) of eq. (2). With alpha = 0 every confidence is 1 and
    only the sign of the rating matters to MLlib (p_ui = 1), so the rating is 1.
    """
    coo = sp.coo_matrix(conf)
    rating = (coo.data.astype(np.float64) - 1.0) / alpha if alpha > 0 else np.ones(coo.nnz)
    return pa.table(
        {
            "user": pa.array(coo.row.astype(np.int32)),
            "song": pa.array(coo.col.astype(np.int32)),
            "rating": pa.array(rating.astype(np.float32)),
        }
    )


class SparkBackend:
    """Backend "spark" of `WeightedMatrixFactorization`: MLlib ALS on a SparkSession.

    Uses the active session (see `spark_session`), else starts a local one for the fit.
    lambda of eq. (3) becomes MLlib's regParam through `matching_reg_param`. The initial
    factors passed in are not used: MLlib draws its own from `seed`.
    """

    def __init__(self, config: SparkConfig | None = None):
        self.config = config or SparkConfig()

    def fit(
        self,
        conf,
        user_factors,
        song_factors,
        *,
        regularization,
        iterations,
        device,
        on_iteration,
        alpha,
        seed,
    ):
        n_users, n_songs = conf.shape
        k = user_factors.shape[1]
        _check_java_int(max(n_users, n_songs), "rows")
        reg_param = matching_reg_param(
            regularization, n_users=n_users, n_songs=n_songs, plays=conf.nnz
        )
        with spark_session(self.config) as spark:
            ratings = spark.createDataFrame(ratings_from_confidence(conf, alpha=alpha))
            users, songs = fit_als(
                ratings,
                factors=k,
                alpha=alpha,
                reg_param=reg_param,
                iterations=iterations,
                seed=seed,
                config=self.config,
            )
            X, Y = balance_factors(
                collect_factors(users, n_users, k), collect_factors(songs, n_songs, k)
            )
        self.reg_param_ = reg_param
        on_iteration(iterations - 1, X, Y)
        return X, Y


# --------------------------------------------------------------------------- Parquet in


@dataclass(frozen=True)
class PlaysColumns:
    user: str = "user"
    song: str = "song"
    count: str = "count"


@dataclass
class SparkPlays:
    """Training plays read by Spark, with ids already mapped to factor rows."""

    ratings: DataFrame  # (user int, song int, rating float), one row per distinct pair
    cached: DataFrame  # what `ratings` is read from, persisted; unpersist when done
    rows_read: int
    rows_bad: int  # null id, null or negative count
    rows_outside: int  # user or song not among the split's users and warm songs
    plays: int  # distinct (user, song) pairs kept

    def summary(self) -> str:
        return (
            f"read {self.rows_read:,} rows: {self.plays:,} (user, song) pairs kept, "
            f"{self.rows_outside:,} rows outside the split's users and warm songs, "
            f"{self.rows_bad:,} bad (no id, no count or a negative one)"
        )


def read_plays_spark(
    spark: SparkSession,
    uri: str,
    *,
    users: np.ndarray,
    songs: np.ndarray,
    epsilon: float,
    columns: PlaysColumns = PlaysColumns(),
) -> SparkPlays:
    """Play counts from Parquet at `uri` (any filesystem Spark reads) as MLlib ratings.

    users, songs : ids [dtype=str]; `users[u]` becomes row u of the user factors and
        `songs[i]` row i of the song factors. Rows whose user or song is not listed are
        left out (and counted): with the split's warm songs, no cold song's play can
        reach WMF. Repeated (user, song) rows are summed first, as ingest does, then
        rating = log(1 + r / epsilon) (eq. 2 with alpha applied by MLlib).
    """
    from pyspark.sql import functions as F

    try:
        frame = spark.read.parquet(uri)
    except Exception as exc:  # AnalysisException: path missing or not Parquet
        raise PlaysFormatError(f"{uri}: Spark cannot read it as Parquet ({exc})") from exc
    wanted = {"user": columns.user, "song": columns.song, "count": columns.count}
    missing = [
        f"{what} column {name!r}" for what, name in wanted.items() if name not in frame.columns
    ]
    if missing:
        raise PlaysFormatError(
            f"{uri}: no {', '.join(missing)}; the file has {', '.join(frame.columns)} "
            "(name the columns with --user-col, --song-col, --count-col)"
        )
    plays = frame.select(
        F.col(columns.user).cast("string").alias("user_id"),
        F.col(columns.song).cast("string").alias("song_id"),
        F.col(columns.count).cast("long").alias("count"),
    )
    bad = (
        F.col("user_id").isNull()
        | F.col("song_id").isNull()
        | F.col("count").isNull()
        | (F.col("count") < 0)
    )
    user_rows = spark.createDataFrame(
        pa.table(
            {
                "user_id": pa.array(users, pa.string()),
                "user": pa.array(np.arange(len(users), dtype=np.int32)),
            }
        )
    )
    song_rows = spark.createDataFrame(
        pa.table(
            {
                "song_id": pa.array(songs, pa.string()),
                "song": pa.array(np.arange(len(songs), dtype=np.int32)),
            }
        )
    )
    totals = plays.agg(F.count(F.lit(1)).alias("rows"), F.sum(bad.cast("long")).alias("bad"))
    totals = totals.first()
    grouped = (
        plays.where(~bad)
        .join(F.broadcast(user_rows), "user_id")
        .join(F.broadcast(song_rows), "song_id")
        .groupBy("user", "song")
        .agg(F.sum("count").alias("count"), F.count(F.lit(1)).alias("rows"))
        .persist()
    )
    inside = grouped.agg(
        F.sum("rows").alias("rows"), F.sum((F.col("count") > 0).cast("long")).alias("plays")
    ).first()
    ratings = grouped.where(F.col("count") > 0).select(  # count 0 is no play: not an entry
        "user", "song", F.log1p(F.col("count") / float(epsilon)).cast("float").alias("rating")
    )
    rows, n_bad = int(totals["rows"]), int(totals["bad"] or 0)
    n_inside = int(inside["rows"] or 0)
    return SparkPlays(
        ratings, grouped, rows, n_bad, rows - n_bad - n_inside, int(inside["plays"] or 0)
    )


def observed_objective_terms(
    ratings: DataFrame, users: DataFrame, songs: DataFrame, alpha: float
) -> float:
    """sum over played pairs of [c (1 - s)^2 - s^2], s = x_u^T y_i, computed in Spark.

    With the Gram-matrix term and the penalty (computed from the collected factors) this
    gives eq. (3) exactly without bringing the plays to the driver (see coldtune.cf.wmf).
    """
    from pyspark.sql import functions as F

    joined = ratings.join(
        users.withColumnRenamed("id", "user").withColumnRenamed("features", "x"), "user"
    ).join(songs.withColumnRenamed("id", "song").withColumnRenamed("features", "y"), "song")
    s = F.aggregate(
        F.zip_with("x", "y", lambda a, b: a * b), F.lit(0.0).cast("double"), lambda acc, v: acc + v
    )
    c = 1.0 + alpha * F.col("rating")
    term = c * (1.0 - s) ** 2 - s**2
    return float(joined.select(F.sum(term)).first()[0] or 0.0)


def wmf_objective_from_parts(
    X: np.ndarray, Y: np.ndarray, observed: float, regularization: float
) -> float:
    """eq. (3) = sum(X^T X * Y^T Y) + observed-pair terms + lambda (|X|^2 + |Y|^2)."""
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    dense = float(np.sum((X64.T @ X64) * (Y64.T @ Y64)))
    return dense + observed + regularization * float((X64**2).sum() + (Y64**2).sum())


@dataclass
class SparkFit:
    user_factors: np.ndarray
    song_factors: np.ndarray
    objective: float
    reg_param: float
    seconds: float
    plays: SparkPlays
    spark: dict = field(default_factory=dict)


def fit_from_parquet(
    uri: str,
    *,
    users: np.ndarray,
    songs: np.ndarray,
    factors: int,
    alpha: float,
    epsilon: float,
    regularization: float,
    iterations: int,
    seed: int,
    config: SparkConfig,
    columns: PlaysColumns = PlaysColumns(),
    on_stage: Callable[[str], None] | None = None,
) -> SparkFit:
    """Read plays at `uri` with Spark, fit MLlib ALS, return factors for `users`, `songs`.

    The plays never come to the driver: only the id tables go out and the factors
    come back (n_users + n_songs rows of `factors` floats).
    """
    _check_java_int(max(len(users), len(songs)), "ids")
    say = on_stage or (lambda _message: None)
    with spark_session(config) as spark:
        start = time.perf_counter()
        say(f"reading {uri}")
        plays = read_plays_spark(
            spark, uri, users=users, songs=songs, epsilon=epsilon, columns=columns
        )
        if plays.plays == 0:
            raise PlaysFormatError(
                f"{uri}: none of its {plays.rows_read:,} rows is a play of the split's users "
                "and warm songs; is it the file that was ingested into this workspace?"
            )
        reg_param = matching_reg_param(
            regularization, n_users=len(users), n_songs=len(songs), plays=plays.plays
        )
        say(
            f"{plays.plays:,} (user, song) pairs; ALS with regParam {reg_param:.4g} "
            f"(lambda {regularization:g}), {iterations} iterations"
        )
        user_frame, song_frame = fit_als(
            plays.ratings,
            factors=factors,
            alpha=alpha,
            reg_param=reg_param,
            iterations=iterations,
            seed=seed,
            config=config,
        )
        X = collect_factors(user_frame, len(users), factors)
        Y = collect_factors(song_frame, len(songs), factors)
        seconds = time.perf_counter() - start
        X, Y = balance_factors(X, Y)
        # balancing keeps every score, so the observed-pair terms are those of MLlib's factors
        observed = observed_objective_terms(plays.ratings, user_frame, song_frame, alpha)
        plays.cached.unpersist()
        details = {"master": spark.sparkContext.master, "version": spark.version}
    objective = wmf_objective_from_parts(X, Y, observed, regularization)
    return SparkFit(X, Y, objective, reg_param, seconds, plays, details | asdict(config))
