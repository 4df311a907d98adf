"""A series' range so far in the scoring core: its rule, its per-series state across batches and
restarts, and the same numbers in a request that carries several series."""

import numpy as np
import pandas as pd
import pytest
from test_likelihood import likelihood_model

from core.explanation import explained_column, explanation_text
from core.scoring import ModelParams, SeriesState, score_frame, score_series
from core.value_range import range_flags


def range_model(**overrides) -> ModelParams:
    """``test_likelihood``'s model with the value among its features and a range tolerance."""
    settings = dict(
        mean=[50.0, 50.0, 0.0],
        scale=[0.2, 0.1, 0.5],
        centroids=[[0.0, 0.0, 0.0], [3.0, 3.0, 1.0]],
        history=["value", "mean", "std"],
        range_tolerance=0.05,
    )
    return likelihood_model(**{**settings, **overrides})


def scored_in_batches(params: ModelParams, frame: pd.DataFrame, cuts: list[int]) -> pd.DataFrame:
    """``frame`` scored in batches cut at ``cuts``, its state through JSON between them."""
    parts, state = [], None
    for start, end in zip([0, *cuts], [*cuts, len(frame)]):
        scored, new_state = score_series(params, frame.iloc[start:end], state)
        parts.append(scored)
        state = SeriesState.from_json(new_state.to_json())
    return pd.concat(parts)


def cpu_series(rows: int, seed: int = 3) -> pd.DataFrame:
    values = np.random.default_rng(seed).normal(50, 5, rows)
    if rows > 500:
        values[300] = values[:300].max() + 20  # a new high, far past the range so far
        values[500] = values[:300].max() + 10  # high, but inside the range the first one set
    return pd.DataFrame({"cpu": values})


def test_a_row_is_out_of_range_when_it_passes_the_series_extremes_before_it_by_the_tolerance():
    # given two inputs and an independent reading of the rule (pandas expanding extremes)
    values = np.random.default_rng(5).normal(0, 1, (400, 2))
    values[200, 0] = 9.0
    values[250, 1] = -9.0
    tolerance = 0.1
    frame = pd.DataFrame(values)
    high, low = frame.expanding().max().shift(1), frame.expanding().min().shift(1)
    margin = tolerance * (high - low)
    want = ((frame > high + margin) | (frame < low - margin)).any(axis=1).to_numpy()
    # when the core flags them
    got, carried = range_flags(values, None, tolerance)
    # then they agree, both incidents are caught, and the state is each input's [lowest, highest]
    np.testing.assert_array_equal(got, want)
    assert got[200] and got[250] and not got[0]
    assert carried == [[values[:, 0].min(), 9.0], [-9.0, values[:, 1].max()]]


@pytest.mark.parametrize("cuts", [[1], [299, 300, 301], [17, 200, 333, 334], list(range(5, 700, 97))])
def test_a_ranged_series_split_anywhere_scores_bit_for_bit_as_the_whole(cuts):
    # given a model with a range tolerance and a series with a new high
    params = range_model()
    frame = cpu_series(700)
    whole, _ = score_series(params, frame)
    # when the series comes in batches, its state stored as JSON between them (the monitor's way)
    parts = scored_in_batches(params, frame, cuts)
    # then every score, verdict and alert equals the whole series' scoring exactly
    pd.testing.assert_frame_equal(parts, whole, check_exact=True)
    # and the new high scores 1 and alerts, while a later value inside the range it set does not
    assert whole.loc[300, "anomaly_score"] == 1.0 and whole.loc[300, "is_alert"]
    assert whole.loc[500, "anomaly_score"] < 1.0


def record_highs(rows: int = 700) -> pd.DataFrame:
    """``cpu_series`` with a second new high 10 rows after the first, further past the range it set."""
    frame = cpu_series(rows)
    frame.loc[310, "cpu"] = frame["cpu"][:310].max() + 10  # a CPU percentage stays at or below 100
    return frame


