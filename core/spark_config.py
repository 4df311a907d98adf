"""The Spark settings a job's session starts with, decided before its JVM starts: what the user
set (``--conf``, spark-defaults.conf, ``SPARK_*``) wins; the rest are defaults for the job's kind
(batch or long-running, local or not, small input or not), the driver's address in local mode,
its JVM options and its logging."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from core.errors import UserError
from core.java import archive_options

DEFAULT_MASTER = "local[*]"


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


def parse_conf(pairs: list[str] | None) -> dict[str, str]:
    """``--conf key=value`` settings; 'none' (MLproject's word for no setting) is skipped."""
    conf = {}
    for pair in pairs or []:
        if pair is None or pair.strip().lower() in ("", "none"):
            continue
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
# itself would take without -Xmx, a quarter of physical memory, rather than spill its cache.
LOCAL_BATCH_HEAP_SHARE = 0.25
# Above about 32 GiB the JVM gives up compressed pointers, and more heap costs memory for nothing.
LOCAL_BATCH_HEAP_CAP_MIB = 31 * 1024


def spark_conf_dir() -> str | None:
    """The configuration folder spark-submit would read (spark-defaults.conf, log4j2.properties)."""
    return os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None
    )


def spark_defaults() -> dict[str, str]:
    """The settings in the spark-defaults.conf that spark-submit would read."""
    conf_dir = spark_conf_dir()
    if not conf_dir:
        return {}
    try:
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    settings = {}
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            key, *value = line.split(None, 1)
            settings[key] = value[0].strip() if value else ""
    return settings


def spark_defaults_keys() -> set[str]:
    """The keys set in the spark-defaults.conf that spark-submit would read."""
    return set(spark_defaults())


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


# A short batch job (a small local input, the driver running the tasks) ends before C2-compiled
# code pays back; the C1 compiler alone runs it sooner. Larger inputs keep tiered compilation.
SHORT_JOB_INPUT_BYTES = 1 << 20
SHORT_JOB_JIT_OPTIONS = ["-XX:TieredStopAtLevel=1"]


def is_short_job(master: str | None, long_running: bool, input_bytes: int | None) -> bool:
    """A batch job in local mode over a local input of known, small size."""
    return (
        not long_running
        and is_local_master(master)
        and input_bytes is not None
        and input_bytes <= SHORT_JOB_INPUT_BYTES
    )


def driver_java_options(
    settings: dict[str, str],
    long_running: bool,
    java: str,
    version_text: str,
    short_job: bool = False,
    local_batch: bool = False,
) -> str:
    """JVM options for the driver, which in local mode also runs the tasks.

    A batch job (train, replay, the benchmark) uses the parallel collector: it has no pauses to
    hide, and G1's concurrent work competes with the job for the cores. A short one
    (``short_job``) also runs with the C1 compiler alone. Any other batch job in local mode
    (``local_batch``) starts with its whole heap (``-Xms``), so the collector does not grow it
    by full collections while the job caches its data. A long-running job (the monitor) keeps
    G1 and commits and touches its whole heap at start, so its footprint is what the operator
    configured from the first minute. All use the class-data archive built for this Java and
    PySpark, when there is one. A caller's own ``spark.driver.extraJavaOptions`` replaces this.
    """
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
    Arrow streams, its state store's load and commit), so more partitions than cores only add
    to it. A stateful query keeps the number its
    checkpoint was started with, so existing checkpoints are not affected.
    """
    defaults = dict(SQL_DEFAULTS)
    if context.master.startswith("local"):
        defaults[SHUFFLE_PARTITIONS_KEY] = str(context.defaultParallelism)
    return defaults


LOOPBACK = "127.0.0.1"


DRIVER_HOST, DRIVER_BIND_ADDRESS = "spark.driver.host", "spark.driver.bindAddress"


ADDRESS_ENV = ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME")


def local_address_defaults(settings: dict[str, str], defaults_keys: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """For local mode: the Spark settings and the JVM's environment that bind the driver to 127.0.0.1.

    Spark looks this machine's hostname up while it loads its configuration, before any setting
    applies, and stops with UnknownHostException where the name does not resolve (a common
    laptop and container setup). ``SPARK_LOCAL_HOSTNAME`` spares it that look-up (setting
    ``spark.driver.host`` alone does not); the driver then listens on, and advertises, the
    loopback, all that local mode needs. Whatever the user chose is kept: ``SPARK_LOCAL_IP`` or
    ``SPARK_LOCAL_HOSTNAME`` in the environment, the driver's address in the settings or in
    spark-defaults.conf. The UI still listens on every interface, as Spark's does by default.
    """
    if any(os.environ.get(name) for name in ADDRESS_ENV):
        return {}, {}
    chosen = set(settings) | defaults_keys
    conf = {}
    if DRIVER_HOST not in chosen:
        conf[DRIVER_HOST] = LOOPBACK
        if DRIVER_BIND_ADDRESS not in chosen:  # it defaults to the driver's host
            conf[DRIVER_BIND_ADDRESS] = LOOPBACK
    return conf, {"SPARK_LOCAL_HOSTNAME": "localhost"}


LOG4J2_CONFIG = Path(__file__).with_name("spark-log4j2.properties")


LOG4J2_LEVEL_ENV = "SERVER_ANOMALY_SPARK_LOG_LEVEL"  # read by spark-log4j2.properties


JAVA_OPTION_KEYS = ("spark.driver.defaultJavaOptions", "spark.driver.extraJavaOptions")


JAVA_OPTION_ENV = ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS")


LOG4J2_FILE_SUFFIXES = (".properties", ".xml", ".json", ".jsn", ".yaml", ".yml")


def java_option_texts(*settings: dict[str, str]) -> list[str]:
    """The driver JVM's options as the user may have set them: Spark settings and environment."""
    return [s.get(key, "") for s in settings for key in JAVA_OPTION_KEYS] + [
        os.environ.get(name, "") for name in JAVA_OPTION_ENV
    ]


