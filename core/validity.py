"""Which rows of an input can be scored: each feature read as a number (as Python's float() and
Java's parseDouble read it) and checked against the model's bounds, with a reason for each row
that cannot. Part of the scoring core (``core.scoring`` calls it): plain numpy and pandas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


class MissingFeaturesError(ValueError):
    """The input lacks feature columns, so no row of it can be scored."""


def validity(params, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return (values as float matrix, reason per row; '' for a row that can be scored)."""
    missing = [f for f in params.features if f not in frame.columns]
    if missing:
        raise MissingFeaturesError(
            f"input lacks feature column(s) {', '.join(missing)}; the model needs {', '.join(params.features)}"
        )
    n = len(frame)
    values = np.empty((n, len(params.features)), dtype=float)
    reasons = np.full(n, "", dtype=object)
    for j, feature in enumerate(params.features):
        raw = frame[feature]
        if raw.dtype.kind in "fiub":
            # Already numeric (pandas callers, Spark doubles): skip the text checks.
            numeric = raw.to_numpy(dtype=float, na_value=np.nan)
            blank = np.isnan(numeric)
            spelled_nan = np.zeros(n, dtype=bool)
        else:
            numeric = read_numbers(raw)
            blank = np.zeros(n, dtype=bool)
            spelled_nan = np.zeros(n, dtype=bool)
            # Only a value that did not read as a finite number needs its text looked at: the
            # text checks cost Python per value and were most of parsing a 10^5-row file.
            suspect = np.flatnonzero(~np.isfinite(numeric))
            if len(suspect):
                subset = raw.iloc[suspect]
                text = subset.astype(str).str.strip()
                blank[suspect] = subset.isna().to_numpy() | (text == "").to_numpy()
                spelled_nan[suspect] = text.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy()
                # pandas gives up on out-of-range numbers such as 1e999; Python reads them as inf.
                for k in np.flatnonzero(np.isnan(numeric[suspect]) & ~blank[suspect] & ~spelled_nan[suspect]):
                    numeric[suspect[k]] = _float_or_nan(text.iat[k])
        values[:, j] = numeric
        lo, hi = params.feature_bounds(feature)
        if np.isfinite(numeric).all() and ((numeric >= lo) & (numeric <= hi)).all():
            continue  # the common case: no reason to look for, and the checks were half of this
        checks = (
            (blank, f"missing value for {feature}"),
            (~blank & np.isnan(numeric) & ~spelled_nan, f"non-numeric value for {feature}"),
            (~blank & ~np.isfinite(numeric), f"non-finite value for {feature}"),
            (np.isfinite(numeric) & (numeric < lo), f"{feature} below {lo:g}"),
            (np.isfinite(numeric) & (numeric > hi), f"{feature} above {hi:g}"),
        )
        for mask, reason in checks:
            reasons[(reasons == "") & mask] = reason
    return values, reasons


def read_numbers(texts: pd.Series) -> np.ndarray:
    """Texts as numbers, NaN where a text is not one; every number read as Python's float()
    and Java's parseDouble read it (the nearest double).

    pandas' own reading is not: it was one unit in the last place off for 5% of the NAB
    values (0.20199999999999999), so the monitor scored slightly other numbers than training
    read from the same text. Arrow reads a column of plain numbers in C++, correctly rounded,
    at a third of pandas' cost; a column holding anything else takes pandas' tolerant reading,
    and its finite numbers are read again with float().
    """
    try:
        import pyarrow as pa

        numbers = pa.array(texts.to_numpy(dtype=object), type=pa.string()).cast(pa.float64())
        read = numbers.to_numpy(zero_copy_only=False)
        if numbers.null_count == 0 and np.isfinite(read).all():
            return read
    except (ImportError, ValueError, TypeError):  # pyarrow's errors derive from these
        pass
    numeric = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    for k in np.flatnonzero(np.isfinite(numeric)):
        try:
            numeric[k] = float(texts.iat[k])
        except (TypeError, ValueError):
            pass  # a form pandas reads and float() does not: pandas' reading stands
    return numeric


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
