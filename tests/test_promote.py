"""Promotion and rollback of the 'production' alias in a real MLflow registry (tmp_path)."""

import math

import mlflow
import pandas as pd
import pytest

from core.model import log_anomaly_model
from core.registry import resolve_model
from core.scoring import ModelParams
from training import promote

NAME = "promo-detector"


def tiny_params(threshold=1.0) -> ModelParams:
    return ModelParams(
        features=["cpu", "disk", "network"],
        mean=[0.0] * 3,
        scale=[1.0] * 3,
        centroids=[[0.0] * 3, [10.0] * 3],
        expected_label=0,
        rule="distance",
        threshold=threshold,
        bounds={"cpu": [0, 100], "disk": [0, math.inf], "network": [0, math.inf]},
    )


def register_versions(service, count: int) -> list[str]:
    """A small fake of training: log and register ``count`` versions; returns their run ids."""
    example = pd.DataFrame({"cpu": [1.0, 2.0], "disk": [1.0, 2.0], "network": [1.0, 2.0]})
    run_ids = []
    for i in range(count):
        with service.start_run("promote-tests"):
            log_anomaly_model(tiny_params(threshold=1.0 + i), example, NAME)
            run_ids.append(mlflow.active_run().info.run_id)
    return run_ids


def aliases(service) -> dict:
    return {a: str(v) for a, v in service.client.get_registered_model(NAME).aliases.items()}


def test_promote_without_a_choice_takes_the_newest_version(mlflow_service):
    register_versions(mlflow_service, 3)
    result = promote.promote(mlflow_service.client, NAME)
    assert (result.production, result.previous) == ("3", None)
    assert aliases(mlflow_service) == {"production": "3"}


def test_promote_by_number_keeps_the_replaced_version_as_previous_and_rollback_swaps(mlflow_service):
    register_versions(mlflow_service, 3)
    promote.promote(mlflow_service.client, NAME, version="1")
    promote.promote(mlflow_service.client, NAME, version="2")
    assert aliases(mlflow_service) == {"production": "2", "previous": "1"}
    # when rolling back
    result = promote.rollback(mlflow_service.client, NAME)
    # then the two swap, and a second rollback swaps them again
    assert result.production == "1"
    assert aliases(mlflow_service) == {"production": "1", "previous": "2"}
    promote.rollback(mlflow_service.client, NAME)
    assert aliases(mlflow_service) == {"production": "2", "previous": "1"}


def test_promote_by_training_run_id(mlflow_service):
    run_ids = register_versions(mlflow_service, 2)
    result = promote.promote(mlflow_service.client, NAME, run_id=run_ids[0])
    assert result.production == "1"
    # the monitor's resolver now reads version 1's parameters through the alias
    loaded = resolve_model(mlflow_service.client, f"{NAME}@production")
    assert (loaded.version, loaded.run_id, loaded.params.threshold) == ("1", run_ids[0], 1.0)


def test_promoting_the_current_version_changes_nothing(mlflow_service):
    register_versions(mlflow_service, 2)
    promote.promote(mlflow_service.client, NAME, version="1")
    promote.promote(mlflow_service.client, NAME, version="2")
    result = promote.promote(mlflow_service.client, NAME, version="2")
    assert not result.changed
    assert aliases(mlflow_service) == {"production": "2", "previous": "1"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model-name", "nobody"], "no registered model named 'nobody'"),
        (["--model-name", NAME, "--version", "9"], f"model '{NAME}' has no version 9"),
        (["--model-name", NAME, "--run-id", "abc123"], "no version of model"),
        (["--model-name", NAME, "--rollback"], "no 'previous' version to roll back to"),
    ],
)
def test_promotion_errors_are_clear_and_exit_non_zero(mlflow_service, capsys, argv, message):
    register_versions(mlflow_service, 1)
    code = promote.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_a_missing_alias_names_the_model_and_the_promote_command(mlflow_service):
    register_versions(mlflow_service, 1)
    from core.errors import UserError

    with pytest.raises(UserError, match=f"no version under alias 'production'.*-e promote.*{NAME}"):
        resolve_model(mlflow_service.client, "", default_name=NAME)
