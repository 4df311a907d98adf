"""An ensemble over time scales in the scoring core (core/scales.py): a row scores as its most
surprised scale, each further scale weighed by how often it draws a fresh recent mean, and each
scale's state carries across batches and restarts bit for bit."""

import numpy as np
import pandas as pd
import pytest
from test_likelihood import cpu_series, likelihood_model

from core.explanation import EXPLANATION_COLUMNS, explained_column, explanation_text
from core.model import AnomalyDetectorModel
from core.scales import Scale, weighed_likelihood
from core.scoring import ModelParams, SeriesState, score_series

SHORT = Scale(span=2, mean=[50.0, 1.0], scale=[0.2, 0.4], centroids=[[0.0, 0.0], [2.0, 1.5]])
DAILY = Scale(span=40, mean=[50.0, 4.0], scale=[0.5, 0.8], centroids=[[0.0, 0.0], [-1.0, 2.0]])


def ensemble_model(**overrides) -> ModelParams:
    return likelihood_model(scales=[SHORT, DAILY], **overrides)


def alone(scale: Scale) -> ModelParams:
    """The model whose own KMeans is ``scale``'s: what that scale scores by itself."""
    return likelihood_model(span=scale.span, mean=scale.mean, scale=scale.scale, centroids=scale.centroids)


def weighed_alone(params: ModelParams, scale: Scale, frame: pd.DataFrame) -> pd.Series:
    """What ``scale`` scores alone, weighed onto the footing of the model's own span."""
    alone_scores = score_series(alone(scale), frame)[0]["anomaly_score"]
    weighed = weighed_likelihood(alone_scores.to_numpy(), scale.span, params.span, params.likelihood_recent)
    return pd.Series(weighed, index=alone_scores.index)


def test_a_further_scale_weighs_its_surprise_by_how_often_it_draws_a_fresh_recent_mean():
    # given tail probabilities of 1e-9 at scales of 2, 24 and 288 rows, recent means of 10 rows
    likelihood = np.array([1.0 - 1e-9, 0.5, 0.0])
    # when each is weighed onto the footing of a model whose own span is 24 rows
    short, own, daily = (weighed_likelihood(likelihood, span, 24, 10) for span in (2, 24, 288))
    # then the 2-row scale's tail counts 33/11 times as likely, the daily one's 33/297, and the
    # model's own span's is unchanged; a likelihood stays within [0, 1], and a row too early to
    # judge (likelihood 0) stays 0 at every scale
    np.testing.assert_allclose(1.0 - short[0], 3e-9, rtol=1e-6)
    np.testing.assert_allclose(1.0 - daily[0], 1e-9 / 9, rtol=1e-6)
    np.testing.assert_array_equal(own, likelihood)
    assert short[1] == 0.0 and daily[1] == 1.0 - 0.5 * 33 / 297
    assert short[2] == own[2] == daily[2] == 0.0
    # and an invalid row's NaN stays NaN, as the cross-validation finds a file's valid rows by it
    assert np.isnan(weighed_likelihood(np.array([np.nan]), 2, 24, 10)).all()


def test_a_row_scores_as_its_most_surprised_time_scale():
    # given a model of three time scales and a series with an incident
    params = ensemble_model()
    frame = cpu_series(600, spike_at=450)
    # when the ensemble scores it, and each scale's model scores it alone
    scored, _ = score_series(params, frame)
    own = score_series(likelihood_model(), frame)[0]["anomaly_score"].to_numpy()
    each = [own, *(weighed_alone(params, scale, frame).to_numpy() for scale in params.scales)]
    # then each row's score is the highest of the three, the further scales weighed, and the
    # model's own KMeans gives the distance
    np.testing.assert_array_equal(scored["anomaly_score"].to_numpy(), np.maximum.reduce(each))
    assert not np.array_equal(each[0], each[1]) and not np.array_equal(each[0], each[2])
    np.testing.assert_array_equal(scored["distance"], score_series(likelihood_model(), frame)[0]["distance"])
    # and no row alerts before the longest scale's window is full
    assert params.warmup_rows == max(DAILY.span - 1, likelihood_model().warmup_rows)
    assert not scored["is_alert"].iloc[: params.warmup_rows].any() and scored["is_alert"].any()


