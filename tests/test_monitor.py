"""The monitor in-process: real SparkSession, real file stream, real MLflow registry (tmp_path)."""

import time
import uuid

import pandas as pd
import pytest

from core.csv_input import score_files
from core.errors import UserError
from core.explanation import EXPLANATION_COLUMNS, explained_column
from core.spark_scoring import FOLDED_ROWS, fold_normal_rows
from streaming import monitor as monitor_job
from streaming.sinks import read_output, read_summaries
from training import promote
from training import train as train_job

from conftest import isolated_store, wait_for
from helpers import SAMPLE, RunningMonitor, drop, monitor_args, train_args
from streaming_cases import ANOMALY, CASES, HEADER, NORMAL

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

MODEL = "monitor-detector"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, spark):
    """A real store with version 1 (distance rule) promoted to production."""
    folder = tmp_path_factory.mktemp("monitor-store")
    with isolated_store(f"sqlite:///{folder / 'mlflow.db'}") as service:
        train_job.train(spark, service, train_args(SAMPLE, model_name=MODEL))
        promote.promote(service.client, MODEL)
        yield service


@pytest.fixture
def running(spark, registry, tmp_path):
    started = []

    def start(**overrides):
        handle = RunningMonitor(spark, registry, monitor_args(tmp_path, **overrides))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def test_normal_rows_fold_into_one_tally_per_file_and_every_other_row_stays_whole():
    # given a series' scored rows from two files: normal rows, an anomaly, an alert, a quarantined row
    scored = pd.DataFrame(
        {
            "source_file": ["a", "a", "a", "b", "b", "b"],
            "line_number": [2, 3, 4, 2, 3, 4],
            "series": ["h"] * 6,
            "timestamp": ["t"] * 6,
            "cpu": [1.0, 2.0, 3.0, 4.0, 5.0, None],
            "cluster": [0, 1, 0, 0, 0, -1],
            "distance": [0.1, 9.0, 0.2, 0.3, 8.0, None],
            "is_anomaly": [False, True, False, False, True, False],
            "is_alert": [False, False, False, False, True, False],
            "is_valid": [True, True, True, True, True, False],
            "reason": ["", "", "", "", "", "unreadable timestamp"],
            "raw": ["x"] * 6,
        }
    )
    # when its normal rows are folded
    folded = fold_normal_rows(scored)
    # then the anomaly, the alert and the quarantined row come back whole, without a tally
    whole = folded[folded[FOLDED_ROWS].isna()]
    assert list(zip(whole["source_file"], whole["line_number"])) == [("a", 3), ("b", 3), ("b", 4)]
    pd.testing.assert_frame_equal(
        whole.drop(columns=FOLDED_ROWS).reset_index(drop=True), scored.iloc[[1, 4, 5]].reset_index(drop=True)
    )
    # and each file's normal rows become one valid, normal row counting them, so none is lost
    tallies = folded[folded[FOLDED_ROWS].notna()]
    assert dict(zip(tallies["source_file"], tallies[FOLDED_ROWS])) == {"a": 2, "b": 1}
    assert tallies["is_valid"].all() and not tallies["is_anomaly"].any() and not tallies["is_alert"].any()
    assert len(whole) + tallies[FOLDED_ROWS].sum() == len(scored)
    assert list(folded.columns) == [*scored.columns, FOLDED_ROWS]


