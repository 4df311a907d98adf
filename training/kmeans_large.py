"""KMeans for large tables: k-means++ and Lloyd's iterations on a sample in the driver, then
Lloyd's iterations over every row as Spark SQL aggregates, and a last pass that counts the
clusters, the cost and, exactly, the distance threshold."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.distances import squared_distances
from core.spark_scoring import nearest_centroid, squared_distances_to, standardised_expressions
from training.evaluate import exact_quantile_from_bracket, quantile_bracket

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

# Tables of more rows than this are fitted here, from a sample of about this many rows.
SAMPLE_INIT_ROWS = 200_000
# Spark ML's default: converged when no centroid moved farther than this (standardised units).
KMEANS_TOLERANCE = 1e-4
METHOD_SAMPLE_LLOYD = "sample-kmeans++-then-lloyd-in-spark-sql"


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
        sums = np.column_stack(
            [
                np.bincount(labels, weights=points[:, feature], minlength=len(centres))
                for feature in range(points.shape[1])
            ]
        )
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

    The centroids (and the band of ``count``) come from a broadcast one-row inline table (SQL
    ``VALUES``, held in the driver), not literals, so every pass is the same query, compiled
    once. Each distance sits in a projection of its own, so the argmin refers to it instead of
    repeating every distance in each case of it.
    """

    def __init__(self, spark, vectors, z: list[str], k: int):
        from pyspark.sql import functions as F

        self._spark, self._vectors, self._z, self._k = spark, vectors, list(z), k
        names = [[f"_centroid{i}_{j}" for j in range(len(z))] for i in range(k)]
        constant_names = [*[n for row in names for n in row], "_low", "_high"]
        self._constants_sql = (
            f"SELECT * FROM VALUES ({', '.join(f':{n}' for n in constant_names)}) "
            f"AS constants({', '.join(constant_names)})"
        )
        self._constant_names = constant_names
        squared = squared_distances_to([F.col(a) for a in z], [[F.col(c) for c in centroid] for centroid in names])
        distances = [f"_d{i}" for i in range(k)]
        self._distances = [d.alias(name) for d, name in zip(squared, distances)]
        self._nearest = nearest_centroid([F.col(d) for d in distances])[1].alias("_squared")
        cluster, _ = nearest_centroid([F.col(d) for d in distances], F.col("_squared"))
        self._labelled = [
            cluster.alias("_cluster"),
            "_squared",
            F.sqrt("_squared").alias("_distance"),
            *self._z,
            "_low",
            "_high",
        ]
        self._sums = [F.count(F.lit(1)), *[F.sum(name) for name in self._z]]
        distance = F.col("_distance")
        # Where a row's distance lies against the band: below it, above it, or (inside it) the
        # distance itself, which is never negative.
        place = (
            F.when(distance < F.col("_low"), F.lit(BELOW_BAND))
            .when(distance <= F.col("_high"), distance)
            .otherwise(F.lit(ABOVE_BAND))
        )
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
        distance inside it (a small share of the rows for a narrow bracket) is a group of its own.
        """
        counts = FinalCounts(np.zeros(self._k, dtype=np.int64), 0.0, 0, [])
        for cluster, place, rows, squared in (
            self.labelled(centres, band).groupBy(*self._count_by).agg(*self._counts).collect()
        ):
            counts.sizes[cluster] += rows
            counts.cost += squared
            if place == BELOW_BAND:
                counts.below += rows
            elif place >= 0:
                counts.inside.extend([place] * rows)
        return counts


def fit_by_sample_then_lloyd(
    standardisation, table, k: int, seed: int, max_iter: int, threshold_quantile: float | None = None
):
    """KMeans for large tables: k-means++ and Lloyd's iterations on a uniform sample of about
    ``SAMPLE_INIT_ROWS`` rows in the driver, then Lloyd's iterations over every row in Spark
    SQL until no centroid moves farther than ``KMEANS_TOLERANCE`` or ``max_iter`` passes.
    ``standardisation`` is a ``training.kmeans.FittedKMeans`` without centroids; the fit returns it
    with them.

    Spark ML's KMeans caches an object per row and runs k-means|| over the whole table before
    its first iteration; started from the sample's centroids, the full table needs few passes,
    each one SQL aggregate. Every pass reads ``table`` and standardises it on the way, so pass
    a cached table. A last pass (``CentroidPasses.count``) counts the clusters' sizes and the
    cost and, given ``threshold_quantile``, the distances inside a bracket of that quantile,
    from which ``exact_quantile_from_bracket`` takes it exactly.
    """

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
            passes.labelled(centres).select("_distance"),
            threshold_quantile,
            int(final.sizes.sum()),
            low,
            high,
            final.below,
            final.below + len(final.inside),
            final.inside,
        )
    return replace(
        standardisation,
        centroids=centres.tolist(),
        cluster_sizes=[int(s) for s in final.sizes],
        training_cost=float(final.cost),
        iterations=iterations,
        method=METHOD_SAMPLE_LLOYD,
        threshold=threshold,
    )
