"""NAB scoring, implemented from the published rules (Lavin & Ahmad 2015; NAB's README).

Plain numpy/pandas. The rules, as summarised in ``shared/nab/README.md``:
- a row is a detection when its anomaly score is at or above the threshold;
- the first min(floor(0.15 * rows), 750) rows are probationary: nothing there is scored, so a
  detection there counts for nothing and a window that ends there is neither caught nor missed
  (it still counts as the window preceding a later false positive); a window that starts there
  and ends after keeps its full width and is caught only by a detection past the period;
- label windows are given already sized; both ends are inside;
- a window scores by its best (earliest) detection: at row i of a window of W rows ending at
  row r, p = -(r - i + 1) / W and the reward is A_TP * sigma(p) / sigma(-1); a window with no
  detection costs -A_FN; later detections in the same window count for nothing;
- a detection outside every window adds A_FP * sigma(q), negative, with
  q = |i - r_prev| / (W_prev - 1) from the end of the preceding window, and sigma(q) = -1
  when q > 3 or no window precedes it; sigma(x) = 2 / (1 + exp(5x)) - 1;
- the corpus score is normalised: 100 * (S - S_null) / (S_perfect - S_null), where S_null
  never fires (-A_FN per window) and S_perfect catches every window at its left edge.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROFILES = {
    "standard": {"tp": 1.0, "fn": 1.0, "fp": 0.11},
    "reward_low_FP_rate": {"tp": 1.0, "fn": 1.0, "fp": 0.22},
    "reward_low_FN_rate": {"tp": 1.0, "fn": 2.0, "fp": 0.11},
}


def sigma(x: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probationary_rows(rows: int) -> int:
    return min(int(math.floor(0.15 * rows)), 750)


def load_windows(labels_path: str | Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """NAB's combined_windows.json, keyed by file name (the part after the corpus folder)."""
    data = json.loads(Path(labels_path).read_text())
    return {
        key.rsplit("/", 1)[-1]: [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in windows]
        for key, windows in data.items()
    }


def load_keyed_windows(labels_path: str | Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """The label windows keyed as the file keys them: "<category>/<file>.csv" or "<file>.csv"."""
    return parse_keyed_windows(Path(labels_path).read_text())


def parse_keyed_windows(text: str) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    return {
        key: [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in windows]
        for key, windows in json.loads(text).items()
    }


def windows_for(windows: dict, category: str | None, name: str):
    """A file's windows, or None when unlabelled: by "<category>/<file>", else by file name, else
    (flat input) by the one key that ends in "/<file>"."""
    if category is not None and f"{category}/{name}" in windows:
        return windows[f"{category}/{name}"]
    if name in windows:
        return windows[name]
    if category is None:
        matches = [key for key in windows if key.rsplit("/", 1)[-1] == name]
        if len(matches) == 1:
            return windows[matches[0]]
    return None


def load_labels(labels_path: str | None):
    """The label windows, or None when no labels were given; an unreadable file is a UserError."""
    from core.errors import UserError

    if not labels_path:
        return None
    try:
        return load_windows(labels_path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read labels {labels_path}: {error}") from None


def window_rows(timestamps: pd.Series, windows) -> list[tuple[int, int]]:
    """Each window as (first row, last row) of the rows whose timestamps fall inside it."""
    stamps = pd.to_datetime(timestamps).to_numpy()
    spans = []
    for start, end in windows:
        inside = np.flatnonzero((stamps >= np.datetime64(start)) & (stamps <= np.datetime64(end)))
        if len(inside):
            spans.append((int(inside[0]), int(inside[-1])))
    return spans


@dataclass(frozen=True)
class FileScore:
    raw: float  # the file's score S
    null: float  # a detector that never fires
    perfect: float  # every window caught at its left edge
    true_positives: int
    false_negatives: int
    false_positives: int


def score_file(detections: np.ndarray, spans: list[tuple[int, int]], profile: str = "standard") -> FileScore:
    """Score one file's boolean detections against its windows (row spans)."""
    weights = PROFILES[profile]
    detections = np.asarray(detections, dtype=bool)
    probation = probationary_rows(len(detections))
    spans = sorted(spans)
    inside = np.zeros(len(detections), dtype=bool)
    total, tp, fn, scored = 0.0, 0, 0, 0
    for left, right in spans:
        inside[left : right + 1] = True
        if right < probation:
            continue  # wholly probationary: neither caught nor missed
        scored += 1
        width = right - left + 1
        hits = np.flatnonzero(detections[left : right + 1]) + left
        hits = hits[hits >= probation]
        if len(hits):
            first = int(hits[0])
            position = -(right - first + 1) / width
            total += weights["tp"] * sigma(position) / sigma(-1.0)
            tp += 1
        else:
            total -= weights["fn"]
            fn += 1
    false_positives = np.flatnonzero(detections & ~inside)
    false_positives = false_positives[false_positives >= probation]
    fp = len(false_positives)
    if fp:
        ends = np.array([right for _, right in spans], dtype=float)
        widths = np.array([right - left + 1 for left, right in spans], dtype=float)
        preceding = np.searchsorted(ends, false_positives, side="left") - 1  # last window ending before i
        weight = np.full(fp, -1.0)
        has = preceding >= 0
        if has.any():
            k = preceding[has]
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.abs(false_positives[has] - ends[k]) / (widths[k] - 1)
            q = np.where(widths[k] > 1, q, np.inf)
            weight[has] = np.where(q > 3, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(q, 3.0))) - 1.0)
        total += weights["fp"] * float(weight.sum())
    return FileScore(
        raw=total,
        null=-weights["fn"] * scored,
        perfect=weights["tp"] * scored,
        true_positives=tp,
        false_negatives=fn,
        false_positives=fp,
    )