def test_a_row_past_its_series_range_pages_within_the_cooldown_and_stays_split_proof():
    # given a model whose range pages within the cooldown (20 rows), as train makes them, and a
    # series with a second new high 10 rows after the first
    params = range_model(range_pages_in_cooldown=True)
    frame = record_highs()
    # when it is scored whole and in batches
    whole, _ = score_series(params, frame)
    # then both new highs page, and the same rows page however the series is split
    assert whole.loc[300, "is_alert"] and whole.loc[310, "is_alert"]
    for cuts in ([305], [300, 310], [1, 299, 311]):
        pd.testing.assert_frame_equal(scored_in_batches(params, frame, cuts), whole, check_exact=True)
    # and a model from before this existed keeps the cooldown for the second one
    older, _ = score_series(range_model(), frame)
    assert older.loc[300, "is_alert"] and not older.loc[310, "is_alert"]


def test_a_row_past_its_series_range_is_explained_by_the_input_farthest_past_it():
    # given a series of two inputs whose disk jumps far past its range and whose cpu goes a little past its own
    params = range_model(
        features=["cpu", "disk"],
        mean=[50.0, 50.0, 0.0, 50.0, 50.0, 0.0],
        scale=[0.2, 0.1, 0.5, 0.2, 0.1, 0.5],
        centroids=[[0.0] * 6, [3.0, 3.0, 1.0, 3.0, 3.0, 1.0]],
    )
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"cpu": rng.normal(50, 5, 400), "disk": rng.normal(50, 5, 400)})
    highest_disk, highest_cpu = frame["disk"][:300].max(), frame["cpu"][:300].max()
    frame.loc[300, ["cpu", "disk"]] = highest_cpu + 1.0, highest_disk + 50.0
    # when it is scored
    scored, _ = score_series(params, frame)
    row = scored.iloc[300]
    # then the row scores 1 and its explanation is the disk's range: its value beside the highest before it
    assert row["anomaly_score"] == 1.0 and row["explained_by"] == "disk@range" and row["explained_share"] == 1.0
    assert (row["explained_value"], row["explained_centroid_value"]) == (highest_disk + 50.0, highest_disk)
    assert explained_column(row["explained_by"]) == ("disk", "range")
    text = explanation_text(row.explained_by, row.explained_share, row.explained_value, row.explained_centroid_value)
    assert text == f"disk {highest_disk + 50:.6g} past the highest value its series had shown ({highest_disk:.6g})"
    # and exactly the rows past their range are explained by it; the others keep the KMeans' explanation
    outside, _ = range_flags(frame.to_numpy(), None, params.range_tolerance)
    np.testing.assert_array_equal(scored["explained_by"].str.endswith("@range").to_numpy(), outside)
    assert outside.sum() < 50 and scored.loc[~outside, "explained_by"].isin(params.vector_columns).all()


def test_without_a_tolerance_the_range_is_left_out():
    # given the same model without a range tolerance
    params = range_model(range_tolerance=None)
    # when the series with a new high is scored
    scored, state = score_series(params, cpu_series(700))
    # then nothing scores 1 for its range and the state carries no range
    assert scored.loc[300, "anomaly_score"] < 1.0 and state.value_range is None


def test_the_range_is_per_series_in_a_request():
    # given two series in one request, one at half the other's level, interleaved
    low, high = cpu_series(700, seed=1), cpu_series(700, seed=2) * 0.5
    request = pd.concat([low.assign(series="a"), high.assign(series="b")]).sort_index(kind="stable")
    # when serving scores the request
    scored = score_frame(range_model(), request.reset_index(drop=True))
    # then each series is judged against its own range, as when scored alone
    for name, alone in (("a", low), ("b", high)):
        mine = scored[request.reset_index(drop=True)["series"] == name].reset_index(drop=True)
        want = score_series(range_model(), alone.reset_index(drop=True))[0]
        np.testing.assert_array_equal(mine["anomaly_score"], want["anomaly_score"])
        assert mine.loc[300, "anomaly_score"] == 1.0  # each series' own new high


