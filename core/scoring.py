"""The one scoring core: turns a series' rows into history features, cluster, distance,
anomaly score, verdict and alert.

Plain numpy/pandas on purpose: no Spark, no JVM, no MLflow import, so that training, the
Spark jobs (``applyInPandas`` in replay, ``applyInPandasWithState`` in the monitor) and
``mlflow models serve`` all call exactly this code and cannot drift apart.

The unit of work is one series (one host or source) in time order, plus the series' state
from earlier rows (``SeriesState``): the last few input rows, which the history features need,
and the rows since the last alert, which the suppression rule needs. A batch job starts every
series from an empty state; the monitor keeps the state between micro-batches. Each feature
of a row is computed from one fixed window of values, never from a running sum, so a series
split anywhere gives bit-for-bit the same features as the whole series.

Input: a pandas DataFrame holding at least the model's input columns (``features``).
Output: a DataFrame with ``OUTPUT_COLUMNS``, one row per input row, in input order.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

import numpy as np
import pandas as pd

from core.alerts import apply_alerts
from core.distances import squared_distances
from core.explanation import EXPLANATION_COLUMNS, explain, explain_range, scale_column_names
from core.history import history_features, tail_rows
from core.likelihood import likelihood_scores, likelihood_warmup
from core.scales import (
    FittedArrays,
    Scale,
    carried_tail,
    check_scales,
    ensemble_scores,
    scales_from_json,
    scales_tail_rows,
)
from core.schema import TIMESTAMP
from core.validity import validity
from core.value_range import check_range_tolerance, range_passes

RULE_CLUSTER = "cluster"  # the original: anomalous when outside the most populous cluster
RULE_DISTANCE = "distance"  # anomalous when the distance to the nearest centroid passes a threshold
RULES = (RULE_CLUSTER, RULE_DISTANCE)
# What a row's anomaly score is: its distance against the model's threshold, d / (d + threshold),
# or the anomaly likelihood of its distance against its own series' recent ones (core/likelihood.py).
SCORE_DISTANCE = "distance"
SCORE_LIKELIHOOD = "likelihood"
SCORE_KINDS = (SCORE_DISTANCE, SCORE_LIKELIHOOD)

# Physical limits of the metrics: a value outside them is a broken sensor, not an anomaly.
# CPU is a utilisation percentage; bytes and request counts cannot be negative.
KNOWN_FEATURE_BOUNDS: dict[str, tuple[float, float]] = {
    "cpu": (0.0, 100.0),
    "disk": (0.0, math.inf),
    "network": (0.0, math.inf),
}
UNBOUNDED = (-math.inf, math.inf)

OUTPUT_COLUMNS = [
    "cluster",
    "distance",
    "anomaly_score",
    "is_anomaly",
    "is_alert",
    *EXPLANATION_COLUMNS,
    "is_valid",
    "invalid_reason",
]
INVALID_CLUSTER = -1

# History transforms of each input column. "value" is the row itself (the original model);
# "delta" the change since the series' previous row; "mean" and "std" the mean and the
# (population) standard deviation over the last ``span`` rows of the series, this row included.
HISTORY_TRANSFORMS = ("value", "delta", "mean", "std")
# Columns that name the series a row belongs to, in order of preference (serving, training).
SERIES_COLUMNS = ("series", "host", "source")


def derived_name(feature: str, transform: str) -> str:
    return feature if transform == "value" else f"{feature}_{transform}"


def bounds_for(feature: str) -> tuple[float, float]:
    return KNOWN_FEATURE_BOUNDS.get(feature, UNBOUNDED)


def check_rule(rule: str) -> None:
    """The rule a model flags anomalies by; the one check every job and the model share."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")


def check_history(history) -> None:
    unknown = [t for t in history if t not in HISTORY_TRANSFORMS]
    if unknown or not history or len(set(history)) != len(history):
        raise ValueError(
            f"history must name distinct transforms from {', '.join(HISTORY_TRANSFORMS)}; "
            f"got {', '.join(history) or 'none'}"
        )


def warmup_rows(history, span: int, score_kind: str, likelihood_window: int) -> int:
    """A series' first rows, which lack history (features, or distances for a likelihood)."""
    warmup = tail_rows(list(history), span)
    if score_kind == SCORE_LIKELIHOOD:
        warmup = max(warmup, likelihood_warmup(likelihood_window))
    return warmup


