"""Replay: push history through one or more models and log what each would have flagged.

Input: metric CSV files (paths, directories or globs; any Hadoop-compatible URI) with a header
naming ``timestamp`` and the model's features; one or more models (``models:/name@alias``,
``name@alias``, ``name/3``, ``runs:/...``); optionally NAB label windows
(``combined_windows.json``, keyed by file name).
Output: one MLflow run per model version and data set, in the replay experiment:
- params: model name, version, training run, URI, rule, threshold, history features, span,
  alert threshold, cooldown, data files, their sha256s;
- metrics: rows, anomaly_count, alert_count, anomaly_rate, invalid_rows, ``anomalies_<file>``
  and ``alerts_<file>`` per file and ``anomalies_per_window`` per event-time window (step =
  window index); with labels also precision/recall/F1 of the anomalous rows (per window and per
  row) and of the alerts, and the NAB scores of the alerts per profile, overall and per file;
- artifacts: ``rows/<file>.csv`` (every row in input order), ``plots/<file>.png`` and
  ``summary.csv``.

Rows are scored by ``core.spark_scoring.score_binary_files``: the monitor's parser and the
core's per-series scoring, each series from its first row, so the same files and model give
the monitor's counts and alerts.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from core.alerts import cooldown_text
from core.cli import add_spark_args, job_parser, optional_text
from core.comparison import compare, log_table, print_table
from core.errors import UserError, exit_process, main_guard
from core.explanation import EXPLANATION_COLUMNS
from core.hadoop_fs import HadoopFs, canonical_path, canonical_path_column
from core.paths import to_uri
from core.schema import (
    DEFAULT_MODEL_NAME,
    PRODUCTION_ALIAS,
    REPLAY_EXPERIMENT,
    STEP_TAG,
)
from core.spark import spark_session
from core.spark_scoring import score_binary_files
from core.tracking import MlflowService, joined_run_id, log_dataset
from replay.nab_scoring import PROFILES, f1, load_labels, normalised, score_file, window_metrics, window_rows

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

FAULT_ENV = "REPLAY_FAULT"  # test hook: "after_run_created" kills the replay with SIGKILL
DEFAULT_WINDOW_MINUTES = 60
MAX_PARAM_CHARS = 6000


@dataclass
class DataSet:
    paths: list[str]
    hashes: dict[str, str]

    def describe(self) -> str:
        names = [file_stem(p) for p in self.paths]
        return (
            names[0]
            if len(names) == 1
            else f"{len(names)} files ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        )

    def source_uri(self) -> str:
        """The one file, or the folder holding them all: what the UI shows as the data's source."""
        if len(self.paths) == 1:
            return self.paths[0]
        scheme = self.paths[0].partition("://")[0]
        return f"{scheme}://{posixpath.commonpath([p.partition('://')[2] for p in self.paths])}"

    @property
    def sha256(self) -> str:
        combined = hashlib.sha256()
        for path in self.paths:
            combined.update(f"{file_stem(path)}:{self.hashes[path]}\n".encode())
        return combined.hexdigest()


@dataclass
class ReplayResult:
    run_id: str
    model_label: str
    metrics: dict[str, float]
    per_file: pd.DataFrame
    window_counts: pd.Series = field(repr=False)


def file_stem(path: str) -> str:
    return PurePosixPath(path).stem


def metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)


def find_data(spark, specs: list[str]) -> DataSet:
    """Expand files, directories and globs; hash every file where it lives."""
    from pyspark.sql import functions as F

    fs = HadoopFs(spark)
    paths = []
    for spec in specs:
        found = fs.list_files(to_uri(spec))
        if not found:
            raise UserError(f"no CSV files at {spec}")
        paths.extend(found)
    paths = sorted(set(paths))
    rows = (
        spark.read.format("binaryFile")
        .load(paths)
        .select(canonical_path_column("path").alias("path"), F.sha2("content", 256).alias("sha"))
        .collect()
    )
    hashes = {canonical_path(r["path"]): r["sha"] for r in rows}
    empty = hashlib.sha256(b"").hexdigest()  # Spark's scan skips empty files
    return DataSet(paths, {p: hashes.get(p, empty) for p in paths})


def score_history(spark, params, data: DataSet) -> pd.DataFrame:

    files = spark.read.format("binaryFile").load(data.paths)
    records = score_binary_files(spark, files, params, data.paths).toPandas()
    return records.sort_values(["source_file", "line_number"], kind="stable").reset_index(drop=True)


