"""The scoring core on small hand-made models (no Spark, no MLflow)."""

import math

import numpy as np
import pandas as pd
import pytest

from core.scoring import (
    INVALID_CLUSTER,
    OUTPUT_COLUMNS,
    MissingFeaturesError,
    ModelParams,
    score_frame,
)


def two_cluster_model(rule="distance", threshold=1.0) -> ModelParams:
    return ModelParams(
        features=["cpu", "disk", "network"],
        mean=[50.0, 100.0, 100.0],
        scale=[0.1, 0.01, 0.0],  # network has no spread: it must not matter
        centroids=[[-1.0, 0.0, 0.0], [3.0, 0.0, 0.0]],
        expected_label=0,
        rule=rule,
        threshold=threshold,
        bounds={"cpu": [0.0, 100.0], "disk": [0.0, math.inf], "network": [0.0, math.inf]},
    )


def test_rows_are_assigned_to_the_nearest_centroid_with_scaled_distance():
    # given rows near each centroid; network is huge but has zero scale
    rows = pd.DataFrame({"cpu": [40.0, 80.0], "disk": [100.0, 100.0], "network": [5.0, 1e9]})
    # when
    scored = score_frame(two_cluster_model(), rows)
    # then
    assert list(scored.columns) == OUTPUT_COLUMNS
    assert scored["cluster"].tolist() == [0, 1]
    assert scored["distance"].tolist() == pytest.approx([0.0, 0.0])
    assert scored["is_valid"].all()


def test_distance_rule_flags_beyond_threshold_and_score_crosses_half_there():
    rows = pd.DataFrame({"cpu": [40.0, 45.0, 60.0], "disk": [100.0] * 3, "network": [1.0] * 3})
    scored = score_frame(two_cluster_model(threshold=0.4), rows)
    # distances from centroid 0 (z=-1): 0, 0.5, then cpu 60 -> z=1, nearest is still 0 at 2.0
    assert scored["distance"].tolist() == pytest.approx([0.0, 0.5, 2.0])
    assert scored["is_anomaly"].tolist() == [False, True, True]
    assert scored["anomaly_score"].tolist() == pytest.approx([0.0, 0.5 / 0.9, 2.0 / 2.4])
    assert ((scored["anomaly_score"] >= 0) & (scored["anomaly_score"] <= 1)).all()


def test_cluster_rule_flags_rows_outside_the_expected_label():
    rows = pd.DataFrame({"cpu": [40.0, 80.0], "disk": [100.0, 100.0], "network": [1.0, 1.0]})
    scored = score_frame(two_cluster_model(rule="cluster"), rows)
    assert scored["is_anomaly"].tolist() == [False, True]
    assert scored["anomaly_score"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    "cpu, reason",
    [
        ("abc", "non-numeric value for cpu"),
        ("", "missing value for cpu"),
        (None, "missing value for cpu"),
        ("NaN", "non-finite value for cpu"),
        ("inf", "non-finite value for cpu"),
        ("-1", "cpu below 0"),
        ("150", "cpu above 100"),
    ],
)
def test_a_row_that_cannot_be_scored_is_marked_invalid_and_the_others_still_score(cpu, reason):
    rows = pd.DataFrame({"cpu": [cpu, "40"], "disk": ["100", "100"], "network": ["1", "1"]})
    scored = score_frame(two_cluster_model(), rows)
    assert scored["is_valid"].tolist() == [False, True]
    assert scored["invalid_reason"].tolist() == [reason, ""]
    assert scored["cluster"].iloc[0] == INVALID_CLUSTER
    assert not scored["is_anomaly"].iloc[0]
    assert np.isnan(scored["distance"].iloc[0])
    assert scored["cluster"].iloc[1] == 0


def test_numeric_frames_get_the_same_reasons_as_text():
    rows = pd.DataFrame({"cpu": [np.nan, np.inf, -3.0, 20.0], "disk": [1.0] * 4, "network": [1.0] * 4})
    scored = score_frame(two_cluster_model(), rows)
    assert scored["invalid_reason"].tolist() == [
        "missing value for cpu", "non-finite value for cpu", "cpu below 0", "",
    ]


def test_missing_feature_columns_are_an_error_for_the_whole_input():
    with pytest.raises(MissingFeaturesError, match="disk, network"):
        score_frame(two_cluster_model(), pd.DataFrame({"cpu": [1.0]}))


def test_params_survive_a_json_round_trip_including_open_bounds():
    params = two_cluster_model()
    assert ModelParams.from_json(params.to_json()) == params


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="unknown rule"):
        two_cluster_model(rule="nearest")


def test_centroids_convert_back_to_original_units():
    centres = two_cluster_model().centroids_in_original_units()
    assert centres[:, 0].tolist() == pytest.approx([40.0, 80.0])
    assert centres[:, 2].tolist() == pytest.approx([100.0, 100.0])  # zero scale: the mean