def check_score(kind: str, window: int, recent: int) -> None:
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown anomaly score {kind!r}; choose one of {', '.join(SCORE_KINDS)}")
    if kind == SCORE_LIKELIHOOD and not 1 <= recent <= window:
        raise ValueError("a likelihood needs a window of at least 1 row and a recent mean within it")


def check_alert_policy(
    span: int, cooldown: int, rearm_after: int | None = None, cooldown_seconds: float | None = None
) -> None:
    if span < 1 or cooldown < 0 or (cooldown_seconds is not None and not cooldown_seconds >= 0):
        raise ValueError("span must be at least 1 and cooldown at least 0")
    if rearm_after is not None and rearm_after < 1:
        raise ValueError("rearm_after must be at least 1 row (or None: the cooldown alone)")


@dataclass(frozen=True)
class ModelParams(FittedArrays):
    """Everything needed to score a row: what training learned, as plain numbers.

    ``centroids`` live in the scaled space: z = (x - mean) * scale, where scale is 1/std,
    or 0 for a feature with no spread (as Spark ML's StandardScaler does).
    """

    features: list[str]
    mean: list[float]
    scale: list[float]
    centroids: list[list[float]]
    expected_label: int
    rule: str
    threshold: float
    bounds: dict[str, list[float]] = field(default_factory=dict)
    # History features: transforms of every input, over the last ``span`` rows of a series.
    history: list[str] = field(default_factory=lambda: ["value"])
    span: int = 1
    # Alert policy: a valid row alerts when its anomaly score is at least ``alert_threshold``,
    # its series is past its warm-up (``warmup_rows``) and more than ``cooldown`` rows of its
    # series have passed since the series' last alert.
    alert_threshold: float = 0.5
    cooldown: int = 0
    # The cooldown as time between the rows' timestamps (rows without times count ``cooldown``
    # rows, the same time at the training data's interval); None: rows alone (older models).
    cooldown_seconds: float | None = None
    # Within the cooldown, a row still alerts once the ``rearm_after`` rows before it all scored
    # below the alert threshold: the incident is over and a new one pages. None: the cooldown alone.
    rearm_after: int | None = None
    # The anomaly score (``SCORE_KINDS``); a likelihood judges the mean of a series' last
    # ``likelihood_recent`` distances against the mean and spread of those means over a history
    # window of at most ``likelihood_window`` rows (core/likelihood.py).
    score_kind: str = SCORE_DISTANCE
    likelihood_window: int = 0
    likelihood_recent: int = 1
    # A row whose input passes its series' range so far by more than this fraction of it scores 1
    # and is anomalous, whatever its distance (core/value_range.py); None leaves the range out.
    # A series' range starts from each input's [lowest, highest] in training (``training_range``),
    # so a new series does not page while it shows its first day's values.
    range_tolerance: float | None = None
    training_range: list[list[float]] = field(default_factory=list)
    # Such a row pages even within the cooldown: the range widens with it, so it pages again only
    # if the series goes further still. False for models trained before this existed.
    range_pages_in_cooldown: bool = False
    # Further time scales (core/scales.py): a KMeans each over the same transforms at its own span,
    # judged by its own likelihood; a row's likelihood is the highest of the scales', each weighed by
    # how often it gets a chance to pass by luck (core.scales.weighed_likelihood).
    scales: list[Scale] = field(default_factory=list)

    def __post_init__(self):
        check_rule(self.rule)
        check_history(self.history)
        check_alert_policy(self.span, self.cooldown, self.rearm_after, self.cooldown_seconds)
        check_score(self.score_kind, self.likelihood_window, self.likelihood_recent)
        check_range_tolerance(self.range_tolerance)
        width = len(self.vector_columns)
        if len(self.mean) != width or len(self.scale) != width:
            raise ValueError("mean and scale need one entry per feature")
        if any(len(c) != width for c in self.centroids):
            raise ValueError("every centroid needs one coordinate per feature")
        if not 0 <= self.expected_label < len(self.centroids):
            raise ValueError(f"expected label {self.expected_label} is not a cluster")
        check_scales(self.scales, width, self.score_kind == SCORE_LIKELIHOOD, self.history)

    @property
    def vector_columns(self) -> list[str]:
        """The names of the model's feature vector: every transform of every input."""
        return [derived_name(f, t) for f in self.features for t in self.history]

    @cached_property
    def distance_key(self) -> str:
        """Names the distance function (inputs, history, scaler, centroids): distances carried in
        a series' state are judged by a likelihood only under the function that measured them."""
        parts = [self.features, self.history, self.span, self.mean, self.scale, self.centroids]
        if self.scales:  # a model without further scales keeps the key its states were written under
            parts.append([[s.span, s.mean, s.scale, s.centroids] for s in self.scales])
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    @cached_property
    def vector_column_array(self) -> np.ndarray:
        return np.asarray(self.vector_columns, dtype=object)

    @property
    def uses_history(self) -> bool:
        return self.history != ["value"]

    @property
    def per_series(self) -> bool:
        """Whether a row's score or alert depends on the rows of its series before it."""
        return (
            self.uses_history
            or self.cooldown > 0
            or self.score_kind == SCORE_LIKELIHOOD
            or self.range_tolerance is not None
        )

    @property
    def tail_rows(self) -> int:
        return scales_tail_rows(self.history, self.span, self.scales)

    @property
    def warmup_rows(self) -> int:
        """A series' first rows, whose features (or likelihood) lack history: scored, but they
        raise no alert."""
        return max(warmup_rows(self.history, self.span, self.score_kind, self.likelihood_window), self.tail_rows)

    def feature_bounds(self, feature: str) -> tuple[float, float]:
        lo, hi = self.bounds.get(feature, bounds_for(feature))
        return float(lo), float(hi)

    def centroids_in_original_units(self) -> np.ndarray:
        return self.centroid_original_array.copy()

    def to_json(self) -> str:
        # Infinity is not JSON: store open bounds as null.
        data = asdict(self)
        data["bounds"] = {f: [None if math.isinf(v) else v for v in b] for f, b in data["bounds"].items()}
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelParams:
        data = json.loads(text)
        data["bounds"] = {
            f: [-math.inf if lo is None else lo, math.inf if hi is None else hi]
            for f, (lo, hi) in data.get("bounds", {}).items()
        }
        data["scales"] = scales_from_json(data.get("scales"))
        return cls(**data)