def test_a_state_written_before_the_range_existed_starts_a_range():
    # given a state as the monitor stored it before (no value_range)
    old = '{"tail": [], "rows_since_alert": null, "rows": 0, "last_time": null}'
    # when a ranged model scores the series from it
    rows = cpu_series(50)
    _, state = score_series(range_model(), rows, SeriesState.from_json(old))
    # then the range starts from these rows
    assert state.value_range == [[rows["cpu"].min(), rows["cpu"].max()]]


@pytest.mark.parametrize("tolerance", [-0.1, float("nan")])
def test_a_range_tolerance_below_zero_is_refused(tolerance):
    with pytest.raises(ValueError, match="range tolerance must be at least 0"):
        range_model(range_tolerance=tolerance)


def test_a_new_series_starts_from_the_range_the_model_trained_on():
    # given a model that trained on values between 20 and 90
    params = range_model(training_range=[[20.0, 90.0]])
    # when a new series climbs through its first day's values, all inside that range, then passes it
    day = pd.DataFrame({"cpu": np.concatenate([np.linspace(30, 88, 300), [99.0]])})
    scored, state = score_series(params, day)
    # then only the value past the trained range (by more than 5% of it) scores 1
    assert np.flatnonzero(scored["anomaly_score"].to_numpy() == 1.0).tolist() == [300]
    assert state.value_range == [[20.0, 99.0]]
    # while a model without a trained range judges the climb against the series' own rows alone
    alone = score_series(range_model(), day)[0]
    assert (alone["anomaly_score"].to_numpy()[1:300] == 1.0).sum() > 0


@pytest.mark.parametrize("cuts", [[1], [300, 301, 319, 320], [17, 305, 333], list(range(5, 700, 97))])
def test_a_rearming_series_split_anywhere_alerts_bit_for_bit_as_the_whole(cuts):
    # given a model whose long cooldown re-arms after 6 quiet rows, and two new highs 20 rows apart
    params = range_model(cooldown=200, rearm_after=6)
    frame = cpu_series(700)
    frame.loc[320, "cpu"] = frame.loc[300, "cpu"] + 5
    whole, _ = score_series(params, frame)
    # when the series comes in batches, its state stored as JSON between them (the monitor's way)
    parts = scored_in_batches(params, frame, cuts)
    # then every alert equals the whole series' scoring exactly
    pd.testing.assert_frame_equal(parts, whole, check_exact=True)
    # and the second incident pages inside the first one's cooldown, because the rows between were quiet
    assert whole.loc[300, "is_alert"] and whole.loc[320, "is_alert"]
    assert not score_series(range_model(cooldown=200), frame)[0].loc[320, "is_alert"]


@pytest.mark.parametrize("cuts", [[1], [300, 301, 319, 320], [17, 305, 333], list(range(5, 700, 97))])
def test_a_cooldown_in_time_split_anywhere_alerts_bit_for_bit_as_the_whole(cuts):
    # given a model with an hour's cooldown (200 rows without times), and two new highs 20 rows apart
    params = range_model(cooldown=200, cooldown_seconds=3600.0)
    frame = cpu_series(700)
    frame.loc[320, "cpu"] = frame.loc[300, "cpu"] + 5
    # with a row a minute, and two hours of no data between rows 310 and 311 (an outage)
    seconds = np.arange(len(frame)) * 60.0 + np.where(np.arange(len(frame)) > 310, 7200.0, 0.0)
    frame["timestamp"] = pd.to_datetime(seconds, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    whole, _ = score_series(params, frame)
    # when the series comes in batches, its state stored as JSON between them (a restart's way)
    parts = scored_in_batches(params, frame, cuts)
    # then every alert equals the whole series' scoring exactly
    pd.testing.assert_frame_equal(parts, whole, check_exact=True)
    # and the second high pages: more than an hour passed since the first, though only 20 rows did
    assert whole.loc[300, "is_alert"] and whole.loc[320, "is_alert"]
    # while without the outage the same 20 rows are 20 minutes, inside the cooldown
    steady = frame.assign(timestamp=pd.to_datetime(np.arange(len(frame)) * 60.0, unit="s", utc=True).astype(str))
    assert not score_series(params, steady)[0].loc[320, "is_alert"]
