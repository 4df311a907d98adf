"""Ranking replays: one row per model on one data set, ranked only where ranking means something.

Replay runs are found in every experiment of the store by their ``step`` tag, so runs made by
``mlflow run`` in ``Default`` count as much as the main job's. With labels they rank by the NAB
standard score of the alerts, then F1 of the alerts; without, a count of anomalies is no measure
of quality, so they rank only by a metric and direction the user names. ``replay.compare``
prints this table and ``training.promote --best-by`` promotes its leader.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.errors import UserError
from core.schema import STEP_TAG

NAB_METRIC = "nab_score_standard"
TIE_BREAK = "f1_alert"
# Metrics computed against labels, where higher is better.
LABEL_METRICS = {
    "nab_score_standard",
    "nab_score_reward_low_FP_rate",
    "nab_score_reward_low_FN_rate",
    *(f"{kind}_{unit}" for kind in ("f1", "precision", "recall") for unit in ("alert", "window", "row")),
}
ORDERS = ("asc", "desc")
COLUMNS = [
    "model_name",
    "model_version",
    NAB_METRIC,
    TIE_BREAK,
    "alert_count",
    "anomaly_count",
    "anomaly_rate",
    "invalid_rows",
    "rows",
    "labelled_files",
    "run_id",
]


@dataclass(frozen=True)
class Ranking:
    metric: str | None  # None: listed, not ranked
    ascending: bool
    says: str

    @property
    def ranked(self) -> bool:
        return self.metric is not None


def choose_ranking(metric: str | None, order: str | None, labelled: bool) -> Ranking:
    """How to rank, or a clear refusal where the user's choice says nothing about quality."""
    if order is not None and order not in ORDERS:
        raise UserError(f"order must be asc or desc, got {order!r}")
    if metric is None and order is not None:
        raise UserError("an order needs a metric to rank by (--metric)")
    if (metric == NAB_METRIC and order in (None, "desc")) or (metric is None and labelled):
        return Ranking(NAB_METRIC, False, "ranked by the NAB standard score of the alerts, then their F1")
    if metric is None:
        return Ranking(
            None,
            False,
            "not ranked: these replays had no labels, and a count of anomalies or "
            "alerts is not a measure of quality. Replay with labels, or name a metric "
            "and which way is better (--metric anomaly_rate --order asc)",
        )
    if order is None:
        if metric not in LABEL_METRICS:
            raise UserError(
                f"{metric!r} is not a measure of quality by itself; say which way is better: "
                f"--order asc (lowest first) or --order desc (highest first)"
            )
        order = "desc"
    ascending = order == "asc"
    return Ranking(metric, ascending, f"ranked by {metric}, {'lowest' if ascending else 'highest'} first")


