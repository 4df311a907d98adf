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
