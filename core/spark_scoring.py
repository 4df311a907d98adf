"""Applies the scoring core to Spark DataFrames, static or streaming.

Two steps, each a call into the core: files are parsed and checked row by row
(``mapInPandas``, no order needed), then each series is scored in time order
(``applyInPandas`` from an empty state in batch jobs; ``applyInPandasWithState`` in the
monitor, which keeps every series' state across micro-batches and restarts in the
query's checkpoint). The parameters travel to the executors inside the function's closure,
so scoring works whatever the tracking store is and without the executors reaching MLflow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.csv_input import EXPLANATION_DDL, parse_files, record_ddl, record_times, score_records, unscored_columns
from core.hadoop_fs import canonical_path_column
from core.history import history_features
from core.paired_scoring import CHALLENGER_FLAGS, challenger_ddl, score_pair
from core.schema import TIMESTAMP
from core.scoring import (
    INVALID_CLUSTER,
    OUTPUT_COLUMNS,
    ModelParams,
    derived_name,
    score_frame,
)

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

OUTPUT_DDL = (
    "cluster int, distance double, anomaly_score double, is_anomaly boolean, is_alert boolean, "
    f"{EXPLANATION_DDL}, is_valid boolean, invalid_reason string"
)


def standardised_expressions(columns, mean, scale) -> list:
    """Spark SQL for a row's standardised vector, the core's formula: z = (x - mean) * scale."""
    from pyspark.sql import functions as F

    return [(F.col(c).cast("double") - F.lit(float(m))) * F.lit(float(s)) for c, m, s in zip(columns, mean, scale)]


def squared_distance_expressions(params: ModelParams, scaled=None) -> list:
    """Spark SQL for a row's squared distance to each centroid, the core's formula."""
    from pyspark.sql import functions as F

    if scaled is None:
        scaled = standardised_expressions(params.vector_columns, params.mean, params.scale)
    return squared_distances_to(scaled, [[F.lit(float(c)) for c in centroid] for centroid in params.centroids])


def squared_distances_to(vector: list, centroids: list[list]) -> list:
    """Spark SQL for the squared distance of ``vector`` to each of ``centroids`` (columns or
    literals alike): the sum over features, in their order, of (z - c) * (z - c)."""
    squared = []
    for centroid in centroids:
        terms = [(z - c) * (z - c) for z, c in zip(vector, centroid)]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        squared.append(total)
    return squared


def nearest_centroid(squared: list, nearest=None):
    """Spark SQL for (the nearest centroid's index, its squared distance) from the squared
    distances to each, ties to the lowest index like the core's argmin. ``nearest``: a column
    that already holds their least, for the cases to compare with instead of repeating it."""
    from pyspark.sql import functions as F

    if nearest is None:
        nearest = F.least(*squared) if len(squared) > 1 else squared[0]
    return F.coalesce(*[F.when(d == nearest, F.lit(i)) for i, d in enumerate(squared)]), nearest


def nearest_distance_expression(params: ModelParams):
    """Spark SQL for the distance to the nearest centroid, the core's formula, for valid rows.

    z = (x - mean) * scale per feature; distance = min over centroids of the Euclidean norm.
    """
    from pyspark.sql import functions as F

    return F.sqrt(nearest_centroid(squared_distance_expressions(params))[1])


def scored_schema(input_schema):
    from pyspark.sql.types import StructType

    output = StructType.fromDDL(OUTPUT_DDL)
    kept = [f for f in input_schema.fields if f.name not in OUTPUT_COLUMNS]
    return StructType(kept + output.fields)


def score_dataframe(df, params: ModelParams):
    """df plus the core's output columns, one output row per input row, for a model whose
    rows stand alone (no history features, no alert cooldown): Spark's batches cut series."""
    if params.per_series:
        raise ValueError("score_dataframe scores rows one by one; score series with score_series_static")
    kept = [c for c in df.columns if c not in OUTPUT_COLUMNS]

    def score_batches(batches):
        for batch in batches:
            scored = score_frame(params, batch)
            yield pd.concat([batch[kept].reset_index(drop=True), scored.reset_index(drop=True)], axis=1)

    return df.select(*kept).mapInPandas(score_batches, scored_schema(df.select(*kept).schema))


BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"
# A series' state in the monitor's state store: ``core.scoring.SeriesState`` as JSON.
SERIES_STATE_DDL = "state string"


def parse_binary_files(files, params: ModelParams):
    """A binaryFile DataFrame (static or streaming) as parsed, checked, unscored records."""

    def parse(batches):
        for batch in batches:
            yield parse_files(params, zip(batch["path"], batch["content"]))

    canonical = canonical_path_column("path").alias("path")
    return files.select(canonical, "content").mapInPandas(parse, record_ddl(params))


def unseen_file_frame(params: ModelParams, seen: set[str], planned_paths: list[str] | None) -> pd.DataFrame | None:
    """'empty file' quarantine records (pandas) for planned files no record came from, or None.

    Spark's scan drops zero-length files before reading them, so they would vanish unseen.
    """

    skipped = [path for path in planned_paths or [] if path not in seen]
    if not skipped:
        return None
    return parse_files(params, [(path, b"") for path in skipped])


def unseen_file_records(spark, params: ModelParams, seen: set[str], planned_paths: list[str] | None):
    """``unseen_file_frame`` as a Spark DataFrame of records, or None."""

    frame = unseen_file_frame(params, seen, planned_paths)
    return None if frame is None else spark.createDataFrame(frame, record_ddl(params))


def score_series_static(records, params: ModelParams):
    """Score parsed records per series, every series from an empty state (replay, benchmark)."""

    def score(group: pd.DataFrame) -> pd.DataFrame:
        return score_records(params, group)[0]

    return records.select(*unscored_columns(params)).groupBy("series").applyInPandas(score, record_ddl(params))


FOLDED_ROWS = "_folded_normal_rows"


def fold_normal_rows(scored: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with its normal rows (valid, no anomaly, no alert) folded into one tally row
    per file, whose ``FOLDED_ROWS`` counts them; every other row is kept whole, with
    ``FOLDED_ROWS`` null.

    The monitor writes only anomalies, alerts and quarantined rows, and counts the rest: every
    row that leaves the Python workers is converted to Arrow and back and padded with state
    columns by PySpark (a quarter of the workers' time in a 1,920-file batch). A tally row is
    valid and normal, so no part of the output selects it, and it names its file, which the
    monitor needs to tell a file that was read from one that never was.
    """
    flags = [c for c in ("is_anomaly", "is_alert", *CHALLENGER_FLAGS) if c in scored.columns]
    keep = ~scored["is_valid"].to_numpy(dtype=bool)
    for flag in flags:  # with a challenger, a row is normal only when neither model flags it
        keep |= scored[flag].to_numpy(dtype=bool)
    kept = scored[keep].assign(**{FOLDED_ROWS: np.nan})
    if keep.all():
        return kept
    files, counts = np.unique(scored["source_file"].to_numpy()[~keep].astype(str), return_counts=True)
    tally = {name: np.full(len(files), np.nan) for name in scored.columns}
    tally.update(
        {
            "source_file": files,
            "series": np.repeat(scored["series"].iloc[0], len(files)),
            "line_number": np.zeros(len(files), dtype=np.int64),
            "cluster": np.full(len(files), INVALID_CLUSTER, dtype=np.int32),
            "timestamp": np.repeat("", len(files)),
            "reason": np.repeat("", len(files)),
            "raw": np.repeat("", len(files)),
            **{flag: np.zeros(len(files), dtype=bool) for flag in flags},
            "is_valid": np.ones(len(files), dtype=bool),
            FOLDED_ROWS: counts.astype(float),
        }
    )
    return pd.concat([kept, pd.DataFrame(tally)[kept.columns]], ignore_index=True)


def score_series_streaming(
    records,
    params: ModelParams,
    idle_timeout_ms: int,
    fold_normal: bool = False,
    model_key: str = "",
    challenger: tuple[str, ModelParams] | None = None,
):
    """Score streaming records per series, continuing each series from its stored state.

    ``model_key`` names the model (its pinned URI) in the state; with a ``challenger`` (its key
    and params) every row is also scored by it, with its own state, into ``CHALLENGER_COLUMNS``
    (``core.paired_scoring``). Without one the state is a plain ``SeriesState``, as ever.

    A series that sends nothing for ``idle_timeout_ms`` (processing time) is forgotten, so the
    state store holds the series that are alive, not every series ever seen; if it comes back
    it starts again from its first row (warm-up included). Every output row carries
    ``FOLDED_ROWS``: with ``fold_normal`` the normal rows come back as per-file tallies
    (``fold_normal_rows``), otherwise it is null and every row comes back.
    """
    from pyspark.sql.streaming.state import GroupStateTimeout

    def score(key, frames, state):
        if state.hasTimedOut:
            state.remove()
            return
        frames = list(frames)
        records = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        scored, updated = score_pair(params, records, state.get[0] if state.exists else None, model_key, challenger)
        state.update((updated,))
        state.setTimeoutDuration(idle_timeout_ms)
        yield fold_normal_rows(scored) if fold_normal else scored.assign(**{FOLDED_ROWS: np.nan})

    # Only the columns scoring reads cross to the workers: the ones it writes would be shuffled
    # and converted to pandas only to be overwritten.
    return (
        records.select(*unscored_columns(params))
        .groupBy("series")
        .applyInPandasWithState(
            score,
            f"{record_ddl(params)}, {challenger_ddl() + ', ' if challenger else ''}{FOLDED_ROWS} long",
            SERIES_STATE_DDL,
            "append",
            GroupStateTimeout.ProcessingTimeTimeout,
        )
    )


def score_binary_files(spark, files, params: ModelParams, planned_paths: list[str] | None = None):
    """Score a static binaryFile DataFrame into per-line records: the one batch scoring path.

    Any ``planned_paths`` the scan did not see (zero-length files) come back as 'empty file'
    quarantine records.
    """

    records = parse_binary_files(files, params)
    if planned_paths:
        # Only the path column: binaryFile then lists the files without reading them.
        canonical = canonical_path_column("path")
        seen = {row[0] for row in files.select(canonical).collect()}
        unseen = unseen_file_records(spark, params, seen, planned_paths)
        if unseen is not None:
            records = records.unionByName(unseen)
    return score_series_static(records, params)


ORDER_COLUMN = "_row_order"


def spark_time(column: str = "timestamp"):
    """Spark's reading of a timestamp column (null where it cannot read one)."""
    from pyspark.sql import functions as F

    return F.trim(F.col(column)).try_cast("timestamp")


def unreadable_time(column: str = "timestamp"):
    """True for a timestamp Spark cannot read but that is not blank: only the core's own
    reading of time (``record_times``, pandas) may order such rows."""
    from pyspark.sql import functions as F

    return (F.coalesce(F.length(F.trim(F.col(column))), F.lit(0)) > 0) & spark_time(column).isNull()


def training_features(
    table, features: list[str], history: list[str], span: int, series: str | None, times_readable: bool | None = None
):
    """The training table with its history features (``vector_columns``), the core's formulas.

    Rows are grouped by ``series`` (one series when None) and taken in time order, file order
    breaking ties, exactly as the monitor and replay take them. When Spark can read every
    timestamp (``times_readable``; checked with a job when None) the features are Spark SQL
    window functions: the core's formulas over the same rows, no Python workers; Spark sums in
    another order, so they equal the
    core's to about 1e-15, not bit for bit (the parity test holds them to 1e-12). Otherwise
    the core itself computes them in Python workers, ordering by its own reading of time.
    """
    from pyspark.sql import functions as F

    if history == ["value"]:
        return table
    ordered = table.withColumn(ORDER_COLUMN, F.monotonically_increasing_id())
    has_time = TIMESTAMP in table.columns
    if has_time and times_readable is None:
        times_readable = table.where(unreadable_time(TIMESTAMP)).limit(1).count() == 0
    if has_time and not times_readable:
        return _training_features_in_python(ordered, features, history, span, series)
    from pyspark.sql import Window

    order = ([spark_time(TIMESTAMP).asc_nulls_last()] if has_time else []) + [F.col(ORDER_COLUMN)]
    by_series = Window.partitionBy(F.col(series) if series else F.lit(""))
    in_order = by_series.orderBy(*order)
    window = in_order.rowsBetween(-(span - 1), Window.currentRow)
    columns = []
    for feature in features:
        value = F.col(feature)
        for transform in history:
            if transform == "value":
                column = value
            elif transform == "delta":
                # A series' first row has a delta of 0, as in the core.
                column = value - F.coalesce(F.lag(value, 1).over(in_order), value)
            elif transform == "mean":
                column = F.avg(value).over(window)
            else:
                column = F.stddev_pop(value).over(window)
            columns.append(column.cast("double").alias(derived_name(feature, transform)))
    return ordered.select(*columns)


def _training_features_in_python(ordered, features, history, span, series):
    """The core's ``history_features`` per series in Python workers, ordered by ``record_times``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StructField, StructType

    names = [derived_name(f, t) for f in features for t in history]
    schema = StructType([StructField(n, DoubleType()) for n in names])
    has_time = TIMESTAMP in ordered.columns

    def derive(group: pd.DataFrame) -> pd.DataFrame:
        keys = pd.DataFrame({"o": group[ORDER_COLUMN].to_numpy()})
        if has_time:
            keys.insert(0, "t", record_times(group).values)
        positions = group.iloc[keys.sort_values(list(keys.columns), kind="stable").index.to_numpy()]
        vectors, _ = history_features(history, span, positions[features].to_numpy(dtype=float), [])
        return pd.DataFrame(vectors, columns=names)

    key = F.col(series) if series else F.lit("")
    return ordered.groupBy(key).applyInPandas(derive, schema)
