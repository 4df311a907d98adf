"""Applies the scoring core to a Spark DataFrame, static or streaming.

The parameters travel to the executors inside the function's closure, so scoring works
whatever the tracking store is and without the executors reaching MLflow.
"""

from __future__ import annotations

import pandas as pd

from core.scoring import OUTPUT_COLUMNS, ModelParams, score_frame

OUTPUT_DDL = (
    "cluster int, distance double, anomaly_score double, is_anomaly boolean, "
    "is_valid boolean, invalid_reason string"
)


def nearest_distance_expression(params: ModelParams):
    """Spark SQL for the distance to the nearest centroid, the core's formula, for valid rows.

    z = (x - mean) * scale per feature; distance = min over centroids of the Euclidean norm.
    """
    from pyspark.sql import functions as F

    scaled = [
        (F.col(f).cast("double") - F.lit(float(m))) * F.lit(float(s))
        for f, m, s in zip(params.features, params.mean, params.scale)
    ]
    squared = []
    for centroid in params.centroids:
        terms = [(z - F.lit(float(c))) * (z - F.lit(float(c))) for z, c in zip(scaled, centroid)]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        squared.append(total)
    nearest = F.least(*squared) if len(squared) > 1 else squared[0]
    return F.sqrt(nearest)


def scored_schema(input_schema):
    from pyspark.sql.types import StructType

    output = StructType.fromDDL(OUTPUT_DDL)
    kept = [f for f in input_schema.fields if f.name not in OUTPUT_COLUMNS]
    return StructType(kept + output.fields)


def score_dataframe(df, params: ModelParams):
    """df plus the core's output columns, one output row per input row."""
    kept = [c for c in df.columns if c not in OUTPUT_COLUMNS]

    def score_batches(batches):
        for batch in batches:
            scored = score_frame(params, batch)
            yield pd.concat([batch[kept].reset_index(drop=True), scored.reset_index(drop=True)], axis=1)

    return df.select(*kept).mapInPandas(score_batches, scored_schema(df.select(*kept).schema))


BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"


def score_binary_files(spark, files, params: ModelParams, planned_paths: list[str] | None = None):
    """Score a binaryFile DataFrame (static or one micro-batch) into per-line records.

    The one scoring path of the monitor and replay: each file is parsed by
    ``core.csv_input.score_files``. Spark's scan drops zero-length files before reading, so
    any ``planned_paths`` the scan did not see come back as 'empty file' quarantine records.
    """
    from pyspark.sql import functions as F

    from core.csv_input import record_ddl, score_files

    def score(batches):
        for batch in batches:
            yield score_files(params, zip(batch["path"], batch["content"]))

    canonical = F.regexp_replace("path", "^file:/+", "file:///").alias("path")
    records = files.select(canonical, "content").mapInPandas(score, record_ddl(params.features))
    if not planned_paths:
        return records
    # Only the path column: binaryFile then lists the files without reading them.
    seen = {row[0] for row in files.select(canonical).collect()}
    skipped = [path for path in planned_paths if path not in seen]
    if not skipped:
        return records
    empty = score_files(params, [(path, b"") for path in skipped])
    return records.unionByName(spark.createDataFrame(empty, record_ddl(params.features)))