def test_monitor_writes_events_equal_to_batch_scoring(running, registry, tmp_path):
    # given the sample split into three files
    rows = SAMPLE.read_bytes().splitlines()
    chunks = [rows[1:700], rows[700:1400], rows[1400:]]
    files = [drop(tmp_path / "in", HEADER + b"\n".join(c) + b"\n") for c in chunks]
    # when the monitor processes them
    handle = running()
    summaries = handle.process()
    # then its events are exactly what batch scoring of the same files flags
    params = handle.monitor.tracker.current.params
    expected = score_files(params, [(f.as_uri(), f.read_bytes()) for f in files])
    events = read_output(handle.output, "events")
    assert sum(s["rows"] for s in summaries) == len(rows) - 1
    assert len(events) == int(expected["is_anomaly"].sum()) > 0
    key = ["source_file", "line_number"]
    got = events.sort_values(key)[key + ["cluster", "distance"]].reset_index(drop=True)
    want = expected[expected["is_anomaly"]].sort_values(key)[key + ["cluster", "distance"]].reset_index(drop=True)
    got["source_file"] = got["source_file"].str.replace("file:///", "/").str.replace("file:/", "/")
    want["source_file"] = want["source_file"].str.replace("file:///", "/")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert set(events["model_version"]) == {"1"} and events["batch_id"].notna().all()
    assert FOLDED_ROWS not in events.columns  # the workers' per-file tallies stay inside the monitor
    # and a part with no rows is not written (no row was invalid), while its count is
    assert sum(s["invalid_rows"] for s in summaries) == 0
    assert not list((tmp_path / "out" / "batches").glob("*/quarantine"))
    assert len(list((tmp_path / "out" / "batches").glob("*/summary.json"))) == len(summaries)
    # and the MLflow run has per-batch counts with the batch id as the step
    history = registry.client.get_metric_history(handle.monitor.run_id, "rows")
    assert [m.step for m in history] == [s["batch_id"] for s in summaries]
    assert sum(m.value for m in history) == len(rows) - 1


def test_a_batch_is_scored_counted_and_written_in_one_spark_job(running, spark, tmp_path):
    # given a monitor that prints no rows (printing reads the batch's events back, a job of its own)
    handle = running(show=0)
    # when a batch of a normal row runs, then one with an anomaly and a malformed row
    drop(tmp_path / "in", HEADER + NORMAL + b"\n")
    handle.process()
    drop(tmp_path / "in", HEADER + ANOMALY + b"\n2026-01-05 00:00:03,abc,1,1\n")
    summaries = handle.process()
    # then each batch ran one Spark job: scoring, counting and every part of the sink in one pass
    jobs = spark.sparkContext.statusTracker().getJobIdsForGroup(str(handle.query.runId))
    assert len(summaries) == 2 and len(jobs) == 2
    # and the counts observed in that job match what it wrote
    last = summaries[-1]
    events, quarantine = read_output(handle.output, "events"), read_output(handle.output, "quarantine")
    assert (last["rows"], last["anomalies"], last["invalid_rows"], last["files"]) == (2, 1, 1, 1)
    assert list(events["batch_id"]) == [last["batch_id"]] and events["is_anomaly"].all()
    assert list(quarantine["reason"]) == ["non-numeric value for cpu"]


def test_an_empty_file_in_a_batch_with_bad_rows_joins_them_in_the_quarantine(running, tmp_path):
    # given a batch holding an empty file (Spark's scan never shows it) and a file with a bad row
    handle = running()
    empty = drop(tmp_path / "in", b"")
    bad = drop(tmp_path / "in", HEADER + NORMAL + b"\n2026-01-05 00:00:03,1,1,-5\n")
    # when the monitor processes it
    summaries = handle.process()
    # then both files' quarantined records are in the batch's one quarantine part, and counted
    assert [(s["rows"], s["invalid_rows"], s["files"]) for s in summaries] == [(3, 2, 2)]
    quarantine = read_output(handle.output, "quarantine")
    names = quarantine["source_file"].str.rsplit("/", n=1).str[-1]
    assert sorted(zip(names, quarantine["reason"])) == sorted(
        [(empty.name, "empty file"), (bad.name, "network below 0")]
    )
    assert len(list((tmp_path / "out" / "batches").glob("*/quarantine"))) == 1


def test_a_backlog_of_small_files_is_read_in_a_task_per_core_unless_the_user_priced_opening_one(
    running, spark, tmp_path
):
    # given a backlog of 200 small files (Spark's own pricing packs them into 7 tasks) and no say
    # from the user on what opening a file costs
    for i in range(200):
        drop(
            tmp_path / "in",
            HEADER + f"2026-01-05 {i // 60:02d}:{i % 60:02d}:00,23.5,1,1\n".encode(),
            name=f"f{i:03d}.csv",
        )
    key = monitor_job.OPEN_COST_KEY
    spark.conf.unset(key)
    try:
        # when the monitor drains it
        first = running()
        summaries = first.process()
        first.query.stop()  # one monitor query per session at a time
        # then every row is scored, and the files fill one read task per core, not one per few
        assert sum(s["rows"] for s in summaries) == 200
        assert spark.conf.get(key) == str(monitor_job.SMALL_FILE_OPEN_COST_BYTES)
        backlog = spark.read.format("binaryFile").load(str(tmp_path / "in"))
        assert backlog.rdd.getNumPartitions() <= spark.sparkContext.defaultParallelism
        # and a price the user set is kept
        spark.conf.set(key, "1234567")
        running(input=str(tmp_path / "in2"), output=str(tmp_path / "out2")).process()
        assert spark.conf.get(key) == "1234567"
    finally:
        spark.conf.unset(key)


