"""The main job: every step on a default that needs nothing else, each as its own MLflow run.

Input: a directory of NAB-format series (default: the committed sample, ``data/sample/series``).
Output: a prepared table under ``data/prepared/``, a training run, a registered model version
promoted to ``production``, and a closing summary with how to open the MLflow UI.

Each step runs through ``mlflow run`` (``mlflow.projects.run``), exactly as a user would type
it, so the MLflow UI shows one run per step.
"""

from __future__ import annotations

import argparse
import sys

from core.errors import UserError, main_guard
from core.schema import DEFAULT_MODEL_NAME, TRAINING_EXPERIMENT
from core.tracking import PROJECT_ROOT, MlflowService

PREPARED_TABLE = "data/prepared/metrics.csv"


def run_step(entry_point: str, parameters: dict, experiment_id: str) -> str:
    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    print(f"\n=== {entry_point}: mlflow run . -e {entry_point} --env-manager local "
          + " ".join(f"-P {k}={v}" for k, v in parameters.items()), flush=True)
    try:
        submitted = mlflow.projects.run(
            str(PROJECT_ROOT),
            entry_point=entry_point,
            parameters=parameters,
            env_manager="local",
            experiment_id=experiment_id,
        )
    except ExecutionException as error:
        raise UserError(f"step {entry_point} failed: {error}") from None
    return submitted.run_id


@main_guard
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default="data/sample/series")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    args = parser.parse_args(argv)
    with MlflowService() as service:
        experiment_id = service.experiment_id(TRAINING_EXPERIMENT)
        run_step("prepare", {"input": args.input, "out": PREPARED_TABLE}, experiment_id)
        train_run = run_step(
            "train", {"data": PREPARED_TABLE, "model_name": args.model_name}, experiment_id
        )
        versions = service.client.search_model_versions(f"run_id = '{train_run}'")
        if not versions:
            raise UserError(f"training run {train_run} registered no model version")
        version = str(max(int(v.version) for v in versions))
        run_step("promote", {"model_name": args.model_name, "version": version}, experiment_id)
        tracking_uri = service.tracking_uri
    if tracking_uri.startswith("sqlite:"):
        ui = f".venv/bin/mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"
    else:
        ui = f"open {tracking_uri} in a browser"
    print(
        "\n=== done\n"
        f"training run:  {train_run}\n"
        f"model version: {args.model_name} version {version}, alias production "
        f"(models:/{args.model_name}@production)\n"
        f"MLflow UI:     {ui}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