def test_a_row_a_further_scale_scored_highest_is_explained_by_that_scale():
    # given a model of three time scales and a series with an incident
    params = ensemble_model()
    frame = cpu_series(600, spike_at=450)
    scored, _ = score_series(params, frame)
    own = score_series(likelihood_model(), frame)[0]
    for scale in params.scales:
        # when a row's score is that scale's, higher than the model's own KMeans gives it
        alone_scored = score_series(alone(scale), frame)[0]
        weighed = weighed_alone(params, scale, frame)
        won = (weighed > own["anomaly_score"]) & (scored["anomaly_score"] == weighed)
        won &= ~pd.concat([weighed_alone(params, s, frame) for s in params.scales], axis=1).gt(
            scored["anomaly_score"], axis=0
        ).any(axis=1)
        assert won.sum() > 10
        # then that scale explains it: its column named with the span, its numbers as that scale alone gives them
        got, want = scored.loc[won, EXPLANATION_COLUMNS], alone_scored.loc[won, EXPLANATION_COLUMNS]
        assert got["explained_by"].tolist() == [f"{by}@{scale.span}" if by else "" for by in want["explained_by"]]
        pd.testing.assert_frame_equal(got.drop(columns="explained_by"), want.drop(columns="explained_by"))
        assert explained_column(got["explained_by"].iloc[0]) == (want["explained_by"].iloc[0], scale.span)
    # and the rows the model's own KMeans scored highest keep its explanation
    kept = scored["anomaly_score"] == own["anomaly_score"]
    pd.testing.assert_frame_equal(scored.loc[kept, EXPLANATION_COLUMNS], own.loc[kept, EXPLANATION_COLUMNS])
    # and an alert's line says the time scale
    row = scored.loc[scored["explained_by"].str.endswith(f"@{DAILY.span}")].iloc[0]
    text = explanation_text(row.explained_by, row.explained_share, row.explained_value, row.explained_centroid_value)
    assert text.startswith(f"{row.explained_by.split('@')[0]} at the {DAILY.span}-row scale ")


@pytest.mark.parametrize("cuts", [[1], [38, 39, 40, 41], [17, 200, 333, 334], list(range(5, 600, 61))])
def test_an_ensemble_series_split_anywhere_scores_bit_for_bit_as_the_whole(cuts):
    # given a model of three time scales, the longest longer than any batch's first rows
    params = ensemble_model()
    frame = cpu_series(600, spike_at=450)
    whole, _ = score_series(params, frame)
    # when the series comes in batches, its state stored as JSON between them (the monitor's way,
    # and a restart's: the state store holds that JSON)
    parts, state = [], None
    for start, end in zip([0, *cuts], [*cuts, len(frame)]):
        scored, new_state = score_series(params, frame.iloc[start:end], state)
        parts.append(scored)
        state = SeriesState.from_json(new_state.to_json())
        assert len(state.scale_likelihoods) == 2 and len(state.tail) == min(end, DAILY.span - 1)
    # then every score, alert and explanation equals the whole series' scoring exactly
    pd.testing.assert_frame_equal(pd.concat(parts), whole, check_exact=True)


def test_the_scales_travel_in_the_model_and_bad_ones_are_refused():
    # given a model with further scales, written as the logged model's params.json
    params = ensemble_model()
    # when it is read back, then it is the same model, its scales and their key included
    again = ModelParams.from_json(params.to_json())
    assert again == params and again.scales[1].centroid_array.shape == (2, 2)
    assert again.distance_key == params.distance_key != likelihood_model().distance_key
    # and scales that cannot work are refused, with the reason
    with pytest.raises(ValueError, match="need the likelihood score"):
        ensemble_model(score_kind="distance")
    with pytest.raises(ValueError, match="need a rolling mean or std"):  # every span would repeat the model's features
        ensemble_model(history=["value"], mean=[50.0], scale=[0.1], centroids=[[0.0], [3.0]])
    with pytest.raises(ValueError, match="one mean and scale per feature"):
        likelihood_model(scales=[Scale(span=3, mean=[1.0], scale=[1.0], centroids=[[0.0]])])


