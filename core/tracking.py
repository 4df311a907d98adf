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
from core.paths import PROJECT_ROOT

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

HEALTH_TIMEOUT_SECONDS = 5.0
# MLflow 3's UI opens an experiment in the view this tag names.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"


def default_tracking_uri(root: Path = PROJECT_ROOT) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def resolved_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
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

    def start(self) -> MlflowService:
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

    def __enter__(self) -> MlflowService:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        import mlflow

        if exc_type is not None and mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED")
        self.stop()

    def experiment_id(self, name: str) -> str:
        """The id of the experiment a job's run goes to: ``name``, created on first use
        (artifacts under mlruns/ by default), or the one ``mlflow run`` already chose."""
        from mlflow.exceptions import MlflowException

        # mlflow run has already chosen the experiment: do not move its run elsewhere.
        if os.environ.get("MLFLOW_RUN_ID") and os.environ.get("MLFLOW_EXPERIMENT_ID"):
            experiment_id = os.environ["MLFLOW_EXPERIMENT_ID"]
            self.mark_model_development(experiment_id)
            return experiment_id
        with _store_lock(self.tracking_uri):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                self.mark_model_development(found.experiment_id, found.tags)
                return found.experiment_id
            # A sqlite store keeps its artifacts beside it (mlflow.db + mlruns/), wherever
            # the job happens to run; servers choose their own artifact root.
            database = _sqlite_path(self.tracking_uri)
            location = (database.parent / "mlruns").as_uri() if database else None
            try:
                experiment_id = self.client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT}
                )
            except MlflowException:
                experiment_id = self.client.get_experiment_by_name(name).experiment_id
            return experiment_id

    def mark_model_development(self, experiment_id: str, tags: dict | None = None) -> None:
        """Have the MLflow UI open the experiment on its runs and charts, not the GenAI view.

        An experiment kind someone already chose is left alone."""
        if tags is None:
            tags = self.client.get_experiment(experiment_id).tags
        if EXPERIMENT_KIND_TAG not in tags:
            self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)

    def describe_joined_run(
        self, run_name: str | None, tags: dict | None = None, description: str | None = None
    ) -> str | None:
        """For a job that needs no run of its own (promote, compare): the run ``mlflow run``
        made for it, named and described, or None outside ``mlflow run``."""
        run_id = joined_run_id()
        if run_id:
            if os.environ.get("MLFLOW_EXPERIMENT_ID"):
                self.mark_model_development(os.environ["MLFLOW_EXPERIMENT_ID"])
            self._describe_joined_run(run_id, run_name, description, tags)
        return run_id

    def _describe_joined_run(
        self, run_id: str, run_name: str | None, description: str | None, tags: dict | None
    ) -> None:
        """Name and describe the run ``mlflow run`` made, which it left with a random name."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

        extra = dict(tags or {})
        if run_name:
            extra[MLFLOW_RUN_NAME] = run_name
        if description:
            extra[MLFLOW_RUN_NOTE] = description
        for key, value in extra.items():
            self.client.set_tag(run_id, key, value)

    def start_run(
        self, experiment: str, run_name: str | None = None, tags: dict | None = None, description: str | None = None
    ):
        """Start (or join, under ``mlflow run``) a run in ``experiment``."""
        import mlflow

        experiment_id = self.experiment_id(experiment)
        if os.environ.get("MLFLOW_RUN_ID"):
            run_id = os.environ["MLFLOW_RUN_ID"]
            self._describe_joined_run(run_id, run_name, description, tags)
            return mlflow.start_run(run_id=run_id)
        return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags, description=description)

    def create_run(
        self, experiment: str, run_name: str | None = None, tags: dict | None = None, description: str | None = None
    ) -> str:
        """A run for jobs that log from callback threads (foreachBatch) through the client.

        Fluent logging there would silently open a second run, so such jobs hold a run id.
        """
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

        experiment_id = self.experiment_id(experiment)
        if os.environ.get("MLFLOW_RUN_ID"):
            run_id = os.environ["MLFLOW_RUN_ID"]
            self._describe_joined_run(run_id, run_name, description, tags)
            return run_id
        tags = {**(tags or {}), **({MLFLOW_RUN_NOTE: description} if description else {})}
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        # mlflow run closes its own run from the exit code; close only the ones we made.
        if run_id != os.environ.get("MLFLOW_RUN_ID"):
            self.client.set_terminated(run_id, status)

    def experiments_with_runs(self) -> list[str]:
        """Every active experiment's id: jobs look runs up by their tags wherever they are."""
        return [e.experiment_id for e in self.client.search_experiments()]


def joined_run_id() -> str | None:
    """The run ``mlflow run`` started for this job, if it started one."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def log_dataset(client, run_id: str, uri: str, name: str, digest: str, columns: dict[str, str], context: str) -> bool:
    """Record ``uri`` as the run's dataset input (the UI's "Datasets" column); False if MLflow
    cannot name a source for the URI's scheme, which only costs the lineage."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import ColSpec, Schema
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():
        # A file URI matches two equivalent local sources; MLflow warns that it picked one.
        warnings.simplefilter("ignore", UserWarning)
        try:
            source = resolve_dataset_source(uri)
        except Exception:  # noqa: BLE001 - any scheme MLflow does not know
            return False
    schema = Schema([ColSpec(kind, column) for column, kind in columns.items()])
    dataset = MetaDataset(source=source, name=name, digest=digest[:20], schema=schema)
    client.log_inputs(
        run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    )
    return True
