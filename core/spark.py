"""The one place a SparkSession is made, with its config set before the JVM starts.

``master`` defaults to ``$SPARK_MASTER`` or ``local[*]``; any Spark setting can be passed as
``key=value`` pairs, and ``spark-submit`` settings (``SPARK_*`` environment, spark-defaults.conf)
still apply because the builder only fills in what the user did not set.

In local mode the driver binds to 127.0.0.1, so Spark starts where this machine's hostname does
not resolve. The JVM logs at ``core.logs.spark_log_level()`` from its first line: errors only,
unless the job runs with ``--verbose``. A Spark that cannot start is one ``UserError`` line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from core.errors import UserError
from core.java import check_java
from core.logs import level_was_asked_for, spark_log_level
from core.spark_config import (
    DEFAULT_MASTER,
    JAVA_OPTION_KEYS,
    LONG_RUNNING_DEFAULTS,
    driver_java_options,
    has_own_log_config,
    is_local_master,
    is_short_job,
    java_option_texts,
    local_address_defaults,
    local_batch_heap,
    log_config_environment,
    native_blas_defaults,
    parse_conf,
    spark_defaults,
    sql_defaults,
)

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.


@contextlib.contextmanager
def environment(extra: dict[str, str]):
    """``extra`` in this process's environment for the block: the JVM that starts in it inherits
    them, and they do not leak into the processes a job starts later."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def hostname_resolves(hostname: str) -> bool:
    try:
        socket.getaddrinfo(hostname, None)
    except (OSError, UnicodeError):
        return False
    return True


def start_failure(error: Exception) -> UserError | None:
    """One line for a Spark that could not start, or None for an error of another kind."""
    condition = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    if condition is not None and condition() == "JAVA_GATEWAY_EXITED":
        what = "its Java process exited before it was ready (its own message is above)"
        hint = "check the --conf settings and the SPARK_* environment variables"
    elif type(error).__name__ == "Py4JJavaError":
        lines = str(getattr(error, "java_exception", error)).strip().splitlines()
        what = (lines[0] if lines else type(error).__name__).rstrip(". ")
        hint = "--verbose shows Spark's own log"
    else:
        return None
    hostname = socket.gethostname()
    if not hostname_resolves(hostname):
        hint = (
            f"this machine's hostname {hostname!r} does not resolve: add '127.0.0.1 {hostname}' to "
            "/etc/hosts, or set SPARK_LOCAL_IP to an address of this machine (127.0.0.1 in local mode)"
        )
    return UserError(f"Spark could not start: {what}; {hint}")


def create_spark(
    app_name: str,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    long_running: bool = False,
    input_bytes: int | None = None,
):
    """Build (or return the running) SparkSession for a job.

    ``input_bytes``: the size of a batch job's input when it is local and known (see
    ``core.paths.local_input_bytes``), which picks the driver's JIT for a short job.
    """
    java, version_text = check_java()
    # Executors' Python must be this interpreter, so they see the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # PySpark's applyInPandasWithState pads its own frames with all-NA rows, which pandas 2.x
    # warns about once per worker; the workers inherit this filter, our code is not affected.
    padding = "ignore:The behavior of DataFrame concatenation with empty or all-NA entries:FutureWarning"
    if padding not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), padding) if w)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).config("spark.ui.showConsoleProgress", "false")
    under_spark_submit = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    chosen_master = master or os.environ.get("SPARK_MASTER")
    if not chosen_master and not under_spark_submit:
        # Not under spark-submit (which already chose a master): default to local mode.
        chosen_master = DEFAULT_MASTER
    if chosen_master:
        builder = builder.master(chosen_master)
    settings = {**(LONG_RUNNING_DEFAULTS if long_running else {}), **(conf or {})}
    level = spark_log_level()
    jvm_environment = {}
    if not under_spark_submit:  # otherwise the JVM is running already, as spark-submit set it up
        defaults = spark_defaults()
        jvm_environment.update(log_config_environment(level, java_option_texts(settings, defaults)))
        if is_local_master(chosen_master):
            address, address_environment = local_address_defaults(settings, set(defaults))
            settings.update(address)
            jvm_environment.update(address_environment)
            settings.update(native_blas_defaults(settings, defaults))
    heap = None if under_spark_submit else local_batch_heap(chosen_master, settings, long_running)
    if heap:
        settings["spark.driver.memory"] = heap
    if "spark.driver.extraJavaOptions" not in settings and not under_spark_submit:
        settings["spark.driver.extraJavaOptions"] = driver_java_options(
            settings,
            long_running,
            java,
            version_text,
            is_short_job(chosen_master, long_running, input_bytes),
            local_batch=not long_running and is_local_master(chosen_master),
        )
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        with environment(jvm_environment):
            spark = builder.getOrCreate()
    except Exception as error:  # noqa: BLE001 - only Spark's start-up failures are translated
        failure = start_failure(error)
        if failure is None:
            raise
        raise failure from error
    already_set = spark.sparkContext.getConf()
    for key, value in sql_defaults(spark.sparkContext).items():
        if not already_set.contains(key) and key not in (conf or {}):
            spark.conf.set(key, value)
    # A log4j2 configuration of the user's own keeps its levels unless a level was asked for.
    running_options = [already_set.get(key, "") for key in JAVA_OPTION_KEYS]
    if level_was_asked_for() or not has_own_log_config(running_options):
        spark.sparkContext.setLogLevel(level)
    ship_scoring_core(spark)
    return spark


@contextlib.contextmanager
def spark_session(app_name: str, master: str | None, conf_pairs: list[str] | None, long_running: bool = False):
    """A job's SparkSession from its --master and --conf arguments, stopped when the job ends."""
    spark = create_spark(app_name, master, parse_conf(conf_pairs), long_running)
    try:
        yield spark
    finally:
        stop_state_stores(spark)
        spark.stop()


def stop_state_stores(spark) -> None:
    """Stop the state stores' maintenance thread before the session: otherwise its next run
    finds Spark stopped and logs a stack trace on the way out of every streaming job."""
    try:
        spark._jvm.org.apache.spark.sql.execution.streaming.state.StateStore.stop()
    except Exception:  # noqa: BLE001 - a tidier exit only; never worth failing a stop
        pass


@contextlib.contextmanager
def spark_session_in_background(
    app_name: str, master: str | None, conf_pairs: list[str] | None, input_bytes: int | None = None
):
    """Like ``spark_session``, but the JVM starts while the caller goes on with its own set-up
    (importing MLflow and opening the store), which would otherwise wait for the JVM.

    Yields a function that returns the session, waiting for it if it is not up yet; a failure
    to start is raised there. The session is stopped when the block ends.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyspark.sql  # noqa: F401 - imported here, not in two threads at once

    conf = parse_conf(conf_pairs)  # a bad --conf is said now, not from the thread
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spark-start")
    starting = pool.submit(create_spark, app_name, master, conf, False, input_bytes)
    try:
        yield starting.result
    finally:
        pool.shutdown(wait=True)
        if starting.exception() is None:
            starting.result().stop()


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
