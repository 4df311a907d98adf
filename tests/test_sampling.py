"""History windows given in time: parsed, turned into rows at the training data's sampling
interval by Spark as by numpy, and the same rows in train, the NAB benchmark and the cross-validation."""

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from training import config
from training.sampling import WindowLength, interval_of_times, parse_window, sampling_interval_seconds


@pytest.mark.parametrize(
    ("text", "rows", "seconds"),
    [("4032", 4032, None), ("14d", None, 14 * 86400), ("36h", None, 36 * 3600), ("90min", None, 5400),
     ("90m", None, 5400), ("600s", None, 600), ("2w", None, 14 * 86400), (" 1.5D ", None, 1.5 * 86400)],
)  # fmt: skip
def test_a_window_is_rows_or_a_duration(text, rows, seconds):
    window = parse_window(text)
    assert (window.rows, window.seconds) == (rows, seconds)


@pytest.mark.parametrize("text", ["-5", "14 days", "d", "0h", "1.5", "", "none"])
def test_a_window_that_is_neither_is_a_clear_error(text):
    with pytest.raises(UserError, match="whole number of rows or a positive duration"):
        parse_window(text)


def test_zero_rows_is_a_clear_error():
    with pytest.raises(UserError, match="at least 1 row"):
        parse_window("0")


def test_a_duration_is_rows_at_the_sampling_interval():
    fourteen_days = parse_window("14d")
    assert fourteen_days.rows_at(300) == 4032  # 5-minute data: the rows the window used to be
    assert fourteen_days.rows_at(3600) == 336  # hourly data: the same 14 days
    assert fourteen_days.rows_at(600) == 2016
    assert parse_window("4032").rows_at(3600) == 4032  # rows stay rows
    with pytest.raises(UserError, match="give the window in rows instead"):
        fourteen_days.rows_at(None)


def test_the_interval_is_the_lower_median_of_the_positive_gaps():
    # given times with an outage, a repeated stamp and an unreadable one
    times = np.array([0, 300, 600, 600, 900, np.nan, 1200, 90000, 90300], dtype=float)
    # then gaps of 0 and the NaN are left out, and the outage does not move the median
    assert interval_of_times(times) == 300
    # an even count takes the lower of the two middle gaps, as Spark's percentile_approx does
    assert interval_of_times(np.array([0, 60, 180, 480, 1080], dtype=float)) == 120
    assert interval_of_times(np.array([5.0])) is None
    assert interval_of_times(np.array([5.0, 5.0, np.nan])) is None


@pytest.mark.slow
def test_spark_measures_the_interval_within_each_series_as_numpy_does(spark):
    # given two series sampled every minute and every hour, interleaved, one with an outage
    minute = pd.date_range("2026-01-01", periods=40, freq="min")
    hour = pd.date_range("2026-01-01", periods=15, freq="h").delete([5, 6, 7])
    frame = pd.concat(
        [
            pd.DataFrame({"timestamp": minute.astype(str), "host": "a", "cpu": 1.0}),
            pd.DataFrame({"timestamp": hour.astype(str), "host": "b", "cpu": 2.0}),
        ]
    ).sample(frac=1.0, random_state=3)
    table = spark.createDataFrame(frame)
    # when Spark measures it, gaps taken within each series only
    measured = sampling_interval_seconds(table, "host")
    # then it is the lower median of both series' gaps pooled
    gaps = np.concatenate([np.diff(minute.astype("int64") / 1e9), np.diff(hour.astype("int64") / 1e9)])
    assert measured == np.sort(gaps)[(len(gaps) + 1) // 2 - 1] == 60.0
    # and one series alone gives numpy's figure
    one = spark.createDataFrame(frame[frame.host == "b"].drop(columns="host"))
    assert sampling_interval_seconds(one, None) == interval_of_times(hour.astype("int64") / 1e9) == 3600.0
    # and a table without timestamps has none
    assert sampling_interval_seconds(table.drop("timestamp"), "host") is None


def hourly_table(spark, rows: int = 400, with_time: bool = True):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"value": rng.normal(10, 1, rows)})
    if with_time:
        frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=rows, freq="h").astype(str))
    return spark.createDataFrame(frame)


