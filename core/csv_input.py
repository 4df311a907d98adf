"""Parse metric CSV files in our own code, so no bad file can stop or skew a job.

Spark's CSV reader can stop a stream for good on one bad file (FAILFAST, a
reordered header with enforceSchema=false, an over-long line), to pass empty fields, NaN, Inf
and huge numbers through PERMISSIVE mode, and to swap reordered columns silently. So the
monitor and replay read raw bytes and call ``parse_files`` and then, per series,
``score_records``: every data line of every file comes back exactly once, either scored or
quarantined with a reason.

Plain Python and pandas (no Spark): the same function runs on executors and in tests.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from core.schema import SOURCE_COLUMNS, TIMESTAMP
from core.scoring import (
    EXPLANATION_COLUMNS,
    INVALID_CLUSTER,
    ModelParams,
    SeriesState,
    history_columns,
    score_series_arrays,
)
from core.validity import MissingFeaturesError, validity

MAX_LINE_BYTES = 64 * 1024
RAW_KEEP_CHARS = 200
BINARY_SNIFF_BYTES = 8192
# The record columns that scoring writes, besides the history features.
SCORED_COLUMNS = ("cluster", "distance", "anomaly_score", "is_anomaly", "is_alert", *EXPLANATION_COLUMNS)
_NUMERIC_SCORES = ("distance", "anomaly_score", *EXPLANATION_COLUMNS[1:])


def record_columns(params: ModelParams) -> list[str]:
    return [
        "source_file",
        "line_number",
        "series",
        TIMESTAMP,
        *params.features,
        *history_columns(params),
        *SCORED_COLUMNS,
        "is_valid",
        "reason",
        "raw",
    ]


def unscored_columns(params: ModelParams) -> list[str]:
    """The record columns that scoring reads: the rest it only writes, so a Spark job need not
    ship them to its Python workers (11 of the 21 columns of a NAB-style record)."""
    written = {*history_columns(params), *SCORED_COLUMNS}
    return [c for c in record_columns(params) if c not in written]


EXPLANATION_DDL = "explained_by string, explained_share double, explained_value double, explained_centroid_value double"


def record_ddl(params: ModelParams) -> str:
    feature_ddl = ", ".join(f"`{f}` double" for f in (*params.features, *history_columns(params)))
    return (
        "source_file string, line_number long, series string, timestamp string, "
        f"{feature_ddl}, cluster int, distance double, anomaly_score double, "
        f"is_anomaly boolean, is_alert boolean, {EXPLANATION_DDL}, is_valid boolean, reason string, raw string"
    )


def _raw_text(line: bytes) -> str:
    return line[: RAW_KEEP_CHARS * 4].decode("utf-8", errors="replace")[:RAW_KEEP_CHARS]


def _split_lines(content: bytes) -> list[bytes]:
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # a trailing newline ends the last line; it is not a blank line
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


# ASCII whitespace that str.strip removes, besides the line feed, space and tab: rare enough
# that a file holding any goes through the line-by-line parser.
_RARE_SPACE = "\r\x0b\x0c\x1c\x1d\x1e\x1f"


def _has_edge_space(text: str) -> bool:
    """Whether an ASCII text may hold a field or line that ``str.strip`` would change.

    Substring searches, not a regular expression, which would cost as much as the parse."""
    if any(space in text for space in _RARE_SPACE):
        return True
    return any(
        text.startswith(space)
        or text.endswith(space)
        or f"{space}," in text
        or f",{space}" in text
        or f"{space}\n" in text
        or f"\n{space}" in text
        for space in " \t"
    )


def _clean_file_columns(path: str, content: bytes, features: list[str]) -> dict | None:
    """The columns of a file that every per-line check would pass, split in C; else None.

    Clean means: ASCII, no quotes, no whitespace around a field, no blank or over-long line, a
    header with the columns once each, and every line as many fields as the header. The
    line-by-line parser gives exactly these columns for such a file (a test compares them),
    at about 60% of its cost on a 10^5-row file; anything else goes through it.
    """
    if not content.isascii() or b'"' in content:
        return None
    text = content.decode("ascii")
    if text.startswith("\n") or "\n\n" in text or _has_edge_space(text):
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    # 4 bytes per character at most: a line this short cannot pass the byte limit.
    if len(lines) < 2 or max(map(len, lines)) * 4 > MAX_LINE_BYTES:
        return None
    header = lines[0].split(",")
    width = len(header)
    if len(set(header)) != width or any(name not in header for name in (TIMESTAMP, *features)):
        return None
    data = lines[1:]
    if [line.count(",") for line in data].count(width - 1) != len(data):
        return None
    fields = ",".join(data).split(",")
    positions = {name: i for i, name in enumerate(header)}
    columns = {name: fields[positions[name] :: width] for name in (TIMESTAMP, *features)}
    columns["line_number"] = list(range(2, len(lines) + 1))
    series_column = next((c for c in SOURCE_COLUMNS if c in positions), None)
    columns["series"] = (
        fields[positions[series_column] :: width] if series_column else [PurePosixPath(path).stem] * len(data)
    )
    columns["raw"] = [line[:RAW_KEEP_CHARS] for line in data]
    return columns


def _parse_columns(path: str, content: bytes, features: list[str], fast: bool = True) -> tuple[dict, list[dict]]:
    """One file's parseable rows as column lists (features as text), and its quarantine records."""
    quarantine: list[dict] = []

    def reject(line_number: int, raw: str, reason: str) -> None:
        quarantine.append({"line_number": line_number, "raw": raw, "reason": reason})

    if not content:
        reject(0, "", "empty file")
        return {}, quarantine
    if b"\x00" in content[:BINARY_SNIFF_BYTES]:
        reject(0, _raw_text(content[:RAW_KEEP_CHARS]), "binary file (NUL bytes)")
        return {}, quarantine
    clean = _clean_file_columns(path, content, features) if fast else None
    if clean is not None:
        return clean, quarantine
    lines = _split_lines(content)
    header, header_at, header_problem = None, None, None
    records = []
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_BYTES:
            reject(number, _raw_text(line), f"line too long ({len(line)} bytes, limit {MAX_LINE_BYTES})")
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            reject(number, _raw_text(line), f"invalid UTF-8 at byte {error.start}")
            continue
        if not text.strip():
            reject(number, "", "blank line")
            continue
        # csv handles quoting; a plain split is the same answer without quotes, and far cheaper.
        fields = next(csv.reader([text])) if '"' in text else text.split(",")
        if header is None and header_at is None:
            header_at = number
            header = [name.strip() for name in fields]
            missing = [name for name in (TIMESTAMP, *features) if name not in header]
            if missing:
                header_problem = f"header lacks column(s) {', '.join(missing)}"
            elif len(set(header)) != len(header):
                header_problem = "header repeats a column"
            continue
        if header_problem:
            reject(number, _raw_text(line), header_problem)
            continue
        if len(fields) != len(header):
            reject(number, _raw_text(line), f"{len(fields)} fields, header has {len(header)}")
            continue
        records.append((number, text, fields))
    if header is not None and not records and not quarantine:
        reject(header_at, _raw_text(lines[header_at - 1]), "header only, no data rows")
    if header is None and not quarantine:
        reject(0, "", "empty file")
    if not records:
        return {}, quarantine
    positions = {name: i for i, name in enumerate(header)}
    columns = {name: [r[2][positions[name]].strip() for r in records] for name in (TIMESTAMP, *features)}
    columns["line_number"] = [r[0] for r in records]
    series_column = next((c for c in SOURCE_COLUMNS if c in positions), None)
    stem = PurePosixPath(path).stem
    columns["series"] = (
        [r[2][positions[series_column]].strip() for r in records] if series_column else [stem] * len(records)
    )
    columns["raw"] = [r[1][:RAW_KEEP_CHARS] for r in records]
    return columns, quarantine


