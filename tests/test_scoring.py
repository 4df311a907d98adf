"""The scoring core on small hand-made models (no Spark, no MLflow)."""

import math

import numpy as np
import pandas as pd
import pytest

from core.distances import squared_distances
from core.scoring import (
    INVALID_CLUSTER,
    OUTPUT_COLUMNS,
    ModelParams,
    score_frame,
)
from core.validity import MissingFeaturesError


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
        "missing value for cpu",
        "non-finite value for cpu",
        "cpu below 0",
        "",
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


# -- history features and alerts -------------------------------------------------------------
from core.history import history_features  # noqa: E402
from core.scoring import SeriesState, apply_alerts, score_series  # noqa: E402


def test_history_features_on_a_worked_series():
    # given values 1, 3, 6, 10 and a window of 3 rows
    values = np.array([[1.0], [3.0], [6.0], [10.0]])
    # when
    vectors, tail = history_features(["value", "delta", "mean", "std"], 3, values, [])
    # then the first row uses what there is: a delta of 0, a window of itself
    assert vectors[:, 0].tolist() == [1, 3, 6, 10]
    assert vectors[:, 1].tolist() == [0, 2, 3, 4]
    assert vectors[:, 2].tolist() == pytest.approx([1, 2, 10 / 3, 19 / 3])
    assert vectors[:, 3].tolist() == pytest.approx([0, 1, np.std([1, 3, 6]), np.std([3, 6, 10])])
    # and the tail keeps the rows the next window needs
    assert tail == [[6.0], [10.0]]


@pytest.mark.parametrize("span", [24, 288])
def test_history_features_of_a_split_series_equal_the_whole_bit_for_bit(span):
    # the windows that reach before the series' start are computed apart from the others: a cut
    # anywhere, within them or past them, gives the same bits
    values = np.random.default_rng(7).lognormal(size=(3000, 2)) * 1e6
    whole, _ = history_features(["delta", "mean", "std"], span, values, [])
    parts, tail = [], []
    for start, end in [(0, 1), (1, 7), (7, 30), (30, 290), (290, 500), (500, 3000)]:
        vectors, tail = history_features(["delta", "mean", "std"], span, values[start:end], tail)
        parts.append(vectors)
    assert np.array_equal(np.vstack(parts), whole)


@pytest.mark.parametrize("rows", [1, 30, 50_000])  # 50,000 rows of 3 inputs span several blocks
def test_history_features_of_several_inputs_equal_each_input_alone_bit_for_bit(rows):
    # given three inputs of very different scales and a tail of earlier rows
    rng = np.random.default_rng(11)
    values = rng.lognormal(size=(rows, 3)) * np.array([1.0, 1e6, 1e-3])
    tail = (rng.lognormal(size=(10, 3)) * np.array([1.0, 1e6, 1e-3])).tolist()
    history = ["value", "delta", "mean", "std"]
    # when they are computed together and one input at a time
    together, _ = history_features(history, 24, values, tail)
    alone = [history_features(history, 24, values[:, [j]], [[row[j]] for row in tail])[0] for j in range(3)]
    # then the windows are summed in the same order: the same bits, not merely close ones
    assert np.array_equal(together, np.hstack(alone))


@pytest.mark.parametrize("span", [1, 2, 7, 24, 200])
def test_window_mean_and_std_are_numpys_nanmean_and_nanstd_bit_for_bit(span):
    # given windows as history_features makes them: NaN before a series' first row, values of
    # many scales, some windows reaching back before the start
    from core.history import window_mean_std

    rng = np.random.default_rng(span)
    values = rng.lognormal(sigma=3, size=(3, 400)) * np.array([[1.0], [1e9], [1e-6]])
    padded = np.concatenate([np.full((3, span - 1), np.nan), values], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, span, axis=1)
    # when the shared pass computes both
    mean, std = window_mean_std(windows)
    # then they are numpy's own results, not merely close ones
    assert np.array_equal(mean, np.nanmean(windows, axis=2))
    assert np.array_equal(std, np.nanstd(windows, axis=2))
    assert np.array_equal(window_mean_std(windows, with_std=False)[0], mean)
    # and the windows past the padding, taken without a mask, are the same bits
    full = windows[:, span - 1 :]
    complete_mean, complete_std = window_mean_std(full, complete=True)
    assert np.array_equal(complete_mean, mean[:, span - 1 :]) and np.array_equal(complete_std, std[:, span - 1 :])
    assert np.array_equal(window_mean_std(full, with_std=False, complete=True)[0], complete_mean)


@pytest.mark.parametrize(
    "scores, threshold, cooldown, expected",
    [
        # one incident of five rows above the threshold pages once
        ([0.1, 0.9, 0.95, 0.9, 0.8, 0.9, 0.1], 0.8, 10, [1]),
        # no cooldown: every row at or above the threshold alerts
        ([0.1, 0.9, 0.8, 0.1], 0.8, 0, [1, 2]),
        # a second incident after the cooldown pages again; one inside it does not
        ([0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9], 0.5, 3, [0, 6]),
        # exactly cooldown rows later is still suppressed; one more row is not
        ([0.9, 0, 0, 0.9, 0.9], 0.5, 3, [0, 4]),
        # missing scores (invalid rows) never alert
        ([np.nan, 0.9], 0.5, 3, [1]),
    ],
)
def test_alert_suppression_on_worked_cases(scores, threshold, cooldown, expected):
    alerts = apply_alerts(threshold, cooldown, np.array(scores, dtype=float))[0]
    assert np.flatnonzero(alerts).tolist() == expected


