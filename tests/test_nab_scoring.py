"""NAB scoring against cases worked by hand from the published rules.

Every case: a file of 100 rows (probation: the first 15), one window over rows 40..49
(W = 10, right edge r = 49). sigma(x) = 2 / (1 + exp(5x)) - 1; sigma(-1) = 0.986614.
"""

import numpy as np
import pandas as pd
import pytest

from replay.nab_scoring import (
    best_threshold,
    normalised,
    probationary_rows,
    score_file,
    window_metrics,
    window_rows,
)

WINDOW = [(40, 49)]


def detections(*rows, length=100):
    flags = np.zeros(length, dtype=bool)
    flags[list(rows)] = True
    return flags


def test_probationary_period_is_15_percent_capped_at_750():
    assert probationary_rows(100) == 15
    assert probationary_rows(4032) == 604
    assert probationary_rows(10000) == 750


def test_a_detection_at_the_start_of_the_window_earns_the_full_reward():
    # p = -(49 - 40 + 1) / 10 = -1: A_TP * sigma(-1) / sigma(-1) = 1
    score = score_file(detections(40), WINDOW)
    assert score.raw == pytest.approx(1.0)
    assert normalised([score]) == pytest.approx(100.0)


def test_a_late_detection_earns_less():
    # i = 48: p = -(49 - 48 + 1) / 10 = -0.2; sigma(-0.2) = 0.462117; 0.462117 / 0.986614 = 0.468387
    assert score_file(detections(48), WINDOW).raw == pytest.approx(0.468387, abs=1e-6)


def test_a_detection_outside_every_window_with_none_before_costs_a_full_fp():
    # i = 20, no preceding window: A_FP * -1 = -0.11; the window is missed: -1
    score = score_file(detections(20), WINDOW)
    assert score.raw == pytest.approx(-1.11)
    assert (score.false_positives, score.false_negatives) == (1, 1)


def test_a_detection_just_after_a_window_costs_less():
    # i = 52: q = |52 - 49| / (10 - 1) = 1/3; sigma(1/3) = -0.682262; 0.11 * -0.682262 = -0.075049
    score = score_file(detections(40, 52), WINDOW)
    assert score.raw == pytest.approx(1.0 - 0.075049, abs=1e-6)


def test_a_window_with_no_detection_costs_a_false_negative():
    score = score_file(detections(), WINDOW)
    assert score.raw == -1.0
    assert normalised([score]) == pytest.approx(0.0)


def test_two_detections_in_one_window_count_once_by_the_earlier():
    # i = 42: p = -0.8; sigma(-0.8) / sigma(-1) = 0.977107; i = 45 adds nothing
    score = score_file(detections(42, 45), WINDOW)
    assert score.raw == pytest.approx(0.977107, abs=1e-6)
    assert (score.true_positives, score.false_positives) == (1, 0)


def test_detections_in_the_probationary_period_are_not_scored():
    score = score_file(detections(5, 10), WINDOW)
    assert score.raw == -1.0 and score.false_positives == 0


def test_profiles_weigh_false_positives_and_negatives_differently():
    low_fp = score_file(detections(20), WINDOW, "reward_low_FP_rate")
    low_fn = score_file(detections(20), WINDOW, "reward_low_FN_rate")
    assert low_fp.raw == pytest.approx(-1.22)
    assert low_fn.raw == pytest.approx(-2.11)


def test_windows_map_to_rows_with_both_ends_inside():
    stamps = pd.Series(pd.date_range("2024-01-01", periods=10, freq="5min"))
    windows = [(pd.Timestamp("2024-01-01 00:10"), pd.Timestamp("2024-01-01 00:20"))]
    assert window_rows(stamps, windows) == [(2, 4)]


def test_the_best_threshold_is_chosen_for_the_whole_corpus():
    scores = np.zeros(100)
    scores[40] = 0.9  # a hit at the left edge
    scores[20] = 0.7  # a false positive with a lower score
    threshold, value = best_threshold([(scores, WINDOW)])
    assert 0.7 < threshold <= 0.9
    assert value == pytest.approx(100.0)


def test_window_and_row_counts():
    counts = window_metrics(detections(41, 42, 60), WINDOW)
    assert counts == {
        "window_caught": 1,
        "window_total": 1,
        "runs": 2,
        "runs_in_window": 1,
        "rows_flagged": 3,
        "rows_labelled": 10,
        "rows_true": 2,
    }


