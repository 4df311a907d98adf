"""Compare: the replay runs on one data set, one row per model version, sorted by a metric.

Input: the replay experiment in MLflow (searched with MLflow's own search API); a data set
(``--data-sha256``; default: the data of the newest replay) and a metric to sort by.
Output: a table on stdout, best first. ``python -m training.promote --best-by METRIC``
promotes the version that leads it.

    mlflow run . -e compare --env-manager local -P metric=nab_score_standard
"""

from __future__ import annotations

import argparse

import pandas as pd

from core.errors import UserError, exit_process, main_guard

# Metrics where less is better; every other metric sorts highest first.
LOWER_IS_BETTER = {"anomaly_count", "anomaly_rate", "alert_count", "invalid_rows", "replay_seconds"}
COLUMNS = ["model_name", "model_version", "rows", "anomaly_count", "alert_count", "anomaly_rate", "invalid_rows",
           "f1_window", "f1_row", "nab_score_standard", "run_id"]


def newest_data_sha256(client, experiment_id: str) -> str:
    runs = client.search_runs([experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise UserError("no finished replay runs yet; run one: mlflow run . -e replay --env-manager local")
    return runs[0].data.params["data_sha256"]


def compare(client, data_sha256: str | None, metric: str, ascending: bool | None = None) -> pd.DataFrame:
    from replay.replay import REPLAY_EXPERIMENT

    experiment = client.get_experiment_by_name(REPLAY_EXPERIMENT)
    if experiment is None:
        raise UserError("no replay experiment yet; run a replay first")
    data_sha256 = data_sha256 or newest_data_sha256(client, experiment.experiment_id)
    if ascending is None:
        ascending = metric in LOWER_IS_BETTER
    runs = client.search_runs(
        [experiment.experiment_id],
        f"params.data_sha256 = '{data_sha256}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{metric}` {'ASC' if ascending else 'DESC'}", "attributes.start_time DESC"],
        max_results=1000,
    )
    rows = []
    for run in runs:
        if metric not in run.data.metrics:
            continue
        row = {"run_id": run.info.run_id, "start_time": run.info.start_time,
               "model_name": run.data.params.get("model_name", ""),
               "model_version": run.data.params.get("model_version", ""),
               "model_uri": run.data.params.get("model_uri", "")}
        row.update({k: run.data.metrics.get(k) for k in COLUMNS if k not in row})
        row[metric] = run.data.metrics[metric]
        rows.append(row)
    if not rows:
        raise UserError(f"no finished replay run on data {data_sha256[:12]} has the metric {metric!r}")
    table = pd.DataFrame(rows)
    # One row per model: its newest replay of this data.
    table = table.sort_values("start_time", ascending=False).drop_duplicates("model_uri")
    table = table.sort_values([metric, "start_time"], ascending=[ascending, False], kind="stable")
    table.attrs["data_sha256"] = data_sha256
    return table.reset_index(drop=True)


def print_table(table: pd.DataFrame, metric: str) -> None:
    columns = [c for c in dict.fromkeys(["model_name", "model_version", metric, *COLUMNS])
               if c in table and table[c].notna().any()]
    print(f"\nreplays of data {table.attrs.get('data_sha256', '')[:12]}, best {metric} first:")
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)


@main_guard
def main(argv=None) -> int:
    from core.tracking import MlflowService

    parser = argparse.ArgumentParser(description="Compare replay runs on one data set.")
    parser.add_argument("--metric", default="anomaly_rate")
    parser.add_argument("--data-sha256", default="", help="data set to compare on (default: newest replay's)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--ascending", action="store_true", default=None, help="lowest first")
    order.add_argument("--descending", dest="ascending", action="store_false", help="highest first")
    args = parser.parse_args(argv)
    with MlflowService() as service:
        table = compare(service.client, args.data_sha256 or None, args.metric, args.ascending)
    print_table(table, args.metric)
    return 0


if __name__ == "__main__":
    exit_process(main())
