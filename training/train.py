"""Step 2, train: fit KMeans in Spark and register it as one MLflow model.

Spark ML's KMeans on tables of at most ``SAMPLE_INIT_ROWS`` rows; on larger ones, Lloyd's
iterations in Spark SQL started from a sample (``fit_by_sample_then_lloyd``).

Input: a feature table (CSV with a header: ``timestamp`` and the feature columns), any
Hadoop-compatible URI or local path.
Output, in one MLflow run of the training experiment:
- params: k, seed, features, rule, threshold quantile, the data URI, its sha256, row counts,
  the KMeans method;
- metrics: every cluster's size, the expected label (the most populous cluster) and its
  share, the distance threshold, training cost (WSSSE), KMeans iterations, silhouette, timings;
- artifacts: ``cluster_summary.json``/``.csv`` (centroids in original units, sizes,
  expected label) and ``cluster_summary.png``;
- the model (pyfunc, with signature and input example), registered under ``--model-name``.
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.cli import add_spark_args, job_parser, optional_text
from core.errors import UserError, exit_process, main_guard
from core.schema import (
    DEFAULT_FEATURES,
    DEFAULT_MODEL_NAME,
    SOURCE_COLUMNS,
    STEP_TAG,
    TIMESTAMP,
    TRAINING_EXPERIMENT,
)
from core.scoring import (HISTORY_TRANSFORMS, RULE_DISTANCE, RULES, ModelParams, bounds_for, derived_name,
                          squared_distances)

DEFAULT_K = 7
DEFAULT_SEED = 42
DEFAULT_MAX_ITER = 20
DEFAULT_THRESHOLD_QUANTILE = 0.99
QUANTILE_RELATIVE_ERROR = 1e-4
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


# The best configuration found on the NAB benchmark (README "Detection quality"): k=7 over the
# rolling mean and spread of each input across the last 24 rows (2 hours of 5-minute rows);
# an alert at anomaly score 0.75 (the corpus threshold the benchmark chose, 0.754, rounded);
# then no other alert for the series within 216 rows (18 hours).
DEFAULT_HISTORY = ("mean", "std")
DEFAULT_SPAN = 24
DEFAULT_ALERT_THRESHOLD = 0.75
DEFAULT_COOLDOWN = 216


@dataclass
class FeatureTable:
    valid: object  # Spark DataFrame of valid rows, features as doubles
    total_rows: int
    invalid_rows: int
    series: str | None = None  # the column naming each row's series, if the table has one
    unreadable_times: int = 0  # valid rows whose timestamp Spark cannot read
    moments: Moments | None = None  # of the valid rows' features


@dataclass(frozen=True)
class Moments:
    """Each column's mean and sample standard deviation (null for one row: no spread), and the
    rows they were taken over: what the standardisation learns."""

    columns: list[str]
    mean: list[float]
    std: list[float]
    rows: int


def moment_expressions(columns: list[str]) -> list:
    from pyspark.sql import functions as F

    return [*[F.avg(c) for c in columns], *[F.stddev_samp(c) for c in columns], F.count(F.lit(1))]


def moments_from_row(columns: list[str], row) -> Moments:
    """``Moments`` from the values of ``moment_expressions`` (a Row, or any sequence, in order)."""
    n = len(columns)
    return Moments(list(columns), [float(row[i]) for i in range(n)], [float(row[n + i] or 0.0) for i in range(n)],
                   int(row[2 * n]))


@dataclass(frozen=True)
class HistorySpec:
    """The history features and the alert policy: training params that travel in the model."""

    history: tuple[str, ...] = DEFAULT_HISTORY
    span: int = DEFAULT_SPAN
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    cooldown: int = DEFAULT_COOLDOWN

    def vector_columns(self, features) -> list[str]:
        return [derived_name(f, t) for f in features for t in self.history]


def parse_history(text: str) -> tuple[str, ...]:
    history = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in history if t not in HISTORY_TRANSFORMS]
    if not history or unknown or len(set(history)) != len(history):
        raise UserError(f"history must list distinct transforms from {', '.join(HISTORY_TRANSFORMS)} "
                        f"(got {text!r})")
    return history


def load_feature_table(spark, uri: str, features: list[str]) -> FeatureTable:
    """Read the table with every column as text, then validate by name in our own code.

    Reading as text (not with Spark's CSV type coercion) keeps reordered columns and
    values like 'NaN' or '-1' from slipping through unnoticed.
    """
    from pyspark.sql import functions as F

    from core.spark_scoring import unreadable_time

    try:
        raw = spark.read.option("header", True).option("inferSchema", False).csv(uri)
    except Exception as error:  # noqa: BLE001 - AnalysisException: path missing or unreadable
        raise UserError(f"cannot read feature table {uri}: {str(error).splitlines()[0]}") from None
    missing = [name for name in features if name not in raw.columns]
    if missing:
        raise UserError(
            f"feature table {uri} lacks column(s) {', '.join(missing)} "
            f"(it has {', '.join(raw.columns) or 'no header'})"
        )
    series = next((c for c in SOURCE_COLUMNS if c in raw.columns), None)
    typed = raw.select(
        *([F.col(TIMESTAMP)] if TIMESTAMP in raw.columns else []),
        *([F.col(series)] if series else []),
        *[F.col(name).try_cast("double").alias(name) for name in features],
    )
    checks = []
    for name in features:
        lo, hi = bounds_for(name)
        value = F.col(name)
        checks.append(value.isNotNull() & ~F.isnan(value) & (value >= F.lit(lo)) & (value <= F.lit(hi)))
    is_valid = checks[0]
    for check in checks[1:]:
        is_valid = is_valid & check
    flagged = typed.withColumn("_valid", is_valid).cache()
    # The same job counts the valid rows whose timestamp Spark cannot read (see training_features)
    # and takes the features' moments, which standardise them when they are clustered as they
    # are (no history features): a pass over the table fewer for the fit.
    unreadable = unreadable_time(TIMESTAMP) if TIMESTAMP in raw.columns else F.lit(False)
    counts = flagged.groupBy("_valid").agg(F.count(F.lit(1)).alias("count"),
                                           F.sum(unreadable.cast("long")).alias("unreadable"),
                                           *moment_expressions(features)).collect()
    by_flag = {row["_valid"]: row["count"] for row in counts}
    unreadable_times = next((row["unreadable"] or 0 for row in counts if row["_valid"]), 0)
    total = sum(by_flag.values())
    if total == 0:
        raise UserError(f"feature table {uri} has no data rows")
    valid_rows = by_flag.get(True, 0)
    if valid_rows == 0:
        raise UserError(f"feature table {uri} has no valid rows (all {total} are invalid)")
    valid = flagged.where("_valid").drop("_valid")
    valid_counts = next(row for row in counts if row["_valid"])
    moments = moments_from_row(features, list(valid_counts)[3:])
    return FeatureTable(valid, total, total - valid_rows, series, int(unreadable_times), moments)


# Spark's "auto" solver spends a pass over the data measuring its density before choosing, and
# for the centred (so dense) vectors this pipeline gives it, it chooses "row": the same centroids
# (a test holds them equal), without the pass that was 4.5 s of a 10^7-row fit.
KMEANS_SOLVER = "row"


# Tables of at most this many rows are clustered by Spark ML's KMeans, as they always were.
# Larger ones by Lloyd's iterations in Spark SQL, started from k-means++ on a sample of this
# many rows in the driver (see fit_by_sample_then_lloyd).
SAMPLE_INIT_ROWS = 200_000
# Spark ML's default: converged when no centroid moved farther than this (standardised units).
KMEANS_TOLERANCE = 1e-4
METHOD_SPARK_ML = "spark-ml-kmeans"
METHOD_SAMPLE_LLOYD = "sample-kmeans++-then-lloyd-in-spark-sql"


@dataclass(frozen=True)
class FittedPipeline:
    """KMeans fitted on standardised vectors, and the standardisation."""

    columns: list[str]
    mean: list[float]
    std: list[float]  # sample standard deviation, as Spark ML's StandardScaler learns it
    rows: int = 0
    centroids: list[list[float]] | None = None  # standardised units
    cluster_sizes: list[int] | None = None
    training_cost: float = float("nan")  # sum of squared distances to the nearest centroid
    iterations: int = 0
    method: str = METHOD_SPARK_ML
    kmeans: object = None  # Spark ML's KMeansModel, when it fitted the centroids
    threshold: float | None = None  # the distance quantile, when the fit computed it on its way

    @property
    def scale(self) -> list[float]:
        # Spark's StandardScaler maps a feature with no spread to 0; so does a zero scale.
        return [1.0 / s if s > 0 else 0.0 for s in self.std]

    def vectors(self, table):
        """``table`` with its standardised vectors as ``features``: z = (x - mean) * scale,
        the scoring core's formula."""
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        from core.spark_scoring import standardised_expressions

        scaled = standardised_expressions(self.columns, self.mean, self.scale)
        return table.withColumn("features", array_to_vector(F.array(*scaled)))

    def transform(self, table):
        """``table`` with its vectors and each row's ``cluster``: by Spark ML where it fitted
        the centroids, else by the nearest centroid, ties to the lowest index."""
        if self.kmeans is not None:
            return self.kmeans.transform(self.vectors(table))
        from pyspark.sql import functions as F

        from core.spark_scoring import squared_distance_expressions, standardised_expressions

        scaled = standardised_expressions(self.columns, self.mean, self.scale)
        return self.vectors(table).withColumn("cluster", nearest_centroid(
            squared_distance_expressions(_standardised_params(self), scaled))[0])


def _standardised_params(pipeline: FittedPipeline) -> ModelParams:
    """Just enough of a model for core.spark_scoring's distance expressions."""
    return ModelParams(history=["value"], span=1, alert_threshold=0.5, cooldown=0, features=list(pipeline.columns),
                       mean=list(pipeline.mean), scale=pipeline.scale, centroids=pipeline.centroids,
                       expected_label=0, rule=RULE_DISTANCE, threshold=0.0, bounds={})


def nearest_centroid(squared: list):
    """Spark SQL for (the nearest centroid's index, its squared distance) from the squared
    distances to each: ties go to the lowest index, like the scoring core's argmin."""
    from pyspark.sql import functions as F

    nearest = F.least(*squared) if len(squared) > 1 else squared[0]
    return F.coalesce(*[F.when(d == nearest, F.lit(i)) for i, d in enumerate(squared)]), nearest


def fit_pipeline(table, features: list[str], k: int, seed: int, max_iter: int, solver: str = KMEANS_SOLVER,
                 threshold_quantile: float | None = None, moments: Moments | None = None) -> FittedPipeline:
    """Standardise the columns, then fit KMeans on them: Spark ML's on tables of at most
    ``SAMPLE_INIT_ROWS`` rows, ``fit_by_sample_then_lloyd`` on larger ones. ``moments``, when
    the caller has the columns' already (``load_feature_table`` does), saves a pass.

    The mean and standard deviation come from one Spark SQL aggregate and the vectors from SQL
    expressions, not from Spark ML's VectorAssembler and StandardScaler: KMeans reads its input
    twice while caching it, through every stage before it, and the scaler's fit is a pass of its
    own. At 10^7 rows the fit took 20.2 s instead of 24.2 s (same session, after a warm-up).
    """
    from pyspark.ml.clustering import KMeans
    from pyspark.sql import functions as F

    if moments is None or moments.columns != list(features):
        moments = moments_from_row(features, table.agg(*moment_expressions(features)).first())
    standardisation = FittedPipeline(list(features), list(moments.mean), list(moments.std), rows=moments.rows)
    if standardisation.rows > SAMPLE_INIT_ROWS:
        fitted = fit_by_sample_then_lloyd(standardisation, table, k, seed, max_iter, threshold_quantile)
        if len(fitted.centroids) == k:
            return fitted
        # The sample held fewer distinct points than k: Spark ML's KMeans looks at every row,
        # so the train job's "fewer distinct points" error is about the table, not the sample.
    kmeans = KMeans(k=k, seed=seed, maxIter=max_iter, featuresCol="features", predictionCol="cluster",
                    solver=solver, tol=KMEANS_TOLERANCE).fit(standardisation.vectors(table))
    return replace(standardisation, kmeans=kmeans,
                   centroids=[[float(v) for v in c] for c in kmeans.clusterCenters()],
                   cluster_sizes=[int(s) for s in kmeans.summary.clusterSizes],
                   training_cost=float(kmeans.summary.trainingCost), iterations=int(kmeans.summary.numIter))


def kmeans_plus_plus(points: np.ndarray, k: int, seed: int, max_iter: int) -> np.ndarray:
    """k-means++ seeding, then Lloyd's iterations, on an in-memory sample: the starting
    centroids for the full table. Fewer than ``k`` rows when the sample holds fewer distinct
    points (Spark ML's KMeans returns fewer centroids then too)."""
    rng = np.random.default_rng(seed)
    centroids = [points[rng.integers(len(points))]]
    nearest = squared_distances(points, centroids[0][None, :])[:, 0]
    while len(centroids) < k and nearest.sum() > 0:
        chosen = points[rng.choice(len(points), p=nearest / nearest.sum())]
        centroids.append(chosen)
        nearest = np.minimum(nearest, squared_distances(points, chosen[None, :])[:, 0])
    centres = np.array(centroids)
    for _ in range(max_iter):
        labels = squared_distances(points, centres).argmin(axis=1)
        # One counting pass per feature (bincount), not a boolean mask per centroid and feature.
        sizes = np.bincount(labels, minlength=len(centres))
        sums = np.column_stack([np.bincount(labels, weights=points[:, feature], minlength=len(centres))
                                for feature in range(points.shape[1])])
        # an empty cluster keeps its centroid
        moved = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centres)
        if np.sqrt(((moved - centres) ** 2).sum(axis=1)).max() <= KMEANS_TOLERANCE:
            return moved
        centres = moved
    return centres


