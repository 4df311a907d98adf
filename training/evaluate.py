"""What a fitted model is judged and described by: its distance threshold (a quantile of the
training distances, exact or approximate), its silhouette, and the cluster summary and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.scoring import ModelParams
from core.spark_scoring import (
    nearest_centroid,
    nearest_distance_expression,
    squared_distance_expressions,
    standardised_expressions,
)

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

QUANTILE_RELATIVE_ERROR = 1e-4


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


def exact_quantile_from_bracket(
    distances,
    quantile: float,
    rows: int,
    low: float,
    high: float,
    below: int,
    at_most_high: int,
    inside: list[float] | None = None,
) -> float:
    """The exact ``quantile`` of the ``_distance`` column: its ceil(quantile * rows)-th smallest
    value, given how many distances lie below ``low`` and at most ``high``, and (``inside``)
    those in [low, high] when the caller has them already.

    When the bracket holds that rank, only the distances inside it reach the driver, sorted
    there. When it does not (a rare sample), Spark's approximate quantile, as
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


def distance_threshold(table, params: ModelParams, quantile: float) -> float:
    """The quantile of training rows' distance to their nearest centroid.

    Computed with Spark SQL expressions generated from ``params`` (the scoring core's own
    formula), with no Python workers; the parity test checks these distances against the core's.
    """

    distances = table.select(nearest_distance_expression(params).alias("distance"))
    (value,) = distances.approxQuantile("distance", [quantile], QUANTILE_RELATIVE_ERROR)
    return float(value)


def silhouette(table, params: ModelParams) -> float:
    """The training rows' mean silhouette with squared Euclidean distance, as Spark ML's
    ``ClusteringEvaluator`` defines it, in two Spark SQL passes.

    A row z's mean squared distance to the N_k rows of cluster k, whose vectors sum to Y_k and
    whose squared norms sum to P_k, is |z|^2 - 2 z.Y_k / N_k + P_k / N_k: the first pass sums
    each cluster, the second scores each row from those sums. a: that distance to the row's own
    cluster, times N / (N - 1) to leave the row itself out; b: the least to another non-empty
    cluster; the row's silhouette (b - a) / max(a, b), 0 alone in its cluster. Rows go to
    centroids by the scoring core's formula (expressions generated from ``params``, ties to the
    lowest index like the core's argmin), with no vector UDFs. NaN with fewer than 2 non-empty
    clusters, where a silhouette means nothing (the evaluator raises an error there).
    """
    from pyspark.sql import functions as F

    scaled = standardised_expressions(params.vector_columns, params.mean, params.scale)
    squared = squared_distance_expressions(params, scaled)
    z = [f"_z{j}" for j in range(len(scaled))]
    d = [f"_d{i}" for i in range(len(squared))]
    # One projection per step: Spark does not merge a projection into one that would repeat
    # its expressions, so every distance is computed once per row, in generated code.
    rows = table.select(*[e.alias(n) for e, n in zip(scaled, z)], *[e.alias(n) for e, n in zip(squared, d)])
    cluster, _ = nearest_centroid([F.col(n) for n in d])
    norm = sum((F.col(n) * F.col(n) for n in z[1:]), F.col(z[0]) * F.col(z[0]))
    rows = rows.select(*z, cluster.alias("_cluster"), norm.alias("_norm"))
    sums = {
        r["_cluster"]: r
        for r in rows.groupBy("_cluster")
        .agg(F.count(F.lit(1)).alias("size"), F.sum("_norm").alias("norms"), *[F.sum(n).alias(n) for n in z])
        .collect()
    }
    if len(sums) < 2:
        return float("nan")
    mean_distances = []
    for i, cluster in sums.items():
        dot = sum((F.col(n) * F.lit(cluster[n]) for n in z[1:]), F.col(z[0]) * F.lit(cluster[z[0]]))
        mean_distances.append(
            (F.col("_norm") + F.lit(cluster["norms"] / cluster["size"]) - F.lit(2.0 / cluster["size"]) * dot).alias(
                f"_m{i}"
            )
        )
    rows = rows.select("_cluster", *mean_distances)
    own = F.coalesce(
        *[
            F.when(
                F.col("_cluster") == i,
                F.col(f"_m{i}") * F.lit(c["size"] / (c["size"] - 1)) if c["size"] > 1 else F.lit(None).cast("double"),
            )
            for i, c in sums.items()
        ]
    )
    other = F.least(*[F.when(F.col("_cluster") != i, F.col(f"_m{i}")) for i in sums])
    rows = rows.select(own.alias("a"), other.alias("b"))
    a, b = F.col("a"), F.col("b")
    # a is null only for a row alone in its cluster, whose silhouette is 0.
    point = F.when(a.isNull(), 0.0).when(a < b, 1 - a / b).when(a > b, b / a - 1).otherwise(0.0)
    return float(rows.select(F.avg(point)).first()[0])


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
