"""What the monitor says about each batch: one line of counts, one ALERT line per alert, the first
anomalous rows, and the same counts as MLflow metrics (step = batch id)."""

from __future__ import annotations

import time

import pandas as pd

from core.alerts import cooldown_text
from core.explanation import EXPLANATION_COLUMNS, explanation_text

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

ALERT_LINE_COLUMNS = ("series", "timestamp", "anomaly_score", "source_file", "line_number", *EXPLANATION_COLUMNS)


def alert_lines(rows) -> pd.DataFrame | None:
    """The collected alert rows as a frame in the order their files and lines came, or None."""
    if not rows:
        return None
    frame = pd.DataFrame([row.asDict() for row in rows], columns=list(ALERT_LINE_COLUMNS))
    return frame.sort_values(["source_file", "line_number"], kind="stable", ignore_index=True)


def print_batch(batch_id, counts, seconds, shown, model, raised=None) -> None:
    """The batch's line, its ALERT lines (``raised``) and its first anomalous rows (``shown``)."""
    label = f"{model.name} v{model.version}" if model.name else model.uri
    print(
        f"batch {batch_id}: rows {counts['rows']}, anomalies {counts['anomalies']}, "
        f"alerts {counts['alerts']}, invalid {counts['invalid_rows']}, files {counts['files']}, "
        f"model {label}, {seconds:.2f} s",
        flush=True,
    )
    params = model.params
    # What an operator can expect next from this series: the cooldown, and what ends it early.
    early = [f"{params.rearm_after} rows score below the threshold first"] if params.rearm_after else []
    if params.range_tolerance is not None and params.range_pages_in_cooldown:
        early.append("a value goes past its range")
    rearm = f" unless {' or '.join(early)}" if early else ""
    for alert in raised.itertuples(index=False) if raised is not None else []:
        why = explanation_text(
            alert.explained_by, alert.explained_share, alert.explained_value, alert.explained_centroid_value
        )
        print(
            f"ALERT series {alert.series} at {alert.timestamp}: anomaly score {alert.anomaly_score:.12g} "
            f"(threshold {params.alert_threshold:.12g}; next alert for this series no sooner than "
            f"{cooldown_text(params.cooldown, params.cooldown_seconds)} later{rearm}){'; ' + why if why else ''} "
            f"[{alert.source_file.rsplit('/', 1)[-1]}:{alert.line_number}]",
            flush=True,
        )
    if shown is not None and len(shown):
        columns = [
            "source_file",
            "line_number",
            "timestamp",
            *model.params.features,
            "cluster",
            "distance",
            "anomaly_score",
        ]
        table = shown[columns].assign(source_file=shown["source_file"].str.rsplit("/", n=1).str[-1])
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
        if counts["anomalies"] > len(shown):
            print(f"... and {counts['anomalies'] - len(shown)} more anomalies", flush=True)


def batch_metrics(batch_id, counts, seconds, model) -> list:
    """The batch's counts as MLflow metrics at step ``batch_id``."""
    from mlflow.entities import Metric

    rows_per_second = counts["rows"] / seconds if seconds > 0 else 0.0
    now = int(time.time() * 1000)
    metrics = {
        "rows": counts["rows"],
        "anomalies": counts["anomalies"],
        "alerts": counts["alerts"],
        "invalid_rows": counts["invalid_rows"],
        "files": counts["files"],
        "rows_per_second": rows_per_second,
        "batch_seconds": seconds,
        "model_version": float(model.version) if model.version else -1.0,
    }
    return [Metric(k, float(v), now, batch_id) for k, v in metrics.items()]
