"""A job shows its own lines and clear errors; Spark's and MLflow's logs are one flag away."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from conftest import PROJECT_ROOT, PYTHON, project_env

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

# The JVM itself prints this for an option Spark's launcher always passes; no JVM flag silences it.
JVM_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"


def run(args, tmp_path, verbose: bool, timeout=600) -> subprocess.CompletedProcess:
    env = project_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for key in (
        "SPARK_LOG_LEVEL",
        "MLFLOW_LOGGING_LEVEL",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "SERVER_ANOMALY_VERBOSE",
        "LOG4J_CONFIGURATION_FILE",
        "SPARK_CONF_DIR",
    ):
        env.pop(key, None)
    if verbose:
        env["SERVER_ANOMALY_VERBOSE"] = "1"
    return subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def train(tmp_path, verbose: bool) -> subprocess.CompletedProcess:
    # a fresh store: MLflow creates its tables, and the model is registered (version 1)
    return run(
        [PYTHON, "-m", "training.train", "--data", "data/sample/metrics.csv", *(["--verbose"] if verbose else [])],
        tmp_path,
        verbose=False,
    )


def test_a_training_run_prints_only_its_own_lines(tmp_path):
    # when a job trains on the sample against a new MLflow store, by default
    result = train(tmp_path, verbose=False)
    # then it prints its own lines
    assert result.returncode == 0, result.stderr[-3000:]
    assert "expected label" in result.stdout
    assert "registered server-anomaly-detector version 1" in result.stdout
    # and nothing else: no Spark WARN/INFO lines (native-hadoop, hostname, WindowExec), no
    # "default log level" banner, no native BLAS loader line, no MLflow INFO lines (tables created,
    # input example validated), notices (model registered, version created) or UserWarning hints
    others = [line for line in result.stderr.splitlines() if line.strip() and line != JVM_NOTICE]
    assert others == [], "\n".join(others[:20])


def test_verbose_shows_spark_and_mlflow_logs(tmp_path):
    # when the same run is verbose
    result = train(tmp_path, verbose=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr
    # then Spark logs from its first lines at INFO, and its warnings
    assert " INFO SparkContext: Running Spark version" in log
    assert " WARN WindowExec: " in log
    # and MLflow's INFO lines, notices and hints are back
    assert "INFO mlflow.store.db.utils: Creating initial MLflow database tables" in log
    assert "Created version '1' of model 'server-anomaly-detector'" in log
    assert "UserWarning: Hint: Inferred schema contains integer column(s)" in log


MLFLOW_NOISE = textwrap.dedent("""
    import logging, sys, warnings
    from core.logs import configure_logging

    if sys.argv[1] == "imported-first":
        import mlflow
    configure_logging(sys.argv[2] == "verbose")
    import mlflow
    from mlflow.tracking._model_registry import fluent

    fluent.eprint("NOTICE from eprint")
    logging.getLogger("mlflow.store.db.utils").info("INFO from mlflow")
    logging.getLogger("alembic.runtime.migration").info("INFO from alembic")
    logging.getLogger("mlflow.pyfunc").warning("Passing a Python object as `python_model` ...")
    logging.getLogger("mlflow.store").warning("WARNING from mlflow")
    warnings.warn_explicit("HINT from mlflow", UserWarning, "utils.py", 1, module="mlflow.types.utils")
""")


def test_mlflow_is_quiet_whether_imported_before_or_after_logging_is_set_up(tmp_path):
    for order in ("imported-first", "imported-after"):
        quiet = run([PYTHON, "-c", MLFLOW_NOISE, order, "quiet"], tmp_path, verbose=False, timeout=120)
        assert quiet.returncode == 0, quiet.stderr[-3000:]
        # a warning of MLflow's own still shows; its INFO lines, notices and hints do not
        assert [line.split(": ", 1)[-1] for line in quiet.stderr.splitlines()] == ["WARNING from mlflow"], order
        verbose = run([PYTHON, "-c", MLFLOW_NOISE, order, "verbose"], tmp_path, verbose=False, timeout=120)
        assert verbose.returncode == 0, verbose.stderr[-3000:]
        for line in (
            "NOTICE from eprint",
            "INFO from mlflow",
            "INFO from alembic",
            "Passing a Python object",
            "WARNING from mlflow",
            "HINT from mlflow",
        ):
            assert line in verbose.stderr, (order, line, verbose.stderr)
