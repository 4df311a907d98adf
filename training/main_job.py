"""The main job: every step on a default that needs nothing else, each as its own MLflow run.

Input: a directory of NAB-format series (default: the committed sample, ``data/sample/series``).
Output: a prepared table under ``data/prepared/``, a training run, a registered model version
promoted to ``production``, a bounded monitor run fed by the streamer (under ``data/demo/``),
a replay of the sample through production with the compare table, and a closing summary with
how to open the MLflow UI.

Each step runs through ``mlflow run`` (``mlflow.projects.run``), exactly as a user would type
it, so the MLflow UI shows one run per step.
"""

from __future__ import annotations

import time

from core.cli import job_parser
from core.errors import UserError, exit_process, main_guard
from core.schema import (
    DEFAULT_MODEL_NAME,
    MONITOR_EXPERIMENT,
    PRODUCTION_ALIAS,
    REPLAY_EXPERIMENT,
    TRAINING_EXPERIMENT,
)
from core.tracking import PROJECT_ROOT, MlflowService
from streaming.sinks import read_summaries

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

PREPARED_TABLE = "data/prepared/metrics.csv"
SAMPLE_TABLE = "data/sample/metrics.csv"
SAMPLE_LABELS = "data/sample/labels.json"  # the sample's incident, NAB-style: the replay scores its alerts


def announce(entry_point: str, parameters: dict) -> None:
    print(
        f"\n=== {entry_point}: mlflow run . -e {entry_point} --env-manager local "
        + " ".join(f"-P {k}={v}" for k, v in parameters.items()),
        flush=True,
    )


def run_step(entry_point: str, parameters: dict, experiment_id: str, synchronous: bool = True):
    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    announce(entry_point, parameters)
    try:
        submitted = mlflow.projects.run(
            str(PROJECT_ROOT),
            entry_point=entry_point,
            parameters=parameters,
            env_manager="local",
            experiment_id=experiment_id,
            synchronous=synchronous,
        )
    except ExecutionException as error:
        raise UserError(f"step {entry_point} failed: {error}") from None
    return submitted if not synchronous else submitted.run_id


def _wait_until_monitoring(monitor, timeout: float = 180.0) -> None:
    """Start streaming once the monitor's query runs, so its windows show the stream arriving."""
    from mlflow import MlflowClient

    client = MlflowClient()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if monitor.get_status() in ("FAILED", "KILLED"):
            raise UserError(f"the monitor failed to start; see MLflow run {monitor.run_id}")
        if "input_uri" in client.get_run(monitor.run_id).data.params:
            return
        time.sleep(0.5)
    raise UserError(f"the monitor did not start within {timeout:.0f} s")


def monitor_the_sample(model_name: str, experiment_id: str) -> str:
    """The streamer and the monitor together on the sample, as the original README ran them.

    Fresh folders per run: a monitor's checkpoint remembers the files it has already seen.
    """

    demo = PROJECT_ROOT / "data" / "demo" / time.strftime("%Y%m%d-%H%M%S")
    stream_dir, output = demo / "streamdata", demo / "monitor"
    monitor = run_step(
        "monitor",
        {"input": stream_dir, "output": output, "model_name": model_name, "window": 3, "idle_windows": 3},
        experiment_id,
        synchronous=False,
    )
    _wait_until_monitoring(monitor)
    run_step("stream", {"input": stream_dir, "files": SAMPLE_TABLE, "rows": 200, "interval": 0.5}, experiment_id)
    if not monitor.wait():
        raise UserError(f"the monitor failed; see MLflow run {monitor.run_id}")
    summaries = read_summaries(str(output))
    totals = {key: sum(s[key] for s in summaries) for key in ("rows", "anomalies", "invalid_rows", "alerts")}
    return (
        f"{totals['rows']} rows in {len(summaries)} batches, {totals['anomalies']} anomalies, "
        f"{totals['invalid_rows']} invalid, {totals['alerts']} alerts; events and alerts under {output}/batches"
    )


@main_guard
def main(argv=None) -> int:
    parser = job_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--input", default="data/sample/series")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    args = parser.parse_args(argv)
    with MlflowService() as service:
        experiment_id = service.experiment_id(TRAINING_EXPERIMENT)
        run_step("prepare", {"input": args.input, "out": PREPARED_TABLE}, experiment_id)
        train_run = run_step("train", {"data": PREPARED_TABLE, "model_name": args.model_name}, experiment_id)
        versions = service.client.search_model_versions(f"run_id = '{train_run}'")
        if not versions:
            raise UserError(f"training run {train_run} registered no model version")
        version = str(max(int(v.version) for v in versions))
        run_step("promote", {"model_name": args.model_name, "version": version}, experiment_id)
        monitored = monitor_the_sample(args.model_name, service.experiment_id(MONITOR_EXPERIMENT))
        # Replay the sample through production; replay prints the compare table at its end.
        run_step(
            "replay",
            {"data": SAMPLE_TABLE, "model": f"{args.model_name}@{PRODUCTION_ALIAS}", "labels": SAMPLE_LABELS},
            service.experiment_id(REPLAY_EXPERIMENT),
        )
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
        f"monitor:       {monitored}\n"
        f"MLflow UI:     {ui}"
    )
    return 0


if __name__ == "__main__":
    exit_process(main())
