"""Champion and challenger on what the monitor saw, judged against labels: the alerts each model
of a pair raised (the ``alerts`` and ``challenger_alerts`` parts of the monitor's output) scored
with the NAB scorer and as precision, recall and F1 of the alerts, like replay's.

Labels are NAB windows keyed by file name (``data/sample/labels.json``); a series matches the
key ``<series>.csv`` or ``<series>``, as the streamer names a series after its source file. The
scorer needs every row of a series in time order, not only the alerts: they come from the
monitor's ``scored`` part (``--scored-rows``) when it wrote one, else from the CSV files in its
input folder (or ``--data``), parsed as the monitor parses them. Both models of a pair are scored
against the same whole series; a window the pair never saw (before or after its batches) counts
as missed for both, so compare the models within a pair, not pairs with each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.csv_input import parse_files, record_times
from core.errors import UserError
from core.monitor_comparison import monitor_batches, monitor_run, pair_table, rank_pairs
from core.paths import local_path
from replay.nab_scoring import load_labels
from replay.replay import summarize

JUDGED = ("nab_score_standard", "precision_alert", "recall_alert", "f1_alert", "labelled_files")


def compare_monitor_run(client, run_id: str, labels: str | None = None, data: list[str] | None = None) -> pd.DataFrame:
    """The pair table of a monitor run; with ``labels``, each model's alerts judged and ranked."""
    table = pair_table(monitor_batches(client, run_id), run_id)
    if not labels:
        return table
    run = monitor_run(client, run_id)
    windows = load_labels(labels)
    output = run.data.params.get("output_uri", "")
    timeline = series_timeline(output, data or [run.data.params.get("input_uri", "")], run)
    by_series = {s: windows.get(s, windows.get(f"{s}.csv")) for s in timeline["series"].unique()}
    by_series = {s: w for s, w in by_series.items() if w is not None}
    if not by_series:
        raise UserError(
            f"the labels in {labels} name none of the monitor's series ({', '.join(timeline['series'].unique()[:5])})"
        )
    raised = {
        role: _read(output, part) for role, part in (("production", "alerts"), ("challenger", "challenger_alerts"))
    }
    judged = []
    for row in table.itertuples(index=False):
        production, challenger = row.pair.replace("production v", "").split(" / challenger v")
        alerts = raised[row.role]
        if len(alerts):
            alerts = alerts[
                (alerts["model_version"].astype(str) == production)
                & (alerts["challenger_version"].astype(str) == challenger)
            ]
        _, metrics = summarize(_records(timeline, alerts), by_series)
        judged.append({key: metrics.get(key, np.nan) for key in JUDGED})
    scored = pd.concat([table.reset_index(drop=True), pd.DataFrame(judged)], axis=1)
    scored = scored.rename(columns={"labelled_files": "labelled_series"})
    scored.attrs.update(table.attrs)
    return rank_pairs(scored)


def _read(output: str, part: str) -> pd.DataFrame:
    """A part's committed rows (the layout of ``streaming/sinks.py``, which replay does not import)."""
    root = local_path(output) if output else None
    files = sorted((root / "batches").glob(f"batch_id=*/{part}/*.parquet")) if root else []
    frames = [f for f in (pd.read_parquet(path) for path in files) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def series_timeline(output: str, inputs: list[str], run) -> pd.DataFrame:
    """Every valid row the monitor scored, as (series, timestamp, instant), in time order per series."""
    root = local_path(output) if output else None
    scored = sorted((root / "batches").glob("batch_id=*/scored/*.parquet")) if root else []
    if scored:
        frame = pd.concat([pd.read_parquet(f, columns=["series", "timestamp", "is_valid"]) for f in scored])
        frame = frame[frame["is_valid"]]
    else:
        from core.model import load_params

        files = [f for spec in inputs if spec and (p := local_path(spec)) for f in _csv_files(p)]
        if not files:
            raise UserError(
                "no rows to score the alerts against: the monitor wrote no scored rows (--scored-rows) and "
                f"its input folder ({', '.join(inputs)}) holds no CSV files here; name them with --data"
            )
        params = load_params(run.data.params["initial_model_uri"])
        frame = parse_files(params, [(f.as_uri(), f.read_bytes()) for f in files])
        frame = frame[frame["is_valid"]]
    frame = frame[["series", "timestamp"]].assign(instant=record_times(frame).dt.tz_localize(None).to_numpy())
    frame = frame.drop_duplicates(["series", "instant"]).sort_values(["series", "instant"], kind="stable")
    return frame.reset_index(drop=True)


def _csv_files(path: Path) -> list[Path]:
    return sorted(path.rglob("*.csv")) if path.is_dir() else [path] if path.is_file() else []


def _records(timeline: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """The timeline as replay's records (one 'file' per series), flagged where ``alerts`` fell."""
    keys = set()
    if len(alerts):
        keys = set(zip(alerts["series"].astype(str), record_times(alerts).dt.tz_localize(None)))
    flagged = np.fromiter((k in keys for k in zip(timeline["series"], timeline["instant"])), bool, len(timeline))
    return pd.DataFrame(
        {
            "source_file": timeline["series"].to_numpy(),
            "line_number": np.arange(len(timeline)),
            "timestamp": timeline["instant"].to_numpy(),
            "is_anomaly": flagged,
            "is_alert": flagged,
            "is_valid": np.ones(len(timeline), dtype=bool),
        }
    )