def test_the_cooldown_carries_across_batches():
    scores = np.array([0.9, 0.1, 0.1, 0.9, 0.1, 0.9, 0.9, 0.1])
    whole = apply_alerts(0.5, 3, scores)[0]
    first, carried = apply_alerts(0.5, 3, scores[:2])
    second, carried = apply_alerts(0.5, 3, scores[2:5], carried.rows_since_alert)
    third = apply_alerts(0.5, 3, scores[5:], carried.rows_since_alert)[0]
    assert np.concatenate([first, second, third]).tolist() == whole.tolist()
    assert np.flatnonzero(whole).tolist() == [0, 5]


@pytest.mark.parametrize(
    "scores, expected",
    [
        # an incident that lasts pages once, however long it is
        ([0.9, 0.9, 0.9, 0.9, 0.9, 0.9], [0]),
        # two quiet rows end the incident: the next one pages within the cooldown
        ([0.9, 0.1, 0.1, 0.9, 0.9], [0, 3]),
        # one quiet row does not
        ([0.9, 0.1, 0.9, 0.1, 0.9], [0]),
        # a hot row inside the cooldown starts the quiet count again
        ([0.9, 0.1, 0.9, 0.1, 0.1, 0.9], [0, 5]),
        # warming or invalid rows (no score) count as quiet
        ([0.9, np.nan, np.nan, 0.9], [0, 3]),
    ],
)
def test_an_alert_rearms_within_the_cooldown_once_its_incident_is_over(scores, expected):
    # Given a cooldown of 10 rows that re-arms after 2 rows below the threshold
    alerts = apply_alerts(0.5, 10, np.array(scores, dtype=float), rearm_after=2)[0]
    # Then a new incident pages, a continuing one does not
    assert np.flatnonzero(alerts).tolist() == expected


def test_rearming_carries_across_batches_split_anywhere():
    scores = np.array([0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.2, 0.9])
    whole = apply_alerts(0.5, 8, scores, rearm_after=2)[0]
    assert np.flatnonzero(whole).tolist() == [0, 5, 10]
    for cut in range(1, len(scores)):
        first, counts = apply_alerts(0.5, 8, scores[:cut], rearm_after=2)
        second = apply_alerts(0.5, 8, scores[cut:], counts.rows_since_alert, 2, counts.rows_since_hot)[0]
        assert np.concatenate([first, second]).tolist() == whole.tolist(), cut


def test_a_row_marked_to_page_in_the_cooldown_too_pages_whenever_it_reaches_the_threshold():
    # given a cooldown of 10 rows and rows 2 and 4 marked (as rows past their series' range are)
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    marked = np.array([False, False, True, False, True, False])
    # when alerts are raised
    alerts, counts = apply_alerts(0.5, 10, scores, in_cooldown_too=marked)
    # then the marked rows page within the cooldown and restart it; the others stay quiet
    assert np.flatnonzero(alerts).tolist() == [0, 2, 4] and counts.rows_since_alert == 1
    # and a marked row below the threshold does not page
    assert not apply_alerts(0.5, 10, np.array([0.9, 0.1]), in_cooldown_too=np.array([False, True]))[0][1]


def test_a_cooldown_in_time_goes_by_the_rows_timestamps_not_their_count():
    # given a 60 s cooldown, and a series whose rows come every 10 s until a 100 s gap
    times = np.array([0.0, 10, 20, 30, 130, 140, 150, 210, 220])
    scores = np.full(len(times), 0.9)
    # when every row scores at the threshold
    alerts, counts = apply_alerts(0.5, 1000, scores, times=times, cooldown_seconds=60)
    # then a row pages once more than 60 s have passed since the last alert, however few rows
    assert np.flatnonzero(alerts).tolist() == [0, 4, 7] and counts.last_alert_at == 210
    # and without times the same cooldown counts rows instead (1000 rows: one alert)
    assert np.flatnonzero(apply_alerts(0.5, 1000, scores, cooldown_seconds=60)[0]).tolist() == [0]


def test_a_cooldown_in_time_carries_across_batches_split_anywhere():
    times = np.array([0.0, 10, 20, 75, 80, 90, 200, 205, 300, 310])
    scores = np.array([0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.1, 0.9])
    whole = apply_alerts(0.5, 3, scores, times=times, cooldown_seconds=60)[0]
    assert np.flatnonzero(whole).tolist() == [0, 3, 6, 9]
    for cut in range(1, len(scores)):
        first, counts = apply_alerts(0.5, 3, scores[:cut], times=times[:cut], cooldown_seconds=60)
        second = apply_alerts(
            0.5,
            3,
            scores[cut:],
            counts.rows_since_alert,
            times=times[cut:],
            cooldown_seconds=60,
            last_alert_at=counts.last_alert_at,
        )[0]
        assert np.concatenate([first, second]).tolist() == whole.tolist(), cut


