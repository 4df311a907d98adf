"""The driver JVM's options: chosen per kind of job, the class archive used only when built."""

import subprocess

from core import jvm_archive
from core.spark import check_java, driver_java_options


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