def parse_file(path: str, content: bytes, features: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """Split one file into parseable rows (features as text) and quarantine records."""
    columns, quarantine = _parse_columns(path, content, features)
    order = ["line_number", TIMESTAMP, *features, "series", "raw"]
    return (pd.DataFrame({c: columns[c] for c in order}) if columns else pd.DataFrame()), quarantine


def parse_files(params: ModelParams, files: Iterable[tuple[str, bytes]]) -> pd.DataFrame:
    """One record per data line of every file: parsed and checked, or quarantined with a reason.

    Records of valid rows are not scored yet: scoring needs each series in order
    (``score_records``). All files' rows are checked in one call: per-file pandas overhead,
    not parsing, was the monitor's largest cost with many small files.
    """
    features = params.features
    gathered: dict[str, list] = {c: [] for c in ("source_file", "line_number", TIMESTAMP, *features, "series", "raw")}
    rejected = []
    for path, content in files:
        columns, quarantine = _parse_columns(path, bytes(content) if content is not None else b"", features)
        if columns:
            gathered["source_file"].extend([path] * len(columns["line_number"]))
            for name, values in columns.items():
                gathered[name].extend(values)
        if quarantine:
            rejected.append(_quarantine_records(path, quarantine, params))
    parts = []
    if gathered["line_number"]:
        parts.append(_check_rows(params, pd.DataFrame(gathered)))
    parts.extend(rejected)
    if not parts:
        return empty_records(params)
    return pd.concat(parts, ignore_index=True)[record_columns(params)]


def empty_records(params: ModelParams) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c, params)) for c in record_columns(params)})


