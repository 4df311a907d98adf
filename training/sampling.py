"""History windows given in time: a duration such as ``14d`` becomes rows at the sampling interval
of the data a model trains on, so a 5-minute and an hourly series look back over the same days.

The sampling interval is the lower median of the gaps between consecutive timestamps of each
series (gaps of 0 and unreadable times left out): robust to the outages and bursts of real
metric streams. Spark measures it on a training table; ``interval_of_times`` is the same
statistic in numpy, for jobs that hold a file's times in memory (the cross-validation).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from core.errors import UserError

UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
INTERVAL_ROWS = 100_000  # rows of a training table (in its order) that its interval is measured on
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class WindowLength:
    """A window as given: whole rows, or a duration in seconds turned into rows per training table."""

    rows: int | None = None
    seconds: float | None = None
    text: str = ""

    def rows_at(self, interval_seconds: float | None) -> int:
        """The window in rows for data sampled every ``interval_seconds``."""
        if self.rows is not None:
            return self.rows
        if interval_seconds is None or not interval_seconds > 0:
            raise UserError(
                f"a window of {self.text} needs the training data's timestamps to know how many rows "
                "it spans, and they give no interval: give the window in rows instead (e.g. 4032)"
            )
        return max(1, round(self.seconds / interval_seconds))


def parse_window(text: str) -> WindowLength:
    """A whole number of rows (``4032``) or a duration (``14d``, ``36h``, ``90min``, ``600s``, ``2w``)."""
    text = str(text).strip()
    if text.isdigit():
        rows = int(text)
        if rows < 1:
            raise UserError(f"a window must be at least 1 row, got {text!r}")
        return WindowLength(rows=rows, text=text)
    match = _DURATION.match(text)
    if match is None or not float(match.group(1)) > 0:
        raise UserError(
            f"a window is a whole number of rows or a positive duration such as 14d, 36h, 90min or 600s; got {text!r}"
        )
    return WindowLength(seconds=float(match.group(1)) * UNIT_SECONDS[match.group(2).lower()], text=text)


def interval_of_times(seconds: np.ndarray) -> float | None:
    """The lower median of the positive gaps between consecutive times (epoch seconds, in series
    order, NaN for an unreadable one); None without two readable, distinct times."""
    times = np.asarray(seconds, dtype=float)
    times = np.sort(times[np.isfinite(times)])
    gaps = np.diff(times)
    gaps = np.sort(gaps[gaps > 0])
    if len(gaps) == 0:
        return None
    return float(gaps[math.ceil(len(gaps) / 2) - 1])


def sampling_interval_seconds(table, series: str | None) -> float | None:
    """``interval_of_times`` over a Spark training table's first ``INTERVAL_ROWS`` rows, gaps
    taken within each series; None when it has no timestamp column or no two readable, distinct
    times in a series."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from core.schema import TIMESTAMP
    from core.spark_scoring import spark_time

    if TIMESTAMP not in table.columns:
        return None
    # The first rows suffice for a median, and keep the job's cost flat however large the table.
    table = table.limit(INTERVAL_ROWS)
    seconds = spark_time(TIMESTAMP).cast("double")
    in_order = Window.partitionBy(F.col(series) if series else F.lit("")).orderBy(seconds.asc_nulls_last())
    gaps = table.select((seconds - F.lag(seconds, 1).over(in_order)).alias("gap")).where(F.col("gap") > 0)
    # Exact below 10,000 gaps (the smallest gap with at least half at or below it), as interval_of_times.
    median = gaps.agg(F.percentile_approx("gap", 0.5, 10000).alias("median")).first()["median"]
    return None if median is None else float(median)