@dataclass
class FinalCounts:
    """What the last pass over every row found for the final centroids."""

    sizes: np.ndarray  # rows per centroid
    cost: float  # sum of squared distances to the nearest centroid
    below: int  # rows whose distance lies below the band
    inside: list[float]  # the distances inside the band, one per row


NO_BAND = (-1.0, -2.0)  # no distance lies in [-1, -2]
BELOW_BAND, ABOVE_BAND = -1.0, -2.0  # a row's place against the band when its distance is not inside


class CentroidPasses:
    """Passes over ``vectors`` (standardised columns ``z``) with given centroids: each row goes
    to its nearest centroid (ties to the lowest index) by the scoring core's formulas, as
    ``nearest_centroid`` writes them.

    The centroids (and the band of ``count``) are read from a broadcast one-row table, not
    written into the query as literals: every Lloyd pass is then the same query, whose code
    Spark generates and compiles, and the JVM optimises, once; and the expressions, which name
    columns only, are built once (with literals, every pass built them anew). That row is an
    inline table (SQL ``VALUES`` with bound parameters), which Spark holds in the driver: a
    ``createDataFrame`` row is an RDD, and broadcasting it ran a job whose Python worker
    started on every pass.
    Each distance sits in a projection of its own, so the argmin refers to it instead of
    repeating every distance in each case of it.
    """

    def __init__(self, spark, vectors, z: list[str], k: int):
        from pyspark.sql import functions as F

        from core.spark_scoring import squared_distances_to

        self._spark, self._vectors, self._z, self._k = spark, vectors, list(z), k
        names = [[f"_centroid{i}_{j}" for j in range(len(z))] for i in range(k)]
        constant_names = [*[n for row in names for n in row], "_low", "_high"]
        self._constants_sql = (f"SELECT * FROM VALUES ({', '.join(f':{n}' for n in constant_names)}) "
                               f"AS constants({', '.join(constant_names)})")
        self._constant_names = constant_names
        squared = squared_distances_to([F.col(a) for a in z], [[F.col(c) for c in centroid] for centroid in names])
        distances = [f"_d{i}" for i in range(k)]
        self._distances = [d.alias(name) for d, name in zip(squared, distances)]
        self._nearest = (F.least(*[F.col(d) for d in distances]) if k > 1 else F.col(distances[0])).alias("_squared")
        cluster = F.coalesce(*[F.when(F.col(d) == F.col("_squared"), F.lit(i)) for i, d in enumerate(distances)])
        self._labelled = [cluster.alias("_cluster"), "_squared", F.sqrt("_squared").alias("_distance"), *self._z,
                          "_low", "_high"]
        self._sums = [F.count(F.lit(1)), *[F.sum(name) for name in self._z]]
        distance = F.col("_distance")
        # Where a row's distance lies against the band: below it, above it, or (inside it) the
        # distance itself, which is never negative.
        place = (F.when(distance < F.col("_low"), F.lit(BELOW_BAND)).when(distance <= F.col("_high"), distance)
                 .otherwise(F.lit(ABOVE_BAND)))
        self._count_by = ["_cluster", place.alias("_place")]
        self._counts = [F.count(F.lit(1)), F.sum("_squared")]

    def labelled(self, centres: np.ndarray, band: tuple[float, float] = NO_BAND):
        """Every row with ``_cluster``, ``_squared`` and ``_distance`` (and ``z``, ``_low``, ``_high``)."""
        from pyspark.sql import functions as F

        if centres.shape != (self._k, len(self._z)):
            raise ValueError(f"expected {self._k} centroids of {len(self._z)} values, got {centres.shape}")
        row = (*[float(v) for v in np.asarray(centres, dtype=float).ravel()], float(band[0]), float(band[1]))
        if not np.isfinite(row).all():
            raise ValueError("centroids and band must be finite")
        constants = F.broadcast(self._spark.sql(self._constants_sql, args=dict(zip(self._constant_names, row))))
        joined = self._vectors.crossJoin(constants).select(*self._z, *self._distances, "_low", "_high")
        return joined.select("*", self._nearest).select(*self._labelled)

    def sums(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A Lloyd pass: per centroid, its rows and the sums of their columns."""
        sizes, sums = np.zeros(self._k, dtype=np.int64), np.zeros((self._k, len(self._z)))
        for row in self.labelled(centres).groupBy("_cluster").agg(*self._sums).collect():
            sizes[row[0]], sums[row[0]] = row[1], row[2:]
        return sizes, sums

    def count(self, centres: np.ndarray, band: tuple[float, float] = NO_BAND) -> FinalCounts:
        """Per centroid its rows, the cost, and for ``band`` (low, high) of distances how many lie
        below it and each that lies inside it.

        One pass: the rows outside the band group by centroid and side of the band, and each
        distance inside it (about 0.2% of the rows for a 0.99 quantile's bracket) is a group of
        its own. Counting and then taking those distances in a pass apart was slower at 10^7
        rows; so was adding the cost and band counts to the Lloyd passes' aggregate, which made
        every pass slower; and so was counting the rows below the band with ``count_if`` beside
        the grouping.
        """
        counts = FinalCounts(np.zeros(self._k, dtype=np.int64), 0.0, 0, [])
        for cluster, place, rows, squared in (self.labelled(centres, band).groupBy(*self._count_by)
                                              .agg(*self._counts).collect()):
            counts.sizes[cluster] += rows
            counts.cost += squared
            if place == BELOW_BAND:
                counts.below += rows
            elif place >= 0:
                counts.inside.extend([place] * rows)
        return counts


def fit_by_sample_then_lloyd(standardisation: FittedPipeline, table, k: int, seed: int, max_iter: int,
                             threshold_quantile: float | None = None) -> FittedPipeline:
    """KMeans for large tables: k-means++ and Lloyd's iterations on a uniform sample of about
    ``SAMPLE_INIT_ROWS`` rows in the driver, then Lloyd's iterations over every row in Spark
    SQL until no centroid moves farther than ``KMEANS_TOLERANCE`` or ``max_iter`` passes.

    Why not Spark ML's KMeans here: it caches one vector object per row and runs k-means||
    over the whole table before its first iteration; at 10^7 rows (3 columns, k=10) those were
    6-8 s and 5.4 s of its fit, and it took 16 iterations. The sample's centroids start the
    full table within a few iterations of convergence (5 there), each pass a SQL aggregate.
    Measured in one process on that table, twice (``benchmarks.kmeans_methods``): 10.4 and
    7.2 s against Spark ML's 27.7 and 22.2 s, with a lower cost (514,769 against 556,343;
    scikit-learn's k-means++ reached 537,990). That is seed 42; over seeds 42 and 1-5 this fit
    took 5-20 passes (median 24.2 s) and Spark ML 16-20 iterations (median 29.7 s), since a
    seeding that puts two centroids in one group of rows converges slowly in either.

    Every pass reads ``table`` and standardises it on the way, so pass a cached table (the
    train job's is): a cache of the standardised columns of its own cost 0.6-1 s to build at
    10^7 rows and made no pass faster. A last pass (``CentroidPasses.count``) counts the
    clusters' sizes and the cost with the final centroids and, given ``threshold_quantile``,
    the distances inside a bracket of that quantile, from which ``exact_quantile_from_bracket``
    takes it exactly.

    The passes' centroids come from a broadcast row (``CentroidPasses``), the moments from the
    load's own pass (``FeatureTable.moments``), the band's distances with the last pass's
    counts, and the sample's iterations count with ``bincount``; each gave the same passes,
    cost and threshold as the code before it on the 10^7-row table, in less time.
    """
    from core.spark_scoring import standardised_expressions

    z = [f"_z{j}" for j in range(len(standardisation.columns))]
    scaled = standardised_expressions(standardisation.columns, standardisation.mean, standardisation.scale)
    vectors = table.select(*[e.alias(name) for e, name in zip(scaled, z)])
    fraction = min(1.0, SAMPLE_INIT_ROWS / standardisation.rows)
    sample = vectors.sample(fraction=fraction, seed=seed).toPandas().to_numpy(dtype=float)
    if len(sample) == 0:  # a uniform sample can, very rarely, come back empty
        sample = vectors.limit(SAMPLE_INIT_ROWS).toPandas().to_numpy(dtype=float)
    centres = kmeans_plus_plus(sample, k, seed, max_iter)
    passes = CentroidPasses(table.sparkSession, vectors, z, len(centres))

    iterations = 0
    while iterations < max_iter:
        iterations += 1
        sizes, sums = passes.sums(centres)
        # an empty cluster keeps its centroid, as in Spark ML
        moved = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centres)
        shift = float(np.sqrt(((moved - centres) ** 2).sum(axis=1)).max())
        centres = moved
        if shift <= KMEANS_TOLERANCE:
            break
    threshold = None
    if threshold_quantile is None:
        final = passes.count(centres)
    else:
        low, high = quantile_bracket(np.sqrt(squared_distances(sample, centres).min(axis=1)), threshold_quantile)
        final = passes.count(centres, (low, high))
        threshold = exact_quantile_from_bracket(
            passes.labelled(centres).select("_distance"), threshold_quantile, int(final.sizes.sum()),
            low, high, final.below, final.below + len(final.inside), final.inside)
    return replace(standardisation, centroids=centres.tolist(), cluster_sizes=[int(s) for s in final.sizes],
                   training_cost=float(final.cost), iterations=iterations, method=METHOD_SAMPLE_LLOYD,
                   threshold=threshold)


# How many standard errors of a sample quantile the bracket around it spans on each side: the
# full table's quantile falls outside it with a probability of about 1e-6 (and then a pass of
# Spark's approximate quantile takes over).
QUANTILE_BRACKET_ERRORS = 5.0


def quantile_bracket(sample: np.ndarray, quantile: float) -> tuple[float, float]:
    """Distances that bracket the full table's ``quantile`` with high probability, from a
    uniform sample of them: the sample's quantiles ``QUANTILE_BRACKET_ERRORS`` standard errors
    (sqrt(q(1-q)/n) in rank) below and above it."""
    margin = QUANTILE_BRACKET_ERRORS * np.sqrt(quantile * (1 - quantile) / len(sample)) + 2.0 / len(sample)
    low, high = np.quantile(sample, [max(0.0, quantile - margin), min(1.0, quantile + margin)])
    return float(low), float(high)


def exact_quantile_from_bracket(distances, quantile: float, rows: int, low: float, high: float,
                                below: int, at_most_high: int, inside: list[float] | None = None) -> float:
    """The exact ``quantile`` of the ``_distance`` column: its ceil(quantile * rows)-th smallest
    value, given how many distances lie below ``low`` and at most ``high``, and (``inside``)
    those in [low, high] when the caller has them already.

    When the bracket holds that rank, only the distances inside it (about 0.2% of a table's
    rows for the 0.99 quantile from a 200,000-row sample) reach the driver, sorted there; this
    replaced Spark's approximate percentile in the fit's last pass, which was 2 s of a 12-s fit
    at 10^7 rows. When it does not (a rare sample), Spark's approximate quantile, as
    ``distance_threshold`` takes it.
    """
    from pyspark.sql import functions as F

    # rounded first: 0.07 * 100 is 7.000000000000001 in floating point, whose ceiling is 8
    rank = max(1, int(np.ceil(round(quantile * rows, 9))))
    if below < rank <= at_most_high:
        if inside is None:
            distance = F.col("_distance")
            inside = [row[0] for row in distances.where((distance >= low) & (distance <= high)).collect()]
        return float(sorted(inside)[rank - below - 1])
    (value,) = distances.approxQuantile("_distance", [quantile], QUANTILE_RELATIVE_ERROR)
    return float(value)


def params_from_pipeline(pipeline: FittedPipeline, features, rule, threshold=0.0, spec: HistorySpec | None = None
                         ) -> ModelParams:
    spec = spec or HistorySpec(("value",), 1, 0.5, 0)
    sizes = pipeline.cluster_sizes
    return ModelParams(
        history=list(spec.history),
        span=spec.span,
        alert_threshold=spec.alert_threshold,
        cooldown=spec.cooldown,
        features=list(features),
        mean=list(pipeline.mean),
        scale=pipeline.scale,
        centroids=[[float(v) for v in c] for c in pipeline.centroids],
        expected_label=int(np.argmax(sizes)),
        rule=rule,
        threshold=float(threshold),
        bounds={f: list(bounds_for(f)) for f in features},
    )


def distance_threshold(table, params: ModelParams, quantile: float) -> float:
    """The quantile of training rows' distance to their nearest centroid.

    Computed with Spark SQL expressions generated from ``params`` (the scoring core's own
    formula), not through Python workers: starting those cost 1.8 s of a 20 s training run.
    The parity test checks these distances against the core's.
    """
    from core.spark_scoring import nearest_distance_expression

    distances = table.select(nearest_distance_expression(params).alias("distance"))
    (value,) = distances.approxQuantile("distance", [quantile], QUANTILE_RELATIVE_ERROR)
    return float(value)


@dataclass
class FittedModel:
    pipeline: FittedPipeline
    params: ModelParams
    cluster_sizes: list[int]
    vectors: object  # the training rows as feature vectors (Spark DataFrame, cached)


def fit_model(table, features, k, seed, max_iter, rule, threshold_quantile,
              spec: HistorySpec | None = None, series: str | None = None,
              times_readable: bool | None = None, moments: Moments | None = None) -> FittedModel:
    """Compute the history features, fit the pipeline, and turn it into scoring parameters
    with a learned distance threshold. Without ``spec`` the model is the original one: each
    row's own values, no history, an alert for every anomalous row. ``moments`` are the
    features' (``FeatureTable.moments``): they standardise the rows' own values."""
    from core.spark_scoring import training_features

    spec = spec or HistorySpec(("value",), 1, 0.5, 0)
    columns = spec.vector_columns(features)
    vectors = training_features(table, list(features), list(spec.history), spec.span, series, times_readable)
    if spec.history != ("value",):
        vectors = vectors.cache()
    pipeline_model = fit_pipeline(vectors, columns, k, seed, max_iter, threshold_quantile=threshold_quantile,
                                  moments=moments if spec.history == ("value",) else None)
    sizes = list(pipeline_model.cluster_sizes)
    params = params_from_pipeline(pipeline_model, features, rule, spec=spec)
    threshold = (pipeline_model.threshold if pipeline_model.threshold is not None
                 else distance_threshold(vectors, params, threshold_quantile))
    return FittedModel(pipeline_model, replace(params, threshold=threshold), sizes, vectors)


def cluster_summary(params: ModelParams, sizes: list[int]) -> pd.DataFrame:
    centroids = params.centroids_in_original_units()
    total = sum(sizes)
    summary = pd.DataFrame(centroids, columns=params.vector_columns)
    summary.insert(0, "cluster", range(len(sizes)))
    summary.insert(1, "size", sizes)
    summary.insert(2, "share", [s / total for s in sizes])
    summary.insert(3, "expected", summary["cluster"] == params.expected_label)
    return summary


def plot_cluster_summary(summary: pd.DataFrame, features: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (sizes_ax, centres_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = ["tab:green" if e else "tab:blue" for e in summary["expected"]]
    sizes_ax.bar(summary["cluster"].astype(str), summary["size"], color=colours)
    sizes_ax.set_title("Cluster sizes (green: expected label)")
    sizes_ax.set_xlabel("cluster")
    sizes_ax.set_ylabel("rows")
    # Each feature normalised to its largest centroid value so different units fit one chart.
    centres = summary[features].to_numpy(dtype=float)
    peak = np.abs(centres).max(axis=0)
    image = centres_ax.imshow(centres / np.where(peak == 0, 1, peak), aspect="auto", cmap="viridis")
    centres_ax.set_xticks(range(len(features)), features)
    centres_ax.set_yticks(range(len(summary)), summary["cluster"].astype(str))
    for (i, j), value in np.ndenumerate(centres):
        centres_ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="white", fontsize=8)
    centres_ax.set_title("Centroids in original units (colour: share of column max)")
    fig.colorbar(image, ax=centres_ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def data_sha256(spark, uri: str) -> str:
    """sha256 over the bytes of every file behind ``uri``.

    A local file is hashed by the driver, which can read it (a Spark job for it cost 3 s of a
    20 s run); any other URI is hashed by Spark where the data lives.
    """
    import hashlib

    from pyspark.sql import functions as F

    from core.paths import local_path

    local = local_path(uri)
    if local is not None and local.is_file():
        digest = hashlib.sha256()
        with open(local, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    files = (
        spark.read.format("binaryFile").load(uri).select("path", F.sha2("content", 256).alias("sha"))
    ).orderBy("path").collect()
    if len(files) == 1:
        return files[0]["sha"]
    combined = hashlib.sha256()
    for row in files:
        combined.update(f"{row['path'].rsplit('/', 1)[-1]}:{row['sha']}\n".encode())
    return combined.hexdigest()


@dataclass
class TrainResult:
    run_id: str
    model_name: str | None
    model_version: str | None
    params: ModelParams
    cluster_sizes: list[int]


def train(spark, service, args) -> TrainResult:
    import mlflow

    from core.model import log_anomaly_model
    from core.paths import to_uri
    from core.tracking import log_dataset

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    if args.rule not in RULES:
        raise UserError(f"unknown rule {args.rule!r}; choose one of {', '.join(RULES)}")
    if args.k < 2:
        raise UserError("k must be at least 2")
    if not 0 < args.threshold_quantile < 1:
        raise UserError("threshold quantile must be between 0 and 1")
    spec = HistorySpec(parse_history(args.history), args.span, args.alert_threshold, args.cooldown)
    if spec.span < 1 or spec.cooldown < 0:
        raise UserError("span must be at least 1 and cooldown at least 0")
    uri = to_uri(args.data)
    started = time.perf_counter()
    table = load_feature_table(spark, uri, features)
    valid_rows = table.total_rows - table.invalid_rows
    if valid_rows < args.k:
        raise UserError(f"{valid_rows} valid rows cannot make {args.k} clusters")
    sha256 = data_sha256(spark, uri)
    description = (f"KMeans (k={args.k}, seed {args.seed}) on {args.data} (sha256 {sha256[:12]}), "
                   f"features {','.join(features)}, history {','.join(spec.history)} over {spec.span} rows, "
                   f"rule {args.rule}")
    with service.start_run(TRAINING_EXPERIMENT, run_name=f"train-k{args.k}-{args.rule}",
                           description=description) as run:
        mlflow.set_tag(STEP_TAG, "train")
        mlflow.set_tag("spark_master", spark.sparkContext.master)
        log_dataset(service.client, run.info.run_id, uri, args.data.rstrip("/").rsplit("/", 1)[-1], sha256,
                    {TIMESTAMP: "string", **dict.fromkeys(features, "double")}, context="training")
        # The driver's JVM options move the timings logged below (see core.spark).
        mlflow.set_tag(DRIVER_JAVA_OPTIONS, spark.sparkContext.getConf().get(DRIVER_JAVA_OPTIONS, ""))
        mlflow.log_params(
            {
                "k": args.k,
                "seed": args.seed,
                "max_iter": args.max_iter,
                "features": ",".join(features),
                "rule": args.rule,
                "threshold_quantile": args.threshold_quantile,
                "history": ",".join(spec.history),
                "span": spec.span,
                "alert_threshold": spec.alert_threshold,
                "cooldown": spec.cooldown,
                "series_column": table.series or "",
                "data": args.data,  # as given (mlflow run logs it so too)
                "data_uri": uri,
                "data_sha256": sha256,
                "rows": table.total_rows,
                "valid_rows": valid_rows,
                "invalid_rows": table.invalid_rows,
            }
        )
        fit_started = time.perf_counter()
        fitted = fit_model(table.valid, features, args.k, args.seed, args.max_iter, args.rule,
                           args.threshold_quantile, spec, table.series, table.unreadable_times == 0, table.moments)
        fit_seconds = time.perf_counter() - fit_started
        pipeline_model, params, sizes = fitted.pipeline, fitted.params, fitted.cluster_sizes
        mlflow.log_param("kmeans_method", pipeline_model.method)
        if len(params.centroids) < args.k:
            # Spark's KMeans returns fewer centroids than k when the vectors hold fewer distinct
            # points; its sizes still count k clusters, and the model would not line up.
            raise UserError(
                f"the {valid_rows} valid rows of {uri} hold only {len(params.centroids)} distinct point(s) "
                f"in {', '.join(params.vector_columns)}, fewer than --k {args.k}: lower --k, or train on "
                "more varied data")
        threshold = params.threshold
        # Spark computes the input example and the silhouette while this thread writes the
        # summary, its plot and the model (Python work): about 1 s less of a 17 s NAB run. The
        # example goes first: the model waits for it, and not for the silhouette (0.4 s less).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-spark") as pool:
            example_job = pool.submit(lambda: table.valid.limit(5).toPandas())
            silhouette_job = pool.submit(silhouette, fitted.vectors, params)
            summary = cluster_summary(params, sizes)
            _log_summary(summary, params)
            example = example_job.result()
            log_started = time.perf_counter()
            info = log_anomaly_model(params, example, args.model_name or None)
            log_model_seconds = time.perf_counter() - log_started
            silhouette_value = silhouette_job.result()
        metrics = {f"cluster_size_{i}": size for i, size in enumerate(sizes)}
        metrics.update(
            expected_label=params.expected_label,
            expected_label_share=sizes[params.expected_label] / valid_rows,
            distance_threshold=threshold,
            training_cost=pipeline_model.training_cost,
            kmeans_iterations=pipeline_model.iterations,
            silhouette=silhouette_value,
            fit_seconds=fit_seconds,
        )
        mlflow.log_metrics(metrics)
        mlflow.log_metrics(
            {"log_model_seconds": log_model_seconds, "train_seconds": time.perf_counter() - started}
        )
        version = getattr(info, "registered_model_version", None)
        if version:
            describe_version(service.client, args.model_name, str(version), run.info.run_id, description,
                             {"data": args.data, "data_sha256": sha256, "k": args.k, "rule": args.rule,
                              "history": ",".join(spec.history), "expected_label": params.expected_label,
                              "distance_threshold": f"{threshold:.6g}",
                              "kmeans_method": pipeline_model.method})
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(
            f"expected label {params.expected_label} ({metrics['expected_label_share']:.1%} of rows); "
            f"rule {params.rule}; distance threshold {threshold:.4g}"
        )
        print(f"run {run.info.run_id}" + (f"; registered {args.model_name} version {version}" if version else ""))
        print(f"log_model took {log_model_seconds:.1f} s")
        return TrainResult(run.info.run_id, args.model_name or None, str(version) if version else None, params, sizes)


def describe_version(client, name: str, version: str, run_id: str, description: str, tags: dict) -> None:
    """The registered version says what it is and where it came from, in the registry's own fields."""
    client.update_model_version(name, version, description=f"{description}. Trained by run {run_id}.")
    for key, value in {"training_run": run_id, **tags}.items():
        client.set_model_version_tag(name, version, key, str(value))


def silhouette(table, params: ModelParams) -> float:
    """The training rows' mean silhouette with squared Euclidean distance, as Spark ML's
    ``ClusteringEvaluator`` defines it, in two Spark SQL passes.

    A row z's mean squared distance to the N_k rows of cluster k, whose vectors sum to Y_k and
    whose squared norms sum to P_k, is |z|^2 - 2 z.Y_k / N_k + P_k / N_k: the first pass sums
    each cluster, the second scores each row from those sums. a: that distance to the row's own
    cluster, times N / (N - 1) to leave the row itself out; b: the least to another non-empty
    cluster; the row's silhouette (b - a) / max(a, b), 0 alone in its cluster. Rows go to
    centroids by the scoring core's formula (expressions generated from ``params``, ties to the
    lowest index like the core's argmin). The evaluator's own passes took each row through
    Spark ML's vector UDFs: 12.5 s of a 10^7-row train run. NaN with fewer than 2 non-empty
    clusters, where a silhouette means nothing (the evaluator raises an error there).
    """
    from pyspark.sql import functions as F

    from core.spark_scoring import squared_distance_expressions, standardised_expressions

    scaled = standardised_expressions(params.vector_columns, params.mean, params.scale)
    squared = squared_distance_expressions(params, scaled)
    z = [f"_z{j}" for j in range(len(scaled))]
    d = [f"_d{i}" for i in range(len(squared))]
    # One projection per step: Spark does not merge a projection into one that would repeat
    # its expressions, so every distance is computed once per row, in generated code.
    rows = table.select(*[e.alias(n) for e, n in zip(scaled, z)], *[e.alias(n) for e, n in zip(squared, d)])
    nearest = F.least(*map(F.col, d)) if len(d) > 1 else F.col(d[0])
    norm = sum((F.col(n) * F.col(n) for n in z[1:]), F.col(z[0]) * F.col(z[0]))
    rows = rows.select(*z, F.coalesce(*[F.when(F.col(n) == nearest, F.lit(i)) for i, n in enumerate(d)])
                       .alias("_cluster"), norm.alias("_norm"))
    sums = {r["_cluster"]: r for r in rows.groupBy("_cluster").agg(
        F.count(F.lit(1)).alias("size"), F.sum("_norm").alias("norms"),
        *[F.sum(n).alias(n) for n in z]).collect()}
    if len(sums) < 2:
        return float("nan")
    mean_distances = []
    for i, cluster in sums.items():
        dot = sum((F.col(n) * F.lit(cluster[n]) for n in z[1:]), F.col(z[0]) * F.lit(cluster[z[0]]))
        mean_distances.append((F.col("_norm") + F.lit(cluster["norms"] / cluster["size"])
                               - F.lit(2.0 / cluster["size"]) * dot).alias(f"_m{i}"))
    rows = rows.select("_cluster", *mean_distances)
    own = F.coalesce(*[F.when(F.col("_cluster") == i, F.col(f"_m{i}") * F.lit(c["size"] / (c["size"] - 1))
                              if c["size"] > 1 else F.lit(None).cast("double")) for i, c in sums.items()])
    other = F.least(*[F.when(F.col("_cluster") != i, F.col(f"_m{i}")) for i in sums])
    rows = rows.select(own.alias("a"), other.alias("b"))
    a, b = F.col("a"), F.col("b")
    # a is null only for a row alone in its cluster, whose silhouette is 0.
    point = F.when(a.isNull(), 0.0).when(a < b, 1 - a / b).when(a > b, b / a - 1).otherwise(0.0)
    return float(rows.select(F.avg(point)).first()[0])


def _log_summary(summary: pd.DataFrame, params: ModelParams) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        summary.to_csv(folder / "cluster_summary.csv", index=False)
        (folder / "cluster_summary.json").write_text(
            json.dumps(
                {
                    "expected_label": params.expected_label,
                    "rule": params.rule,
                    "distance_threshold": params.threshold,
                    "features": params.features,
                    "history": params.history,
                    "span": params.span,
                    "alert_threshold": params.alert_threshold,
                    "cooldown": params.cooldown,
                    "vector_columns": params.vector_columns,
                    "clusters": summary.to_dict(orient="records"),
                },
                indent=2,
            )
        )
        plot_cluster_summary(summary, params.vector_columns, folder / "cluster_summary.png")
        mlflow.log_artifacts(scratch)


def parse_args(argv):
    parser = job_parser("Train and register the anomaly model.")
    parser.add_argument("--data", default="data/sample/metrics.csv", help="feature table (path or URI)")
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--max-iter", type=int, default=DEFAULT_MAX_ITER)
    parser.add_argument("--rule", default=RULE_DISTANCE, choices=RULES)
    parser.add_argument("--threshold-quantile", type=float, default=DEFAULT_THRESHOLD_QUANTILE)
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES))
    parser.add_argument("--history", default=",".join(DEFAULT_HISTORY),
                        help=f"transforms of each feature, from {', '.join(HISTORY_TRANSFORMS)} "
                             "('value' alone is the original model)")
    parser.add_argument("--span", type=int, default=DEFAULT_SPAN, help="rows in the rolling mean/std window")
    parser.add_argument("--alert-threshold", type=float, default=DEFAULT_ALERT_THRESHOLD,
                        help="anomaly score at which a row raises an alert")
    parser.add_argument("--cooldown", type=int, default=DEFAULT_COOLDOWN,
                        help="rows of a series after an alert during which it raises no other")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, type=optional_text,
                        help="registered name ('none' to skip registering)")
    add_spark_args(parser)
    return parser.parse_args(argv)


