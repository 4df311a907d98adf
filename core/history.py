"""History features of a series: each input's change and its rolling mean and spread over the
last ``span`` rows, computed from fixed windows so a series split anywhere gives the same bits.

Plain numpy, part of the scoring core (``core.scoring`` applies it).
"""

from __future__ import annotations

import numpy as np


def tail_rows(history: list[str], span: int) -> int:
    """How many earlier rows of a series the features of the next row need."""
    needs_previous = 1 if "delta" in history else 0
    windowed = span - 1 if {"mean", "std"} & set(history) else 0
    return max(needs_previous, windowed)


# Window values copied at a time: a few MiB, whatever the span (a day of 5-minute rows is 288).
WINDOW_BLOCK_VALUES = 1 << 20


def history_features(
    history: list[str], span: int, values: np.ndarray, tail: list[list[float]]
) -> tuple[np.ndarray, list]:
    """The feature vectors of a series' next rows, and the tail to carry to the rows after.

    ``values``: valid input rows in series order (n x inputs); ``tail``: earlier rows.
    A row with fewer than ``span`` rows behind it uses the rows there are; the first row of a
    series has a delta of 0. Columns: every transform of every input (``vector_columns``).
    """
    n, width = values.shape
    keep = tail_rows(history, span)
    earlier = np.asarray(tail, dtype=float).reshape(-1, width)[-keep:] if keep else np.empty((0, width))
    context = np.vstack([earlier, values])
    # Each transform over all inputs at once (rows x inputs): per input, the numpy calls'
    # fixed costs were most of a short batch's features (a 1-row request, a 100-row file).
    by_transform = {}
    for transform in history:
        if transform == "value":
            by_transform[transform] = values
        elif transform == "delta":
            previous = np.concatenate([context[:1], context[:-1]])
            by_transform[transform] = (context - previous)[len(earlier) :]
    windowed = [t for t in history if t in ("mean", "std")]
    if windowed:
        # One fixed window per row: the same rows give the same bits wherever a batch starts.
        # Inputs as rows (inputs x time), so each window is one contiguous run once copied
        # and is summed in one fixed order whatever the block's shape.
        padded = np.concatenate([np.full((width, span - 1), np.nan), context.T], axis=1)[:, -(n + span - 1) :]
        windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=1)  # inputs x rows x span
        stats = {t: np.empty((n, width)) for t in windowed}
        # In blocks of rows: the windows are copied, and inputs x rows x span can be large. The rows
        # whose windows reach before the series' start (NaN) come apart: the others need no mask.
        block = max(1, WINDOW_BLOCK_VALUES // max(width * span, 1))
        reaching = min(n, max(0, span - 1 - len(earlier)))
        bounds = sorted({0, reaching, *range(reaching, n, block), *range(0, reaching, block), n})
        for start, end in zip(bounds, bounds[1:]):
            with np.errstate(invalid="ignore", over="ignore"):  # as numpy's nan-functions, silent
                mean, std = window_mean_std(windows[:, start:end], "std" in stats, complete=start >= reaching)
            for transform, stat in (("mean", mean), ("std", std)):
                if transform in stats:
                    stats[transform][start:end] = stat.T
        by_transform.update(stats)
    columns = [by_transform[transform][:, j] for j in range(width) for transform in history]
    vectors = np.column_stack(columns) if columns else np.empty((n, 0))
    new_tail = context[len(context) - min(keep, len(context)) :].tolist() if keep else []
    return vectors, new_tail


def window_mean_std(
    windows: np.ndarray, with_std: bool = True, complete: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``np.nanmean`` and ``np.nanstd`` over the last axis, bit for bit (numpy's own steps),
    from one masked copy of the windows instead of one each: the two numpy calls' copies and
    fixed costs were a quarter of scoring a 1-row request. NaN marks the rows a window
    reaches before its series began; every window holds at least its own row. ``complete``:
    no window reaches before its series began, so the same steps need no mask."""
    filled = np.array(windows)  # C-ordered, as numpy's own copy: the same summation order
    if complete:
        mean = np.sum(filled, axis=-1, keepdims=True)
        np.divide(mean, filled.shape[-1], out=mean)
        if not with_std:
            return mean[..., 0], None
        np.subtract(filled, mean, out=filled)
        np.multiply(filled, filled, out=filled)
        variance = np.sum(filled, axis=-1)
        np.divide(variance, filled.shape[-1], out=variance)
        return mean[..., 0], np.sqrt(variance, out=variance)
    missing = np.isnan(filled)
    np.copyto(filled, 0.0, where=missing)
    count = np.sum(~missing, axis=-1, dtype=np.intp, keepdims=True)
    mean = np.sum(filled, axis=-1, keepdims=True)
    np.divide(mean, count, out=mean, casting="unsafe")
    if not with_std:
        return mean[..., 0], None
    np.subtract(filled, mean, out=filled)
    np.copyto(filled, 0.0, where=missing)
    np.multiply(filled, filled, out=filled)
    variance = np.sum(filled, axis=-1)
    np.divide(variance, count[..., 0], out=variance, casting="unsafe")
    return mean[..., 0], np.sqrt(variance, out=variance)
