"""The MLflow connection, made in one place when a job starts (never at import).

Default store: ``sqlite:///<project root>/mlflow.db`` with artifacts under ``<project root>/mlruns``
(MLflow 3's own default layout). ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` win when set,
and a run already started by ``mlflow run`` (``MLFLOW_RUN_ID``) is joined, not duplicated.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.request
from pathlib import Path

from core.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HEALTH_TIMEOUT_SECONDS = 5.0


def default_tracking_uri(root: Path = PROJECT_ROOT) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def resolved_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


@contextlib.contextmanager
def _store_lock(uri: str):
    """Serialise first use of a sqlite store across processes.

    MLflow creates the schema on first connect; two processes doing it at once on a fresh
    file fail with "table already exists". Other stores need no lock.
    """
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_reachable(uri: str) -> None:
    """Fail fast with a clear message instead of MLflow's minutes of retries."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_SECONDS):
            pass
    except urllib.error.HTTPError:
        return  # something answered; MLflow will report auth or path problems itself
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it "
            "(mlflow server --host 127.0.0.1 --port 5000) or set MLFLOW_TRACKING_URI"
        ) from None


class MlflowService:
    """Connects to tracking and registry on ``start()``; ``stop()`` ends runs it started."""

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None):
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri
        self.client = None

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri or resolved_tracking_uri()

    def start(self) -> "MlflowService":
        import mlflow

        uri = self.tracking_uri
        check_reachable(uri)
        registry = self._registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(registry)
        with _store_lock(uri):
            self.client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry)
            self.client.search_experiments(max_results=1)  # creates the schema once
        return self

    def stop(self) -> None:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()

    def __enter__(self) -> "MlflowService":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        import mlflow

        if exc_type is not None and mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED")
        self.stop()

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created on first use (artifacts under mlruns/ by default)."""
        from mlflow.exceptions import MlflowException

        # mlflow run has already chosen the experiment: do not move its run elsewhere.
        if os.environ.get("MLFLOW_RUN_ID") and os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        with _store_lock(self.tracking_uri):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            # A sqlite store keeps its artifacts beside it (mlflow.db + mlruns/), wherever
            # the job happens to run; servers choose their own artifact root.
            database = _sqlite_path(self.tracking_uri)
            location = (database.parent / "mlruns").as_uri() if database else None
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:
                return self.client.get_experiment_by_name(name).experiment_id

    def start_run(self, experiment: str, run_name: str | None = None, tags: dict | None = None):
        """Start (or join, under ``mlflow run``) a run in ``experiment``."""
        import mlflow

        experiment_id = self.experiment_id(experiment)
        if os.environ.get("MLFLOW_RUN_ID"):
            return mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"], tags=tags)
        return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)

    def create_run(self, experiment: str, run_name: str | None = None, tags: dict | None = None) -> str:
        """A run for jobs that log from callback threads (foreachBatch) through the client.

        Fluent logging there would silently open a second run, so such jobs hold a run id.
        """
        if os.environ.get("MLFLOW_RUN_ID"):
            run_id = os.environ["MLFLOW_RUN_ID"]
            for key, value in (tags or {}).items():
                self.client.set_tag(run_id, key, value)
            return run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        # mlflow run closes its own run from the exit code; close only the ones we made.
        if run_id != os.environ.get("MLFLOW_RUN_ID"):
            self.client.set_terminated(run_id, status)
