"""The README's MLflow workflow exactly as a user types it: `mlflow run` with no extra flags, in a
fresh copy of the project whose store (mlflow.db beside it) does not exist yet; then the MLflow UI's
REST API on a real `mlflow server` over that store."""

import json
import re
import subprocess
import urllib.parse
import urllib.request

import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import PROJECT_ROOT, PYTHON, ManagedProcess, free_port, wait_for
from helpers import copy_project, env_without_tracking, http_ok

pytestmark = pytest.mark.slow
README = (PROJECT_ROOT / "README.md").read_text()
MODEL = "server-anomaly-detector"
DEFAULT_EXPERIMENT = "0"  # MLflow's Default: where `mlflow run` puts runs when no experiment is named


def typed_sequence() -> list[str]:
    """The workflow section's commands, one per line, as the README shows them."""
    section = README.split("## The MLflow workflow", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.+?)\n```", section, flags=re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.startswith("mlflow run")]


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """Every command of the README's sequence, run in order in a fresh project copy."""
    project = copy_project(tmp_path_factory.mktemp("workflow") / "project")
    env = {**env_without_tracking(), "PATH": f"{PROJECT_ROOT / '.venv' / 'bin'}:{env_without_tracking()['PATH']}"}
    steps = []
    for command in typed_sequence():
        done = subprocess.run(
            ["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        steps.append((command, done))
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return project, uri, steps


def entry(command: str) -> str:
    return command.split(" -e ", 1)[1].split()[0]


def test_the_readme_sequence_trains_two_models_replays_compares_promotes_and_rolls_back():
    entries = [entry(c) for c in typed_sequence()]
    assert entries.count("train") == 2 and entries.count("replay") == 2
    assert {"promote", "compare", "rollback"} <= set(entries)
    assert any("best_by=" in c for c in typed_sequence())
    assert all("--experiment-name" not in c for c in typed_sequence())


def test_every_step_lands_in_default_named_and_not_empty(workflow):
    _, uri, steps = workflow
    client = MlflowClient(uri, uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    # every run is in the experiment the README names: MLflow's Default, as no experiment was named
    assert {r.info.experiment_id for r in runs} == {DEFAULT_EXPERIMENT}
    assert "`Default`" in README.split("## The MLflow workflow", 1)[1].split("\n## ", 1)[0]
    # one run per step, plus a child per model for each two-model replay
    steps_run = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(steps_run) == len(steps)
    for run in runs:
        artifacts = client.list_artifacts(run.info.run_id)
        name = run.info.run_name
        assert run.info.status == "FINISHED", name
        assert run.data.metrics or artifacts, f"run {name} ({run.data.tags.get('step')}) is empty"
        assert not re.fullmatch(r"[a-z]+-[a-z]+-\d+", name), f"random run name {name}"
    for run in steps_run:
        # mlflow run logs parameters shell-quoted: none of the project's defaults need quotes
        assert not [v for v in run.data.params.values() if v.startswith("'")], run.data.params
    train_runs = [r for r in runs if r.data.tags.get("step") == "train"]
    assert sorted(r.info.run_name for r in train_runs) == ["train-k3-distance", "train-k7-distance"]
    assert all(r.data.tags.get("mlflow.note.content") for r in train_runs)


def test_compare_lists_both_models_and_best_by_promotes_the_better_nab_score(workflow):
    _, uri, steps = workflow
    client = MlflowClient(uri, uri)
    compared = next(done for command, done in steps if entry(command) == "compare")
    assert "ranked by the NAB standard score" in compared.stdout
    compare_run = client.search_runs([DEFAULT_EXPERIMENT], "tags.step = 'compare'")[0]
    local = client.download_artifacts(compare_run.info.run_id, "compare.csv")
    table = pd.read_csv(local, dtype={"model_version": str})
    assert sorted(table["model_version"]) == ["1", "2"]
    # the labelled replays' NAB scores, per version
    labelled = client.search_runs([DEFAULT_EXPERIMENT], "tags.step = 'replay' and params.labels_file != ''")
    nab = {r.data.params["model_version"]: r.data.metrics["nab_score_standard"] for r in labelled}
    assert set(nab) == {"1", "2"} and nab["1"] != nab["2"], nab
    better = max(nab, key=nab.get)
    assert table.loc[0, "model_version"] == better
    unlabelled = client.search_runs([DEFAULT_EXPERIMENT], "tags.step = 'replay' and params.labels_file = ''")
    assert {r.data.params["model_version"] for r in unlabelled} == {"1", "2"}
    # best_by moved production to the better model; the rollback then moved it back
    best_by = next(i for i, (command, _) in enumerate(steps) if "best_by=" in command)
    promote_runs = client.search_runs(
        [DEFAULT_EXPERIMENT], "tags.step = 'promote'", order_by=["attributes.start_time ASC"]
    )
    versions = [r.data.params["production_version"] for r in promote_runs]
    promotions_before = sum(1 for command, _ in steps[:best_by] if entry(command) == "promote")
    assert versions[promotions_before] == better
    aliases = {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}
    assert aliases["production"] == versions[-1] == versions[promotions_before - 1]
    assert aliases["previous"] == better


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_the_ui_rest_api_shows_lineage_descriptions_and_the_experiment_kind(workflow, tmp_path):
    project, uri, _ = workflow
    client = MlflowClient(uri, uri)
    port = free_port()
    server = ManagedProcess(
        [
            PYTHON,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        tmp_path / "server.log",
    )
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 120, "the MLflow server")
        train_run = client.get_run(client.get_model_version(MODEL, "1").run_id)
        # a train run's dataset input: the table it learned from, with its digest and context
        run = get_json(f"{api}/runs/get?run_id={train_run.info.run_id}")["run"]
        (dataset,) = run["inputs"]["dataset_inputs"]
        assert dataset["dataset"]["name"] == "metrics.csv"
        assert json.loads(dataset["dataset"]["source"])["uri"].endswith("data/sample/metrics.csv")
        assert dataset["dataset"]["digest"] == train_run.data.params["data_sha256"][:20]
        assert {"key": "mlflow.data.context", "value": "training"} in dataset["tags"]
        # a model version's description and tags say what it is and who moved production to it
        query = urllib.parse.urlencode({"name": MODEL, "version": "1"})
        version = get_json(f"{api}/model-versions/get?{query}")["model_version"]
        assert "KMeans (k=7" in version["description"] and train_run.info.run_id in version["description"]
        tags = {t["key"]: t["value"] for t in version["tags"]}
        assert tags["training_run"] == train_run.info.run_id and tags["k"] == "7"
        assert {"production.set_at", "production.set_by", "production.reason"} <= tags.keys()
        # the experiment opens on runs and charts, not MLflow 3's GenAI view
        experiment = get_json(f"{api}/experiments/get?experiment_id={DEFAULT_EXPERIMENT}")["experiment"]
        kinds = {t["key"]: t["value"] for t in experiment["tags"]}
        assert kinds["mlflow.experimentKind"] == "custom_model_development"
    finally:
        server.stop()