def has_own_log_config(java_options: list[str]) -> bool:
    """Whether the user configured log4j2 for Spark: a file named in the environment or the JVM's
    options, or a log4j2 file in Spark's configuration folder (on the driver's class path)."""
    if os.environ.get("LOG4J_CONFIGURATION_FILE"):
        return True
    if any("configurationfile" in text.lower() and "log4j" in text.lower() for text in java_options):
        return True
    conf_dir = spark_conf_dir()
    try:
        names = os.listdir(conf_dir) if conf_dir else []
    except OSError:
        names = []
    return any(name.startswith("log4j2") and name.endswith(LOG4J2_FILE_SUFFIXES) for name in names)


def log_config_environment(level: str, java_options: list[str]) -> dict[str, str]:
    """The JVM's environment that makes it log at ``level`` from its first line.

    ``sparkContext.setLogLevel`` comes too late for the warnings Spark logs while it starts
    (native-hadoop library, hostname, SparkUI port). Through the environment, not
    ``spark.driver.extraJavaOptions``, so that the user's own options neither replace it nor are
    replaced by it. A log4j2 configuration of the user's own is left in charge.
    """
    if has_own_log_config(java_options) or not LOG4J2_CONFIG.is_file():
        return {}
    return {"LOG4J_CONFIGURATION_FILE": str(LOG4J2_CONFIG), LOG4J2_LEVEL_ENV: level}


NETLIB_NATIVE_OFF = "-Ddev.ludovic.netlib.blas.allowNative=false"


SYSTEM_BLAS = "libblas.so.3"  # the library netlib's loader opens


@functools.lru_cache(maxsize=1)
def system_blas_found() -> bool:
    """Whether the dynamic loader would find ``SYSTEM_BLAS``: on LD_LIBRARY_PATH, in its cache or
    in the default folders (read directly: ``ctypes.util.find_library`` runs compilers)."""
    folders = [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), "/lib", "/usr/lib", "/lib64", "/usr/lib64"]
    if any(folder and os.path.exists(os.path.join(folder, SYSTEM_BLAS)) for folder in folders):
        return True
    try:
        with open("/etc/ld.so.cache", "rb") as cache:
            return SYSTEM_BLAS.encode() + b"\0" in cache.read()
    except OSError:
        return False


def native_blas_defaults(settings: dict[str, str], defaults: dict[str, str]) -> dict[str, str]:
    """Spark ML's BLAS skips the system library where there is none to load.

    Its loader otherwise prints ``netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed`` from
    native code, whatever the log level, before using its Java implementation anyway. In
    ``spark.driver.defaultJavaOptions``, which Spark puts before the user's extraJavaOptions.
    """
    if not sys.platform.startswith("linux") or "spark.driver.defaultJavaOptions" in {**defaults, **settings}:
        return {}
    if any("netlib" in text for text in java_option_texts(settings, defaults)) or system_blas_found():
        return {}
    return {"spark.driver.defaultJavaOptions": NETLIB_NATIVE_OFF}
