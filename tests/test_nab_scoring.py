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
    assert counts == {"window_caught": 1, "window_total": 1, "runs": 2, "runs_in_window": 1,
                      "rows_flagged": 3, "rows_labelled": 10, "rows_true": 2}
