"""Champion and challenger compared on what the monitor saw: one monitor run's per-batch metrics
(step = batch id) summed over the batches each pair of models scored together.

A pair is (production version, challenger version): the two models of a pair scored the same
rows in the same batches, so their counts compare; two pairs (before and after a promotion) saw
different rows, so the table keeps them apart. Per model of a pair: anomalies, their rate,
alerts, the alerts only it raised (``alerts_alone``), and, shared by the pair, the alerts both
raised on the same row and their agreement (both / either). Counts say how the two differ, not
which is better: the table is ranked only when ``replay.monitor_compare`` adds the NAB scores
of the alerts against labels. ``replay.compare --monitor-run`` prints and logs it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.schema import STEP_TAG

BATCH_METRICS = (
    "rows",
    "anomalies",
    "alerts",
    "model_version",
    "challenger_version",
    "challenger_anomaly_count",
    "challenger_alert_count",
    "alerts_both",
)
COLUMNS = [
    "pair",
    "role",
    "model_version",
    "batches",
    "rows",
    "anomalies",
    "anomaly_rate",
    "alerts",
    "alerts_alone",
    "alerts_both",
    "alert_agreement",
]
NOT_RANKED = (
    "not ranked: counts of anomalies and alerts say how the two models differ, not which is "
    "better; give labels (--labels) to rank each pair by the NAB score of its alerts"
)


def monitor_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run {run_id} in this tracking store") from None
    if run.data.tags.get(STEP_TAG) != "monitor":
        raise UserError(f"run {run_id} is not a monitor run (its tag {STEP_TAG} is {run.data.tags.get(STEP_TAG)!r})")
    return run


def monitor_batches(client, run_id: str) -> pd.DataFrame:
    """One row per batch of a monitor run (index: batch id), a column per count it logged."""
    monitor_run(client, run_id)
    columns = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in BATCH_METRICS}
    frame = pd.DataFrame({key: pd.Series(values, dtype=float) for key, values in columns.items()})
    frame.index.name = "batch_id"
    return frame.sort_index()


def version_text(value: float) -> str:
    return str(int(value)) if np.isfinite(value) and value >= 0 else "?"


def pair_table(batches: pd.DataFrame, run_id: str = "") -> pd.DataFrame:
    """Two rows (production, challenger) per pair of models, in the order the pairs first ran."""
    paired = batches.dropna(subset=["challenger_version"])
    if paired.empty:
        raise UserError(
            f"no batch of monitor run {run_id} had a challenger: set one with "
            "mlflow run . -e promote --env-manager local -P alias=challenger -P version=N"
        )
    rows = []
    for (production, challenger), group in paired.groupby(["model_version", "challenger_version"], sort=False):
        both = int(group["alerts_both"].sum())
        ours, theirs = int(group["alerts"].sum()), int(group["challenger_alert_count"].sum())
        either = ours + theirs - both
        first, last = int(group.index.min()), int(group.index.max())
        shared = {
            "pair": f"production v{version_text(production)} / challenger v{version_text(challenger)}",
            "batches": f"{first}-{last} ({len(group)})" if first != last else f"{first} (1)",
            "rows": int(group["rows"].sum()),
            "alerts_both": both,
            "alert_agreement": both / either if either else float("nan"),
        }
        for role, version, anomalies, alerts in (
            ("production", production, group["anomalies"].sum(), ours),
            ("challenger", challenger, group["challenger_anomaly_count"].sum(), theirs),
        ):
            rows.append(
                {
                    **shared,
                    "role": role,
                    "model_version": version_text(version),
                    "anomalies": int(anomalies),
                    "anomaly_rate": anomalies / shared["rows"] if shared["rows"] else float("nan"),
                    "alerts": alerts,
                    "alerts_alone": alerts - both,
                }
            )
    table = pd.DataFrame(rows)[COLUMNS]
    table.attrs.update(run_id=run_id, says=NOT_RANKED, ranked=False)
    return table


def rank_pairs(table: pd.DataFrame, metric: str = "nab_score_standard", tie_break: str = "f1_alert") -> pd.DataFrame:
    """Each pair's two rows ordered by ``metric`` then ``tie_break`` (highest first), with a rank."""
    keys = [k for k in (metric, tie_break) if k in table]
    order = {pair: i for i, pair in enumerate(dict.fromkeys(table["pair"]))}
    ranked = table.assign(_pair=table["pair"].map(order)).sort_values(
        ["_pair", *keys], ascending=[True, *[False] * len(keys)], kind="stable", na_position="last"
    )
    ranked = ranked.drop(columns="_pair").reset_index(drop=True)
    ranked.insert(0, "rank", ranked.groupby("pair", sort=False).cumcount() + 1)
    ranked.attrs.update(table.attrs, ranked=True, says=f"each pair ranked by {metric}, then {tie_break}, of its alerts")
    return ranked


def print_pairs(table: pd.DataFrame) -> None:
    print(
        f"\nmonitor run {table.attrs.get('run_id', '')}: production and challenger on the same rows; "
        f"{table.attrs.get('says', '')}"
    )
    shown = table[[c for c in table.columns if table[c].notna().any()]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)


def log_pairs(client, run_id: str, table: pd.DataFrame) -> None:
    """The comparison as ``monitor_compare.csv`` and a leader tag per pair in ``run_id``."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "monitor_compare.csv"
        table.to_csv(path, index=False)
        client.log_artifact(run_id, str(path))
    client.log_param(run_id, "monitor_run_id", table.attrs.get("run_id", ""))
    client.log_param(run_id, "ranking", table.attrs.get("says", ""))
    if table.attrs.get("ranked"):
        leaders = table[table["rank"] == 1]
        client.set_tag(
            run_id, "leader", "; ".join(f"{p}: v{v}" for p, v in zip(leaders["pair"], leaders["model_version"]))
        )