def normalised(scores: list[FileScore]) -> float:
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)


def threshold_detections(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.nan_to_num(scores, nan=-1.0) >= threshold


def best_threshold(
    files: list[tuple[np.ndarray, list[tuple[int, int]]]],
    profile: str = "standard",
    candidates: np.ndarray | None = None,
    detect=threshold_detections,
) -> tuple[float, float]:
    """The one corpus-wide threshold that maximises the normalised score, as NAB chooses it.

    ``files``: (anomaly scores, window spans) per file; ``detect(scores, threshold)`` turns
    scores into detections (by default every row at or above the threshold; the benchmark
    passes the alert rule, so suppression is part of the detector). Returns (threshold, score).
    """
    if candidates is None:
        every = np.concatenate([np.asarray(s, dtype=float) for s, _ in files])
        every = np.unique(every[np.isfinite(every)])
        # Every distinct score is a threshold where the detections change: exact when they are few
        # (a detector's final output is mostly 0); quantiles of the upper half otherwise.
        if len(every) > 5000:
            every = np.unique(np.quantile(every, np.linspace(0.5, 1.0, 401)))
        candidates = np.append(every, np.inf)  # never firing is always a candidate
    best = (float("inf"), -float("inf"))
    for threshold in candidates:
        value = normalised([score_file(detect(s, threshold), spans, profile) for s, spans in files])
        if value > best[1]:
            best = (float(threshold), value)
    return best


def written_files(out_dir: str | Path, labels_path: str | Path) -> list[tuple[str, pd.DataFrame, list]]:
    """Every labelled per-row file under ``out_dir`` ("<category>/<file>.csv" or "<file>.csv"),
    as (key, rows, window spans): what a detector wrote, nothing else."""
    windows = load_keyed_windows(labels_path)
    found = []
    for path in sorted(Path(out_dir).rglob("*.csv")):
        relative = path.relative_to(out_dir)
        category = relative.parts[0] if len(relative.parts) == 2 else None
        if len(relative.parts) > 2:
            continue
        label = windows_for(windows, category, path.name)
        if label is None:
            continue
        rows = pd.read_csv(path)
        found.append((relative.as_posix(), rows, window_rows(pd.to_datetime(rows["timestamp"]), label)))
    return found


def score_written(
    out_dir: str | Path, labels_path: str | Path, column: str = "anomaly_score"
) -> dict[str, tuple[float, float]]:
    """NAB's procedure on written output: per profile, the one corpus threshold over ``column``
    that maximises the score, as (threshold, score)."""
    files = [(rows[column].to_numpy(float), spans) for _, rows, spans in written_files(out_dir, labels_path)]
    if not files:
        raise ValueError(f"no labelled per-row files under {out_dir}")
    return {profile: best_threshold(files, profile) for profile in PROFILES}


def window_metrics(detections: np.ndarray, spans: list[tuple[int, int]]) -> dict[str, float]:
    """Precision, recall and F1 per window and per row.

    Per window: a window is caught when any row in it is flagged; precision counts runs of
    consecutive flagged rows, a run being right when it touches a window. Per row: a row is
    positive when it lies inside a window.
    """
    detections = np.asarray(detections, dtype=bool)
    inside = np.zeros(len(detections), dtype=bool)
    caught = 0
    for left, right in spans:
        inside[left : right + 1] = True
        caught += bool(detections[left : right + 1].any())
    starts = np.flatnonzero(detections & ~np.concatenate([[False], detections[:-1]]))
    runs_right = 0
    for start in starts:
        end = start
        while end + 1 < len(detections) and detections[end + 1]:
            end += 1
        runs_right += bool(inside[start : end + 1].any())
    true_rows = int((detections & inside).sum())
    return {
        "window_caught": caught,
        "window_total": len(spans),
        "runs": len(starts),
        "runs_in_window": runs_right,
        "rows_flagged": int(detections.sum()),
        "rows_labelled": int(inside.sum()),
        "rows_true": true_rows,
    }


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