def test_a_series_state_from_a_single_scale_model_starts_the_scales_afresh():
    # given a series scored by a model without further scales (a state the monitor wrote before)
    frame = cpu_series(500)
    _, before = score_series(likelihood_model(), frame.iloc[:300])
    # when the ensemble continues it
    params = ensemble_model()
    scored, after = score_series(params, frame.iloc[300:], SeriesState.from_json(before.to_json()))
    # then its likelihoods start from its own distances: no row is judged before 50 of them
    assert (scored["anomaly_score"].iloc[:49] == 0).all() and after.distances_key == params.distance_key
    assert len(after.scale_likelihoods) == 2


def test_serving_scores_an_ensemble_as_the_core_does():
    # given the pyfunc holding a model of three time scales
    scorer = AnomalyDetectorModel()
    scorer.params = ensemble_model()
    frame = cpu_series(300, spike_at=200)
    # when a request carries one series' recent rows
    served = scorer.score(frame)
    # then it gives the core's numbers
    core, _ = score_series(scorer.params, frame)
    np.testing.assert_array_equal(served["anomaly_score"], core["anomaly_score"])
    assert served["warming_up"].sum() == scorer.params.warmup_rows


def test_the_cross_validation_scores_an_ensemble_setting_as_the_core_judges_it():
    from dataclasses import replace
    from pathlib import Path

    from core.likelihood import likelihood_warmup
    from replay.cross_validation import LabelledFile, alerts, likelihoods, profile_parts, score_table
    from replay.cv_grid import Setting

    # given one labelled file's cached distance scores at three spans, a spike at the 2-row span only
    rng = np.random.default_rng(5)
    scores = {("value,mean,std", 7, span): [rng.uniform(0.2, 0.3, 3000)] for span in (24, 2, 288)}
    scores[("value,mean,std", 7, 2)][0][2000:2010] = 0.9
    item = LabelledFile("realExample", Path("example.csv"), [(1990, 2100)], interval=300.0)
    single = Setting(7, 24, 0.99999, "72", "likelihood", "1d", 10, None, "value,mean,std", 6)
    ensemble = replace(single, scales="2,288")
    # when the cross-validation scores both settings
    table = score_table([item], scores, [single, ensemble])
    # then the ensemble's detections are those of its scales' highest likelihood, the further ones
    # weighed as the core weighs them, after the longest scale's warm-up, and it catches what the
    # model's own span alone misses
    each = [likelihoods(scores[("value,mean,std", 7, span)][0], 288, 10) for span in (24, 2, 288)]
    each[1:] = [weighed_likelihood(e, span, 24, 10) for e, span in zip(each[1:], (2, 288))]
    flags = alerts(np.fmax.reduce(each), ensemble, max(287, likelihood_warmup(288)), item)
    np.testing.assert_array_equal(table[1, 0], profile_parts(flags, item.spans))
    assert flags[2000:2100].any() and table[1, 0, 0, 0] > table[0, 0, 0, 0]


def test_the_cross_validation_grid_reads_auto_as_trains_scales():
    from replay.cross_validation import parse_args
    from replay.cv_grid import grid_settings
    from training.config import DEFAULT_SCALES

    # given a grid offering no further scale, and 'auto' (train's choice for the likelihood)
    args = parse_args(["--nab-root", "nab", "--scales-options", "none;auto"])
    # when its settings are made, then 'auto' is train's scales, with the likelihood only
    settings, default = grid_settings(args)
    assert {(s.score, s.scales) for s in settings} == {
        ("distance", ""),
        ("likelihood", ""),
        ("likelihood", ",".join(map(str, DEFAULT_SCALES))),
    }
    assert default is not None and settings[default].scales == "2,288"
