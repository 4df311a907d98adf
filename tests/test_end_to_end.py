"""End to end, as users run it: `mlflow run`, `mlflow models serve`, `mlflow server`.

No fakes: real processes, real HTTP on 127.0.0.1, real tracking stores under tmp_path.
"""

import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import (
    PROJECT_ROOT,
    PYTHON,
    ManagedProcess,
    free_port,
    run_command,
    wait_for,
)
from helpers import copy_project, env_without_tracking, http_ok

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

MODEL = "e2e-detector"
SAMPLE_TABLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"


def mlflow_run(entry, uri, *params, cwd=PROJECT_ROOT):
    args = [PYTHON, "-m", "mlflow", "run", str(cwd), "-e", entry, "--env-manager", "local"]
    for param in params:
        args += ["-P", param]
    return run_command(args, cwd=cwd, MLFLOW_TRACKING_URI=uri)


def post_json(url, body, timeout=30):
    request = urllib.request.Request(
        url,
        data=body.encode() if isinstance(body, str) else body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def aliases(client, name) -> dict:
    # a sqlite store hands back versions as ints, a server as strings
    return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, nab_table):
    """`mlflow run . -e train` on the NAB table, then `-e promote`, in a fresh store."""
    folder = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    trained = mlflow_run("train", uri, f"data={nab_table}", f"model_name={MODEL}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    promoted = mlflow_run("promote", uri, f"model_name={MODEL}")
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert f"{MODEL}: production -> version 1" in promoted.stdout
    return uri


def test_mlflow_run_train_logs_the_run_and_registers_the_model(trained_store, nab_table):
    client = MlflowClient(trained_store, trained_store)
    version = client.get_model_version(MODEL, "1")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    # MLproject's defaults are train's (the configuration cross-validation chose on NAB)
    assert params["k"] == "7" and params["rule"] == "distance" and params["data"] == str(nab_table)
    assert (params["history"], params["span"], params["alert_threshold"], params["cooldown"]) == (
        "value,mean,std",
        "24",
        "0.999999999",
        "18h",
    )
    # the scales as given (mlflow run logged the MLproject default) and the spans they mean
    assert (params["scales"], params["time_scales"], params["rearm_after"]) == ("auto", "2,288", "none")
    assert (params["score"], params["likelihood_window"], params["likelihood_recent"]) == ("likelihood", "14d", "10")
    # 14 days at the NAB table's 5-minute interval
    assert (params["likelihood_window_rows"], params["sampling_interval_seconds"]) == ("4032", "300.0")
    assert params["range_tolerance"] == "0.05"
    assert params["rows"] == str(len(pd.read_csv(nab_table)))
    assert len(params["data_sha256"]) == 64
    assert sum(metrics[f"cluster_size_{i}"] for i in range(7)) == int(params["rows"])
    assert {"expected_label", "expected_label_share", "training_cost", "silhouette"} <= metrics.keys()
    assert {"jvm_start_seconds", "log_model_seconds", "wall_seconds"} <= metrics.keys()
    # the NAB table is small and local: its driver ran C1 alone, as the run says
    assert "-XX:TieredStopAtLevel=1" in run.data.tags["spark.driver.extraJavaOptions"].split()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"cluster_summary.png", "cluster_summary.json"} <= artifacts
    # mlflow run's own run was joined, not duplicated
    assert len(client.search_runs([run.info.experiment_id])) == 2  # train + promote
    assert aliases(client, MODEL) == {"production": "1"}


