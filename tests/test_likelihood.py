"""The anomaly likelihood in the scoring core: its formula, its per-series state across batches
and restarts, and the same numbers in every path that calls the core."""

import math

import numpy as np
import pandas as pd
import pytest

from core.likelihood import LIKELIHOOD_MIN_ROWS, likelihood_block, likelihood_scores
from core.model import AnomalyDetectorModel
from core.scoring import SCORE_LIKELIHOOD, ModelParams, SeriesState, score_frame, score_series


def likelihood_model(**overrides) -> ModelParams:
    settings = dict(
        features=["cpu"],
        mean=[50.0, 0.0],
        scale=[0.1, 0.5],
        centroids=[[0.0, 0.0], [3.0, 1.0]],
        expected_label=0,
        rule="distance",
        threshold=1.0,
        history=["mean", "std"],
        span=6,
        alert_threshold=0.9999,
        cooldown=20,
        score_kind=SCORE_LIKELIHOOD,
        likelihood_window=120,
        likelihood_recent=3,
    )
    return ModelParams(**{**settings, **overrides})


def cpu_series(rows: int, seed: int = 7, spike_at: int | None = None) -> pd.DataFrame:
    values = np.clip(np.random.default_rng(seed).normal(50, 5, rows), 0, 100)
    if spike_at is not None:
        values[spike_at : spike_at + 4] = 99.0
    return pd.DataFrame({"cpu": values})


def test_the_likelihood_is_the_gaussian_tail_of_the_recent_mean_against_the_series_own_window():
    # given distances and an independent reading of the formula: per row, the mean of its last
    # few distances against the means of the rows of its block so far and of the whole blocks
    # before it that fit in the window (pandas rolling means, numpy, erfc)
    distances = np.abs(np.random.default_rng(1).normal(1.0, 0.3, 600))
    distances[400:405] = 4.0  # an incident of five rows
    window, recent = 100, 5
    block = likelihood_block(window)
    means = pd.Series(distances).rolling(recent, min_periods=1).mean().to_numpy()
    want = np.zeros(len(distances))
    for i in range(LIKELIHOOD_MIN_ROWS - 1, len(distances)):
        first = max(0, (i // block - (window // block - 1)) * block)
        history = means[first : i + 1]
        z = (means[i] - history.mean()) / max(history.std(), 1e-9)
        want[i] = 0.5 * math.erfc(-z / math.sqrt(2))
    # when the core scores them
    got, carried = likelihood_scores(distances, None, window, recent)
    # then they agree, and the jump is judged far out in the tail
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert got[404] > 0.9999 > got[399]
    # and the series carries a few sums, not its window of distances
    assert len(carried["blocks"]) == window // block - 1 and carried["recent"] == distances[-recent + 1 :].tolist()
    assert carried["partial"][0] == len(distances) % block
    assert window - 2 * block < (window // block - 1) * block + 1 and (window // block) * block <= window


@pytest.mark.parametrize("cuts", [[1], [49, 50, 51], [17, 200, 333, 334], list(range(5, 700, 97))])
def test_a_likelihood_series_split_anywhere_scores_bit_for_bit_as_the_whole(cuts):
    # given a model with a likelihood score and a series with an incident
    params = likelihood_model()
    frame = cpu_series(700, spike_at=450)
    whole, _ = score_series(params, frame)
    # when the series comes in batches, its state stored as JSON between them (the monitor's way)
    parts, state = [], None
    for start, end in zip([0, *cuts], [*cuts, len(frame)]):
        scored, new_state = score_series(params, frame.iloc[start:end], state)
        parts.append(scored)
        assert "NaN" not in new_state.to_json()  # the padding of a series' start is not carried
        state = SeriesState.from_json(new_state.to_json())
    # then every score, alert and explanation equals the whole series' scoring exactly
    pd.testing.assert_frame_equal(pd.concat(parts), whole, check_exact=True)
    assert whole["is_alert"].sum() >= 1
    assert whole.loc[: params.warmup_rows - 1, "is_alert"].sum() == 0


def test_a_state_written_before_the_likelihood_existed_still_loads():
    # given a state as the monitor stored it before (no distances)
    old = '{"tail": [[1.0]], "rows_since_alert": null, "rows": 3, "last_time": "2026-01-01T00:00:00"}'
    # when it is read back
    state = SeriesState.from_json(old)
    # then its distances start empty and the rest is kept
    assert state.distances == [] and state.likelihood is None and state.rows == 3 and state.tail == [[1.0]]


def test_a_state_that_carried_raw_distances_continues_from_them():
    # given a series scored up to a point, its state as the monitor wrote it before block sums:
    # the raw distances of the series so far
    params = likelihood_model()
    frame = cpu_series(400, spike_at=330)
    first, state = score_series(params, frame.iloc[:300])
    old = SeriesState.from_json(state.to_json())
    old.distances, old.likelihood = first["distance"].tolist(), None
    # when the monitor reads it back and scores the next rows
    scored, after = score_series(params, frame.iloc[300:], SeriesState.from_json(old.to_json()))
    # then the likelihood goes on from those distances (no second warm-up), and they become sums
    whole, _ = score_series(params, frame)
    np.testing.assert_allclose(scored["anomaly_score"], whole["anomaly_score"].iloc[300:], rtol=0, atol=1e-9)
    assert scored["is_alert"].any() and after.distances == [] and after.likelihood["blocks"]


def test_the_likelihood_judges_each_series_against_itself_in_a_request():
    # given a quiet series and a noisy one, each with its normal level, in one request
    params = likelihood_model(history=["value"], span=1, mean=[50.0], scale=[0.1], centroids=[[0.0], [3.0]])
    quiet = cpu_series(300, seed=2).assign(cpu=lambda f: 50 + (f["cpu"] - 50) * 0.1, series="quiet")
    noisy = cpu_series(300, seed=3).assign(series="noisy")
    request = pd.concat([quiet, noisy]).sample(frac=1.0, random_state=0)  # interleaved
    # when serving scores the request
    model = AnomalyDetectorModel()
    model.params = params
    served = model.predict(None, request)
    # then each row's score is its own series' score alone, in the order sent
    for name, rows in (("quiet", quiet), ("noisy", noisy)):
        mine = request["series"].to_numpy() == name
        alone, _ = score_series(params, request[mine])
        np.testing.assert_array_equal(served[mine]["anomaly_score"].to_numpy(float), alone["anomaly_score"].to_numpy())
        assert len(alone) == len(rows)
    assert score_frame(params, request)["anomaly_score"].equals(served["anomaly_score"].astype(float))
    # and warm-up covers the rows the likelihood cannot judge yet
    assert params.warmup_rows == LIKELIHOOD_MIN_ROWS - 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(score_kind="loudness"), "unknown anomaly score"),
        (dict(likelihood_window=0), "likelihood needs a window"),
        (dict(likelihood_recent=500), "likelihood needs a window"),
    ],
)
def test_a_likelihood_setting_that_cannot_work_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        likelihood_model(**overrides)