def labels_sha256(windows: dict | None, data: DataSet) -> str:
    """The label windows of the replayed files only: replays compare on the same labels."""
    if windows is None:
        return ""
    relevant = {PurePosixPath(p).name: windows.get(PurePosixPath(p).name) for p in data.paths}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def count_per_window(records: pd.DataFrame, minutes: int) -> pd.Series:
    """Anomalies per event-time window, indexed from the data set's first timestamp."""
    stamps = pd.to_datetime(records["timestamp"], errors="coerce", format="mixed")
    valid = stamps.notna()
    if not valid.any():
        return pd.Series(dtype="int64")
    index = ((stamps[valid] - stamps[valid].min()) // pd.Timedelta(minutes=minutes)).astype("int64")
    return records.loc[valid, "is_anomaly"].astype(int).groupby(index).sum().sort_index()


def summarize(records: pd.DataFrame, windows: dict | None):
    """Per-file counts and, for labelled files, accuracy and NAB scores.

    NAB scores and alert precision/recall judge the alerts (what pages an operator); window
    and row precision/recall judge the anomalous rows.
    """

    rows = []
    scores = {profile: [] for profile in PROFILES}
    totals = {}
    for path, group in records.groupby("source_file", sort=True):
        stem = file_stem(path)
        row = {
            "file": stem,
            "rows": len(group),
            "anomalies": int(group["is_anomaly"].sum()),
            "alerts": int(group["is_alert"].sum()),
            "invalid_rows": int((~group["is_valid"]).sum()),
        }
        label = None if windows is None else windows.get(PurePosixPath(path).name)
        if label is not None:
            group = group.sort_values("line_number")
            spans = window_rows(pd.to_datetime(group["timestamp"], errors="coerce", format="mixed"), label)
            flags = group["is_anomaly"].to_numpy(dtype=bool)
            alerts = group["is_alert"].to_numpy(dtype=bool)
            counts = window_metrics(flags, spans)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            alert_counts = window_metrics(alerts, spans)
            totals["alerts"] = totals.get("alerts", 0) + int(alerts.sum())
            totals["alerts_in_window"] = totals.get("alerts_in_window", 0) + alert_counts["runs_in_window"]
            totals["windows_alerted"] = totals.get("windows_alerted", 0) + alert_counts["window_caught"]
            for profile in PROFILES:
                score = score_file(alerts, spans, profile)
                scores[profile].append(score)
                row[f"nab_raw_{profile}"] = score.raw
            row["windows"] = len(spans)
            row["windows_caught"] = counts["window_caught"]
        rows.append(row)
    per_file = pd.DataFrame(rows)
    metrics = {}
    if totals:
        precision = totals["runs_in_window"] / totals["runs"] if totals["runs"] else 0.0
        recall = totals["window_caught"] / totals["window_total"] if totals["window_total"] else 0.0
        metrics.update(precision_window=precision, recall_window=recall, f1_window=f1(precision, recall))
        precision = totals["rows_true"] / totals["rows_flagged"] if totals["rows_flagged"] else 0.0
        recall = totals["rows_true"] / totals["rows_labelled"] if totals["rows_labelled"] else 0.0
        metrics.update(precision_row=precision, recall_row=recall, f1_row=f1(precision, recall))
        precision = totals["alerts_in_window"] / totals["alerts"] if totals["alerts"] else 0.0
        recall = totals["windows_alerted"] / totals["window_total"] if totals["window_total"] else 0.0
        metrics.update(precision_alert=precision, recall_alert=recall, f1_alert=f1(precision, recall))
        for profile, file_scores in scores.items():
            value = normalised(file_scores)
            if np.isfinite(value):
                metrics[f"nab_score_{profile}"] = value
        metrics["labelled_files"] = len(scores["standard"])
    return per_file, metrics


def explained_input(explained_by: pd.Series, feature: str) -> np.ndarray:
    """Rows whose explanation names ``feature`` or one of its history features (``disk_mean``)."""
    names = explained_by.fillna("").astype(str).str.partition("@")[0]  # at any time scale (core/explanation.py)
    return ((names == feature) | names.str.startswith(f"{feature}_")).to_numpy()


def plot_file(group: pd.DataFrame, features: list[str], label, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamps = pd.to_datetime(group["timestamp"], errors="coerce", format="mixed")
    fig, axes = plt.subplots(len(features), 1, figsize=(12, 2.6 * len(features)), sharex=True, squeeze=False)
    for ax, feature in zip(axes[:, 0], features):
        ax.plot(stamps, group[feature], lw=0.7, color="tab:blue")
        flagged = group["is_anomaly"].to_numpy(dtype=bool)
        ax.scatter(stamps[flagged], group.loc[flagged, feature], color="tab:red", s=10, zorder=3, label="flagged")
        for start, end in label or []:
            ax.axvspan(start, end, color="tab:orange", alpha=0.25)
        # Each alert on the panel of the input that explains it, with that input's share.
        alerts = group["is_alert"].to_numpy(dtype=bool) & explained_input(group["explained_by"], feature)
        for stamp, value, by, share in zip(
            stamps[alerts],
            group.loc[alerts, feature],
            group.loc[alerts, "explained_by"],
            group.loc[alerts, "explained_share"],
        ):
            ax.scatter([stamp], [value], marker="v", color="black", s=40, zorder=4)
            ax.annotate(f"{by} {share:.0%}", (stamp, value), textcoords="offset points", xytext=(4, 6), fontsize=7)
        ax.set_ylabel(feature)
    axes[0, 0].set_title(
        f"{path.stem}: flagged rows (red), alerts and what explains them (black), label windows (orange)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def mark_orphans(client) -> list[str]:
    """Replays on this host whose process died part-way are marked FAILED, not left running."""
    host = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"attributes.status = 'RUNNING' and tags.{STEP_TAG} = 'replay'", max_results=500
    )
    failed = []
    for run in runs:
        tags = run.data.tags
        if tags.get("replay.host") != host or not tags.get("replay.pid", "").isdigit():
            continue
        if not _alive(int(tags["replay.pid"])):
            client.set_tag(run.info.run_id, "replay.orphan", "process died before finishing")
            client.set_terminated(run.info.run_id, "FAILED")
            failed.append(run.info.run_id)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_replay_run(service, loaded, data: DataSet, own_run: bool) -> str:
    """The run that holds one model's replay: the run ``mlflow run`` made when it replays one
    model (``own_run``), else a run of its own (a child of ``mlflow run``'s run, if any)."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    label = model_label(loaded)
    tags = {STEP_TAG: "replay", "replay.pid": str(os.getpid()), "replay.host": socket.gethostname()}
    description = f"Replay of {data.describe()} through {label} ({loaded.uri})"
    joined = joined_run_id()
    if joined and not own_run:
        tags[MLFLOW_PARENT_RUN_ID] = joined
        run = service.client.create_run(
            service.experiment_id(REPLAY_EXPERIMENT),
            run_name=f"replay {label}",
            tags={**tags, "mlflow.note.content": description},
        )
        return run.info.run_id
    return service.create_run(REPLAY_EXPERIMENT, run_name=f"replay {label}", tags=tags, description=description)


def model_label(loaded) -> str:
    return f"{loaded.name} v{loaded.version}" if loaded.name else loaded.uri


def replay_model(spark, service, loaded, data: DataSet, windows, args, own_run: bool = False) -> ReplayResult:
    from mlflow.entities import Metric, Param

    client = service.client
    label = model_label(loaded)
    run_id = open_replay_run(service, loaded, data, own_run)
    if os.environ.get(FAULT_ENV) == "after_run_created":
        print(f"FAULT INJECTED: after_run_created ({run_id})", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        params = loaded.params
        names = ",".join(file_stem(p) for p in data.paths)
        client.log_batch(
            run_id,
            params=[
                Param(k, str(v)[:MAX_PARAM_CHARS])
                for k, v in {
                    "model_name": loaded.name or "",
                    "model_version": loaded.version or "",
                    "model_run_id": loaded.run_id or "",
                    "model_uri": loaded.uri,
                    "rule": params.rule,
                    "threshold": params.threshold,
                    "features": ",".join(params.features),
                    "history": ",".join(params.history),
                    "span": params.span,
                    "alert_threshold": params.alert_threshold,
                    "cooldown": cooldown_text(params.cooldown, params.cooldown_seconds),
                    "data_files": names,
                    "data_file_count": len(data.paths),
                    "data_sha256": data.sha256,
                    "labels_file": args.labels or "",
                    "labels_sha256": labels_sha256(windows, data),
                    "window_minutes": args.window_minutes,
                }.items()
            ],
        )
        log_dataset(
            client,
            run_id,
            data.source_uri(),
            data.describe(),
            data.sha256,
            {"timestamp": "string", **dict.fromkeys(params.features, "double")},
            context="replay",
        )
        started = time.perf_counter()
        records = score_history(spark, params, data)
        seconds = time.perf_counter() - started
        per_file, label_metrics = summarize(records, windows)
        rows = len(records)
        anomalies = int(records["is_anomaly"].sum())
        metrics = {
            "rows": rows,
            "anomaly_count": anomalies,
            "anomaly_rate": anomalies / rows if rows else 0.0,
            "alert_count": int(records["is_alert"].sum()),
            "invalid_rows": int((~records["is_valid"]).sum()),
            "replay_seconds": seconds,
            "rows_per_second": rows / seconds if seconds else 0.0,
            **label_metrics,
        }
        for row in per_file.itertuples():
            metrics[metric_key(f"anomalies_{row.file}")] = row.anomalies
            metrics[metric_key(f"alerts_{row.file}")] = row.alerts
            if "nab_raw_standard" in per_file.columns and not pd.isna(row.nab_raw_standard):
                metrics[metric_key(f"nab_raw_standard_{row.file}")] = row.nab_raw_standard
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        windows_counted = count_per_window(records, args.window_minutes)
        batch += [Metric("anomalies_per_window", float(v), now, int(i)) for i, v in windows_counted.items()]
        for start in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[start : start + 1000])
        _log_artifacts(client, run_id, records, per_file, params.features, windows)
        service.end_run(run_id, "FINISHED")
    except BaseException:
        service.end_run(run_id, "FAILED")
        raise
    return ReplayResult(run_id, label, metrics, per_file, windows_counted)


def _log_artifacts(client, run_id, records, per_file, features, windows) -> None:
    columns = [
        "timestamp",
        *features,
        "cluster",
        "distance",
        "anomaly_score",
        "is_anomaly",
        "is_alert",
        *EXPLANATION_COLUMNS,
        "is_valid",
        "reason",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "rows").mkdir()
        (folder / "plots").mkdir()
        for path, group in records.groupby("source_file", sort=True):
            group = group.sort_values("line_number")
            stem = file_stem(path)
            group[columns].to_csv(folder / "rows" / f"{stem}.csv", index=False)
            label = None if windows is None else windows.get(PurePosixPath(path).name)
            if group["is_valid"].any():
                plot_file(group[group["is_valid"]], features, label, folder / "plots" / f"{stem}.png")
        per_file.to_csv(folder / "summary.csv", index=False)
        client.log_artifacts(run_id, scratch)


def parse_args(argv):
    parser = job_parser("Replay history through registered models.")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="model URI, name@alias or name/version; repeat (or comma-separate) for several "
        "(default: <model-name>@production)",
    )
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--data", required=True, help="CSV files, directories or globs, comma-separated")
    parser.add_argument(
        "--labels", default="none", type=optional_text, help="NAB combined_windows.json ('none': no labels)"
    )
    parser.add_argument(
        "--window-minutes",
        type=int,
        default=DEFAULT_WINDOW_MINUTES,
        help="event-time window of the anomalies_per_window metric",
    )
    add_spark_args(parser)
    args = parser.parse_args(argv)
    if args.window_minutes < 1:
        parser.error("--window-minutes must be at least 1")
    return args


def model_specs(args) -> list[str]:
    specs = [s.strip() for item in args.model for s in item.split(",") if optional_text(s)]
    return specs or [f"{args.model_name}@{PRODUCTION_ALIAS}"]


def run_replay(spark, service, args) -> list[ReplayResult]:
    from core.registry import resolve_model

    orphans = mark_orphans(service.client)
    for run_id in orphans:
        print(f"marked replay run {run_id} FAILED: its process died part-way", flush=True)
    models = [resolve_model(service.client, spec, args.model_name) for spec in model_specs(args)]
    windows = load_labels(args.labels)
    data = find_data(spark, [s for s in args.data.split(",") if s.strip()])
    if len(models) > 1 and joined_run_id():
        # mlflow run's run holds the set: each model's replay is a child run of it.
        service.create_run(
            REPLAY_EXPERIMENT,
            run_name=f"replay {len(models)} models on {data.describe()}",
            tags={STEP_TAG: "replay-set"},
            description=f"Replay of {data.describe()} through {', '.join(map(model_label, models))}",
        )
        service.client.log_param(joined_run_id(), "data_sha256_replayed", data.sha256)
    results = []
    for loaded in models:
        result = replay_model(spark, service, loaded, data, windows, args, own_run=len(models) == 1)
        m = result.metrics
        extra = f", NAB standard {m['nab_score_standard']:.1f}" if "nab_score_standard" in m else ""
        print(
            f"replay {result.model_label}: {m['rows']:.0f} rows, {m['anomaly_count']:.0f} anomalies "
            f"({m['anomaly_rate']:.2%}), {m['invalid_rows']:.0f} invalid{extra}; run {result.run_id}",
            flush=True,
        )
        results.append(result)
    return results


@main_guard
def main(argv=None) -> int:

    args = parse_args(argv)
    with MlflowService() as service:
        with spark_session("replay", args.master, args.conf) as spark:
            results = run_replay(spark, service, args)
        data_sha = service.client.get_run(results[-1].run_id).data.params["data_sha256"]
        table = compare(service.client, data_sha, own_runs=tuple(r.run_id for r in results))
        if len(results) > 1 and joined_run_id():
            log_table(service.client, joined_run_id(), table)
        print_table(table)
    return 0


if __name__ == "__main__":
    exit_process(main())
