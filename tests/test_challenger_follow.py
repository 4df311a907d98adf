"""The monitor's challenger follower against a real registry (tmp_path), without Spark: which
model it scores beside production, and when the query must restart for it."""

import dataclasses

import pandas as pd
from test_promote import NAME, register_versions, tiny_params

from core.model import log_anomaly_model
from streaming.challenger import Challenger
from streaming.model_tracker import ModelTracker
from streaming.monitor_options import parse_args
from training import promote


def test_the_challenger_alias_is_followed_beside_production_and_never_doubles_it(mlflow_service, capsys):
    client = mlflow_service.client
    register_versions(mlflow_service, 3)
    promote.promote(client, NAME, version="1")
    tracker = ModelTracker(client, "", NAME)
    challenger = Challenger(client, tracker, "auto")
    # given no challenger alias: production alone
    assert challenger.current is None and challenger.activate(tracker.current) is None
    # when the alias is set, the next look names it and the query must restart to score it
    promote.promote(client, NAME, version="2", alias="challenger")
    tracker.refresh()
    assert challenger.refresh() == f"CHALLENGER: challenger moved from none to {NAME} v2"
    assert challenger.changed(tracker.current)
    key, params = challenger.activate(tracker.current)
    assert key == f"models:/{NAME}/2" and params.threshold == 2.0
    assert f"challenger {NAME} v2 scored beside {NAME} v1" in capsys.readouterr().out
    assert challenger.refresh() is None and not challenger.changed(tracker.current)
    # when production moves to the challenger's version, that version is scored once, as production
    promote.promote(client, NAME, version="2")
    assert tracker.refresh().startswith("MODEL SWITCH")
    assert challenger.refresh() is None and challenger.changed(tracker.current)
    assert challenger.activate(tracker.current) is None
    assert f"challenger {NAME} v2 is production now: production alone" in capsys.readouterr().out
    # when the alias moves to the old production, it is the challenger again; removed, none
    promote.promote(client, NAME, version="1", alias="challenger")
    assert challenger.refresh() == f"CHALLENGER: challenger moved from {NAME} v2 to {NAME} v1"
    assert challenger.changed(tracker.current) and challenger.activate(tracker.current)[0] == f"models:/{NAME}/1"
    promote.remove_alias(client, NAME, "challenger")
    assert challenger.refresh() == f"CHALLENGER: alias 'challenger' of {NAME} removed (was {NAME} v1)"
    assert challenger.changed(tracker.current) and challenger.activate(tracker.current) is None


def test_none_turns_it_off_a_pinned_production_has_no_auto_challenger_and_other_inputs_are_not_scored(
    mlflow_service, capsys
):
    client = mlflow_service.client
    register_versions(mlflow_service, 2)
    promote.promote(client, NAME, version="1")
    promote.promote(client, NAME, version="2", alias="challenger")
    tracker = ModelTracker(client, "", NAME)
    assert Challenger(client, tracker, "none").activate(tracker.current) is None
    assert Challenger(client, ModelTracker(client, f"{NAME}/1", NAME), "auto").current is None
    assert Challenger(client, tracker, f"{NAME}/2").activate(tracker.current)[0] == f"models:/{NAME}/2"
    # a challenger that reads other input columns than production's is said once and not scored
    narrow = dataclasses.replace(
        tiny_params(),
        features=["cpu", "disk"],
        mean=[0.0] * 2,
        scale=[1.0] * 2,
        centroids=[[0.0] * 2, [10.0] * 2],
        bounds={},
    )
    with mlflow_service.start_run("challenger-tests"):
        log_anomaly_model(narrow, pd.DataFrame({"cpu": [1.0], "disk": [1.0]}), NAME)
    promote.promote(client, NAME, version="3", alias="challenger")
    challenger = Challenger(client, tracker, "auto")
    assert challenger.current.version == "3"
    assert challenger.activate(tracker.current) is None
    assert challenger.activate(tracker.current) is None
    out = capsys.readouterr().out
    assert out.count(f"WARNING: challenger {NAME} v3 takes cpu, disk, production cpu, disk, network: not scored") == 1


def test_the_monitor_option_defaults_to_auto_and_reads_none():
    assert parse_args(["--input", "in"]).challenger == "auto"
    assert parse_args(["--input", "in", "--challenger", "none"]).challenger == "none"
    assert parse_args(["--input", "in", "--challenger", f"{NAME}/2"]).challenger == f"{NAME}/2"
