"""The train benchmark: the train entry point as a process on the NAB table and synthetic tables,
against scikit-learn KMeans with the same k, initialisation, iteration cap and data."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import PYTHON, row
from core.errors import UserError
from core.paths import PROJECT_ROOT


def run_train(store: str, *arguments: str, root: Path = PROJECT_ROOT) -> str:
    """The train entry point of the project at ``root`` in its own process (its JVM start is
    part of what is measured); returns its MLflow run's id."""
    result = subprocess.run(
        [PYTHON, "-m", "training.train", *arguments],
        cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": store, "SPARK_LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise UserError(f"train failed in the benchmark ({root}): {result.stderr[-500:]}")
    return result.stdout.split("\nrun ")[1].split()[0].rstrip(";")


def bench_train(
    table: Path,
    label: str,
    store: str,
    repeat: int,
    k: int = 10,
    history_args: tuple[str, ...] = ("--history", "value"),
) -> list[dict]:
    """The train entry point; by default on the rows' own values, like for like with the
    scikit-learn baseline (which clusters the same 3 columns)."""
    from mlflow import MlflowClient
    from sklearn.cluster import KMeans

    walls, jvm, log_model, fit = [], [], [], []
    client = MlflowClient(store, store)
    for _ in range(repeat):
        started = time.perf_counter()
        run_id = run_train(store, "--data", str(table), "--k", str(k), "--model-name", "", *history_args)
        walls.append(time.perf_counter() - started)
        metrics = client.get_run(run_id).data.metrics
        jvm.append(metrics["jvm_start_seconds"])
        log_model.append(metrics["log_model_seconds"])
        fit.append(metrics["fit_seconds"])
    data = pd.read_csv(table, usecols=["cpu", "disk", "network"]).to_numpy(float)
    scaled = (data - data.mean(axis=0)) / np.where(data.std(axis=0) > 0, data.std(axis=0), 1)
    sklearn_fit = []
    for _ in range(repeat):
        started = time.perf_counter()
        KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=20, random_state=42).fit(scaled)
        sklearn_fit.append(time.perf_counter() - started)
    return [
        row(
            f"train {label}: whole run (JVM included)",
            "s",
            walls,
            sklearn_fit,
            "baseline: scikit-learn KMeans fit alone",
        ),
        row(f"train {label}: Spark KMeans pipeline fit", "s", fit, sklearn_fit, "baseline: scikit-learn KMeans fit"),
        row(f"train {label}: JVM start", "s", jvm, None),
        row(f"train {label}: log_model", "s", log_model, None),
    ]


def train_benchmark_model(store: str, *settings: str) -> str:
    """The monitor's and server's model: the sample table with train's defaults (or ``settings``,
    extra train arguments), registered."""
    from mlflow import MlflowClient

    sample = str(PROJECT_ROOT / "data/sample/metrics.csv")
    run_train(store, "--data", sample, "--model-name", "bench-monitor", *settings)
    versions = MlflowClient(store, store).search_model_versions("name='bench-monitor'")
    return f"models:/bench-monitor/{max(int(v.version) for v in versions)}"
