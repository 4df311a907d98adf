"""The memory benchmark: the monitor's process tree (driver, JVM, Python workers) during a paced run,
and whether its peak still grows in the last third."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.common import PYTHON, row
from benchmarks.monitor_speed import write_chunks
from core.errors import UserError
from core.paths import PROJECT_ROOT


def bench_memory(store: str, model_uri: str, work: Path, minutes: float, rate: float) -> list[dict]:
    """Memory of the monitor's processes (driver Python, JVM, Python workers) in a paced run."""
    folder = work / "memory"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "SPARK_LOG_LEVEL": "ERROR"}
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "streaming.monitor",
            "--input",
            str(folder / "in"),
            "--output",
            str(folder / "out"),
            "--model",
            model_uri,
            "--window",
            "3",
            "--show",
            "0",
            "--timeout",
            str(minutes * 60 + 330),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    samples: list[tuple[float, dict]] = []
    stop = threading.Event()

    def sample():
        started = time.monotonic()
        while not stop.is_set() and process.poll() is None:
            kinds = monitor_memory_mib(process.pid)
            if kinds:
                samples.append((time.monotonic() - started, kinds))
            stop.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        count = max(int(rate * minutes), 1)
        write_chunks(folder / "in", count, 100, folder / ".staging", 60 / rate, prefix="mem")
        # Measured until the monitor has scored every file: on a loaded machine a short run could
        # otherwise end before its first batch, and measure a monitor that never started its workers.
        _wait_until_scored(folder / "out", count, process, seconds=300)
    finally:
        stop.set()
        sampler.join()
        os.killpg(process.pid, 15)
        process.wait(timeout=60)
    if not samples:
        raise UserError("the memory run took no samples")
    total = samples[-1][0]

    def peak(kind: str, start: float = 0.0, end: float = float("inf")) -> float:
        return max((k[kind] for t, k in samples if start <= t <= end), default=0.0)

    kinds = ("total", "driver", "jvm", "python_workers")
    per_minute = {
        kind: [peak(kind, m * 60, (m + 1) * 60 - 1e-9) for m in range(int(total // 60) + 1)] for kind in kinds
    }
    trace = ", ".join(f"{v:.0f}" for v in per_minute["total"] if v)
    first, middle, last = (
        peak("total", 0, total / 3),
        peak("total", total / 3, 2 * total / 3),
        peak("total", 2 * total / 3),
    )
    peak_row = row(
        f"monitor peak memory (PSS), {minutes:g}-minute paced run at {rate:.0f} files/min",
        "MiB",
        [peak("total")],
        None,
        f"driver Python {peak('driver'):.0f} + JVM {peak('jvm'):.0f} + Python workers "
        f"{peak('python_workers'):.0f} MiB at their peaks (up to {peak('workers') - 1:.0f} workers and "
        f"their daemon); RSS summed without sharing: {peak('rss'):.0f} MiB; peak per minute: {trace} MiB",
    )
    peak_row["parts_mib"] = {kind: peak(kind) for kind in kinds[1:]}
    peak_row["per_minute_mib"] = per_minute
    return [
        peak_row,
        row(
            "monitor memory growth: peak of the last third / peak of the first third",
            "ratio",
            [last / first],
            None,
            "includes the start-up",
        ),
        row(
            "monitor memory growth: peak of the last third / peak of the middle third",
            "ratio",
            [last / middle],
            None,
            "about 1 means it stopped growing after the first minutes",
        ),
    ]


def _wait_until_scored(output: Path, files: int, process: subprocess.Popen, seconds: float) -> None:
    from streaming.sinks import read_summaries

    deadline = time.monotonic() + seconds
    while sum(summary["files"] for summary in read_summaries(str(output))) < files:
        if process.poll() is not None:
            raise UserError(
                f"the monitor of the memory run stopped (exit code {process.returncode}) before it scored every file"
            )
        if time.monotonic() > deadline:
            raise UserError(f"the monitor of the memory run did not score every file in {seconds:g} s")
        time.sleep(0.5)


def _proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process. PSS splits pages shared after a fork (the Python workers and
    their daemon) among the processes sharing them, so a sum of PSS is what a tree really holds."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("Rss", "Pss"):
            values[key] = int(line.split()[1]) / 1024
    return values["Rss"], values["Pss"]


def monitor_memory_mib(root: int) -> dict[str, float]:
    """Memory of the monitor's long-lived processes, by kind.

    The tree is followed by parent, not by process group: the Python worker daemon puts itself
    in a group of its own. Transient shell-outs of the JVM (Hadoop runs ``readlink`` and the
    like) are left out: a child spawned with vfork reports its parent's whole memory until it
    runs exec, which made one sample in a minute look like a 1 GiB step."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = _proc_status(int(entry.name))
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        children.setdefault(int(status["PPid"].split()[0]), []).append(int(entry.name))
    kinds = {"driver": 0.0, "jvm": 0.0, "python_workers": 0.0, "workers": 0.0, "rss": 0.0}

    def add(kind: str, pid: int) -> None:
        rss, pss = _memory_mib(pid)
        kinds[kind] += pss
        kinds["rss"] += rss

    try:
        add("driver", root)
        for jvm in children.get(root, []):
            if "java" not in commands.get(jvm, "").split(" ", 1)[0]:
                continue
            add("jvm", jvm)
            for daemon in children.get(jvm, []):
                if "pyspark.daemon" not in commands.get(daemon, ""):
                    continue  # a shell-out, see above
                for pid in [daemon, *children.get(daemon, [])]:
                    add("python_workers", pid)
                    kinds["workers"] += 1
    except (OSError, ValueError, KeyError):
        return {}  # a process ended between listing and reading: the next sample counts
    kinds["total"] = kinds["driver"] + kinds["jvm"] + kinds["python_workers"]
    return kinds
