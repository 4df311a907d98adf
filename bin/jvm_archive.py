"""Set-up tooling: build the class-data archive for the Spark driver JVM, so short jobs start sooner.

Input: this environment's Java and PySpark. Output: ``<venv>/share/server-anomaly/
spark-<pyspark version>-<key>.jsa`` (``core.java.archive_path``), the classes a training run on
the built-in sample loads, dumped by the JVM at exit (``-XX:ArchiveClassesAtExit``). Jobs then
map those classes instead of loading and verifying them from Spark's jars one by one. The key
covers the Java build, the environment and PySpark, so a new Java or PySpark finds no archive and
runs without one. ``bash bin/setup`` runs this once:

    .venv/bin/python bin/jvm_archive.py [--if-missing]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from core.errors import UserError, exit_process, main_guard
from core.java import archive_path, check_java
from core.paths import PROJECT_ROOT


def build_archive(timeout: float = 600) -> Path:
    """Run a training job on the built-in sample with the JVM dumping its classes at exit."""
    java, version_text = check_java()
    target = archive_path(java, version_text)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jvm-archive-") as scratch:
        dumped = Path(scratch) / "classes.jsa"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(scratch) / 'mlflow.db'}",
            "SPARK_LOG_LEVEL": "ERROR",
        }
        env.pop("MLFLOW_RUN_ID", None)
        env.pop("MLFLOW_EXPERIMENT_ID", None)
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "training.train",
                    "--data",
                    str(PROJECT_ROOT / "data/sample/metrics.csv"),
                    "--model-name",
                    "none",
                    "--conf",
                    f"spark.driver.extraJavaOptions=-XX:+UseParallelGC -XX:ArchiveClassesAtExit={dumped}",
                ],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise UserError(f"building the JVM class archive took over {timeout:.0f} s; jobs run without it") from None
        if result.returncode != 0 or not dumped.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise UserError("building the JVM class archive failed; jobs run without it: " + " | ".join(tail))
        os.replace(dumped, target)  # whole or not at all: a job never maps a half-written archive
    return target


@main_guard
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build the Spark driver's class-data archive for this environment.")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the archive exists")
    args = parser.parse_args(argv)
    java, version_text = check_java()
    path = archive_path(java, version_text)
    if args.if_missing and path.is_file():
        print(f"JVM class archive: {path} (already built)")
        return 0
    print(f"JVM class archive: {build_archive()} ({path.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    exit_process(main())
