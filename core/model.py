"""The model contract: one MLflow pyfunc that carries its parameters and the scoring core.

The logged model holds ``params.json`` (``ModelParams``) and, through ``code_paths``, this
``core`` package, so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` need nothing
from the project checkout. Spark jobs read the same parameters and call the same core.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from core.scoring import MissingFeaturesError, ModelParams, history_columns, score_frame

# The optional request column that names each row's series (see ``score_frame``).
SERIES_REQUEST_COLUMN = "series"

PARAMS_ARTIFACT = "params"
MODEL_ARTIFACT_PATH = "model"
CORE_PACKAGE_DIR = Path(__file__).resolve().parent


class AnomalyDetectorModel(mlflow.pyfunc.PythonModel):
    """Scores a pandas DataFrame: cluster, distance, anomaly_score, is_anomaly, validity."""

    def load_context(self, context):
        self.params = ModelParams.from_json(Path(context.artifacts[PARAMS_ARTIFACT]).read_text())

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            scored = score_frame(self.params, frame)
        except MissingFeaturesError as error:
            # A client error: the scoring server turns this code into HTTP 400.
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        # NaN is not JSON: an invalid row's distance and score go out as null.
        invalid = ~scored["is_valid"].to_numpy()
        if invalid.any():  # numpy, not DataFrame.where: this loop was most of a 1-row request's time
            for column in ("distance", "anomaly_score", *history_columns(self.params)):
                values = scored[column].to_numpy(dtype=object)
                values[invalid] = None
                scored[column] = values
        return scored


def serving_requirements() -> list[str]:
    """Pinned on purpose: inferring requirements took 40 s per log_model against 2 s."""
    return [
        f"{package}=={importlib.metadata.version(package)}"
        for package in ("mlflow", "numpy", "pandas")
    ]


def log_anomaly_model(params: ModelParams, example: pd.DataFrame, registered_name: str | None):
    """Log (and optionally register) the model in the active run; returns MLflow's ModelInfo."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    inputs = example[params.features]
    # An optional series column, so a request can carry the recent history of several series.
    input_schema = Schema([ColSpec("double", f) for f in params.features]
                          + [ColSpec("string", SERIES_REQUEST_COLUMN, required=False)])
    signature = ModelSignature(inputs=input_schema,
                               outputs=infer_signature(inputs, score_frame(params, inputs)).outputs)
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