def record_times(records: pd.DataFrame) -> pd.Series:
    """The records' timestamps as UTC instants: the one reading of time that orders a series."""
    return pd.to_datetime(records[TIMESTAMP], errors="coerce", format="mixed", utc=True)


def series_order(records: pd.DataFrame, stamps: pd.Series) -> np.ndarray:
    """Positions of a series' records in time order (``stamps``: their ``record_times``); file
    and line break ties."""
    instants = stamps.values.view("i8")
    if len(instants) < 2:
        return np.arange(len(instants))
    if not stamps.isna().any():
        # Strictly rising times need no tie-breaks: the usual case, and a third of the sort's cost.
        if (instants[1:] > instants[:-1]).all():
            return np.arange(len(instants))
        # Distinct times need no tie-breaks either, only sorting: a series gathered from files
        # read by different tasks arrives out of order (sorting its three keys in pandas was a
        # sixth of scoring a 1,920-file batch).
        order = np.argsort(instants, kind="stable")
        ordered = instants[order]
        if (ordered[1:] > ordered[:-1]).all():
            return order
    keys = pd.DataFrame(
        {"t": stamps.values, "f": records["source_file"].to_numpy(), "l": records["line_number"].to_numpy()}
    )
    return keys.sort_values(["t", "f", "l"], kind="stable").index.to_numpy()


