"""promote --alias: any alias moves like production, recorded on the versions as <alias>.*;
only production keeps a 'previous' and rolls back."""

import pytest
from test_promote import NAME, aliases, register_versions

from training import promote


def tags(service, version: str) -> dict:
    return service.client.get_model_version(NAME, version).tags


def test_promote_alias_challenger_moves_only_the_challenger_and_records_it(mlflow_service, capsys):
    register_versions(mlflow_service, 3)
    promote.promote(mlflow_service.client, NAME, version="1")
    # when version 2, then 3 become the challenger, as `mlflow run . -e promote -P alias=challenger` does
    assert promote.main(["--model-name", NAME, "--alias", "challenger", "--version", "2"]) == 0
    assert promote.main(["--model-name", NAME, "--alias", "challenger", "--version", "3"]) == 0
    out = capsys.readouterr().out
    # then production is untouched, no 'previous' is made, and each move is said
    assert aliases(mlflow_service) == {"production": "1", "challenger": "3"}
    assert f"{NAME}: challenger -> version 2" in out and f"{NAME}: challenger -> version 3 (replaced: 2)" in out
    # and the versions record who moved it, when, from which version and why, under the alias's name
    three = tags(mlflow_service, "3")
    assert three["challenger.replaced_version"] == "2" and three["challenger.reason"] == "version 3 chosen"
    assert {"challenger.set_at", "challenger.set_by"} <= three.keys()
    assert tags(mlflow_service, "2")["challenger.replaced_by"] == "3"
    assert not any(k.startswith("production.") for k in three)
    # and production's own record and rollback keep working beside it
    promote.record_promotion(mlflow_service.client, promote.promote(mlflow_service.client, NAME, version="2"), "test")
    assert tags(mlflow_service, "2")["production.replaced_version"] == "1"
    assert promote.main(["--model-name", NAME, "--rollback"]) == 0
    assert aliases(mlflow_service) == {"production": "1", "previous": "2", "challenger": "3"}


def test_promoting_the_challenger_s_version_says_it_holds_both_and_remove_takes_the_challenger_away(
    mlflow_service, capsys
):
    register_versions(mlflow_service, 2)
    promote.promote(mlflow_service.client, NAME, version="1")
    promote.promote(mlflow_service.client, NAME, version="2", alias="challenger")
    # when the challenger wins and is promoted
    assert promote.main(["--model-name", NAME, "--version", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}: production -> version 2 (previous: 1)" in out and "version 2 also holds challenger" in out
    # and the challenger alias is removed
    assert promote.main(["--model-name", NAME, "--alias", "challenger", "--remove"]) == 0
    assert f"{NAME}: challenger removed (was version 2)" in capsys.readouterr().out
    assert aliases(mlflow_service) == {"production": "2", "previous": "1"}
    assert tags(mlflow_service, "2")["challenger.replaced_by"] == "none"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--alias", "challenger", "--rollback"], "--rollback swaps production and previous"),
        (["--alias", "previous"], "--alias must be a plain name"),
        (["--remove"], "'production' is not removed, only moved"),
        (["--alias", "challenger", "--remove"], f"model '{NAME}' has no version under alias 'challenger'"),
    ],
)
def test_alias_misuse_is_one_clear_line(mlflow_service, capsys, argv, message):
    register_versions(mlflow_service, 1)
    assert promote.main(["--model-name", NAME, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