def test_a_state_from_before_rearming_counts_quiet_rows_from_its_last_alert():
    # Given a state that knows its last alert (3 rows back) but not its last hot row
    alerts = apply_alerts(0.5, 10, np.array([0.9]), rows_since_alert=3, rearm_after=3, rows_since_hot=None)[0]
    # Then the rows since that alert count as quiet
    assert alerts.tolist() == [True]
    assert apply_alerts(0.5, 10, np.array([0.9]), 1, 3, None)[0].tolist() == [False]


def test_score_series_continues_from_state_and_invalid_rows_leave_it_alone():
    params = ModelParams(
        features=["cpu"],
        mean=[50.0, 5.0],
        scale=[0.1, 0.2],
        centroids=[[0.0, 0.0]],
        expected_label=0,
        rule="distance",
        threshold=1.0,
        history=["mean", "std"],
        span=4,
        alert_threshold=0.6,
        cooldown=5,
        bounds={"cpu": [0.0, 100.0]},
    )
    rows = pd.DataFrame({"cpu": [50, 52, 48, 95, 97, 150, 96, 50, 51, 49]})
    whole, state = score_series(params, rows)
    first, middle = score_series(params, rows.iloc[:5])
    second, end = score_series(params, rows.iloc[5:], SeriesState.from_json(middle.to_json()))
    split = pd.concat([first, second])
    pd.testing.assert_frame_equal(whole, split)
    assert end == state and state.rows == 9  # the invalid row (cpu 150) is not history
    assert not whole["is_valid"].iloc[5] and whole["invalid_reason"].iloc[5] == "cpu above 100"
    assert whole["is_alert"].sum() == 1 and whole["is_anomaly"].sum() > 1


def test_serving_rows_carry_their_own_history_per_series():
    params = ModelParams(
        features=["cpu"],
        mean=[50.0, 5.0],
        scale=[0.1, 0.2],
        centroids=[[0.0, 0.0]],
        expected_label=0,
        rule="distance",
        threshold=1.0,
        history=["mean", "std"],
        span=3,
    )
    request = pd.DataFrame({"cpu": [10.0, 90.0, 20.0, 80.0], "series": ["a", "b", "a", "b"]})
    scored = score_frame(params, request)
    # rows of series a are [10, 20]; the second row's window is both
    assert scored["cpu_mean"].tolist() == [10.0, 90.0, 15.0, 85.0]
    assert scored["cpu_std"].tolist() == [0.0, 0.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "texts, expected",
    [
        # plain numbers: Arrow's reading
        (["0.20199999999999999", "23.5", "-0", "1e5", ".5"], [0.20199999999999999, 23.5, -0.0, 1e5, 0.5]),
        # beside texts that are not finite numbers: pandas' tolerant reading, then float()'s
        (["0.20199999999999999", " 23.5", "abc", "", "nan", None], [0.20199999999999999, 23.5] + [math.nan] * 4),
    ],
)
def test_numbers_are_read_as_python_reads_them_whatever_else_the_column_holds(texts, expected):
    # given texts of numbers, on their own or beside texts that are not numbers
    from core.validity import read_numbers

    # when they are read
    read = read_numbers(pd.Series(texts, dtype=object))
    # then every number is the nearest double (pandas' own reading is 1 ulp off on the first)
    # and what is not a finite number is NaN, for the text checks to name
    assert [str(v) for v in read] == [str(v) for v in expected]
    assert read[0] == float("0.20199999999999999") != pd.to_numeric(pd.Series(texts[:1]))[0]


def test_a_clean_file_and_a_file_needing_a_closer_look_read_the_same_number_alike():
    # given the same value in a clean file and in a file with one bad line
    from core.csv_input import parse_files

    params = two_cluster_model()
    header = b"timestamp,cpu,disk,network\n"
    line = b"2026-01-05 00:00:00,0.20199999999999999,1,1\n"
    clean = parse_files(params, [("/in/a.csv", header + line)])
    mixed = parse_files(params, [("/in/b.csv", header + line + b"2026-01-05 00:05:00,x,1,1\n")])
    # then both read it as Python does
    assert clean["cpu"].iloc[0] == mixed["cpu"].iloc[0] == float("0.20199999999999999")


def test_squared_distances_sum_the_features_in_order_as_spark_sql_does():
    # given points and centroids over 9 features (more than numpy sums in order along an axis)
    rng = np.random.default_rng(3)
    points, centroids = rng.normal(size=(50, 9)), rng.normal(size=(4, 9))
    # when the core measures them
    squared = squared_distances(points, centroids)
    # then each is ((d0^2 + d1^2) + d2^2) + ..., the order of the Spark SQL expressions, bit for bit
    for i in range(len(points)):
        for j in range(len(centroids)):
            total = None
            for a, c in zip(points[i], centroids[j]):
                term = (float(a) - float(c)) * (float(a) - float(c))
                total = term if total is None else total + term
            assert squared[i, j] == total