def score_records(
    params: ModelParams, records: pd.DataFrame, state: SeriesState | None = None
) -> tuple[pd.DataFrame, SeriesState]:
    """Score one series' parsed records in time order, continuing from ``state``.

    Quarantined records pass through unscored. A row older than the series' latest scored row
    (its file arrived after a later one) is quarantined as late: its history is already gone,
    and scoring it against later rows would give it a wrong score. ``records`` need only the
    ``unscored_columns``. Returns the records (time order, then the quarantined ones, every
    record column) and the series' state after them.
    """
    is_valid = records["is_valid"].to_numpy(dtype=bool)
    valid = records if is_valid.all() else records[is_valid]
    quarantined = [] if is_valid.all() else [records[~is_valid]]
    late_reasons: list[str] = []
    stamps = record_times(valid)
    if len(valid) > 1:
        order = series_order(valid, stamps)
        if (order[1:] < order[:-1]).any():
            valid, stamps = valid.iloc[order], stamps.iloc[order]
    if state is not None and state.last_time is not None and len(valid):
        late = (stamps < pd.Timestamp(state.last_time)).to_numpy()
        if late.any():
            quarantined.append(valid[late])
            late_reasons = [f"late: older than this series' latest scored row ({state.last_time})"] * int(late.sum())
            valid, stamps = valid[~late], stamps[~late]
    scored, new_state = score_series_arrays(
        params, valid, state, stamps
    )  # parsed already: a cooldown in time reads them
    if len(valid):
        new_state.last_time = stamps.max().isoformat()
    # One frame built from whole columns: setting columns one by one on pandas frames (and
    # copying them) cost twice the scoring itself for a 100-row file, the monitor's common case.
    unscored_rows = sum(len(part) for part in quarantined)
    columns = {}
    for name in record_columns(params):
        if name == "is_valid":
            columns[name] = np.concatenate([np.ones(len(valid), dtype=bool), np.zeros(unscored_rows, dtype=bool)])
        elif name in scored:
            fill = np.full(unscored_rows, _UNSCORED.get(name, np.nan), dtype=scored[name].dtype)
            columns[name] = np.concatenate([scored[name], fill])
        else:
            parts = [valid[name].to_numpy(), *(part[name].to_numpy() for part in quarantined)]
            if name == "reason" and late_reasons:
                parts[-1] = np.array(late_reasons, dtype=object)
            columns[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return pd.DataFrame(columns), new_state


def score_files(params: ModelParams, files: Iterable[tuple[str, bytes]]) -> pd.DataFrame:
    """Parse and score files as a batch job does: every series from an empty state.

    The reference the Spark paths are tested against.
    """
    records = parse_files(params, files)
    if records.empty:
        return records
    parts = [
        score_records(params, group.reset_index(drop=True))[0] for _, group in records.groupby("series", sort=False)
    ]
    return pd.concat(parts, ignore_index=True)


def _check_rows(params: ModelParams, rows: pd.DataFrame) -> pd.DataFrame:
    try:
        values, reasons = validity(params, rows)
    except MissingFeaturesError as error:  # parse_file checks the header first; kept as a guard
        values = np.full((len(rows), len(params.features)), np.nan)
        reasons = np.full(len(rows), str(error), dtype=object)
    stamps = pd.to_datetime(rows[TIMESTAMP], errors="coerce", format="mixed")
    bad_time = stamps.isna().to_numpy() & (reasons == "")
    reasons = reasons.astype(object)
    reasons[bad_time] = "unreadable timestamp"
    valid = reasons == ""
    out = pd.DataFrame(
        {
            "source_file": rows["source_file"],
            "line_number": rows["line_number"].astype("int64"),
            "series": rows["series"].astype(str),
            TIMESTAMP: rows[TIMESTAMP],
        }
    )
    for j, feature in enumerate(params.features):
        out[feature] = values[:, j]  # read once, by validity: reading text was a third of parsing
    _leave_unscored(out, params)
    out["is_valid"] = valid
    out["reason"] = reasons.astype(str)
    out["raw"] = rows["raw"].astype(str)
    return out


def _quarantine_records(path: str, quarantine: list[dict], params: ModelParams) -> pd.DataFrame:
    out = pd.DataFrame(quarantine)
    out.insert(0, "source_file", path)
    out["line_number"] = out["line_number"].astype("int64")
    out["series"] = PurePosixPath(path).stem
    out[TIMESTAMP] = None
    for feature in params.features:
        out[feature] = np.nan
    _leave_unscored(out, params)
    out["is_valid"] = False
    return out


# The scoring columns of records not scored (yet), NaN for the others: scoring fills them per series.
_UNSCORED = {"cluster": np.int32(INVALID_CLUSTER), "is_anomaly": False, "is_alert": False, "explained_by": ""}


def _leave_unscored(out: pd.DataFrame, params: ModelParams) -> None:
    for column in (*history_columns(params), *SCORED_COLUMNS):
        out[column] = _UNSCORED.get(column, np.nan)


def _dtype(column: str, params: ModelParams):
    if column in params.features or column in history_columns(params) or column in _NUMERIC_SCORES:
        return "float64"
    return {
        "line_number": "int64",
        "cluster": "int32",
        "is_anomaly": "bool",
        "is_alert": "bool",
        "is_valid": "bool",
    }.get(column, "object")
