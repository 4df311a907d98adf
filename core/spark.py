"""The one place a SparkSession is made, with its config set before the JVM starts.

``master`` defaults to ``$SPARK_MASTER`` or ``local[*]``; any Spark setting can be passed as
``key=value`` pairs, and ``spark-submit`` settings (``SPARK_*`` environment, spark-defaults.conf)
still apply because the builder only fills in what the user did not set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

from core.errors import UserError

DEFAULT_MASTER = "local[*]"
SUPPORTED_JAVA = (17, 21)

# Small defaults for runtime SQL settings, applied only where neither the caller nor
# spark-submit set them: 200 shuffle partitions on 2 cores is pure overhead.
SQL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def java_major_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for token in (out.stderr + out.stdout).split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head.isdigit():
                major = int(head)
                return int(token.split(".")[1]) if major == 1 else major
    return None


def check_java() -> None:
    """Spark 4 needs Java 17 or 21: say so plainly rather than fail inside py4j."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise UserError(
            "Java was not found; Spark needs Java 17 or 21. On Debian/Ubuntu: "
            "apt-get install openjdk-17-jre-headless (or run bin/setup)"
        )
    major = java_major_version(java)
    if major not in SUPPORTED_JAVA:
        raise UserError(
            f"{java} is Java {major}; Spark 4 needs Java 17 or 21. Install "
            "openjdk-17-jre-headless and set JAVA_HOME to it"
        )


def parse_conf(pairs: list[str] | None) -> dict[str, str]:
    conf = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"Spark setting {pair!r} is not key=value")
        conf[key.strip()] = value.strip()
    return conf


# A long-running job (the monitor) keeps the UI's history of jobs, stages and SQL executions
# in driver memory; Spark's defaults (1,000 of each) let the driver grow for the first hour
# or so. Bounded lower, the memory stops growing within minutes. Applied before the JVM
# starts, and only where the caller did not set them.
LONG_RUNNING_DEFAULTS = {
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "10000",
    "spark.sql.ui.retainedExecutions": "50",
    "spark.sql.streaming.ui.retainedProgressUpdates": "100",
    "spark.sql.streaming.numRecentProgressUpdates": "20",
}


def create_spark(app_name: str, master: str | None = None, conf: dict[str, str] | None = None,
                 long_running: bool = False):
    """Build (or return the running) SparkSession for a job."""
    check_java()
    # Executors' Python must be this interpreter, so they see the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).config("spark.ui.showConsoleProgress", "false")
    chosen_master = master or os.environ.get("SPARK_MASTER")
    if chosen_master:
        builder = builder.master(chosen_master)
    elif not os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Not under spark-submit (which already chose a master): default to local mode.
        builder = builder.master(DEFAULT_MASTER)
    settings = {**(LONG_RUNNING_DEFAULTS if long_running else {}), **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    already_set = spark.sparkContext.getConf()
    for key, value in SQL_DEFAULTS.items():
        if not already_set.contains(key) and key not in (conf or {}):
            spark.conf.set(key, value)
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    ship_scoring_core(spark)
    return spark


@contextlib.contextmanager
def spark_session(app_name: str, master: str | None, conf_pairs: list[str] | None, long_running: bool = False):
    """A job's SparkSession from its --master and --conf arguments, stopped when the job ends."""
    spark = create_spark(app_name, master, parse_conf(conf_pairs), long_running)
    try:
        yield spark
    finally:
        spark.stop()


def ship_scoring_core(spark) -> None:
    """On a cluster, send the ``core`` package to the executors, which import it to score.

    Local mode shares the driver's interpreter and needs nothing shipped.
    """
    if spark.sparkContext.master.startswith("local"):
        return
    import tempfile
    import zipfile
    from pathlib import Path

    package = Path(__file__).resolve().parent
    archive = Path(tempfile.mkdtemp(prefix="server-anomaly-")) / "core.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for source in package.rglob("*.py"):
            bundle.write(source, Path("core") / source.relative_to(package))
    spark.sparkContext.addPyFile(str(archive))
