"""The one scoring core: turns feature rows into cluster, distance, anomaly score and verdict.

Plain numpy/pandas on purpose: no Spark, no JVM, no MLflow import, so that the Spark jobs
(through ``mapInPandas``), replay and ``mlflow models serve`` all call exactly this code and
cannot drift apart.

Input: a pandas DataFrame holding at least the model's feature columns.
Output: a DataFrame with ``OUTPUT_COLUMNS``, one row per input row, in input order.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

RULE_CLUSTER = "cluster"  # the original: anomalous when outside the most populous cluster
RULE_DISTANCE = "distance"  # anomalous when the distance to the nearest centroid passes a threshold
RULES = (RULE_CLUSTER, RULE_DISTANCE)

# Physical limits of the metrics: a value outside them is a broken sensor, not an anomaly.
# CPU is a utilisation percentage; bytes and request counts cannot be negative.
KNOWN_FEATURE_BOUNDS: dict[str, tuple[float, float]] = {
    "cpu": (0.0, 100.0),
    "disk": (0.0, math.inf),
    "network": (0.0, math.inf),
}
UNBOUNDED = (-math.inf, math.inf)

OUTPUT_COLUMNS = ["cluster", "distance", "anomaly_score", "is_anomaly", "is_valid", "invalid_reason"]
INVALID_CLUSTER = -1


class MissingFeaturesError(ValueError):
    """The input lacks feature columns, so no row of it can be scored."""


def bounds_for(feature: str) -> tuple[float, float]:
    return KNOWN_FEATURE_BOUNDS.get(feature, UNBOUNDED)


@dataclass(frozen=True)
class ModelParams:
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

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        width = len(self.features)
        if len(self.mean) != width or len(self.scale) != width:
            raise ValueError("mean and scale need one entry per feature")
        if any(len(c) != width for c in self.centroids):
            raise ValueError("every centroid needs one coordinate per feature")
        if not 0 <= self.expected_label < len(self.centroids):
            raise ValueError(f"expected label {self.expected_label} is not a cluster")

    def feature_bounds(self, feature: str) -> tuple[float, float]:
        lo, hi = self.bounds.get(feature, bounds_for(feature))
        return float(lo), float(hi)

    def centroids_in_original_units(self) -> np.ndarray:
        centroids = np.asarray(self.centroids, dtype=float)
        scale = np.asarray(self.scale, dtype=float)
        safe = np.where(scale == 0, 1.0, scale)
        return np.where(scale == 0, 0.0, centroids / safe) + np.asarray(self.mean)

    def to_json(self) -> str:
        # Infinity is not JSON: store open bounds as null.
        data = asdict(self)
        data["bounds"] = {
            f: [None if math.isinf(v) else v for v in b] for f, b in data["bounds"].items()
        }
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelParams":
        data = json.loads(text)
        data["bounds"] = {
            f: [-math.inf if lo is None else lo, math.inf if hi is None else hi]
            for f, (lo, hi) in data.get("bounds", {}).items()
        }
        return cls(**data)


def validity(params: ModelParams, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return (values as float matrix, reason per row; '' for a row that can be scored)."""
    missing = [f for f in params.features if f not in frame.columns]
    if missing:
        raise MissingFeaturesError(
            f"input lacks feature column(s) {', '.join(missing)}; "
            f"the model needs {', '.join(params.features)}"
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
            text = raw.astype(str).str.strip()
            numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            blank = raw.isna().to_numpy() | (text == "").to_numpy()
            spelled_nan = text.str.lower().isin(["nan", "-nan", "+nan"]).to_numpy()
            # pandas gives up on out-of-range numbers such as 1e999; Python reads them as inf.
            retry = np.flatnonzero(np.isnan(numeric) & ~blank & ~spelled_nan)
            for i in retry:
                numeric[i] = _float_or_nan(text.iat[i])
        values[:, j] = numeric
        lo, hi = params.feature_bounds(feature)
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


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def score_frame(params: ModelParams, frame: pd.DataFrame) -> pd.DataFrame:
    """Score every row; a row that cannot be scored comes back invalid with a reason."""
    values, reasons = validity(params, frame)
    n = len(frame)
    valid = reasons == ""
    cluster = np.full(n, INVALID_CLUSTER, dtype=np.int32)
    distance = np.full(n, np.nan)
    score = np.full(n, np.nan)
    is_anomaly = np.zeros(n, dtype=bool)
    if valid.any():
        z = (values[valid] - np.asarray(params.mean)) * np.asarray(params.scale)
        centroids = np.asarray(params.centroids, dtype=float)
        squared = ((z[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        nearest = squared.argmin(axis=1)
        d = np.sqrt(squared[np.arange(len(nearest)), nearest])
        cluster[valid] = nearest
        distance[valid] = d
        if params.rule == RULE_CLUSTER:
            flagged = nearest != params.expected_label
            score[valid] = flagged.astype(float)
        else:
            flagged = d > params.threshold
            # d / (d + threshold) maps [0, inf) onto [0, 1) and crosses 0.5 at the threshold.
            score[valid] = d / (d + params.threshold) if params.threshold > 0 else (d > 0)
        is_anomaly[valid] = flagged
    return pd.DataFrame(
        {
            "cluster": cluster,
            "distance": distance,
            "anomaly_score": score,
            "is_anomaly": is_anomaly,
            "is_valid": valid,
            "invalid_reason": reasons.astype(str),
        },
        index=frame.index,
    )
