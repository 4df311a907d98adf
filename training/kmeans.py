"""KMeans on standardised vectors: the standardisation (mean and sample standard deviation, as
Spark ML's StandardScaler learns them, in Spark SQL), then Spark ML's KMeans, or the large-table
fit of ``training.kmeans_large`` above ``SAMPLE_INIT_ROWS`` rows."""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.scoring import RULE_DISTANCE, ModelParams
from core.spark_scoring import nearest_centroid, squared_distance_expressions, standardised_expressions
from training import kmeans_large
from training.features import Moments, moment_expressions, moments_from_row
from training.kmeans_large import (
    KMEANS_TOLERANCE,
    METHOD_SAMPLE_LLOYD,
    SAMPLE_INIT_ROWS,
    fit_by_sample_then_lloyd,
)

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

# Spark's "auto" solver measures the data's density in a pass of its own, then picks "row" for
# these dense, centred vectors: the same centroids without the pass.
KMEANS_SOLVER = "row"
METHOD_SPARK_ML = "spark-ml-kmeans"
__all__ = [
    "KMEANS_SOLVER",
    "KMEANS_TOLERANCE",
    "METHOD_SAMPLE_LLOYD",
    "METHOD_SPARK_ML",
    "SAMPLE_INIT_ROWS",
    "FittedKMeans",
    "fit_kmeans",
]


@dataclass(frozen=True)
class FittedKMeans:
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

        scaled = standardised_expressions(self.columns, self.mean, self.scale)
        return table.withColumn("features", array_to_vector(F.array(*scaled)))

    def transform(self, table):
        """``table`` with its vectors and each row's ``cluster``: by Spark ML where it fitted
        the centroids, else by the nearest centroid, ties to the lowest index."""
        if self.kmeans is not None:
            return self.kmeans.transform(self.vectors(table))

        scaled = standardised_expressions(self.columns, self.mean, self.scale)
        return self.vectors(table).withColumn(
            "cluster", nearest_centroid(squared_distance_expressions(_standardised_params(self), scaled))[0]
        )


def _standardised_params(fitted: FittedKMeans) -> ModelParams:
    """Just enough of a model for core.spark_scoring's distance expressions."""
    return ModelParams(
        history=["value"],
        span=1,
        alert_threshold=0.5,
        cooldown=0,
        features=list(fitted.columns),
        mean=list(fitted.mean),
        scale=fitted.scale,
        centroids=fitted.centroids,
        expected_label=0,
        rule=RULE_DISTANCE,
        threshold=0.0,
        bounds={},
    )


def fit_kmeans(
    table,
    features: list[str],
    k: int,
    seed: int,
    max_iter: int,
    solver: str = KMEANS_SOLVER,
    threshold_quantile: float | None = None,
    moments: Moments | None = None,
) -> FittedKMeans:
    """Standardise the columns, then fit KMeans on them: Spark ML's on tables of at most
    ``SAMPLE_INIT_ROWS`` rows, ``fit_by_sample_then_lloyd`` on larger ones. ``moments``, when
    the caller has the columns' already (``load_feature_table`` does), saves a pass.

    The standardisation is one Spark SQL aggregate and SQL expressions rather than Spark ML's
    VectorAssembler and StandardScaler, whose stages KMeans would run again on every read.
    """
    from pyspark.ml.clustering import KMeans

    if moments is None or moments.columns != list(features):
        moments = moments_from_row(features, table.agg(*moment_expressions(features)).first())
    standardisation = FittedKMeans(list(features), list(moments.mean), list(moments.std), rows=moments.rows)
    if standardisation.rows > kmeans_large.SAMPLE_INIT_ROWS:  # read here, so a benchmark may change it
        fitted = fit_by_sample_then_lloyd(standardisation, table, k, seed, max_iter, threshold_quantile)
        if len(fitted.centroids) == k:
            return fitted
        # The sample held fewer distinct points than k: Spark ML's KMeans looks at every row,
        # so the train job's "fewer distinct points" error is about the table, not the sample.
    kmeans = KMeans(
        k=k,
        seed=seed,
        maxIter=max_iter,
        featuresCol="features",
        predictionCol="cluster",
        solver=solver,
        tol=KMEANS_TOLERANCE,
    ).fit(standardisation.vectors(table))
    return replace(
        standardisation,
        kmeans=kmeans,
        centroids=[[float(v) for v in c] for c in kmeans.clusterCenters()],
        cluster_sizes=[int(s) for s in kmeans.summary.clusterSizes],
        training_cost=float(kmeans.summary.trainingCost),
        iterations=int(kmeans.summary.numIter),
    )
