"""Helpers the test modules share (fixtures live in conftest.py): project copies and HTTP probes."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import urllib.request
import uuid

import pytest

from conftest import PROJECT_ROOT, PYTHON, project_env

SAMPLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"
MONITOR_MODEL = "monitor-detector"


def copy_project(destination):
    """The project as a fresh clone would have it, without generated state."""
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        "mlflow.db*",
        "__pycache__",
        ".pytest_cache",
        "prepared",
        "demo",
        "*.egg-info",
        "spark-warehouse",
    )
    shutil.copytree(PROJECT_ROOT, destination, ignore=ignore)
    for child in (destination / "mlruns").iterdir():
        if child.name != ".gitkeep":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return destination


def env_without_tracking() -> dict:
    """A subprocess environment with no MLflow store or run chosen, as a user's shell has it."""
    env = project_env()
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(key, None)
    return env


def http_ok(url) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


UNRESOLVABLE = "server-anomaly-no-such-host.invalid"
# As root (this project's containers and CI); else as an unprivileged user, where the kernel allows.
NAMESPACE_COMMANDS = (["unshare", "--uts", "--fork"], ["unshare", "--user", "--map-root-user", "--uts", "--fork"])
PROBE = "import socket; socket.getaddrinfo(socket.gethostname(), None)"


def with_hostname(prefix: list[str], command: list[str]) -> list[str]:
    """``command`` in a new UTS namespace whose hostname is ``UNRESOLVABLE``."""
    return [*prefix, "sh", "-c", f'hostname {UNRESOLVABLE} && exec "$@"', "sh", *command]


def unresolvable_wrapper():
    """A function that wraps a command to run with an unresolvable hostname (fails under CI, skips
    elsewhere, where no namespace can be made)."""
    tried = []
    for prefix in NAMESPACE_COMMANDS:
        try:
            probe = subprocess.run(
                with_hostname(prefix, [PYTHON, "-c", PROBE]), capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            tried.append(f"{' '.join(prefix)}: {error}")
            continue
        if probe.returncode != 0 and "gaierror" in probe.stderr:
            return lambda command: with_hostname(prefix, command)
        tried.append(f"{' '.join(prefix)}: exit {probe.returncode} {probe.stderr.strip()[-300:]}")
    message = (
        "cannot run a command with an unresolvable hostname here (needs unshare from util-linux, "
        "run as root or with unprivileged user namespaces allowed): " + "; ".join(tried)
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def train_args(data, **overrides):
    """train's own defaults (the best configuration), with overrides."""
    from training import train as train_job

    args = train_job.parse_args(["--data", str(data), "--model-name", "test-detector"])
    return argparse.Namespace(**{**vars(args), **overrides})


def monitor_args(tmp_path, **overrides):
    defaults = dict(
        input=str(tmp_path / "in"),
        window=0.5,
        model="",
        model_name=MONITOR_MODEL,
        output=str(tmp_path / "out"),
        checkpoint="",
        show=5,
        scored_rows=False,
        max_files_per_trigger=1000,
        series_idle_minutes=1440,
        idle_windows=0,
        timeout=0,
        master=None,
        conf=[],
    )
    return argparse.Namespace(**{**defaults, **overrides})


def monitor_command(tmp_path, model_name: str, *extra: str) -> list[str]:
    """``python -m streaming.monitor`` on ``tmp_path``'s in/ and out/, one-second windows."""
    return [
        PYTHON,
        "-m",
        "streaming.monitor",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--model-name",
        model_name,
        "--window",
        "1",
        *extra,
    ]


def drop(folder, content: bytes, name=None):
    """Write a file the way the streamer does: elsewhere first, then rename into place."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"{uuid.uuid4().hex}.csv"
    staged = folder.parent / f".{name}.tmp"
    staged.write_bytes(content)
    os.replace(staged, folder / name)
    return folder / name


class RunningMonitor:
    def __init__(self, spark, service, args):
        from streaming import monitor as monitor_job

        tracker = monitor_job.ModelTracker(service.client, args.model, args.model_name)
        self.monitor = monitor_job.Monitor(spark, service, args, tracker)
        self.query = self.monitor.start()
        self.output = args.output

    def process(self):
        # As the monitor's loop does between windows: follow the alias, then run the batches.
        self.query = self.monitor.follow_alias(self.query)
        self.query.processAllAvailable()
        from streaming.sinks import read_summaries

        return read_summaries(self.output)

    def stop(self):
        self.query.stop()
        self.monitor.service.end_run(self.monitor.run_id)
