"""An anomaly likelihood per series, after Ahmad et al., "Unsupervised real-time anomaly detection
for streaming data" (Neurocomputing, 2017): each row's distance to the nearest centroid is judged
against the same series' own recent distances, so one alert level carries across series whose
distances sit at different heights (a busy database, an idle web host, hourly or per-minute data).

For row i of a series: r is the mean of its last ``recent`` distances, m and s the mean and
(population) spread of those recent means over the series' history window (row i included), and
the likelihood is Phi((r - m) / s), the Gaussian probability of a recent mean no higher than r.
As in Ahmad et al., the spread is that of the averaged scores, not of single distances: a
sustained rise is judged against how much such averages normally move. A
row whose series has fewer than ``LIKELIHOOD_MIN_ROWS`` distances behind it gets 0: too little
history to judge it.

The history window is made of blocks of ``likelihood_block(window)`` rows, counted from the
series' first distance: the block row i is in, up to row i, and the whole blocks before it, as
many as fit in ``window`` with the current one (so it spans between ``window - 2 * block`` and
``window`` rows once the series is that long). A series then carries only its blocks' sums, not
``window`` distances, and each row costs the same whatever the window. Sums run row by row from
each block's start and whole blocks add exactly (``math.fsum``), so a series split anywhere
(micro-batches, a restart) gives bit for bit the numbers of the whole series.
Part of the scoring core: plain numpy.
"""

from __future__ import annotations

import math

import numpy as np

from core.history import window_mean_std

LIKELIHOOD_MIN_ROWS = 50
SPREAD_FLOOR = 1e-9  # a flat series' spread: a rise from it is judged, not divided by zero
# Blocks per history window: fine enough that the window's length varies by a few percent (and
# the cross-validated scores match those of an exact window), coarse enough that a series'
# state stays a few dozen numbers.
WINDOW_BLOCKS = 32

_erfc = np.frompyfunc(math.erfc, 1, 1)


def likelihood_block(window: int) -> int:
    """Rows per block of a history window of ``window`` rows."""
    return max(1, -(-window // WINDOW_BLOCKS))


def likelihood_warmup(window: int) -> int:
    """A series' first rows, which have too few distances behind them to be judged."""
    return min(window, LIKELIHOOD_MIN_ROWS) - 1


def recent_means(distances: np.ndarray, earlier: list[float], recent: int) -> tuple[np.ndarray, list[float]]:
    """Mean of each row's last ``recent`` distances (fewer at a series' start), and the
    distances to carry on: a fixed window per row, so splits do not change the bits."""
    if recent <= 1:
        return distances, []
    before = np.asarray(earlier[max(0, len(earlier) - (recent - 1)) :], dtype=float)
    context = np.concatenate([np.full(recent - 1 - len(before), np.nan), before, distances])
    windows = np.lib.stride_tricks.sliding_window_view(context, recent)
    with np.errstate(invalid="ignore"):
        means = window_mean_std(windows, with_std=False)[0]
    seen = np.concatenate([before, distances])  # without the NaN that pad a series' start
    return means, seen[max(0, len(seen) - (recent - 1)) :].tolist()


def likelihood_scores(distances: np.ndarray, earlier: dict | None, window: int, recent: int) -> tuple[np.ndarray, dict]:
    """The likelihood of each of a series' next distances, and the state to carry on.

    ``distances``: the valid rows' distances in series order; ``earlier``: the state this
    function returned after the series' distances before them (None for a new series):
    ``blocks``, the [sum, sum of squares] of its latest whole blocks, oldest first; ``partial``,
    [rows, sum, sum of squares] of the block under way; ``recent``, its last distances.
    """
    earlier = earlier or {}
    x = np.asarray(distances, dtype=float)
    n = len(x)
    block = likelihood_block(window)
    whole_blocks = window // block - 1  # the whole blocks that fit beside the current one
    blocks = [tuple(b) for b in earlier.get("blocks", [])]
    filled, partial_sum, partial_squares = earlier.get("partial", [0, 0.0, 0.0])
    recent_mean, recent_carried = recent_means(x, earlier.get("recent", []), recent)
    if n == 0:
        return np.empty(0), {**earlier, "recent": recent_carried}
    # One grid row per block the distances touch; running sums along a row restart at each block
    # and continue the block under way from its carried sum (0 + sum is exactly the sum).
    grid_rows = (filled + n + block - 1) // block
    grid = np.zeros((2, grid_rows * block))
    grid[0, filled : filled + n] = recent_mean
    grid[1, filled : filled + n] = recent_mean * recent_mean
    if filled:
        grid[:, filled - 1] = partial_sum, partial_squares
    running = np.cumsum(grid.reshape(2, grid_rows, block), axis=2)
    position = filled + np.arange(n)
    row, column = position // block, position % block
    ended = (filled + n) // block  # grid rows whose block is now whole
    history = blocks + list(zip(running[0, :ended, -1].tolist(), running[1, :ended, -1].tolist()))
    before = [history[max(0, len(blocks) + r - whole_blocks) : len(blocks) + r] for r in range(grid_rows)]
    window_sum = np.array([math.fsum(b[0] for b in w) for w in before])[row] + running[0, row, column]
    window_squares = np.array([math.fsum(b[1] for b in w) for w in before])[row] + running[1, row, column]
    count = np.array([len(w) for w in before])[row] * block + column + 1
    mean = window_sum / count
    spread = np.sqrt(np.maximum(window_squares / count - mean * mean, 0.0))
    z = (recent_mean - mean) / np.maximum(spread, SPREAD_FLOOR)
    scores = (0.5 * _erfc(-z / math.sqrt(2.0))).astype(float)
    scores[count < min(window, LIKELIHOOD_MIN_ROWS)] = 0.0
    left = (filled + n) % block
    carried = {
        "blocks": [list(b) for b in history[len(history) - min(whole_blocks, len(history)) :]] if whole_blocks else [],
        "partial": [left, float(running[0, -1, left - 1]), float(running[1, -1, left - 1])] if left else [0, 0.0, 0.0],
        "recent": recent_carried,
    }
    return scores, carried