def replay_runs(client, filter_string: str = "", max_results: int = 1000, own_runs: tuple[str, ...] = ()) -> list:
    """Finished replay runs in every experiment, newest first. ``own_runs``: the calling job's
    replays, done but still open (``mlflow run`` closes its run only when the job exits)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.{STEP_TAG} = 'replay' and attributes.status = 'FINISHED'"
    runs = client.search_runs(
        experiments,
        f"{query} and {filter_string}" if filter_string else query,
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    if own_runs:
        found = {r.info.run_id for r in runs}
        matching = client.search_runs(
            experiments,
            f"tags.{STEP_TAG} = 'replay'" + (f" and {filter_string}" if filter_string else ""),
            max_results=max_results,
        )
        runs += [r for r in matching if r.info.run_id in own_runs and r.info.run_id not in found]
        runs.sort(key=lambda r: r.info.start_time, reverse=True)
    return runs


def newest_data_sha256(client) -> str:
    runs = replay_runs(client, max_results=1)
    if not runs:
        raise UserError("no finished replay runs yet; run one: mlflow run . -e replay --env-manager local")
    return runs[0].data.params["data_sha256"]


def compare(
    client,
    data_sha256: str | None = None,
    metric: str | None = None,
    order: str | None = None,
    own_runs: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One row per model (its newest replay of the data), ranked as ``choose_ranking`` says.

    The table's ``attrs`` hold the data set and the ranking."""
    data_sha256 = data_sha256 or newest_data_sha256(client)
    runs = replay_runs(client, f"params.data_sha256 = '{data_sha256}'", own_runs=tuple(own_runs))
    if not runs:
        raise UserError(f"no finished replay run on data {data_sha256[:12]}")
    labelled = [r for r in runs if NAB_METRIC in r.data.metrics]
    ranking = choose_ranking(metric, order, bool(labelled))
    if ranking.ranked and ranking.metric in LABEL_METRICS:
        # Scores against other labels are not comparable: keep the newest labelled replay's.
        labels = labelled[0].data.params.get("labels_sha256", "") if labelled else None
        runs = [
            r for r in runs if ranking.metric in r.data.metrics and r.data.params.get("labels_sha256", "") == labels
        ]
    elif ranking.ranked:
        runs = [r for r in runs if ranking.metric in r.data.metrics]
    if not runs:
        raise UserError(f"no finished replay run on data {data_sha256[:12]} has the metric {ranking.metric!r}")
    rows = []
    for run in runs:
        row = {
            "run_id": run.info.run_id,
            "start_time": run.info.start_time,
            "experiment_id": run.info.experiment_id,
            "model_name": run.data.params.get("model_name", ""),
            "model_version": run.data.params.get("model_version", ""),
            "model_uri": run.data.params.get("model_uri", ""),
            "labels_file": run.data.params.get("labels_file", ""),
        }
        row.update({k: run.data.metrics.get(k) for k in COLUMNS if k not in row})
        if ranking.metric:
            row[ranking.metric] = run.data.metrics[ranking.metric]
        rows.append(row)
    table = pd.DataFrame(rows)
    # Runs came newest first: one row per model, its newest replay.
    table = table.drop_duplicates("model_uri", keep="first")
    if ranking.ranked:
        keys = [ranking.metric, *([TIE_BREAK] if ranking.metric == NAB_METRIC else []), "start_time"]
        table = table.sort_values(
            keys, ascending=[ranking.ascending] * (len(keys) - 1) + [False], kind="stable", na_position="last"
        )
    else:
        table = table.sort_values(["model_name", "model_version"], kind="stable")
    table = table.reset_index(drop=True)
    table.attrs.update(data_sha256=data_sha256, ranking=ranking)
    return table


def shown_columns(table: pd.DataFrame) -> list[str]:
    ranking = table.attrs.get("ranking")
    first = [ranking.metric] if ranking and ranking.metric else []
    return [
        c
        for c in dict.fromkeys(["model_name", "model_version", *first, *COLUMNS])
        if c in table and table[c].notna().any()
    ]


def print_table(table: pd.DataFrame) -> None:
    ranking = table.attrs.get("ranking")
    print(f"\nreplays of data {table.attrs.get('data_sha256', '')[:12]}: {ranking.says if ranking else ''}")
    shown = table[shown_columns(table)]
    if ranking and ranking.ranked:
        shown = shown.assign(rank=range(1, len(shown) + 1))[["rank", *shown.columns]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)


def log_table(client, run_id: str, table: pd.DataFrame) -> None:
    """The comparison as an artifact and metrics of ``run_id``, so the run says what it found."""
    ranking = table.attrs.get("ranking")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "compare.csv"
        table[shown_columns(table)].to_csv(path, index=False)
        client.log_artifact(run_id, str(path))
    client.log_param(run_id, "compared_data_sha256", table.attrs.get("data_sha256", ""))
    client.log_param(run_id, "ranking", ranking.says if ranking else "")
    client.log_metric(run_id, "models_compared", len(table))
    if ranking and ranking.ranked and len(table):
        client.set_tag(run_id, "leader", f"{table.loc[0, 'model_name']} v{table.loc[0, 'model_version']}")