def test_another_model_continuing_a_series_judges_its_own_distances_from_afresh():
    # given a series scored by one model up to a switch, then by another with other centroids
    first = likelihood_model()
    second = likelihood_model(centroids=[[0.5, 0.0], [3.0, 1.0]])
    frame = cpu_series(400)
    _, state = score_series(first, frame.iloc[:300])
    # when the second model continues from that state (a model switch, a promoted challenger)
    scored, after = score_series(second, frame.iloc[300:], SeriesState.from_json(state.to_json()))
    # then its history features carry on, but its likelihood starts from its own distances
    own, _ = likelihood_scores(scored["distance"].to_numpy(), None, second.likelihood_window, second.likelihood_recent)
    np.testing.assert_array_equal(scored["anomaly_score"].to_numpy(), own)
    fresh, _ = score_series(second, frame.iloc[300:].reset_index(drop=True))
    assert not np.array_equal(scored["distance"].to_numpy(), fresh["distance"].to_numpy())  # features carried
    assert (scored["anomaly_score"].iloc[: LIKELIHOOD_MIN_ROWS - 1] == 0).all()
    assert after.distances_key == second.distance_key != first.distance_key
    # and the first model's own continuation keeps its distances
    kept, _ = score_series(first, frame.iloc[300:], SeriesState.from_json(state.to_json()))
    whole, _ = score_series(first, frame)
    np.testing.assert_array_equal(kept["anomaly_score"].to_numpy(), whole["anomaly_score"].to_numpy()[300:])
