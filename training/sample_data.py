"""Generate the built-in sample: a week of synthetic CPU, disk and network series with one incident.

Output: ``<out>/series/ec2_{cpu_utilization,disk_write_bytes,network_in}_sample.csv``
(NAB format, ``timestamp,value``, every 5 minutes), ``<out>/metrics.csv``, the feature
table that ``training.prepare`` makes of them, and ``<out>/labels.json``, the incident's
label window in NAB's ``combined_windows.json`` format, keyed by ``metrics.csv`` (the file
name replay looks labels up by). Deterministic for a given seed, so the committed copy under
``data/sample/`` can be regenerated and checked byte for byte:

    python -m training.sample_data --out data/sample

The series have a daily cycle and noise, and one incident five eighths into the week (Friday
09:00-10:15 in the default week): a surge of incoming traffic saturates the CPU and spills a
growing backlog to disk. The main job's model (train's defaults) should alert on it and
nowhere else.

Its shape is what makes that possible. The model learns its centroids and its distance
threshold (a quantile of the training rows' distances) from this same data, over each
metric's mean and spread across the last 24 rows. An incident longer than those 24 rows, or
one that ends as it began, gives KMeans a group of rows to centre a cluster on and fills the
top of the distance distribution with its own rows, so the model learns it as normal. A
shorter one whose metrics move apart leaves only its first rows far from every centroid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.cli import job_parser
from core.errors import exit_process, main_guard
from training.config import HistorySpec
from training.prepare import collate, write_table

DEFAULT_ROWS = 2016  # one week at 5-minute intervals
START = "2026-01-05 00:00:00"
STEP = "5min"
INCIDENT_ROWS = 15  # 75 minutes: shorter than the default model's 24-row history window
TABLE_FILE = "metrics.csv"
LABELS_FILE = "labels.json"
REQUEST_FILE = "request.json"
# One more than the warm-up of train's default model: the request's last row is then judged.
REQUEST_ROWS = 1 + HistorySpec().at_interval(pd.Timedelta(STEP).total_seconds()).warmup_rows
REQUEST_SERIES = "web-1"
# NAB's labeller: one window of 10% of the file's rows per anomaly, centred on the anomaly.
NAB_WINDOW_SHARE = 0.10
NAB_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
SERIES_FILES = {
    "cpu": "ec2_cpu_utilization_sample.csv",
    "disk": "ec2_disk_write_bytes_sample.csv",
    "network": "ec2_network_in_sample.csv",
}


def incident_rows(rows: int = DEFAULT_ROWS) -> range:
    """The rows of the injected incident."""
    first = rows * 5 // 8
    return range(first, min(first + INCIDENT_ROWS, rows))


def generate(rows: int = DEFAULT_ROWS, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(START, periods=rows, freq=STEP)
    day = 2 * np.pi * (stamps.hour * 60 + stamps.minute).to_numpy() / (24 * 60)
    load = 0.5 + 0.4 * np.sin(day - np.pi / 2)  # quiet at night, busy mid-day
    cpu = 20 + 35 * load + rng.normal(0, 2.5, rows)
    disk = 2.0e6 + 3.0e6 * load + rng.normal(0, 2.0e5, rows)
    network = 5.0e6 + 8.0e6 * load + rng.normal(0, 5.0e5, rows)
    incident = incident_rows(rows)
    hit = slice(incident.start, incident.stop)
    # Traffic jumps and eases while disk writes climb: an incident whose metrics move apart forms no
    # tight group of rows for KMeans to learn as a cluster of its own.
    cpu[hit] = 97 + rng.normal(0, 1, len(incident))
    network[hit] *= np.linspace(4.0, 1.5, len(incident))
    disk[hit] *= np.linspace(2.0, 6.0, len(incident))
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "cpu": np.clip(cpu, 0, 100).round(3),
            "disk": np.clip(disk, 0, None).round(0),
            "network": np.clip(network, 0, None).round(0),
        }
    )


def label_windows(rows: int = DEFAULT_ROWS) -> dict[str, list[list[str]]]:
    """The incident's window as NAB's combined_windows.json holds it, keyed by the table's name.

    NAB labels an anomaly at its first row and centres a window of ``NAB_WINDOW_SHARE`` of the
    file's rows on it (cut at the file's ends).
    """
    incident = incident_rows(rows)
    if not len(incident):
        return {TABLE_FILE: []}
    stamps = pd.date_range(START, periods=rows, freq=STEP)
    half = int(NAB_WINDOW_SHARE * rows) // 2
    first, last = max(incident.start - half, 0), min(incident.start + half, rows - 1)
    return {TABLE_FILE: [[stamps[first].strftime(NAB_TIME_FORMAT), stamps[last].strftime(NAB_TIME_FORMAT)]]}


def write_sample(out: Path, rows: int = DEFAULT_ROWS, seed: int = 7) -> None:

    table = generate(rows, seed)
    series_dir = out / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    for kind, file_name in SERIES_FILES.items():
        series = table[["timestamp", kind]].rename(columns={kind: "value"})
        series.to_csv(series_dir / file_name, index=False, date_format="%Y-%m-%d %H:%M:%S")
    write_table(collate(series_dir).table, out / TABLE_FILE)
    # NAB's own files are indented by 4; the newline keeps the committed file diff-friendly.
    (out / LABELS_FILE).write_text(json.dumps(label_windows(rows), indent=4) + "\n")
    (out / REQUEST_FILE).write_text(serving_request(table))


def serving_request(table: pd.DataFrame, rows: int = REQUEST_ROWS) -> str:
    """A request for ``mlflow models serve``: one series' first rows, a full history window, so
    the last row is judged on its history rather than as a series' first row."""
    window = table[list(SERIES_FILES)].head(rows).assign(series=REQUEST_SERIES)[["series", *SERIES_FILES]]
    records = ",\n".join("  " + json.dumps(record) for record in window.to_dict(orient="records"))
    return '{"dataframe_records": [\n' + records + "\n]}\n"


@main_guard
def main(argv=None) -> int:
    parser = job_parser("Generate the built-in sample data.")
    parser.add_argument("--out", default="data/sample")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    write_sample(Path(args.out), args.rows, args.seed)
    print(f"wrote {args.rows} rows per series under {args.out}")
    return 0


if __name__ == "__main__":
    exit_process(main())