@dataclass
class SeriesState:
    """What a series carries from one batch of rows to the next.

    ``tail``: its last ``params.tail_rows`` valid input rows, oldest first (raw inputs, not
    features, so a new model with the same inputs can pick up where the old one stopped);
    ``rows_since_alert``: valid rows since its last alert, None before the first;
    ``rows``: valid rows seen; ``last_time``: the latest timestamp scored (UTC, ISO 8601), so a
    row that arrives after later rows of its series can be told apart (None in older states);
    ``likelihood``: its distances' block sums for a likelihood score (None for other models and
    in older states), measured by the model whose ``distance_key`` is ``distances_key``: another
    model (a switch, a challenger) starts its own; ``distances``: the raw distances a state
    written before the block sums carried, read once into ``likelihood``; ``value_range``: each
    input's [lowest, highest] valid value so far, for a model with a range tolerance (raw inputs,
    like the tail, so any model with the same inputs carries it on); ``rows_since_hot``: valid
    rows since its last score at the alert threshold (None before the first, and in older states),
    which tells a model that re-arms when an incident is over; ``scale_likelihoods``: the likelihood
    state of each of the model's further time scales (None for other models and in older states);
    ``last_alert_at``: the time of its last alert in epoch seconds, for a cooldown in time (None
    before the first, for rows without times, and in older states).
    """

    tail: list[list[float]] = field(default_factory=list)
    rows_since_alert: int | None = None
    rows: int = 0
    last_time: str | None = None
    distances: list[float] = field(default_factory=list)
    distances_key: str | None = None
    likelihood: dict | None = None
    value_range: list[list[float]] | None = None
    rows_since_hot: int | None = None
    scale_likelihoods: list[dict] | None = None
    last_alert_at: float | None = None

    def to_json(self) -> str:
        # Not dataclasses.asdict: its deep copy of the tail costs more than the scoring of a small file.
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, text: str | None) -> SeriesState:
        return cls(**json.loads(text)) if text else cls()


