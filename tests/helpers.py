"""Helpers the test modules share (fixtures live in conftest.py): project copies and HTTP probes."""

from __future__ import annotations

import shutil
import urllib.request

from conftest import PROJECT_ROOT, project_env


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