def test_every_bad_input_is_accounted_for_and_the_next_good_file_still_flows(running, tmp_path):
    handle = running()
    for name, content, expected in CASES:
        before = len(read_summaries(handle.output))
        drop(tmp_path / "in", content, name=f"{name.replace(' ', '_')}-{uuid.uuid4().hex[:6]}.csv")
        summaries = handle.process()
        assert len(summaries) == before + 1, name
        batch = summaries[-1]["batch_id"]
        events = read_output(handle.output, "events")
        quarantine = read_output(handle.output, "quarantine")
        got = [("event", "") for _ in range(int((events["batch_id"] == batch).sum()) if len(events) else 0)]
        if len(quarantine):
            got += [("quarantine", r) for r in quarantine.loc[quarantine["batch_id"] == batch, "reason"]]
        assert len(got) == len(expected), (name, got)
        for (kind, reason), (want_kind, want_reason) in zip(sorted(got), sorted(expected)):
            assert kind == want_kind and reason.startswith(want_reason), (name, got)
        # rows in = scored + quarantined
        assert summaries[-1]["rows"] == len(expected)
        # the next good file is processed in the very next batch
        drop(tmp_path / "in", HEADER + NORMAL + b"\n")
        after = handle.process()
        assert after[-1]["batch_id"] == batch + 1 and after[-1]["rows"] == 1
        assert after[-1]["invalid_rows"] == 0, name
    quarantine = read_output(handle.output, "quarantine")
    assert {"source_file", "line_number", "raw", "reason"} <= set(quarantine.columns)
    assert quarantine["raw"].str.len().max() <= 200


def test_promotion_mid_stream_switches_version_from_the_next_batch(running, registry, spark, tmp_path, capsys):
    handle = running()
    drop(tmp_path / "in", HEADER + b"2026-01-05 00:00:00,99,50000000,1\n")
    handle.process()
    # when version 2 (another k and threshold) is promoted
    result = train_job.train(spark, registry, train_args(SAMPLE, model_name=MODEL, k=4, threshold_quantile=0.9))
    promote.promote(registry.client, MODEL, version=result.model_version)
    # and the monitor looks at the alias (its loop does so once a window) before the next file;
    # a file already in a batch when the alias moves is scored by the old model
    handle.process()
    drop(tmp_path / "in", HEADER + b"2026-01-05 00:00:00,98,50000000,1\n")
    handle.process()
    # then the next batch is scored by version 2 alone, and the switch is said and recorded
    events = read_output(handle.output, "events").sort_values("batch_id")
    assert events["model_version"].tolist() == ["1", "2"]
    assert [s["model_version"] for s in read_summaries(handle.output)] == ["1", "2"]
    assert (
        "MODEL SWITCH: production moved from monitor-detector v1 to monitor-detector v2 (from batch 1)"
        in capsys.readouterr().out
    )
    run = registry.client.get_run(handle.monitor.run_id)
    assert run.data.tags["model_version"] == "2"
    assert any(k.startswith("model_switch_batch_") for k in run.data.tags)
    versions = registry.client.get_metric_history(handle.monitor.run_id, "model_version")
    assert [m.value for m in versions] == [1.0, 2.0]
    # when the alias disappears, the monitor keeps the last good version and warns
    registry.client.delete_registered_model_alias(MODEL, "production")
    try:
        drop(tmp_path / "in", HEADER + b"2026-01-05 00:00:00,97,50000000,1\n")
        handle.process()
        assert read_summaries(handle.output)[-1]["model_version"] == "2"
        assert (
            "alias 'production' of monitor-detector disappeared; keeping monitor-detector v2" in capsys.readouterr().out
        )
    finally:
        promote.promote(registry.client, MODEL, version="1")


