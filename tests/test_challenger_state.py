"""Champion and challenger in one series state (core.paired_scoring), without Spark: the plain
state of older checkpoints loads, the two models keep their own states, roles swap without a
second warm-up, and no row either model flags is folded away."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from core.csv_input import parse_files, score_records
from core.paired_scoring import CHALLENGER_COLUMNS, SeriesStates, score_pair
from core.scoring import ModelParams, SeriesState
from core.spark_scoring import FOLDED_ROWS, fold_normal_rows

A, B = "models:/m/1", "models:/m/2"


def params(threshold: float, alert_threshold: float = 0.5, cooldown: int = 3, cpu_max: float = 100.0) -> ModelParams:
    return ModelParams(
        features=["cpu", "disk", "network"],
        mean=[50.0, 5.0, 5.0, 1.0, 5.0, 0.0],
        scale=[0.05, 0.2, 0.2, 1.0, 1.0, 1.0],
        centroids=[[0.0] * 6],
        expected_label=0,
        rule="distance",
        threshold=threshold,
        bounds={"cpu": [0, cpu_max], "disk": [0, math.inf], "network": [0, math.inf]},
        history=["mean", "std"],
        span=4,
        alert_threshold=alert_threshold,
        cooldown=cooldown,
    )


STEADY, NOISY = params(threshold=3.0), params(threshold=0.8, alert_threshold=0.4, cooldown=1)


def batches(count: int = 3, rows: int = 12, seed: int = 5) -> list[pd.DataFrame]:
    """One series' parsed records in ``count`` files, with spikes that both models see."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(count):
        lines = ["timestamp,cpu,disk,network"]
        for i in range(rows):
            n = b * rows + i
            cpu = 95.0 if i in (1, 7) else 50 + rng.normal(0, 5)
            lines.append(f"2026-01-05 {n // 60:02d}:{n % 60:02d}:00,{cpu:.3f},{5 + rng.normal(0, 1):.3f},5")
        out.append(parse_files(STEADY, [(f"file:/in/s-{b}.csv", ("\n".join(lines) + "\n").encode())]))
    return out


def alone(model: ModelParams, parts: list[pd.DataFrame], state: SeriesState | None = None):
    """Each part scored by ``model`` alone, continuing its own state: the reference."""
    scored = []
    for part in parts:
        frame, state = score_records(model, part, state)
        scored.append(frame)
    return scored, state


def test_a_plain_state_from_an_older_checkpoint_is_production_s_and_no_challenger_keeps_it_plain():
    first, second = batches(2)
    _, before = score_records(STEADY, first)
    # when a batch is scored from a state the monitor wrote before challengers existed
    scored, stored = score_pair(STEADY, second, before.to_json(), A)
    # then it continues from it exactly, and the state stays the plain SeriesState JSON
    want, after = score_records(STEADY, second, before)
    pd.testing.assert_frame_equal(scored, want)
    assert stored == after.to_json()
    assert SeriesStates.read(stored).for_production("anything") == stored


def test_production_is_unchanged_by_a_challenger_which_keeps_its_own_state():
    parts = batches(3)
    state = None
    got = []
    for part in parts:
        scored, state = score_pair(STEADY, part, state, A, (B, NOISY))
        got.append(scored)
    production, production_state = alone(STEADY, parts)
    challenger, challenger_state = alone(NOISY, parts)
    for mine, ours, theirs in zip(got, production, challenger):
        # production's columns are exactly what it gives alone, the challenger's beside them
        pd.testing.assert_frame_equal(mine.drop(columns=list(CHALLENGER_COLUMNS)), ours)
        np.testing.assert_array_equal(mine["challenger_anomaly_score"], theirs["anomaly_score"])
        np.testing.assert_array_equal(mine["challenger_is_alert"], theirs["is_alert"])
        np.testing.assert_array_equal(mine["challenger_distance"], theirs["distance"])
    # and the two models disagree somewhere, or the test shows nothing
    every = pd.concat(got)
    assert (every["is_alert"] != every["challenger_is_alert"]).any()
    stored = json.loads(state)
    assert stored["production"] == A
    assert stored["models"] == {A: production_state.to_json(), B: challenger_state.to_json()}


