"""Step 1, prepare: collate per-metric series into one feature table.

Input: a directory of NAB-format CSV files (``timestamp,value``), one metric per file; the
metric kind comes from the file name (``cpu``, ``disk``, ``network``/``NetworkIn``); other
kinds (``request_count``, ...) are listed as skipped.
Output: one CSV table ``timestamp,cpu,disk,network`` and, in MLflow, the alignment rule,
the files used per kind and the rows kept and dropped.

Alignment rules (NAB's CPU, disk and network series never share a time range):
- ``positional`` (default): per kind, the files are taken in name order, each sorted by
  time, and concatenated; row i of the table holds the i-th value of every kind, and the
  table stops at the shortest kind. Its timestamps are a regular grid that starts at the
  first CPU sample and steps by the CPU series' median interval. The original project
  paired its series the same way; this makes it explicit.
- ``timestamp``: rows whose timestamps all kinds share (files of one kind are averaged at
  equal timestamps). For real fleets whose metrics are sampled together.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.cli import job_parser
from core.errors import UserError, exit_process, main_guard
from core.schema import DEFAULT_FEATURES, TIMESTAMP, TRAINING_EXPERIMENT
from core.tracking import MlflowService

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

ALIGNMENTS = ("positional", "timestamp")
KIND_MARKERS = {"cpu": ("cpu",), "disk": ("disk",), "network": ("network",)}


def metric_kind(file_name: str) -> str | None:
    lowered = file_name.lower()
    for kind, markers in KIND_MARKERS.items():
        if any(marker in lowered for marker in markers):
            return kind
    return None


def read_series(path: Path) -> pd.DataFrame:
    """One NAB-format series, validated line by line; errors name the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(f"{path} line {line}: not UTF-8 text") from None
    if not text.strip():
        raise UserError(f"{path} is empty; expected a header 'timestamp,value' and data rows")
    rows = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(rows)]
    missing = [name for name in (TIMESTAMP, "value") if name not in header]
    if missing:
        raise UserError(
            f"{path} line 1: missing column(s) {', '.join(missing)} in header {','.join(header)!r}; "
            "expected timestamp,value"
        )
    time_at, value_at = header.index(TIMESTAMP), header.index("value")
    times, values, lines = [], [], []
    for number, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{path} line {number}: {len(row)} fields, header has {len(header)}")
        stamp, value = row[time_at].strip(), row[value_at].strip()
        try:
            number_value = float(value)
        except ValueError:
            raise UserError(f"{path} line {number}: non-numeric value {value[:40]!r}") from None
        if not np.isfinite(number_value):
            raise UserError(f"{path} line {number}: non-finite value {value[:40]!r}")
        times.append(stamp)
        values.append(number_value)
        lines.append(number)
    if not values:
        raise UserError(f"{path} has a header but no data rows")
    parsed = pd.to_datetime(pd.Series(times), errors="coerce", format="mixed")
    unreadable = np.flatnonzero(parsed.isna().to_numpy())
    if len(unreadable):
        first = unreadable[0]
        raise UserError(f"{path} line {lines[first]}: unreadable timestamp {times[first][:40]!r}")
    series = pd.DataFrame({TIMESTAMP: parsed, "value": values})
    return series.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)


@dataclass
class Collation:
    table: pd.DataFrame
    alignment: str
    files: dict[str, list[str]]
    rows_per_kind: dict[str, int]
    skipped_files: list[str] = field(default_factory=list)

    @property
    def rows_dropped(self) -> dict[str, int]:
        return {kind: rows - len(self.table) for kind, rows in self.rows_per_kind.items()}


def find_series(input_dir: Path, kinds=DEFAULT_FEATURES) -> tuple[dict[str, list[Path]], list[str]]:
    if not input_dir.exists():
        raise UserError(f"input directory {input_dir} does not exist")
    if not input_dir.is_dir():
        raise UserError(f"{input_dir} is not a directory of per-metric CSV files")
    try:
        candidates = sorted(p for p in input_dir.iterdir() if p.suffix.lower() == ".csv")
    except OSError as error:
        raise UserError(f"cannot read {input_dir}: {error.strerror or error}") from None
    by_kind: dict[str, list[Path]] = {kind: [] for kind in kinds}
    skipped = []
    for path in candidates:
        kind = metric_kind(path.name)
        if kind in by_kind:
            by_kind[kind].append(path)
        else:
            skipped.append(path.name)
    absent = [kind for kind, paths in by_kind.items() if not paths]
    if absent:
        raise UserError(
            f"no {' or '.join(absent)} series in {input_dir}: a file name must contain "
            + ", ".join(f"'{KIND_MARKERS[kind][0]}'" for kind in absent)
        )
    return by_kind, skipped