def test_history_features_and_alerts_in_the_stream_equal_batch_scoring_across_batches_and_a_restart(
    running, tmp_path, capsys
):
    # given two series (a source column) interleaved in 4 files, in time order, with a spike
    # (far from every cluster) in files 1 and 3, past the warm-up, so that both series raise alerts
    lines = SAMPLE.read_text().splitlines()[1:601]
    header = "timestamp,cpu,disk,network,source\n"
    files = []
    for part in range(4):
        chunk = lines[part * 150 : (part + 1) * 150]
        if part in (1, 3):  # an incident of 10 rows, before and after the restart
            for row in range(100, 110):
                chunk[row] = chunk[row].split(",", 1)[0] + ",99,50000000,1"
        body = [f"{line},web-1" for line in chunk] + [f"{line},web-2" for line in chunk[::-1]]
        files.append(header + "\n".join(body) + "\n")
    # when the monitor takes them one batch each, and is stopped and restarted half way
    first = running(scored_rows=True)
    drop(tmp_path / "in", files[0].encode(), name="part-0.csv")
    first.process()
    drop(tmp_path / "in", files[1].encode(), name="part-1.csv")
    first.process()
    first.stop()
    second = running(scored_rows=True)
    for part in (2, 3):
        drop(tmp_path / "in", files[part].encode(), name=f"part-{part}.csv")
        second.process()
    assert len(read_summaries(second.output)) == 4
    # then every row's history features, distance, verdict and alert equal scoring all the
    # files at once as a batch job does, each series from its first row
    params = second.monitor.active.params
    assert params.uses_history and params.cooldown > 0 and params.range_tolerance is not None
    assert params.cooldown_seconds is not None  # its state (the last alert's time) crosses the restart too
    expected = score_files(params, [(str(tmp_path / "in" / f"part-{i}.csv"), files[i].encode()) for i in range(4)])
    got = read_output(second.output, "scored")
    assert len(got) == len(expected) == 4 * (150 + 150)
    key = ["series", "timestamp"]
    columns = key + ["cpu_mean", "cpu_std", "disk_mean", "network_std", "distance", "anomaly_score"]
    columns += ["is_anomaly", "is_alert"]
    columns += EXPLANATION_COLUMNS  # the same explanation, number for number
    got = got[columns].sort_values(key).reset_index(drop=True)
    want = expected[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # web-2 arrives newest first within each file; the monitor orders rows by time
    assert got["cpu_std"].gt(0).any()
    # the incidents' disk and network values lie past the range the model trained on: they score 1
    assert got["anomaly_score"].eq(1.0).any()
    # and each alert was said once on stdout, with its file and line, in the order they came
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ALERT series ")]
    places = [tuple(line.rsplit("[", 1)[1].rstrip("]").split(":")) for line in said]
    alerts = expected[expected["is_alert"]]
    want_places = sorted(
        (path.rsplit("/", 1)[-1], str(line)) for path, line in zip(alerts["source_file"], alerts["line_number"])
    )
    assert len(want_places) >= 2
    assert places == sorted(places, key=lambda place: (place[0], int(place[1])))
    assert sorted(places) == want_places
    # and each ALERT line says which input drove it, as the core explains that row
    for line in said:
        assert " at the nearest centroid (" in line and "% of the distance)" in line
    # (read by the model's own KMeans, or by the further time scale that scored the row highest)
    named = [explained_column(by) for by in got.loc[got["is_alert"], "explained_by"]]
    spans = {None, "range", *(scale.span for scale in params.scales)}
    assert named and all(column in params.vector_columns and span in spans for column, span in named)


def test_a_series_idle_past_its_timeout_is_forgotten_and_starts_afresh(running, tmp_path):
    header = "timestamp,cpu,disk,network,source\n"
    a_rows = "2026-01-05 00:00:00,20,2562056,5933743,a\n2026-01-05 00:05:00,30,2562056,5933743,a\n"
    handle = running(scored_rows=True, series_idle_minutes=0.01)  # 0.6 s
    drop(tmp_path / "in", (header + a_rows).encode(), name="a-1.csv")
    handle.process()
    idle_since = time.monotonic()
    wait_for(lambda: time.monotonic() - idle_since > 1.5, 5, "series a to pass its idle timeout")
    # when another series' batch runs (timeouts are handled in batches with data) and a returns
    drop(tmp_path / "in", (header + "2026-01-05 00:10:00,25,2562056,5933743,b\n").encode(), name="b-1.csv")
    handle.process()
    drop(tmp_path / "in", (header + "2026-01-05 00:10:00,40,2562056,5933743,a\n").encode(), name="a-2.csv")
    handle.process()
    # then a's new row is the first of a new series: its window is itself
    scored = read_output(handle.output, "scored")
    back = scored[(scored["series"] == "a") & (scored["cpu"] == 40.0)]
    assert len(back) == 1 and back["cpu_mean"].iloc[0] == 40.0 and back["cpu_std"].iloc[0] == 0.0
    assert len(read_summaries(handle.output)) == 3  # no empty batches in between


def test_a_file_arriving_after_a_later_file_of_its_series_has_its_older_rows_quarantined_as_late(running, tmp_path):
    header = "timestamp,cpu,disk,network,source\n"
    handle = running(scored_rows=True)
    # given series web-1 scored up to 00:10
    drop(
        tmp_path / "in",
        (
            header + "2026-01-05 00:05:00,20,2562056,5933743,web-1\n2026-01-05 00:10:00,30,2562056,5933743,web-1\n"
        ).encode(),
        name="web-1-b.csv",
    )
    handle.process()
    # when a file with an older and a newer row of it arrives next
    drop(
        tmp_path / "in",
        (
            header + "2026-01-05 00:00:00,25,2562056,5933743,web-1\n2026-01-05 00:15:00,35,2562056,5933743,web-1\n"
        ).encode(),
        name="web-1-a.csv",
    )
    summaries = handle.process()
    # then the older row is quarantined and counted, not scored against later rows
    assert [s["rows"] for s in summaries] == [2, 2] and [s["invalid_rows"] for s in summaries] == [0, 1]
    quarantine = read_output(handle.output, "quarantine")
    assert quarantine["line_number"].tolist() == [2] and quarantine["source_file"].str.endswith("web-1-a.csv").all()
    assert (
        quarantine["reason"].iloc[0].startswith("late: older than this series' latest scored row (2026-01-05T00:10:00")
    )
    # and the newer row continues the series from the rows before it
    scored = read_output(handle.output, "scored").sort_values("timestamp")
    assert scored["cpu"].tolist() == [20.0, 30.0, 35.0]
    assert scored["cpu_mean"].iloc[-1] == pytest.approx((20 + 30 + 35) / 3)


def test_restart_from_the_checkpoint_emits_only_new_rows(running, tmp_path):
    first = running()
    drop(tmp_path / "in", HEADER + b"2026-01-05 00:00:00,99,50000000,1\n")
    first.process()
    first.stop()
    drop(tmp_path / "in", HEADER + b"2026-01-05 00:00:00,99,50000000,2\n")
    second = running()
    second.process()
    events = read_output(second.output, "events")
    assert sorted(events["network"].tolist()) == [1.0, 2.0]
    assert len(read_summaries(second.output)) == 2


def test_no_production_version_at_start_is_a_clear_error(registry, tmp_path, capsys):
    code = monitor_job.main(["--input", str(tmp_path / "in"), "--model-name", "nobody-here"])
    err = capsys.readouterr().err
    assert code == 2 and "no registered model named 'nobody-here'" in err
    registry.client.create_registered_model("unpromoted")
    code = monitor_job.main(["--input", str(tmp_path / "in"), "--model-name", "unpromoted"])
    err = capsys.readouterr().err
    assert code == 2
    assert "model 'unpromoted' has no version under alias 'production'" in err
    assert "-e promote" in err and "Traceback" not in err


def test_an_explicit_model_uri_is_not_followed(registry, tmp_path):
    tracker = monitor_job.ModelTracker(registry.client, f"models:/{MODEL}/1", MODEL)
    assert tracker.current.version == "1" and tracker.alias is None
    assert tracker.refresh() is None
    with pytest.raises(UserError):
        monitor_job.ModelTracker(registry.client, f"models:/{MODEL}/99", MODEL)
