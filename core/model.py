"""The model contract: one MLflow pyfunc that carries its parameters and the scoring core.

The logged model holds ``params.json`` (``ModelParams``) and, through ``code_paths``, this
``core`` package, so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` need nothing
from the project checkout. Spark jobs read the same parameters and call the same core.
"""

from __future__ import annotations

import importlib.metadata
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from core.schema import TIMESTAMP
from core.scoring import (
    EXPLANATION_COLUMNS,
    INVALID_CLUSTER,
    ModelParams,
    history_columns,
    score_frame,
    score_series_arrays,
    series_column,
)
from core.validity import MissingFeaturesError, validity

# The optional request column that names each row's series (see ``score_frame``).
SERIES_REQUEST_COLUMN = "series"

PARAMS_ARTIFACT = "params"
MODEL_ARTIFACT_PATH = "model"
CORE_PACKAGE_DIR = Path(__file__).resolve().parent


class AnomalyDetectorModel(mlflow.pyfunc.PythonModel):
    """Scores a pandas DataFrame: cluster, distance, anomaly_score, is_anomaly, the explanation
    (``EXPLANATION_COLUMNS``), validity, and
    ``warming_up``: true for a scored row whose series had fewer than ``warmup_rows`` valid rows
    before it in the request, so its history window is partial (the core's warm-up, in which a
    row cannot alert); false for an invalid row, which is not scored."""

    def load_context(self, context):
        self.params = ModelParams.from_json(Path(context.artifacts[PARAMS_ARTIFACT]).read_text())

    # Typed: MLflow warns about an untyped predict, and a DataFrame hint adds no conversion of its own.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            columns = self.score_columns(frame)
        except MissingFeaturesError as error:
            # A client error: the scoring server turns this code into HTTP 400.
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        # NaN is not JSON: an invalid row's distance and score go out as null.
        invalid = ~columns["is_valid"]
        if invalid.any():
            for column in ("distance", "anomaly_score", *EXPLANATION_COLUMNS[1:], *history_columns(self.params)):
                values = columns[column].astype(object)
                values[invalid] = None
                columns[column] = values
        return pd.DataFrame(columns, index=frame.index, copy=False)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``predict``'s columns with their numeric dtypes (no nulls): what the signature shows."""
        return pd.DataFrame(self.score_columns(frame), index=frame.index, copy=False)

    def score_columns(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``score_frame``'s columns plus ``warming_up``, as arrays, every valid row's numbers
        finite: a value too large for the model's arithmetic makes its row invalid."""
        too_large = self._too_large(frame)
        if too_large is not None:
            rows = too_large.any(axis=1)
            # Scored as missing, so the core leaves them out of their series' history and warm-up.
            columns = self._score_frame(frame.assign(**{f: frame[f].mask(rows) for f in self.params.features}))
            culprit = np.asarray(self.params.features)[too_large.argmax(axis=1)]  # the first such feature
            reasons = columns["invalid_reason"].astype(object)
            reasons[rows] = [f"{feature} too large to score" for feature in culprit[rows]]
            columns["invalid_reason"] = reasons
        else:
            columns = self._score_frame(frame)
        # A non-finite feature reaches the distance (inf * 0 is NaN), and the distance the score.
        finite = np.isfinite(columns["distance"]) & np.isfinite(columns["anomaly_score"])
        broken = columns["is_valid"] & ~finite
        if broken.any():  # the limits leave none, but a response must never carry Infinity or NaN
            for column, value in (
                ("is_valid", False),
                ("is_anomaly", False),
                ("is_alert", False),
                ("cluster", INVALID_CLUSTER),
                ("invalid_reason", "values too large to score"),
            ):
                values = columns[column].astype(object) if column == "invalid_reason" else columns[column].copy()
                values[broken] = value
                columns[column] = values
        columns["warming_up"] = warming_up(self.params, frame, columns["is_valid"])
        return columns

    def _score_frame(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if series_column(frame) is None:
            # score_frame's one-series case, as arrays: adding a column to a frame costs as much as scoring.
            return score_series_arrays(self.params, frame)[0]
        scored = score_frame(self.params, frame)
        return {column: values.to_numpy() for column, values in scored.items()}

    def _too_large(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Rows x features: where a value the core would score is beyond ``scorable_limits``;
        None when there is none (looked for in raw numbers first: validity costs more)."""
        if getattr(self, "_limits_of", None) is not self.params:  # made once per model
            self._limits_of, self._limits = self.params, scorable_limits(self.params)
        raw = [frame[f] for f in self.params.features if f in frame.columns]
        if len(raw) == len(self.params.features) and all(c.dtype.kind in "fiu" for c in raw):
            numbers = np.column_stack([c.to_numpy(dtype=float, na_value=np.nan) for c in raw])
            if not (np.abs(numbers) > self._limits).any():  # NaN compares False
                return None
        values, reasons = validity(self.params, frame)  # the core's reading, and its reasons first
        too_large = (np.abs(values) > self._limits) & (reasons == "")[:, None]
        return too_large if too_large.any() else None


def scorable_limits(params: ModelParams) -> np.ndarray:
    """Per input feature, the largest magnitude the scoring arithmetic holds without overflow,
    whatever the other values in a row's window (each as large): a window's sum and squared
    deviations, standardising, and the squared distance to every centroid. Halved, for rounding."""
    biggest = np.finfo(float).max
    limit = biggest / 4  # x - mean and a delta stay finite
    longest = max([params.span] + [scale.span for scale in params.scales])
    if {"mean", "std"} & set(params.history):
        limit = min(limit, biggest / (4 * longest))
    if "std" in params.history:
        limit = min(limit, math.sqrt(biggest / (4 * longest)))
    limits = [limit] * len(params.features)
    # Room for each standardised value, so that every centroid's sum of squares stays finite,
    # at the model's own scale and at each further one (core/scales.py).
    fits = [(params.mean, params.scale, params.centroid_array)]
    fits += [(scale.mean, scale.scale, scale.centroid_array) for scale in params.scales]
    for means, scales, centroids in fits:
        room = (math.sqrt(biggest / len(params.vector_columns)) - np.abs(centroids).max(axis=0)).tolist()
        for k, (mean, scale) in enumerate(zip(means, scales)):
            if scale:
                j, transform = divmod(k, len(params.history))  # vector_columns: features x transforms
                widening = 2 if params.history[transform] == "delta" else 1  # a delta spans two values
                # Python floats: a tiny scale gives inf, not numpy's overflow warning.
                limits[j] = min(limits[j], (room[k] / abs(float(scale)) - abs(float(mean))) / widening)
    return np.asarray(limits) / 2


def warming_up(params: ModelParams, frame: pd.DataFrame, valid: np.ndarray) -> np.ndarray:
    """The core's warm-up (``score_series_arrays``) for a request scored from empty states: a
    valid row is warming while fewer than ``warmup_rows`` valid rows of its series precede it."""
    if params.warmup_rows == 0 or not valid.any():  # no history: score_frame's series do not matter
        return np.zeros(len(valid), dtype=bool)
    key = series_column(frame)
    if key is None:
        earlier = np.cumsum(valid) - valid
    else:  # score_frame's series: the key's values as text
        codes = pd.factorize(frame[key].astype(str).to_numpy())[0]
        order = np.argsort(codes, kind="stable")  # each series' rows together, in request order
        counts = np.cumsum(valid[order]) - valid[order]
        starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
        earlier = np.empty(len(valid), dtype=np.intp)
        earlier[order] = counts - np.repeat(counts[starts], np.diff(np.r_[starts, len(order)]))
    return valid & (earlier < params.warmup_rows)


def serving_requirements() -> list[str]:
    """Pinned on purpose: MLflow's inference of requirements would run for every log_model."""
    return [f"{package}=={importlib.metadata.version(package)}" for package in ("mlflow", "numpy", "pandas")]


def log_anomaly_model(params: ModelParams, example: pd.DataFrame, registered_name: str | None):
    """Log (and optionally register) the model in the active run; returns MLflow's ModelInfo."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inputs = example[params.features]
    # An optional series column, so a request can carry the recent history of several series, and
    # an optional timestamp, which a cooldown in time goes by.
    input_schema = Schema(
        [ColSpec("double", f) for f in params.features]
        + [ColSpec("string", SERIES_REQUEST_COLUMN, required=False), ColSpec("string", TIMESTAMP, required=False)]
    )
    # predict's own columns (warming_up included); score's dtypes, before nulls make them objects.
    scorer = AnomalyDetectorModel()
    scorer.params = params
    signature = ModelSignature(inputs=input_schema, outputs=infer_signature(inputs, scorer.score(inputs)).outputs)
    with tempfile.TemporaryDirectory() as scratch:
        params_path = Path(scratch) / "params.json"
        params_path.write_text(params.to_json())
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_PATH,
            python_model=AnomalyDetectorModel(),
            artifacts={PARAMS_ARTIFACT: str(params_path)},
            code_paths=[str(CORE_PACKAGE_DIR)],
            signature=signature,
            input_example=inputs,
            pip_requirements=serving_requirements(),
            registered_model_name=registered_name,
        )


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score, with where it came from (for logs, events and run params)."""

    uri: str
    params: ModelParams
    name: str | None = None
    version: str | None = None
    run_id: str | None = None


def load_params(model_uri: str) -> ModelParams:
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().params