def test_mlflow_models_serve_answers_on_127_0_0_1(trained_store, tmp_path):
    port = free_port()
    server = ManagedProcess(
        [
            PYTHON,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@production",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        tmp_path / "serve.log",
        MLFLOW_TRACKING_URI=trained_store,
    )
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/ping"), 120, "the scoring server")
        url = f"http://127.0.0.1:{port}/invocations"
        # valid and invalid rows in one request: the invalid one is marked, the others scored
        status, body = post_json(
            url,
            json.dumps(
                {
                    "dataframe_records": [
                        {"cpu": 20.5, "disk": 3.0e6, "network": 8.0e6},
                        {"cpu": -5.0, "disk": 1.0, "network": 1.0},
                        {"cpu": None, "disk": 1.0, "network": 1.0},
                    ]
                }
            ),
        )
        assert status == 200, body
        rows = body["predictions"]
        assert rows[0]["is_valid"] and 0 <= rows[0]["anomaly_score"] <= 1 and rows[0]["cluster"] >= 0
        assert {
            k: rows[1][k]
            for k in (
                "cluster",
                "distance",
                "anomaly_score",
                "is_anomaly",
                "is_alert",
                "is_valid",
                "invalid_reason",
                "cpu_mean",
            )
        } == {
            "cluster": -1,
            "distance": None,
            "anomaly_score": None,
            "is_anomaly": False,
            "is_alert": False,
            "is_valid": False,
            "invalid_reason": "cpu below 0",
            "cpu_mean": None,
        }
        assert rows[2]["invalid_reason"] == "missing value for cpu"
        # a request may carry recent history: rows of a series are its history, in order
        history = [
            {"cpu": c, "disk": 3.0e6, "network": 8.0e6, "series": s}
            for c, s in [(10.0, "a"), (90.0, "b"), (20.0, "a"), (30.0, "a")]
        ]
        status, body = post_json(url, json.dumps({"dataframe_records": history}))
        assert status == 200, body
        rows = body["predictions"]
        assert [r["cpu_mean"] for r in rows] == pytest.approx([10.0, 90.0, 15.0, 20.0])
        assert [r["cpu_std"] for r in rows] == pytest.approx([0.0, 0.0, 5.0, np.std([10.0, 20.0, 30.0])])
        # client errors are 4xx, never 500
        for bad in [
            '{"dataframe_records": [{"cpu": 1.0, "disk": 1.0}]}',
            '{"dataframe_records": [{"cpu": "abc", "disk": 1.0, "network": 1.0}]}',
            "not json",
            '{"unexpected": 1}',
        ]:
            status, body = post_json(url, bad)
            assert 400 <= status < 500, (bad, status, body)
    finally:
        server.stop()


def test_train_and_promote_against_a_real_mlflow_server(tmp_path):
    port = free_port()
    server = ManagedProcess(
        [
            PYTHON,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        tmp_path / "server.log",
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{uri}/health"), 120, "the MLflow server")
        trained = run_command(
            [PYTHON, "-m", "training.train", "--data", str(SAMPLE_TABLE), "--k", "4", "--model-name", "served"],
            MLFLOW_TRACKING_URI=uri,
        )
        assert trained.returncode == 0, trained.stderr[-3000:]
        promoted = run_command([PYTHON, "-m", "training.promote", "--model-name", "served"], MLFLOW_TRACKING_URI=uri)
        assert promoted.returncode == 0, promoted.stderr[-3000:]
        client = MlflowClient(uri, uri)
        assert aliases(client, "served") == {"production": "1"}
        run = client.get_run(client.get_model_version("served", "1").run_id)
        assert run.data.params["k"] == "4"
        # the artifacts went through the server: the model loads over HTTP
        loaded = run_command(
            [
                PYTHON,
                "-c",
                "import mlflow, pandas as pd; m = mlflow.pyfunc.load_model("
                "'models:/served@production'); print(int(m.predict(pd.DataFrame("
                "{'cpu': [20.0], 'disk': [3e6], 'network': [8e6]}))['is_valid'].sum()))",
            ],
            MLFLOW_TRACKING_URI=uri,
        )
        assert loaded.returncode == 0 and loaded.stdout.strip() == "1", loaded.stderr[-2000:]
    finally:
        server.stop()


def test_an_unreachable_tracking_server_is_a_clear_error(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    result = run_command([PYTHON, "-m", "training.promote"], MLFLOW_TRACKING_URI=uri, timeout=120)
    assert result.returncode == 2
    assert f"MLflow tracking server {uri} is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_training_and_promotion_on_a_fresh_default_store(tmp_path):
    # given a project copy with no mlflow.db yet and no MLFLOW_TRACKING_URI
    project = copy_project(tmp_path / "project")
    script = (
        f"{PYTHON} -m training.train --data data/sample/metrics.csv --k 3 --model-name shared "
        f"&& {PYTHON} -m training.promote --model-name shared"
    )
    # when three processes train and promote at once
    processes = [
        subprocess.Popen(
            ["bash", "-c", script],
            cwd=project,
            env=env_without_tracking(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    # then all succeed, in one database created once, with three versions
    for process, (_out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'shared'"))
    assert versions == [1, 2, 3]
    assert str(client.get_registered_model("shared").aliases["production"]) in {"1", "2", "3"}
    assert len(client.search_runs([client.get_experiment_by_name("server-anomaly-training").experiment_id])) == 3
    assert (project / "mlruns").is_dir() and any((project / "mlruns").iterdir())
