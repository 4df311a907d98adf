"""Shared fixtures: one SparkSession per test session, MLflow pointed at tmp_path per test."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def nab_root() -> Path | None:
    configured = os.environ.get("NAB_DATA_DIR")
    return Path(configured).resolve() if configured else None


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    """NAB's realAWSCloudwatch copy, from $NAB_DATA_DIR (CI sets it; it is never committed)."""
    root = nab_root()
    if root is None or not (root / "data" / "realAWSCloudwatch").is_dir():
        message = f"NAB_DATA_DIR is not set to a NAB copy (got {root}); see README 'Getting NAB'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def nab_series_dir(nab_dir) -> Path:
    return nab_dir / "data" / "realAWSCloudwatch"


@pytest.fixture(scope="session")
def nab_table(nab_series_dir, tmp_path_factory) -> Path:
    """The NAB feature table, prepared once per session."""
    from training.prepare import collate, write_table

    out = tmp_path_factory.mktemp("nab") / "metrics.csv"
    write_table(collate(nab_series_dir).table, out)
    return out


SAMPLE_MODEL = "sample-detector"


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory, spark):
    """A store whose ``SAMPLE_MODEL`` (train's defaults on the sample, which has one incident) is
    in production: trained once for the subprocess monitors that only read it."""
    from mlflow import MlflowClient

    from helpers import SAMPLE

    folder = tmp_path_factory.mktemp("sample-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    params = train_and_promote(spark, uri, SAMPLE, SAMPLE_MODEL)
    return {"uri": uri, "params": params, "client": MlflowClient(uri, uri)}


def train_and_promote(spark, uri: str, data, model_name: str):
    """Train's defaults on ``data`` as version 1 of ``model_name`` in the store at ``uri``, in
    production; returns its params."""
    from core.model import load_params
    from training import promote
    from training import train as train_job

    from helpers import train_args

    with isolated_store(uri) as service:
        train_job.train(spark, service, train_args(data, model_name=model_name))
        promote.promote(service.client, model_name)
        return load_params(f"models:/{model_name}/1")


@pytest.fixture(scope="session")
def spark():
    from core.spark import create_spark

    session = create_spark("tests", "local[2]", {"spark.ui.enabled": "false"})
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return uri


@contextlib.contextmanager
def isolated_store(uri: str):
    """An MLflow service on ``uri`` for a module-scoped fixture, environment restored after."""
    from core.tracking import MlflowService

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_REGISTRY_URI"):
            patch.delenv(key, raising=False)
        service = MlflowService().start()
        try:
            yield service
        finally:
            service.stop()


@pytest.fixture
def mlflow_service(tracking_uri):
    from core.tracking import MlflowService

    service = MlflowService().start()
    try:
        yield service
    finally:
        service.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll ``condition`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - keep polling until the deadline
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def project_env(**extra) -> dict:
    """Environment for a subprocess that runs project commands with this interpreter."""
    env = dict(os.environ)
    # mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI into this process's environment; a
    # value left by an earlier test would send a subprocess to another test's registry.
    env.pop("MLFLOW_REGISTRY_URI", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = PYTHON
    env.setdefault("SPARK_LOG_LEVEL", "ERROR")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_command(args, cwd=PROJECT_ROOT, timeout=600, **env) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=project_env(**env), capture_output=True, text=True, timeout=timeout)


class ManagedProcess:
    """A background process that is always ended by its id, whatever the test did."""

    def __init__(self, args, log_path: Path, **env):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            args,
            cwd=PROJECT_ROOT,
            env=project_env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=20)
        self._log.close()


@pytest.fixture(scope="session")
def unresolvable():
    """Wraps a command to run where this machine's hostname does not resolve (see helpers)."""
    from helpers import unresolvable_wrapper

    return unresolvable_wrapper()
