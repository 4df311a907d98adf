"""Why a row scored as it did: the model input (a vector column, e.g. ``disk_mean``) that
contributes most to the row's squared distance from its nearest centroid, that input's share of
it, and the input's value beside the centroid's, both in original units.

With further time scales (``core.scales``), a row that one of them scored highest is explained by
that scale's KMeans, its column named with the span (``disk_mean@288``). A row past its series'
range so far (``core.value_range``) is explained by that range (``disk@range``): the value beside
the edge it passed, since the range alone scores the row 1 whatever the distances say.

Part of the scoring core: computed where the distance is (``core.scoring``), so serving, replay
and the monitor carry the same numbers, and said in one wording (``explanation_text``) by the
monitor's ALERT lines and its Alertmanager annotations.
"""

from __future__ import annotations

import math

import numpy as np

EXPLANATION_COLUMNS = ["explained_by", "explained_share", "explained_value", "explained_centroid_value"]
RANGE_MARK = "@range"  # an explanation by the series' range so far rather than a KMeans


def explain(
    fitted, names: np.ndarray, vectors: np.ndarray, z: np.ndarray, nearest: np.ndarray, squared: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the vector column farthest from its nearest centroid (its term of the squared
    distance is the largest), that term's share of the squared distance, and the row's and the
    centroid's values of that column in original units. A row on its centroid explains nothing
    ('' and a share of 0). ``fitted``: the KMeans that measured the distance (the model's own, or
    a further time scale's: ``core.scales``); ``names``: its vector columns."""
    rows = np.arange(len(nearest))
    terms = z - fitted.centroid_array[nearest]
    terms *= terms
    top = terms.argmax(axis=1) if terms.shape[1] else np.zeros(len(rows), dtype=int)
    on_centroid = squared <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(on_centroid, 0.0, terms[rows, top] / np.where(on_centroid, 1.0, squared))
    named = names[top]
    if on_centroid.any():
        named = np.where(on_centroid, "", named)
    return named, share, vectors[rows, top], fitted.centroid_original_array[nearest, top]


def explain_range(
    features: list[str], values: np.ndarray, edges: np.ndarray, beyond: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows past their series' range (``core.value_range.range_passes``): the input farthest past
    its edge in widths of its own range, named ``cpu@range``; a share of 1 (the range alone scores
    the row 1); the row's value of it and the edge it passed."""
    rows = np.arange(len(values))
    top = beyond.argmax(axis=1)
    names = np.asarray([f"{feature}{RANGE_MARK}" for feature in features], dtype=object)[top]
    return names, np.ones(len(rows)), values[rows, top], edges[rows, top]


def scale_column_names(names: np.ndarray, span: int) -> np.ndarray:
    """A further time scale's vector columns as an explanation names them: ``disk_mean@288``."""
    return np.asarray([f"{name}@{span}" for name in names], dtype=object)


def explained_column(by: str) -> tuple[str, int | str | None]:
    """An explanation's vector column and where it was read: the span of a further time scale,
    'range' (the series' range so far), or None (the model's own KMeans)."""
    column, _, where = str(by).partition("@")
    return column, int(where) if where.isdigit() else (where or None)


def explanation_text(by, share, value, centroid_value) -> str:
    """One line for people: 'disk_mean 812.3 against 95.1 at the nearest centroid (82% of the
    distance)', naming the time scale when a further one scored the row ('disk_mean at the
    288-row scale ...'); '' when there is nothing to explain (an invalid row, a row on its centroid)."""
    if not by or share is None or not math.isfinite(float(share)):
        return ""
    column, span = explained_column(by)
    if span == "range":
        side = "highest" if float(value) > float(centroid_value) else "lowest"
        return f"{column} {float(value):.6g} past the {side} value its series had shown ({float(centroid_value):.6g})"
    named = column if span is None else f"{column} at the {span}-row scale"
    return (
        f"{named} {float(value):.6g} against {float(centroid_value):.6g} at the nearest centroid "
        f"({float(share):.0%} of the distance)"
    )