def row_times(frame: pd.DataFrame, stamps: pd.Series | None = None) -> np.ndarray:
    """Each row's time in epoch seconds (NaN where unknown): from ``stamps`` (the rows' times,
    parsed as UTC) if given, else from the frame's timestamps; all NaN without a timestamp column."""
    if stamps is None:
        if TIMESTAMP not in frame.columns:
            return np.full(len(frame), np.nan)
        stamps = pd.to_datetime(frame[TIMESTAMP], errors="coerce", format="mixed", utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)


def score_series(
    params: ModelParams, frame: pd.DataFrame, state: SeriesState | None = None
) -> tuple[pd.DataFrame, SeriesState]:
    """Score one series' rows, given in series order, continuing from ``state``.

    A row that cannot be scored comes back invalid with a reason and leaves the state alone.
    """
    columns, new_state = score_series_arrays(params, frame, state)
    # copy=False: the arrays are this call's own, and copying them would weigh on a 1-row request.
    return pd.DataFrame(columns, index=frame.index, copy=False), new_state


def score_series_arrays(
    params: ModelParams, frame: pd.DataFrame, state: SeriesState | None = None, stamps: pd.Series | None = None
) -> tuple[dict[str, np.ndarray], SeriesState]:
    """``score_series`` as one numpy array per output column (``OUTPUT_COLUMNS``, then the
    history features): for callers that build their own frame, since building pandas
    frames column by column was most of scoring a 100-row file. ``stamps``: the rows' times,
    parsed as UTC, when the caller has them (else a cooldown in time reads the frame's)."""
    state = state or SeriesState()
    values, reasons = validity(params, frame)
    n = len(frame)
    valid = reasons == ""
    cluster = np.full(n, INVALID_CLUSTER, dtype=np.int32)
    distance = np.full(n, np.nan)
    score = np.full(n, np.nan)
    is_anomaly = np.zeros(n, dtype=bool)
    is_alert = np.zeros(n, dtype=bool)
    explained_by = np.full(n, "", dtype=object)
    explained = {name: np.full(n, np.nan) for name in EXPLANATION_COLUMNS[1:]}
    new_state = SeriesState(
        list(state.tail),
        state.rows_since_alert,
        state.rows,
        state.last_time,
        state.distances,
        state.distances_key,
        state.likelihood,
        state.value_range,
        state.rows_since_hot,
        state.scale_likelihoods,
        state.last_alert_at,
    )
    if valid.any():
        scale_wins = []
        vectors, new_state.tail = history_features(params.history, params.span, values[valid], state.tail)
        if params.scales:  # a longer scale needs more of the series than the model's own span
            new_state.tail = carried_tail(state.tail, values[valid], params.tail_rows)
        z = (vectors - params.mean_array) * params.scale_array
        centroids = params.centroid_array
        squared = squared_distances(z, centroids)
        nearest = squared.argmin(axis=1)
        d = np.sqrt(squared[np.arange(len(nearest)), nearest])
        if params.rule == RULE_CLUSTER:
            flagged = nearest != params.expected_label
            row_score = flagged.astype(float)
        else:
            flagged = d > params.threshold
            # d / (d + threshold) maps [0, inf) onto [0, 1) and crosses 0.5 at the threshold.
            row_score = d / (d + params.threshold) if params.threshold > 0 else (d > 0).astype(float)
        if params.score_kind == SCORE_LIKELIHOOD:
            window, recent = params.likelihood_window, params.likelihood_recent
            earlier = state.likelihood if state.distances_key == params.distance_key else None
            if earlier is None and state.distances and state.distances_key == params.distance_key:
                earlier = likelihood_scores(np.asarray(state.distances), None, window, recent)[1]
            row_score, new_state.likelihood = likelihood_scores(d, earlier, window, recent)
            if params.scales:
                known = state.scale_likelihoods if state.distances_key == params.distance_key else None
                row_score, new_state.scale_likelihoods, scale_wins = ensemble_scores(
                    params.history,
                    params.span,
                    params.scales,
                    values[valid],
                    state.tail,
                    row_score,
                    known,
                    window,
                    recent,
                )
            new_state.distances = []
            new_state.distances_key = params.distance_key
        passed = None
        if params.range_tolerance is not None:
            earlier = state.value_range if state.value_range is not None else params.training_range or None
            passed, edges, beyond, new_state.value_range = range_passes(values[valid], earlier, params.range_tolerance)
            outside = passed.any(axis=1)
            row_score = np.where(outside, 1.0, row_score)
            flagged = flagged | outside
        # A series' first rows have partial windows, so their scores are scored but cannot page:
        # without this every new host would alert on its first row.
        warming = state.rows + np.arange(len(row_score)) < params.warmup_rows
        eligible = np.where(warming, np.nan, row_score)
        # Times are read only when a row can page: parsing them would weigh on every small request.
        in_time = params.cooldown_seconds is not None and (eligible >= params.alert_threshold).any()
        alerts, counts = apply_alerts(
            params.alert_threshold,
            params.cooldown,
            eligible,
            state.rows_since_alert,
            params.rearm_after,
            state.rows_since_hot,
            outside if passed is not None and params.range_pages_in_cooldown else None,
            row_times(frame, stamps)[valid] if in_time else None,
            params.cooldown_seconds,
            state.last_alert_at,
        )
        new_state.rows_since_alert, new_state.rows_since_hot = counts.rows_since_alert, counts.rows_since_hot
        new_state.last_alert_at = counts.last_alert_at
        new_state.rows = state.rows + int(valid.sum())
        names = params.vector_column_array
        why, share, value, normal = explain(
            params, names, vectors, z, nearest, squared[np.arange(len(nearest)), nearest]
        )
        for win in scale_wins:  # rows a further time scale scored highest: that scale explains them
            rows = win.rows
            why[rows], share[rows], value[rows], normal[rows] = explain(
                win.scale,
                scale_column_names(names, win.scale.span),
                win.vectors[rows],
                win.z[rows],
                win.nearest[rows],
                win.squared[rows],
            )
        if passed is not None and outside.any():  # a value past its series' range: that range explains it
            why[outside], share[outside], value[outside], normal[outside] = explain_range(
                params.features, values[valid][outside], edges[outside], beyond[outside]
            )
        explained_by[valid] = why
        explained["explained_share"][valid] = share
        explained["explained_value"][valid] = value
        explained["explained_centroid_value"][valid] = normal
        cluster[valid] = nearest
        distance[valid] = d
        score[valid] = row_score
        is_anomaly[valid] = flagged
        is_alert[valid] = alerts
    columns = {
        "cluster": cluster,
        "distance": distance,
        "anomaly_score": score,
        "is_anomaly": is_anomaly,
        "is_alert": is_alert,
        "explained_by": explained_by,
        **explained,
        "is_valid": valid,
        "invalid_reason": reasons.astype(str),
    }
    for j, name in enumerate(params.vector_columns):
        if name not in params.features:  # the history features, so every path can show them
            column = np.full(n, np.nan)
            if valid.any():
                column[valid] = vectors[:, j]
            columns[name] = column
    return columns, new_state


def history_columns(params: ModelParams) -> list[str]:
    """The history features that scoring adds to its output (none for a model without history)."""
    return [name for name in params.vector_columns if name not in params.features]


def series_column(frame: pd.DataFrame) -> str | None:
    return next((c for c in SERIES_COLUMNS if c in frame.columns), None)


def score_frame(params: ModelParams, frame: pd.DataFrame) -> pd.DataFrame:
    """Score rows that carry their own history, as serving receives them.

    The rule for a request: rows of one series (same ``series``, ``source`` or ``host`` value;
    all rows when there is no such column) are taken in the order given, each row's history
    being the rows of its series before it in the request. A row with no history before it is
    scored on what there is (a delta of 0, a window of itself), exactly as the first rows of
    a series are in training, replay and the monitor. Output rows come back in input order.
    """
    key = series_column(frame) if params.per_series else None
    if key is None or len(frame) == 0:
        return score_series(params, frame)[0]
    positional = frame.reset_index(drop=True)
    parts = [score_series(params, group)[0] for _, group in positional.groupby(positional[key].astype(str), sort=False)]
    return pd.concat(parts).sort_index().set_axis(frame.index)
