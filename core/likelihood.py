"""An anomaly likelihood per series, after Ahmad et al., "Unsupervised real-time anomaly detection
for streaming data" (Neurocomputing, 2017): each row's distance to the nearest centroid is judged
against the same series' own recent distances, so one alert level carries across series whose
distances sit at different heights (a busy database, an idle web host, hourly or per-minute data).

For row i of a series: m and s are the mean and (population) spread of the series' last
``window`` distances (row i included), r the mean of its last ``recent`` distances, and the
likelihood is Phi((r - m) / s), the Gaussian probability of a recent mean no higher than r. A
row whose series has fewer than ``LIKELIHOOD_MIN_ROWS`` distances behind it gets 0: too little
history to judge it.

Every statistic is taken over one fixed window of distances, never a running sum, so a series
split anywhere (micro-batches, a restart) gives bit for bit the numbers of the whole series.
Part of the scoring core: plain numpy.
"""

from __future__ import annotations

import math

import numpy as np

from core.history import window_mean_std

LIKELIHOOD_MIN_ROWS = 50
SPREAD_FLOOR = 1e-9  # a flat series' spread: a rise from it is judged, not divided by zero
# Rows per block of copied windows: the windows are rows x window floats.
BLOCK_FLOATS = 1 << 20

_erfc = np.frompyfunc(math.erfc, 1, 1)


def likelihood_tail(window: int, recent: int) -> int:
    """How many earlier distances of a series the likelihood of its next row needs."""
    return max(window, recent) - 1


def likelihood_warmup(window: int) -> int:
    """A series' first rows, which have too few distances behind them to be judged."""
    return min(window, LIKELIHOOD_MIN_ROWS) - 1


def windowed_means(padded: np.ndarray, n: int, width: int, with_std: bool) -> tuple:
    """Mean (and spread) of each of the last ``n`` windows of ``width`` over ``padded``, with the
    count of distances in each (NaN pads the rows before a series began)."""
    windows = np.lib.stride_tricks.sliding_window_view(padded[-(n + width - 1) :], width)
    mean, spread, count = np.empty(n), np.empty(n) if with_std else None, np.empty(n, dtype=np.intp)
    block = max(1, BLOCK_FLOATS // width)
    for start in range(0, n, block):
        part = windows[start : start + block]
        with np.errstate(invalid="ignore"):
            m, s = window_mean_std(part, with_std)
        mean[start : start + block] = m
        if with_std:
            spread[start : start + block] = s
        count[start : start + block] = np.sum(~np.isnan(part), axis=-1)
    return mean, spread, count


def likelihood_scores(
    distances: np.ndarray, earlier: list[float], window: int, recent: int
) -> tuple[np.ndarray, list[float]]:
    """The likelihood of each of a series' next distances, and the distances to carry on.

    ``distances``: the valid rows' distances in series order; ``earlier``: the series' distances
    before them (at most ``likelihood_tail`` are used).
    """
    n = len(distances)
    keep = likelihood_tail(window, recent)
    before = np.asarray(earlier[max(0, len(earlier) - keep) :] if keep else [], dtype=float)
    context = np.concatenate([before, np.asarray(distances, dtype=float)])
    pad = max(window, recent) - 1
    padded = np.concatenate([np.full(pad, np.nan), context])
    mean, spread, count = windowed_means(padded, n, window, True)
    recent_mean = windowed_means(padded, n, recent, False)[0] if recent > 1 else context[len(before) :]
    z = (recent_mean - mean) / np.maximum(spread, SPREAD_FLOOR)
    scores = (0.5 * _erfc(-z / math.sqrt(2.0))).astype(float)
    scores[count < min(window, LIKELIHOOD_MIN_ROWS)] = 0.0
    carried = context[len(context) - min(keep, len(context)) :].tolist() if keep else []
    return scores, carried
