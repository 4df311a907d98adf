"""An ensemble over time scales: beside the model's own KMeans over the history features at
``span``, one KMeans per further span over the same transforms, each scale's distances judged by
their own likelihood (``core.likelihood``); a row scores as its most surprised scale, each scale's
surprise weighed by how often it gets a chance to pass by luck (``weighed_likelihood``).

Why: an anomaly shows at its own time scale (a spike within 2 rows, a shift in a 24-row spread, a
daily pattern that breaks within a day's window), and a likelihood per scale judges each against
its own normal, so no scale drowns the others as they do in one KMeans over all of them
(docs/quality.md). Part of the scoring core: plain numpy; its state is one likelihood state per
scale, split-proof as the likelihood's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core.distances import squared_distances
from core.history import history_features, tail_rows
from core.likelihood import likelihood_scores


class FittedArrays:
    """A fit's scaler (``mean``, ``scale``) and ``centroids`` as numpy arrays, made once rather than
    on every call, which weighs on a 1-row request. Not fields, so JSON and equality ignore them."""

    @cached_property
    def mean_array(self) -> np.ndarray:
        return np.asarray(self.mean, dtype=float)

    @cached_property
    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=float)

    @cached_property
    def centroid_array(self) -> np.ndarray:
        return np.asarray(self.centroids, dtype=float)

    @cached_property
    def centroid_original_array(self) -> np.ndarray:
        """The centroids in the features' original units (a constant feature's scale is 0)."""
        safe = np.where(self.scale_array == 0, 1.0, self.scale_array)
        return np.where(self.scale_array == 0, 0.0, self.centroid_array / safe) + self.mean_array


@dataclass(frozen=True)
class Scale(FittedArrays):
    """One further time scale of a model: its span and what its KMeans learned (the scaler's mean
    and scale, the centroids in the scaled space), for the model's history transforms."""

    span: int
    mean: list[float]
    scale: list[float]
    centroids: list[list[float]]


def scales_from_json(items) -> list[Scale]:
    return [item if isinstance(item, Scale) else Scale(**item) for item in items or []]


# Over the other transforms (the value, its delta) every span gives the model's own features.
WINDOWLESS_SCALES = (
    "further time scales need a rolling mean or std among the history transforms: "
    "without one, every span gives the model's own features"
)


def windowed(history) -> bool:
    """Whether the history has a transform over a span of rows, which a further time scale varies."""
    return bool({"mean", "std"} & set(history))


def check_scales(scales: list[Scale], width: int, likelihood: bool, history: list[str]) -> None:
    if scales and not likelihood:
        raise ValueError("further time scales need the likelihood score: each scale is judged by its own")
    if scales and not windowed(history):
        raise ValueError(WINDOWLESS_SCALES)
    for scale in scales:
        if scale.span < 1:
            raise ValueError("every time scale needs a span of at least 1 row")
        if len(scale.mean) != width or len(scale.scale) != width or not scale.centroids:
            raise ValueError(
                f"the time scale over {scale.span} rows needs one mean and scale per feature and centroids"
            )
        if any(len(c) != width for c in scale.centroids):
            raise ValueError(
                f"every centroid of the time scale over {scale.span} rows needs one coordinate per feature"
            )


def scales_tail_rows(history: list[str], span: int, scales: list[Scale]) -> int:
    """The earlier rows of a series that the features of every scale need."""
    return max([tail_rows(history, span)] + [tail_rows(history, s.span) for s in scales])


def carried_tail(tail: list[list[float]], values: np.ndarray, keep: int) -> list[list[float]]:
    """The last ``keep`` input rows of a series after ``values``: the tail its next rows need."""
    if not keep:
        return []
    recent = values[len(values) - min(keep, len(values)) :].tolist()
    return (list(tail) + recent)[-keep:] if len(recent) < keep else recent


def trial_rows(span: int, recent: int) -> int:
    """The rows one recent mean of a scale reaches back over (its features' span, then the recent
    distances): about once per this many rows, its recent mean is a fresh draw."""
    return span + recent - 1


def weighed_likelihood(likelihood: np.ndarray, span: int, own_span: int, recent: int) -> np.ndarray:
    """A further scale's likelihood on the footing of the model's own span: its tail probability
    (1 - likelihood) times trial_rows(own) / trial_rows(span). A short scale draws a fresh recent
    mean more often, so has more chances to pass an alert level by luck, and needs more surprise to
    count; a long one less. The model's own scale is unchanged, so is the meaning of the level.
    A row the scale has too little history to judge (likelihood 0) stays 0, and NaN (an invalid
    row, in the cross-validation) stays NaN."""
    factor = trial_rows(own_span, recent) / trial_rows(span, recent)
    return np.where(likelihood != 0, np.maximum(0.0, 1.0 - (1.0 - likelihood) * factor), 0.0)


@dataclass(frozen=True)
class ScaleWin:
    """The rows of a batch that one further scale scored highest, with what explains them there."""

    scale: Scale
    rows: np.ndarray  # boolean, over the batch's valid rows
    vectors: np.ndarray
    z: np.ndarray
    nearest: np.ndarray
    squared: np.ndarray  # each row's squared distance to its nearest centroid


def ensemble_scores(
    history: list[str],
    span: int,
    scales: list[Scale],
    values: np.ndarray,
    tail: list[list[float]],
    scores: np.ndarray,
    earlier: list[dict] | None,
    window: int,
    recent: int,
) -> tuple[np.ndarray, list[dict], list[ScaleWin]]:
    """``scores`` (the model's own likelihoods of a series' next valid rows, at ``span``) raised to
    each further scale's weighed likelihood (``weighed_likelihood``) where it is higher, each
    scale's likelihood state to carry on, and the rows each scale won (so an alert names the time
    scale that raised it).

    ``values``: the rows in series order; ``tail``: the series' input rows before them;
    ``earlier``: what this function returned after those rows (None for a new series)."""
    earlier = earlier if earlier is not None and len(earlier) == len(scales) else [None] * len(scales)
    combined = np.array(scores, dtype=float)
    winner = np.zeros(len(combined), dtype=np.intp)  # 0: the model's own KMeans; i + 1: scales[i]
    carried, seen = [], []
    for i, (scale, state) in enumerate(zip(scales, earlier)):
        vectors, _ = history_features(history, scale.span, values, tail)
        z = (vectors - scale.mean_array) * scale.scale_array
        squared = squared_distances(z, scale.centroid_array)
        nearest = squared.argmin(axis=1)
        squared = squared[np.arange(len(nearest)), nearest]
        judged, state = likelihood_scores(np.sqrt(squared), state, window, recent)
        judged = weighed_likelihood(judged, scale.span, span, recent)
        winner[judged > combined] = i + 1
        np.fmax(combined, judged, out=combined)
        carried.append(state)
        seen.append((vectors, z, nearest, squared))
    wins = []
    for i, scale in enumerate(scales):
        rows = winner == i + 1
        if rows.any():
            wins.append(ScaleWin(scale, rows, *seen[i]))
    return combined, carried, wins
