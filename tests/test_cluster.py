"""Beyond one machine: a real Spark standalone master and worker on 127.0.0.1.

Train, a monitor session fed by the streamer, and a replay run against the cluster, and their
results must equal local mode's. Every process started here is ended by its id in teardown.
"""

import json
import urllib.request
from pathlib import Path

import numpy as np
import pyspark
import pytest

from core.csv_input import score_files
from core.model import load_params
from streaming.sinks import read_output, read_summaries

from conftest import (
    BIN,
    PROJECT_ROOT,
    PYTHON,
    ManagedProcess,
    free_port,
    run_command,
    wait_for,
)
from helpers import monitor_command

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

SPARK_HOME = Path(pyspark.__file__).parent
SAMPLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"
MODEL = "cluster-detector"
# The driver must be reachable from the executors at the address the cluster uses.
DRIVER_CONF = ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"]

# The monitor stops after this many 1-s windows without new files. It starts counting before the
# streamer (a separate Python process) writes its first file, so the count is also the time the
# streamer has to start: 4 windows were too few once on a loaded machine (the monitor stopped
# after 0 batches), 20 leave a wide margin and cost at most 16 s more at the end.
IDLE_WINDOWS = 20


def alive_workers(ui_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
        return int(json.loads(response.read())["aliveworkers"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    port, ui, worker_ui = free_port(), free_port(), free_port()
    env = {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(folder)}
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master = ManagedProcess(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        folder / "master.log",
        **env,
    )
    worker = None
    try:
        wait_for(lambda: alive_workers(ui) == 0, 120, "the master's UI, with no worker yet")
        worker = ManagedProcess(
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                f"spark://127.0.0.1:{port}",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "3g",
                "--webui-port",
                str(worker_ui),
                "--work-dir",
                str(folder / "work"),
            ],
            folder / "worker.log",
            **env,
        )
        wait_for(lambda: alive_workers(ui) == 1, 120, "the worker to register")
        yield {"master": f"spark://127.0.0.1:{port}", "ui": ui, "folder": folder}
    finally:
        for process in (worker, master):
            if process is not None:
                process.stop()
    for process in (worker, master):
        assert process is None or process.process.poll() is not None


def train(uri, master, name, submit=False):
    job = ["--data", str(SAMPLE), "--model-name", name]
    if submit:  # spark-submit chooses the master; the job must not override it
        command = [
            str(BIN / "spark-submit"),
            "--master",
            master,
            *DRIVER_CONF,
            str(PROJECT_ROOT / "training" / "train.py"),
            *job,
        ]
    else:
        command = [PYTHON, "-m", "training.train", *job, "--master", master, *DRIVER_CONF]
    result = run_command(command, MLFLOW_TRACKING_URI=uri)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_train_monitor_and_replay_on_a_cluster_equal_local_mode(cluster, tmp_path, mlflow_service):
    uri = mlflow_service.tracking_uri
    client = mlflow_service.client
    # train: on the cluster and locally, same data and seed
    train(uri, cluster["master"], MODEL, submit=True)
    train(uri, "local[2]", "local-detector")
    on_cluster = load_params(f"models:/{MODEL}/1")
    local = load_params("models:/local-detector/1")
    assert on_cluster.expected_label == local.expected_label
    np.testing.assert_allclose(on_cluster.centroids, local.centroids, rtol=1e-9, atol=1e-9)
    assert on_cluster.threshold == pytest.approx(local.threshold, rel=1e-9)
    cluster_run = client.get_run(client.get_model_version(MODEL, "1").run_id)
    assert cluster_run.data.params["data_uri"].startswith("file:///")
    promoted = run_command([PYTHON, "-m", "training.promote", "--model-name", MODEL], MLFLOW_TRACKING_URI=uri)
    assert promoted.returncode == 0, promoted.stderr

    # monitor on the cluster, fed by the streamer
    monitor = ManagedProcess(
        monitor_command(
            tmp_path, MODEL, "--idle-windows", str(IDLE_WINDOWS), "--master", cluster["master"], *DRIVER_CONF
        ),
        tmp_path / "monitor.log",
        MLFLOW_TRACKING_URI=uri,
    )
    try:
        wait_for(lambda: "monitoring file://" in monitor.log(), 180, "the monitor to start")
        streamed = run_command(
            [
                PYTHON,
                "-m",
                "streaming.streamer",
                "--input",
                str(tmp_path / "in"),
                str(SAMPLE),
                "--rows",
                "300",
                "--interval",
                "0.3",
                "--quiet",
            ]
        )
        assert streamed.returncode == 0, streamed.stderr
        wait_for(lambda: monitor.process.poll() is not None, 300, "the monitor to stop by itself")
    finally:
        monitor.stop()
    assert monitor.process.returncode == 0, monitor.log()[-3000:]
    files = sorted((tmp_path / "in").glob("*.csv"))
    expected = score_files(on_cluster, [(f.as_uri(), f.read_bytes()) for f in files])
    events = read_output(str(tmp_path / "out"), "events")
    assert sum(s["rows"] for s in read_summaries(str(tmp_path / "out"))) == len(expected) == 2016
    assert set(zip(events["source_file"], events["line_number"])) == set(
        zip(expected.loc[expected["is_anomaly"], "source_file"], expected.loc[expected["is_anomaly"], "line_number"])
    )
    # the cluster really ran them: the training app (spark-submit) and the monitor app
    assert {"train", "monitor"} <= _application_names(cluster["ui"])

    # replay on the cluster equals replay in local mode
    metrics = {}
    for master in (cluster["master"], "local[2]"):
        result = run_command(
            [
                PYTHON,
                "-m",
                "replay.replay",
                "--model",
                f"{MODEL}/1",
                "--data",
                str(tmp_path / "in"),
                "--master",
                master,
                *DRIVER_CONF,
            ],
            MLFLOW_TRACKING_URI=uri,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        run_id = result.stdout.split("; run ")[1].split()[0]
        data = client.get_run(run_id).data.metrics
        metrics[master] = {k: v for k, v in data.items() if k not in {"replay_seconds", "rows_per_second"}}
    assert metrics[cluster["master"]] == metrics["local[2]"]
    assert metrics["local[2]"]["anomaly_count"] == int(expected["is_anomaly"].sum())


def _application_names(ui_port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
        state = json.loads(response.read())
    return {app["name"] for app in state.get("completedapps", []) + state.get("activeapps", [])}