def test_a_window_that_ends_in_the_probationary_period_is_neither_caught_nor_missed():
    # given a window over rows 5..10, inside the 15 probationary rows, and one over 40..49
    spans = [(5, 10), (40, 49)]
    # when only the second window is caught (and a detection sits in the first)
    score = score_file(detections(7, 40), spans)
    # then only the second counts: raw 1, null -1, perfect 1, so normalised 100
    assert (score.raw, score.null, score.perfect) == (pytest.approx(1.0), -1.0, 1.0)
    assert (score.true_positives, score.false_negatives, score.false_positives) == (1, 0, 0)
    assert normalised([score]) == pytest.approx(100.0)


def test_a_window_that_starts_in_the_probationary_period_keeps_its_width_and_needs_a_later_detection():
    # given a window over rows 10..29 (W = 20), starting inside the 15 probationary rows
    spans = [(10, 29)]
    # when detected at row 12 (probationary) only, then it is missed
    assert score_file(detections(12), spans).raw == -1.0
    # when detected at 12 and 20: p = -(29 - 20 + 1) / 20 = -0.5; sigma(-0.5) = 0.848284;
    # 0.848284 / 0.986614 = 0.859793, so the probationary detection does not make it earlier
    assert score_file(detections(12, 20), spans).raw == pytest.approx(0.859793, abs=1e-6)


def test_a_false_positive_is_weighed_by_the_window_that_precedes_it_not_the_nearest():
    # given windows over rows 20..29 and 60..69 (W = 10 each), both caught at their left edge
    spans = [(20, 29), (60, 69)]
    # when a false positive sits at row 50: 21 rows after the first window, 10 before the second;
    # q = |50 - 29| / 9 = 2.333; sigma(2.333) = -0.999983; 0.11 * -0.999983 = -0.109998
    assert score_file(detections(20, 60, 50), spans).raw == pytest.approx(2 - 0.109998, abs=1e-6)
    # and one at row 75 is measured from the second: q = 6 / 9; 0.11 * sigma(0.667) = -0.102422
    assert score_file(detections(20, 60, 75), spans).raw == pytest.approx(2 - 0.102422, abs=1e-6)
    # and one more than 3 widths after costs the full A_FP: q = (99 - 69) / 9 = 3.33
    assert score_file(detections(20, 60, 99), spans).raw == pytest.approx(2 - 0.11)


def test_a_false_positive_before_every_window_costs_the_full_weight_in_every_profile():
    for profile, cost in (("standard", 0.11), ("reward_low_FP_rate", 0.22), ("reward_low_FN_rate", 0.11)):
        assert score_file(detections(20, 40), WINDOW, profile).raw == pytest.approx(1.0 - cost)


def test_the_corpus_is_normalised_over_every_file_together_not_averaged_per_file():
    # given a file caught at the left edge (raw 1) and a file with two windows both missed (raw -2)
    caught = score_file(detections(40), WINDOW)
    missed = score_file(detections(), [(20, 29), (60, 69)])
    # then S = -1, S_null = -3, S_perfect = 3: 100 * (-1 + 3) / (3 + 3) = 33.33 (the mean of
    # the two files' own scores, 100 and 0, would be 50)
    assert normalised([caught, missed]) == pytest.approx(100 * 2 / 6)


def test_written_files_are_scored_by_sweeping_one_threshold_over_the_final_column(tmp_path):
    import json

    from replay.nab_scoring import score_written

    # given two categories' per-row files, keyed "<category>/<file>.csv" in the labels
    stamps = pd.date_range("2024-01-01", periods=100, freq="5min")
    window = [str(stamps[40]), str(stamps[49])]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"a/one.csv": [window], "b/two.csv": [window], "b/none.csv": []}))
    first = np.zeros(100)
    first[40] = 0.9  # caught at the left edge
    second = np.zeros(100)
    second[44], second[20] = 0.95, 0.8  # caught at p = -0.6, and a false positive before it
    for name, scores in (("a/one.csv", first), ("b/two.csv", second), ("b/none.csv", np.zeros(100))):
        (tmp_path / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": stamps, "anomaly_score": scores}).to_csv(tmp_path / "out" / name, index=False)
    # when scored from the files alone
    result = score_written(tmp_path / "out", labels)
    # then the sweep drops the false positive (threshold above 0.8) and keeps both hits:
    # sigma(-0.6) / sigma(-1) = 0.905148 / 0.986614 = 0.917428; S = 1.917428, null -2, perfect 2
    threshold, value = result["standard"]
    assert 0.8 < threshold <= 0.9
    assert value == pytest.approx(100 * (1.917428 + 2) / 4, abs=1e-4)
