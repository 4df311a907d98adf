"""Why a row scored as it did: the model input (a vector column, e.g. ``disk_mean``) that
contributes most to the row's squared distance from its nearest centroid, that input's share of
it, and the input's value beside the centroid's, both in original units.

Part of the scoring core: computed where the distance is (``core.scoring``), so serving, replay
and the monitor carry the same numbers, and said in one wording (``explanation_text``) by the
monitor's ALERT lines and its Alertmanager annotations.
"""

from __future__ import annotations

import math

import numpy as np

EXPLANATION_COLUMNS = ["explained_by", "explained_share", "explained_value", "explained_centroid_value"]


def explain(
    params, vectors: np.ndarray, z: np.ndarray, nearest: np.ndarray, squared: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the vector column farthest from its nearest centroid (its term of the squared
    distance is the largest), that term's share of the squared distance, and the row's and the
    centroid's values of that column in original units. A row on its centroid explains nothing
    ('' and a share of 0)."""
    rows = np.arange(len(nearest))
    terms = z - params.centroid_array[nearest]
    terms *= terms
    top = terms.argmax(axis=1) if terms.shape[1] else np.zeros(len(rows), dtype=int)
    on_centroid = squared <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(on_centroid, 0.0, terms[rows, top] / np.where(on_centroid, 1.0, squared))
    names = params.vector_column_array[top]
    if on_centroid.any():
        names = np.where(on_centroid, "", names)
    return names, share, vectors[rows, top], params.centroid_original_array[nearest, top]


def explanation_text(by, share, value, centroid_value) -> str:
    """One line for people: 'disk_mean 812.3 against 95.1 at the nearest centroid (82% of the
    distance)'; '' when there is nothing to explain (an invalid row, a row on its centroid)."""
    if not by or share is None or not math.isfinite(float(share)):
        return ""
    return (
        f"{by} {float(value):.6g} against {float(centroid_value):.6g} at the nearest centroid "
        f"({float(share):.0%} of the distance)"
    )
