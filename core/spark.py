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

SHUFFLE_PARTITIONS_KEY = "spark.sql.shuffle.partitions"
# Small defaults for runtime SQL settings, applied only where neither the caller nor
# spark-submit set them: 200 shuffle partitions on 2 cores is pure overhead. In local mode
# ``sql_defaults`` makes the shuffle one partition per core.
SQL_DEFAULTS = {
    SHUFFLE_PARTITIONS_KEY: "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def is_local_master(master: str | None) -> bool:
    return master is not None and (master == "local" or master.startswith("local["))


def java_version_text(java: str) -> str | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stderr + out.stdout


def java_major_version(java: str, text: str | None = None) -> int | None:
    text = text if text is not None else java_version_text(java)
    for token in (text or "").split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head.isdigit():
                major = int(head)
                return int(token.split(".")[1]) if major == 1 else major
    return None


def check_java() -> tuple[str, str]:
    """Spark 4 needs Java 17 or 21: say so plainly rather than fail inside py4j.

    Returns the java executable and its ``-version`` text."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise UserError(
            "Java was not found; Spark needs Java 17 or 21. On Debian/Ubuntu: "
            "apt-get install openjdk-17-jre-headless (or run bin/setup)"
        )
    text = java_version_text(java)
    major = java_major_version(java, text)
    if major not in SUPPORTED_JAVA:
        raise UserError(
            f"{java} is Java {major}; Spark 4 needs Java 17 or 21. Install "
            "openjdk-17-jre-headless and set JAVA_HOME to it"
        )
    return java, text or ""


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


# Spark's 1g default heap is sized for a driver that only coordinates. In local mode the driver
# also runs every task and holds every cached block, so a batch job there takes the heap the JVM
# itself would take without -Xmx, a quarter of physical memory. At 1g a 10^7-row train spilled
# its cached vectors to disk and spent its time collecting garbage: KMeans fit 91 s, 29 s at 6g.
LOCAL_BATCH_HEAP_SHARE = 0.25
# Above about 32 GiB the JVM gives up compressed pointers, and more heap costs memory for nothing.
LOCAL_BATCH_HEAP_CAP_MIB = 31 * 1024


def spark_defaults_keys() -> set[str]:
    """The keys set in the spark-defaults.conf that spark-submit would read."""
    conf_dir = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None)
    if not conf_dir:
        return set()
    try:
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return set()
    return {line.split(None, 1)[0] for line in lines if line.strip() and not line.lstrip().startswith("#")}


def local_batch_heap(master: str, settings: dict[str, str], long_running: bool) -> str | None:
    """The driver heap for a batch job in local mode when nobody chose one, else None.

    The monitor keeps Spark's default (or the operator's): its heap is committed up front.
    """
    if long_running or not is_local_master(master):
        return None
    if "spark.driver.memory" in settings or os.environ.get("SPARK_DRIVER_MEMORY"):
        return None
    if "spark.driver.memory" in spark_defaults_keys():
        return None
    physical_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    heap_mib = min(max(int(physical_mib * LOCAL_BATCH_HEAP_SHARE), 1024), LOCAL_BATCH_HEAP_CAP_MIB)
    return f"{heap_mib}m"


# A batch job over a small local input ends within seconds, spent loading classes and running
# code for the first time. Tiered compilation runs that code as profiled C1 code until C2 has
# compiled it, which does not pay back within such a run; C1 alone, unprofiled, runs it faster.
# Measured on 2 cores, the train entry point in alternating runs: the NAB table (0.35 MB) 22.5
# and 20.4 s -> 15.8 and 12.5 s; 3.4 MB (87k rows, history features) 26.2, 26.6 -> 29.2, 25.8 s
# and 7.5 MB (10^5 rows) 22.8, 24.6 -> 23.7, 23.7 s, no gain; 75 MB (10^6 rows) 38 -> 89 s,
# where C2's code pays back. Hence only up to this size, and only where the driver runs the tasks.
SHORT_JOB_INPUT_BYTES = 1 << 20
SHORT_JOB_JIT_OPTIONS = ["-XX:TieredStopAtLevel=1"]


def is_short_job(master: str | None, long_running: bool, input_bytes: int | None) -> bool:
    """A batch job in local mode over a local input of known, small size."""
    return (not long_running and is_local_master(master) and input_bytes is not None
            and input_bytes <= SHORT_JOB_INPUT_BYTES)


def driver_java_options(settings: dict[str, str], long_running: bool, java: str, version_text: str,
                        short_job: bool = False, local_batch: bool = False) -> str:
    """JVM options for the driver, which in local mode also runs the tasks.

    A batch job (train, replay, the benchmark) uses the parallel collector: it has no pauses to
    hide, and G1's concurrent work competed with the job on 2 cores (NAB train 17.0 -> 15.8 s,
    a 1e6-row train 26 -> 24.6 s). A short one (``short_job``: a small input in local mode)
    also runs with the C1 compiler alone (see ``SHORT_JOB_INPUT_BYTES``).

    Any other batch job in local mode (``local_batch``) starts with its whole heap
    (``-Xms``; committed, not touched). The parallel collector otherwise starts from a small
    heap and grows it by full collections as the data a job caches fills it: KMeans caching
    10^7 vectors ran 8 full collections of 0.2-1.2 s each, 2 with the heap set from the start
    (median fit 0.91x of the runs without it at 10^7 rows, 0.88x at 10^6; 3 alternating pairs,
    README "the driver's JVM options"). A short job gains nothing: NAB train whole run 1.03x.

    A long-running job (the monitor) keeps G1 and takes its whole heap at start. Left to
    itself G1 commits heap a region at a time as garbage builds up between collections, so a
    monitor whose live heap stays near 120 MB grew its RSS by 10-40 MB a minute, and by a
    200 MB step when G1 chose to expand, until the heap reached ``spark.driver.memory``.
    Committed and touched up front (as long-running JVM services do), the footprint is what
    the operator configured from the first minute.

    Both use the class-data archive that ``python -m core.jvm_archive`` (run by bin/setup)
    built for this Java and this PySpark, when it exists: the JVM maps the classes a training
    run loads instead of loading them from the jars (NAB train 20.9 -> 17.0 s). A caller's own
    ``spark.driver.extraJavaOptions`` replaces all of this.
    """
    from core.jvm_archive import archive_options

    if long_running:
        options = [f"-Xms{settings.get('spark.driver.memory', '1g')}", "-XX:+AlwaysPreTouch"]
    elif short_job:
        options = ["-XX:+UseParallelGC", *SHORT_JOB_JIT_OPTIONS]
    else:
        heap = settings.get("spark.driver.memory") if local_batch else None
        options = ["-XX:+UseParallelGC", *([f"-Xms{heap}"] if heap else [])]
    return " ".join(options + archive_options(java, version_text))


def sql_defaults(context) -> dict[str, str]:
    """``SQL_DEFAULTS`` for this SparkContext: in local mode, one shuffle partition per core.

    Every task of the monitor's stateful scoring stage pays a fixed cost (its Python worker's
    Arrow streams, its state store's load and commit): at 4 partitions on 2 cores a batch of
    480 small files took 3.9 s, at 2 partitions 3.5 s. A stateful query keeps the number its
    checkpoint was started with, so existing checkpoints are not affected.
    """
    defaults = dict(SQL_DEFAULTS)
    if context.master.startswith("local"):
        defaults[SHUFFLE_PARTITIONS_KEY] = str(context.defaultParallelism)
    return defaults


def create_spark(app_name: str, master: str | None = None, conf: dict[str, str] | None = None,
                 long_running: bool = False, input_bytes: int | None = None):
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
    heap = None if under_spark_submit else local_batch_heap(chosen_master, settings, long_running)
    if heap:
        settings["spark.driver.memory"] = heap
    if "spark.driver.extraJavaOptions" not in settings and not under_spark_submit:
        settings["spark.driver.extraJavaOptions"] = driver_java_options(
            settings, long_running, java, version_text, is_short_job(chosen_master, long_running, input_bytes),
            local_batch=not long_running and is_local_master(chosen_master))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    already_set = spark.sparkContext.getConf()
    for key, value in sql_defaults(spark.sparkContext).items():
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
def spark_session_in_background(app_name: str, master: str | None, conf_pairs: list[str] | None,
                                input_bytes: int | None = None):
    """Like ``spark_session``, but the JVM starts while the caller goes on with its own set-up
    (importing MLflow and opening the store take 2-3 s of a short job, the JVM 5-7 s).

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
