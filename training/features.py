"""Loading the feature table: every column read as text, then validated by name in our own code,
with the moments of the valid rows' features taken in the same pass."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import UserError
from core.schema import SOURCE_COLUMNS, TIMESTAMP
from core.scoring import bounds_for
from core.spark_scoring import unreadable_time

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.


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
    rows they were taken over: what the standardisation learns; and each column's lowest and
    highest value, where a series' range starts (``core.value_range``)."""

    columns: list[str]
    mean: list[float]
    std: list[float]
    rows: int
    lowest: list[float] = field(default_factory=list)
    highest: list[float] = field(default_factory=list)

    @property
    def ranges(self) -> list[list[float]]:
        return [[lo, hi] for lo, hi in zip(self.lowest, self.highest)]


def moment_expressions(columns: list[str]) -> list:
    from pyspark.sql import functions as F

    return [
        *[F.avg(c) for c in columns],
        *[F.stddev_samp(c) for c in columns],
        F.count(F.lit(1)),
        *[F.min(c) for c in columns],
        *[F.max(c) for c in columns],
    ]


def moments_from_row(columns: list[str], row) -> Moments:
    """``Moments`` from the values of ``moment_expressions`` (a Row, or any sequence, in order)."""
    n = len(columns)
    return Moments(
        list(columns),
        [float(row[i]) for i in range(n)],
        [float(row[n + i] or 0.0) for i in range(n)],
        int(row[2 * n]),
        [_number(row[2 * n + 1 + i]) for i in range(n)],
        [_number(row[3 * n + 1 + i]) for i in range(n)],
    )


def _number(value) -> float:
    return float("nan") if value is None else float(value)  # a column with no rows has no extremes


def load_feature_table(spark, uri: str, features: list[str]) -> FeatureTable:
    """Read the table with every column as text, then validate by name in our own code.

    Reading as text (not with Spark's CSV type coercion) keeps reordered columns and
    values like 'NaN' or '-1' from slipping through unnoticed.
    """
    from pyspark.sql import functions as F

    try:
        raw = spark.read.option("header", True).option("inferSchema", False).csv(uri)
    except Exception as error:  # noqa: BLE001 - AnalysisException: path missing or unreadable
        raise UserError(f"cannot read feature table {uri}: {str(error).splitlines()[0]}") from None
    missing = [name for name in features if name not in raw.columns]
    if missing:
        raise UserError(
            f"feature table {uri} lacks column(s) {', '.join(missing)} (it has {', '.join(raw.columns) or 'no header'})"
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
    counts = (
        flagged.groupBy("_valid")
        .agg(
            F.count(F.lit(1)).alias("count"),
            F.sum(unreadable.cast("long")).alias("unreadable"),
            *moment_expressions(features),
        )
        .collect()
    )
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
