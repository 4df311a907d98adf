"""A series' range so far: a row whose input goes past the lowest or highest value its series has
shown before it, by more than ``tolerance`` times that range, is out of range.

Why beside the model: a single spike is diluted in a rolling mean and spread, so the model's
distance can stay in its normal band while the value itself is one the series has never shown.
A new extreme is what an operator reads as "never seen this before" and it carries across
series at any scale, since the tolerance is a fraction of the series' own range.

The state is each input's [lowest, highest] so far: a minimum and a maximum, exact in any order,
so a series split anywhere (micro-batches, a restart) gives the same flags as the whole series.
Part of the scoring core: plain numpy.
"""

from __future__ import annotations

import numpy as np


def check_range_tolerance(tolerance: float | None) -> None:
    if tolerance is not None and not tolerance >= 0:
        raise ValueError("the range tolerance must be at least 0 (or none, to leave the range out)")


def range_flags(
    values: np.ndarray, earlier: list[list[float]] | None, tolerance: float
) -> tuple[np.ndarray, list[list[float]] | None]:
    """Which of a series' next rows are out of range, and the [lowest, highest] per input to carry.

    ``values``: valid input rows in series order (n x inputs); ``earlier``: what this function
    returned after the series' rows before them (None, or another width, for a new series).
    A series' first row has no range before it and is never out of range.
    """
    passed, _, _, carried = range_passes(values, earlier, tolerance)
    return passed.any(axis=1), carried


def range_passes(
    values: np.ndarray, earlier: list[list[float]] | None, tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[float]] | None]:
    """``range_flags`` per input, rows x inputs: which inputs of each row are out of range; the edge
    each value passed (the highest before it when above its range's middle, else the lowest); how
    far past it, in widths of the range (-inf where inside); and the range to carry. What explains
    an out-of-range row."""
    x = np.asarray(values, dtype=float).reshape(len(values), -1)
    width = x.shape[1]
    if earlier is None or len(earlier) != width:
        start_low, start_high = np.full(width, np.inf), np.full(width, -np.inf)
    else:
        start_low, start_high = np.asarray(earlier, dtype=float).T
    if len(x) == 0:
        return np.zeros((0, width), dtype=bool), np.zeros((0, width)), np.zeros((0, width)), earlier
    lowest = np.minimum.accumulate(np.vstack([start_low, x]), axis=0)
    highest = np.maximum.accumulate(np.vstack([start_high, x]), axis=0)
    low_before, high_before = lowest[:-1], highest[:-1]  # the range of the rows before each row
    seen = np.isfinite(high_before)
    margin = tolerance * np.where(seen, high_before - low_before, 0.0)
    outside = seen & ((x > high_before + margin) | (x < low_before - margin))
    with np.errstate(invalid="ignore", divide="ignore"):  # a first row's range [inf, -inf] is never used
        edge = np.where(x > (high_before + low_before) / 2, high_before, low_before)
        # How far past its edge, in widths of its range (a constant input's any step is infinitely far).
        beyond = np.where(outside, np.abs(x - edge) / (high_before - low_before), -np.inf)
    return outside, edge, beyond, np.column_stack([lowest[-1], highest[-1]]).tolist()