@pytest.mark.slow
def test_train_turns_a_window_in_time_into_rows_of_its_training_data(spark):
    from training.train import fit_model

    def fitted(table, window: str, cooldown: str = config.DEFAULT_COOLDOWN):
        spec = config.HistorySpec(likelihood_window=parse_window(window), cooldown=config.parse_cooldown(cooldown))
        return fit_model(table, ["value"], 3, 42, 20, "distance", 0.99, spec)

    # given hourly training data, train's default window of 14 days is 336 of its rows
    model = fitted(hourly_table(spark), config.DEFAULT_LIKELIHOOD_WINDOW)
    assert (model.params.likelihood_window, model.sampling_interval) == (336, 3600.0)
    # and its cooldown of 18 hours keeps its seconds, and is 18 rows for rows without times
    assert (model.params.cooldown_seconds, model.params.cooldown) == (18 * 3600.0, 18)
    # a window and a cooldown in rows stay as given, and need no interval
    model = fitted(hourly_table(spark), "4032", "216")
    assert (model.params.likelihood_window, model.sampling_interval) == (4032, None)
    assert (model.params.cooldown_seconds, model.params.cooldown) == (None, 216)
    # a cooldown in time without timestamps to measure is a clear error too
    with pytest.raises(UserError, match="give the cooldown in rows instead"):
        fitted(hourly_table(spark, with_time=False), "4032")
    # a duration without timestamps to measure is a clear error, as is one shorter than the recent mean
    with pytest.raises(UserError, match="give the window in rows instead"):
        fitted(hourly_table(spark, with_time=False), "14d")
    with pytest.raises(UserError, match=r"5h is 5 row\(s\) at the training data's sampling interval \(3600 s\)"):
        fitted(hourly_table(spark), "5h")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["realAdExchange/exchange-2_cpc_results.csv", "realTraffic/TravelTime_387.csv", "realTraffic/speed_7578.csv"],
)
def test_the_cross_validation_takes_each_file_at_the_interval_the_benchmark_trains_at(spark, nab_dir, name):
    from replay.cross_validation import labelled_files
    from replay.nab_benchmark import probation_table

    # given a labelled NAB file sampled hourly, or irregularly
    item = next(f for f in labelled_files(nab_dir) if f.key == name)
    path = nab_dir / "data" / name
    # when the benchmark measures its probationary table as train measures a training table
    table, _ = probation_table(spark, path.read_bytes(), str(path))
    # then the cross-validation's interval for the file, and so its window in rows, is the same
    assert item.interval == sampling_interval_seconds(table, None)
    window = parse_window("14d")
    assert window.rows_at(item.interval) == window.rows_at(sampling_interval_seconds(table, None))
    if name.startswith("realAdExchange"):
        assert window.rows_at(item.interval) == 336


def test_a_spec_in_time_has_no_rows_until_it_meets_its_data():
    spec = config.HistorySpec()
    assert spec.likelihood_window == WindowLength(seconds=14 * 86400, text="14d")
    assert spec.at_interval(300).likelihood_window.rows == 4032
    # the daily time scale's 288 rows make the warm-up; the likelihood's own is 49 rows
    assert spec.at_interval(300).warmup_rows == 287
    assert config.HistorySpec(scales=()).at_interval(300).warmup_rows == 49
    # a distance score has no use for the window, and with a cooldown in rows needs no timestamps
    in_rows = config.HistorySpec(score_kind="distance", cooldown=config.parse_cooldown("216"))
    assert in_rows.at_interval(None).likelihood_window.rows == 0
    # a cooldown in time keeps its seconds and gets its rows at the data's interval
    assert spec.at_interval(300).cooldown == WindowLength(rows=216, seconds=18 * 3600.0, text="18h")
