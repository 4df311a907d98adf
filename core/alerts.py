"""The alert policy: which of a series' scored rows page, given the series' state before them.

A row alerts when its score reaches the threshold and its series' cooldown since the last alert
is over: one incident pages once, not once per row. The cooldown is time between the rows'
timestamps when the model has one in seconds and the rows carry times, so a series with gaps
(an outage, a sparse sensor) is not held quiet for longer than the cooldown says; otherwise it
counts rows. Part of the scoring core: plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlertCounts:
    """What a series carries to its next rows: valid rows since its last alert and since its last
    row at the threshold (None before the first), and the time of its last alert (epoch seconds;
    None before the first, for rows without times, and in older states)."""

    rows_since_alert: int | None = None
    rows_since_hot: int | None = None
    last_alert_at: float | None = None


def apply_alerts(
    threshold: float,
    cooldown: int,
    scores: np.ndarray,
    rows_since_alert: int | None = None,
    rearm_after: int | None = None,
    rows_since_hot: int | None = None,
    in_cooldown_too: np.ndarray | None = None,
    times: np.ndarray | None = None,
    cooldown_seconds: float | None = None,
    last_alert_at: float | None = None,
) -> tuple[np.ndarray, AlertCounts]:
    """Alerts for a series' next scored rows, in order, and the counts to carry on.

    A row alerts when its score reaches ``threshold`` and the cooldown since the series'
    previous alert is over: more than ``cooldown_seconds`` between their ``times`` (epoch
    seconds) when both are given and known, else more than ``cooldown`` rows. With
    ``rearm_after``, a row also alerts within the cooldown when the ``rearm_after`` rows before
    it all stayed below the threshold: that incident is over, and a new one pages. A row marked in
    ``in_cooldown_too`` pages whenever its score reaches the threshold, cooldown or not.
    """
    alerts = np.zeros(len(scores), dtype=bool)
    last = None if rows_since_alert is None else -1 - rows_since_alert  # index of the last alert
    # A state from before re-arming carries no hot row: its last alert was one.
    hot = last if rows_since_hot is None else -1 - rows_since_hot  # index of the last row at the threshold
    in_time = cooldown_seconds is not None and times is not None
    for i in np.flatnonzero(scores >= threshold):  # NaN (no score) compares False
        rearmed = rearm_after is not None and (hot is None or i - hot - 1 >= rearm_after)
        if last is None:
            over = True
        elif in_time and np.isfinite(times[i]) and last_alert_at is not None:
            over = times[i] - last_alert_at > cooldown_seconds
        else:  # no time to measure by (a row or a state without one): the cooldown in rows
            over = i - last > cooldown
        if over or rearmed or (in_cooldown_too is not None and in_cooldown_too[i]):
            alerts[i] = True
            last = int(i)
            last_alert_at = float(times[i]) if in_time and np.isfinite(times[i]) else None
        hot = int(i)
    # Counts after these rows; the last alert (or hot row) may lie in an earlier batch.
    return alerts, AlertCounts(
        None if last is None else len(scores) - 1 - last,
        None if hot is None else len(scores) - 1 - hot,
        last_alert_at,
    )


def cooldown_text(rows: int, seconds: float | None) -> str:
    """A model's cooldown as an operator reads it: '18h' (time between rows' timestamps) or '216 rows'."""
    if seconds is None:
        return f"{rows} rows"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
