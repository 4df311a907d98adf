"""The driver JVM's options: chosen per kind of job, the class archive used only when built."""

import os
import subprocess
from pathlib import Path

from core import java as jvm_archive
from core.java import check_java
from core.paths import local_input_bytes
from core.spark_config import SHORT_JOB_INPUT_BYTES, driver_java_options, is_short_job


def test_batch_jobs_use_the_parallel_collector_and_the_monitor_a_pre_touched_heap(tmp_path, monkeypatch):
    # given no class archive
    monkeypatch.setattr(jvm_archive, "ARCHIVE_DIR", tmp_path)
    java, version = check_java()
    # when options are chosen for a batch job and for a long-running one with 2g of heap
    batch = driver_java_options({}, False, java, version)
    monitor = driver_java_options({"spark.driver.memory": "2g"}, True, java, version)
    # then
    assert batch == "-XX:+UseParallelGC"
    assert monitor == "-Xms2g -XX:+AlwaysPreTouch"


def test_a_local_batch_job_starts_with_its_whole_heap_unless_it_is_short(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_archive, "ARCHIVE_DIR", tmp_path)
    java, version = check_java()
    # given a batch job in local mode with a 3g heap
    settings = {"spark.driver.memory": "3g"}
    # then its heap is set at its size from the start, and such a JVM starts
    options = driver_java_options(settings, False, java, version, local_batch=True)
    assert options == "-XX:+UseParallelGC -Xms3g"
    result = subprocess.run([java, *options.split(), "-Xmx3g", "-version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # but not a short one, a driver that runs no tasks, or a heap nobody named
    assert "-Xms" not in driver_java_options(settings, False, java, version, short_job=True, local_batch=True)
    assert driver_java_options(settings, False, java, version, local_batch=False) == "-XX:+UseParallelGC"
    assert driver_java_options({}, False, java, version, local_batch=True) == "-XX:+UseParallelGC"


def test_a_short_batch_job_in_local_mode_runs_with_the_c1_compiler_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_archive, "ARCHIVE_DIR", tmp_path)
    java, version = check_java()
    # given a batch job in local mode over a small local input (the NAB table is 0.35 MB)
    assert is_short_job("local[*]", False, 350_000)
    # then its driver runs C1 alone, beside the parallel collector, and such a JVM starts
    options = driver_java_options({}, False, java, version, short_job=True)
    assert options == "-XX:+UseParallelGC -XX:TieredStopAtLevel=1"
    result = subprocess.run([java, *options.split(), "-version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # but not past the size where C2's code paid back, nor over an input of unknown size
    assert not is_short_job("local[*]", False, SHORT_JOB_INPUT_BYTES + 1)
    assert not is_short_job("local[2]", False, None)
    # nor the monitor, which runs for days, nor a driver that runs no tasks
    assert not is_short_job("local[*]", True, 1000)
    assert not is_short_job("spark://10.0.0.1:7077", False, 1000)
    assert not is_short_job(None, False, 1000)


def test_an_input_size_is_known_for_local_files_directories_and_globs_only(tmp_path):
    # given two files in a folder, one in a subfolder, and a file elsewhere
    (tmp_path / "series" / "more").mkdir(parents=True)
    (tmp_path / "series" / "a.csv").write_bytes(b"x" * 100)
    (tmp_path / "series" / "more" / "b.csv").write_bytes(b"y" * 20)
    (tmp_path / "table.csv").write_bytes(b"z" * 7)
    # then a file, a folder (recursively), a glob and a file:// URI have their sizes
    assert local_input_bytes(str(tmp_path / "table.csv")) == 7
    assert local_input_bytes(str(tmp_path / "series")) == 120
    assert local_input_bytes(str(tmp_path / "series" / "*.csv")) == 100
    assert local_input_bytes((tmp_path / "table.csv").as_uri()) == 7
    # and a remote store or a path that matches nothing leave the size unknown
    assert local_input_bytes("s3a://bucket/table.csv") is None
    assert local_input_bytes("hdfs://nn:8020/x.csv") is None
    assert local_input_bytes(str(tmp_path / "missing.csv")) is None
    assert local_input_bytes(str(tmp_path / "nothing-*.csv")) is None


def test_the_class_archive_is_used_only_when_built_for_this_java(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_archive, "ARCHIVE_DIR", tmp_path)
    java, version = check_java()
    path = jvm_archive.archive_path(java, version)
    assert jvm_archive.archive_options(java, version) == []
    # given an archive under this Java's key (here a file that is not a real archive)
    path.write_bytes(b"not an archive")
    options = jvm_archive.archive_options(java, version)
    assert f"-XX:SharedArchiveFile={path}" in options
    # then another Java build looks for another file
    assert jvm_archive.archive_path(java, version + " other build") != path
    # and the JVM given a stale or foreign archive still starts, silently without it
    result = subprocess.run([java, *options, "-version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "warning" not in (result.stderr + result.stdout).lower()


def test_a_local_batch_job_takes_a_quarter_of_memory_unless_someone_chose_its_heap(tmp_path, monkeypatch):
    from core.spark_config import local_batch_heap

    monkeypatch.delenv("SPARK_DRIVER_MEMORY", raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    physical_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    # given nobody chose a heap, a batch job in local mode takes a quarter of physical memory
    assert local_batch_heap("local[*]", {}, long_running=False) == f"{min(max(physical_mib // 4, 1024), 31 * 1024)}m"
    assert local_batch_heap("local", {}, long_running=False) is not None
    # but not the monitor (its heap is committed up front), nor a job whose driver runs no tasks
    assert local_batch_heap("local[*]", {}, long_running=True) is None
    assert local_batch_heap("spark://127.0.0.1:7077", {}, long_running=False) is None
    assert local_batch_heap("local-cluster[2,1,1024]", {}, long_running=False) is None
    # and a heap chosen by --conf, by the environment or in spark-defaults.conf is kept
    assert local_batch_heap("local[*]", {"spark.driver.memory": "2g"}, long_running=False) is None
    (tmp_path / "spark-defaults.conf").write_text("# a comment\nspark.driver.memory  3g\n")
    assert local_batch_heap("local[*]", {}, long_running=False) is None
    (tmp_path / "spark-defaults.conf").write_text("spark.executor.memory 3g\n")
    assert local_batch_heap("local[*]", {}, long_running=False) is not None
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "2g")
    assert local_batch_heap("local[*]", {}, long_running=False) is None


def test_the_shared_test_session_runs_with_the_local_batch_heap(spark):
    from core.spark_config import local_batch_heap

    expected = local_batch_heap("local[2]", {}, long_running=False)
    conf = spark.sparkContext.getConf()
    if expected is not None:
        assert conf.get("spark.driver.memory") == expected
        # and, a batch job in local mode, starts with that whole heap
        assert f"-Xms{expected}" in conf.get("spark.driver.extraJavaOptions", "").split()
    else:  # this machine's environment or spark-defaults.conf chose the heap, and it was kept
        assert os.environ.get("SPARK_DRIVER_MEMORY") or conf.contains("spark.driver.memory")


def test_local_mode_shuffles_into_one_partition_per_core_and_a_cluster_keeps_the_default(spark):
    from types import SimpleNamespace

    from core.spark_config import SHUFFLE_PARTITIONS_KEY, SQL_DEFAULTS, sql_defaults

    # given the shared test session, local[2], that set no shuffle partitions of its own
    # then its stateful and grouped stages run one task per core
    assert spark.conf.get(SHUFFLE_PARTITIONS_KEY) == "2"
    # and a session on a cluster master keeps the fixed default
    on_cluster = SimpleNamespace(master="spark://10.0.0.1:7077", defaultParallelism=64)
    assert sql_defaults(on_cluster)[SHUFFLE_PARTITIONS_KEY] == SQL_DEFAULTS[SHUFFLE_PARTITIONS_KEY]
    assert sql_defaults(SimpleNamespace(master="local[3]", defaultParallelism=3))[SHUFFLE_PARTITIONS_KEY] == "3"


def test_the_class_archive_is_found_through_a_symlinked_environment(tmp_path, monkeypatch):
    import sys

    import pyspark

    java, version = check_java()
    path = jvm_archive.archive_path(java, version)
    # given the same environment and PySpark reached through symlinks (a checkout linking a
    # shared .venv): without real paths in the key, its jobs silently ran without the archive
    (tmp_path / "venv").symlink_to(sys.prefix)
    (tmp_path / "site").symlink_to(Path(pyspark.__file__).parent.parent)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(pyspark, "__file__", str(tmp_path / "site" / "pyspark" / "__init__.py"))
    # then it looks for the archive the real environment built
    assert jvm_archive.archive_path(java, version).name == path.name