def test_roles_swap_and_each_model_continues_its_own_state_without_a_second_warm_up():
    parts = batches(4)
    state = None
    for part in parts[:2]:
        _, state = score_pair(STEADY, part, state, A, (B, NOISY))
    # when production moves to the challenger's version (B) and A becomes the challenger
    swapped = []
    for part in parts[2:]:
        scored, state = score_pair(NOISY, part, state, B, (A, STEADY))
        swapped.append(scored)
    # then B scores as if it had been alone on the whole series, and so does A
    b_alone, _ = alone(NOISY, parts)
    a_alone, _ = alone(STEADY, parts)
    for mine, b, a in zip(swapped, b_alone[2:], a_alone[2:]):
        pd.testing.assert_frame_equal(mine.drop(columns=list(CHALLENGER_COLUMNS)), b)
        np.testing.assert_array_equal(mine["challenger_anomaly_score"], a["anomaly_score"])
    # and a fresh B (a second warm-up) would have scored the first swapped batch differently
    fresh, _ = score_records(NOISY, parts[2])
    assert not np.array_equal(fresh["anomaly_score"], swapped[0]["anomaly_score"])


def test_production_alone_after_the_swap_continues_from_the_state_built_as_challenger():
    parts = batches(3)
    _, state = score_pair(STEADY, parts[0], None, A, (B, NOISY))
    _, state = score_pair(STEADY, parts[1], state, A, (B, NOISY))
    # B promoted, the challenger alias now naming B too: B alone
    scored, stored = score_pair(NOISY, parts[2], state, B)
    pd.testing.assert_frame_equal(scored, alone(NOISY, parts)[0][2])
    assert not stored.startswith('{"models"')  # plain again
    # a new production that was never a challenger continues from the last production's state
    _, state = score_pair(STEADY, parts[0], None, A, (B, NOISY))
    scored, _ = score_pair(params(threshold=2.0), parts[1], state, "models:/m/3")
    _, a_state = score_records(STEADY, parts[0])
    pd.testing.assert_frame_equal(scored, score_records(params(threshold=2.0), parts[1], a_state)[0])


def test_a_challenger_added_mid_stream_starts_from_production_s_state():
    parts = batches(2)
    _, state = score_pair(STEADY, parts[0], None, A)  # production alone: a plain state
    scored, _ = score_pair(STEADY, parts[1], state, A, (B, NOISY))
    want, _ = score_records(NOISY, parts[1], SeriesState.from_json(state))
    np.testing.assert_array_equal(scored["challenger_anomaly_score"], want["anomaly_score"])


def test_rows_only_the_challenger_cannot_score_get_no_verdict_from_it():
    part = batches(1)[0]
    strict = params(threshold=0.8, cpu_max=90.0)  # the two 95% rows are out of its range
    scored, _ = score_pair(STEADY, part, None, A, (B, strict))
    assert scored["is_valid"].all()
    high = scored["cpu"] > 90
    assert high.sum() == 2 and scored.loc[high, "challenger_anomaly_score"].isna().all()
    assert not scored.loc[high, "challenger_is_alert"].any()
    want, _ = score_records(strict, part)
    np.testing.assert_array_equal(scored["challenger_anomaly_score"], want["anomaly_score"])


def test_a_row_is_folded_as_normal_only_when_neither_model_flags_it():
    part = batches(1)[0]
    scored, _ = score_pair(STEADY, part, None, A, (B, NOISY))
    only_theirs = scored["challenger_is_anomaly"] & ~scored["is_anomaly"]
    assert only_theirs.any()
    folded = fold_normal_rows(scored)
    whole = folded[folded[FOLDED_ROWS].isna()]
    flagged = (
        scored["is_anomaly"] | scored["is_alert"] | scored["challenger_is_anomaly"] | scored["challenger_is_alert"]
    )
    assert set(whole["line_number"]) == set(scored.loc[flagged, "line_number"])
    tallies = folded[folded[FOLDED_ROWS].notna()]
    assert not tallies["challenger_is_anomaly"].any() and not tallies["challenger_is_alert"].any()
    assert len(whole) + tallies[FOLDED_ROWS].sum() == len(scored)


@pytest.mark.parametrize("text", [None, ""])
def test_no_state_is_a_fresh_series_for_both(text):
    part = batches(1)[0]
    scored, _ = score_pair(STEADY, part, text, A, (B, NOISY))
    np.testing.assert_array_equal(scored["challenger_anomaly_score"], score_records(NOISY, part)[0]["anomaly_score"])