def _import_while_the_jvm_starts() -> None:
    """Imports that a training run needs later, done while this thread would only wait."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import pyspark.ml.clustering  # noqa: F401
    import pyspark.ml.functions  # noqa: F401


@main_guard
def main(argv=None) -> int:
    from core.paths import local_input_bytes, to_uri
    from core.spark import spark_session_in_background
    from core.tracking import MlflowService

    args = parse_args(argv)
    started = time.perf_counter()
    # A small local table makes a short job, whose driver JIT differs (see core.spark). Replay
    # does not pass its input's size: its work is in Python workers, and at the NAB series'
    # 1.9 MB C1 alone gained nothing there (18.7, 17.3 -> 18.1, 18.5 s).
    input_bytes = local_input_bytes(to_uri(args.data))
    with spark_session_in_background("train", args.master, args.conf, input_bytes) as started_spark:
        with MlflowService() as service:
            _import_while_the_jvm_starts()
            spark = started_spark()
            # Until the session is up; MLflow's set-up ran meanwhile.
            jvm_seconds = time.perf_counter() - started
            result = train(spark, service, args)
            service.client.log_metric(result.run_id, "jvm_start_seconds", jvm_seconds)
            service.client.log_metric(result.run_id, "wall_seconds", time.perf_counter() - started)
    print(f"train wall time {time.perf_counter() - started:.1f} s (JVM start {jvm_seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    exit_process(main())
