"""Helpers the test modules share (fixtures live in conftest.py): project copies and HTTP probes."""

from __future__ import annotations

import shutil
import urllib.request

import os
import subprocess

import pytest

from conftest import PROJECT_ROOT, PYTHON, project_env


def copy_project(destination):
    """The project as a fresh clone would have it, without generated state."""
    ignore = shutil.ignore_patterns(".venv", ".git", "mlflow.db*", "__pycache__", ".pytest_cache",
                                    "prepared", "demo", "*.egg-info", "spark-warehouse")
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
NAMESPACE_COMMANDS = (["unshare", "--uts", "--fork"],
                      ["unshare", "--user", "--map-root-user", "--uts", "--fork"])
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
            probe = subprocess.run(with_hostname(prefix, [PYTHON, "-c", PROBE]), capture_output=True, text=True,
                                   timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            tried.append(f"{' '.join(prefix)}: {error}")
            continue
        if probe.returncode != 0 and "gaierror" in probe.stderr:
            return lambda command: with_hostname(prefix, command)
        tried.append(f"{' '.join(prefix)}: exit {probe.returncode} {probe.stderr.strip()[-300:]}")
    message = ("cannot run a command with an unresolvable hostname here (needs unshare from util-linux, "
               "run as root or with unprivileged user namespaces allowed): " + "; ".join(tried))
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
