"""Spark starts where this machine's hostname does not resolve; where it cannot start, one line says why.

The unresolvable hostname is real: each command runs in a new UTS namespace (``unshare``) whose
hostname is under ``.invalid``, a top-level domain that never resolves. Where no namespace can
be made, the tests fail under CI (which must check this) and are skipped elsewhere, saying why.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from conftest import PROJECT_ROOT, PYTHON, project_env
from helpers import UNRESOLVABLE


def run(command, cwd=PROJECT_ROOT, timeout=300, **extra) -> subprocess.CompletedProcess:
    """``command`` with this suite's environment, less anything that would choose for it."""
    env = project_env()
    for key in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "SPARK_LOCAL_IP",
        "SPARK_LOCAL_HOSTNAME",
        "SPARK_MASTER",
    ):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


START_THROUGH_CREATE_SPARK = textwrap.dedent("""
    from core.spark import create_spark

    spark = create_spark("hostname-check", "local[1]", {"spark.ui.enabled": "false"})
    conf = spark.sparkContext.getConf()
    print("rows", spark.range(5).filter("id % 2 = 0").count())
    print("driver", conf.get("spark.driver.host"), conf.get("spark.driver.bindAddress"))
    spark.stop()
""")

START_PLAIN_PYSPARK = textwrap.dedent("""
    from pyspark.sql import SparkSession

    SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
""")


def test_spark_starts_in_local_mode_where_the_hostname_does_not_resolve(unresolvable):
    # given a machine whose hostname does not resolve, where PySpark's own defaults cannot start
    plain = run(unresolvable([PYTHON, "-c", START_PLAIN_PYSPARK]), timeout=120)
    assert plain.returncode != 0
    assert "java.net.UnknownHostException" in plain.stderr
    # when a job starts Spark in local mode through the project's one factory
    result = run(unresolvable([PYTHON, "-c", START_THROUGH_CREATE_SPARK]))
    # then it starts and runs a query, its driver bound to the loopback
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows 3" in result.stdout
    assert "driver 127.0.0.1 127.0.0.1" in result.stdout
    assert "UnknownHostException" not in result.stderr


def test_a_driver_address_the_user_chose_is_kept(monkeypatch, tmp_path):
    from core.spark_config import local_address_defaults

    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    monkeypatch.delenv("SPARK_LOCAL_HOSTNAME", raising=False)
    loopback = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    # given nobody chose an address, the driver binds to the loopback without a hostname look-up
    assert local_address_defaults({}, set()) == (loopback, {"SPARK_LOCAL_HOSTNAME": "localhost"})
    # but a host chosen in the settings or in spark-defaults.conf is kept, and the bind address follows it
    assert local_address_defaults({"spark.driver.host": "10.1.2.3"}, set())[0] == {}
    assert local_address_defaults({}, {"spark.driver.host"})[0] == {}
    # and a bind address of the user's own is kept beside the loopback host
    chosen = local_address_defaults({"spark.driver.bindAddress": "0.0.0.0"}, set())[0]
    assert chosen == {"spark.driver.host": "127.0.0.1"}
    # and so is anything set in the environment Spark reads before its settings
    for name in ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME"):
        monkeypatch.setenv(name, "10.1.2.3")
        assert local_address_defaults({}, set()) == ({}, {})
        monkeypatch.delenv(name)


def test_a_spark_that_cannot_start_is_one_clear_line(unresolvable):
    # given a hostname that does not resolve and a cluster master, where the driver's address
    # is the machine's own and cannot be found
    script = textwrap.dedent("""
        import sys
        from core.errors import main_guard
        from core.spark import create_spark

        sys.exit(main_guard(lambda: create_spark("cannot-start", "spark://127.0.0.1:7", {}) and 0)())
    """)
    # when a job starts Spark
    result = run(unresolvable([PYTHON, "-c", script]), timeout=120)
    # then it exits 2 with one line that says what failed and what to do, and no Python traceback
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Spark could not start: its Java process exited before it was ready")
    assert f"hostname '{UNRESOLVABLE}' does not resolve" in last
    assert "/etc/hosts" in last and "SPARK_LOCAL_IP" in last
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_setup_builds_the_class_archive_where_the_hostname_does_not_resolve(unresolvable, tmp_path):
    # bin/setup's other step that starts Spark: a training run whose JVM dumps its classes at exit
    script = textwrap.dedent(f"""
        import pathlib, sys
        import core.java
        sys.path.insert(0, {str(PROJECT_ROOT / "bin")!r})
        import jvm_archive

        core.java.ARCHIVE_DIR = pathlib.Path({str(tmp_path)!r})
        sys.exit(jvm_archive.main([]))
    """)
    result = run(unresolvable([PYTHON, "-c", script]), timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert list(tmp_path.glob("spark-*.jsa"))