def collate(input_dir: Path, alignment: str = "positional") -> Collation:
    if alignment not in ALIGNMENTS:
        raise UserError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
    by_kind, skipped = find_series(input_dir)
    series = {kind: [read_series(p) for p in paths] for kind, paths in by_kind.items()}
    files = {kind: [p.name for p in paths] for kind, paths in by_kind.items()}
    rows = {kind: sum(len(s) for s in parts) for kind, parts in series.items()}
    if alignment == "positional":
        table = _positional(series)
    else:
        table = _by_timestamp(series, input_dir)
    return Collation(table, alignment, files, rows, skipped)


def _positional(series: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    values = {kind: np.concatenate([s["value"].to_numpy() for s in parts]) for kind, parts in series.items()}
    length = min(len(v) for v in values.values())
    anchor = series["cpu"][0][TIMESTAMP]
    step = anchor.diff().median() if len(anchor) > 1 else pd.Timedelta(minutes=5)
    if pd.isna(step) or step <= pd.Timedelta(0):
        step = pd.Timedelta(minutes=5)
    grid = pd.date_range(anchor.iloc[0], periods=length, freq=step)
    table = pd.DataFrame({TIMESTAMP: grid})
    for kind in DEFAULT_FEATURES:
        table[kind] = values[kind][:length]
    return table


def _by_timestamp(series: dict[str, list[pd.DataFrame]], input_dir: Path) -> pd.DataFrame:
    table = None
    for kind in DEFAULT_FEATURES:
        merged = pd.concat(series[kind]).groupby(TIMESTAMP, as_index=False)["value"].mean()
        merged = merged.rename(columns={"value": kind})
        table = merged if table is None else table.merge(merged, on=TIMESTAMP, how="inner")
    if table is None or table.empty:
        raise UserError(
            f"the cpu, disk and network series in {input_dir} share no timestamp; "
            "use --alignment positional (NAB's series never overlap in time)"
        )
    return table.sort_values(TIMESTAMP).reset_index(drop=True)


def write_table(table: pd.DataFrame, out: Path) -> str:
    """Write the table atomically; returns its sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = table.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S")
    staging = out.with_name(f".{out.name}.tmp")
    staging.write_text(text)
    staging.replace(out)
    return hashlib.sha256(text.encode()).hexdigest()


def parse_args(argv):
    parser = job_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="directory of NAB-format per-metric CSV files")
    parser.add_argument("--out", required=True, help="where to write the feature table (CSV)")
    parser.add_argument("--alignment", default="positional", choices=ALIGNMENTS)
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the step to MLflow")
    return parser.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    args = parse_args(argv)
    collation = collate(Path(args.input), args.alignment)
    digest = write_table(collation.table, Path(args.out))
    report = {
        "alignment": collation.alignment,
        "rows": len(collation.table),
        "files": collation.files,
        "rows_per_kind": collation.rows_per_kind,
        "rows_dropped_per_kind": collation.rows_dropped,
        "skipped_files": collation.skipped_files,
        "output": str(Path(args.out).resolve()),
        "output_sha256": digest,
    }
    print(
        f"prepared {len(collation.table)} rows ({args.alignment} alignment) from "
        + ", ".join(f"{len(v)} {k}" for k, v in collation.files.items())
        + f" file(s) -> {args.out}"
    )
    if collation.skipped_files:
        print(f"skipped (not cpu/disk/network): {', '.join(collation.skipped_files)}")
    if not args.no_mlflow:
        _log(report)
    return 0


def _log(report: dict) -> None:
    import mlflow

    with MlflowService() as service, service.start_run(TRAINING_EXPERIMENT, run_name="prepare"):
        mlflow.set_tag("step", "prepare")
        mlflow.log_params(
            {
                "alignment": report["alignment"],
                "rows": report["rows"],
                "output_sha256": report["output_sha256"],
                **{f"files_{k}": ",".join(v)[:500] for k, v in report["files"].items()},
            }
        )
        mlflow.log_metrics({f"rows_dropped_{k}": v for k, v in report["rows_dropped_per_kind"].items()})
        mlflow.log_dict(report, "prepare_report.json")


if __name__ == "__main__":
    exit_process(main())
