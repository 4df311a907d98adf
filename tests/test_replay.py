"""Replay, compare and promote --best-by, with real Spark and MLflow (the NAB benchmark: test_nab_benchmark)."""

import argparse
import shutil
import signal

import mlflow
import pandas as pd
import pytest

from core import comparison as compare
from core.csv_input import score_files
from core.errors import UserError
from core.explanation import EXPLANATION_COLUMNS
from core.model import load_params
from replay import replay
from training import promote
from training import train as train_job

from conftest import PYTHON, isolated_store, run_command
from helpers import RunningMonitor, drop, monitor_args, train_args

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

MODEL = "replay-detector"
LABELLED = ["ec2_cpu_utilization_24ae8d.csv", "ec2_cpu_utilization_825cc2.csv"]
UNLABELLED = ["ec2_cpu_utilization_ac20cd.csv"]
TIMING = {"replay_seconds", "rows_per_second"}


@pytest.fixture(scope="module")
def nab_subset(nab_series_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nab-subset")
    for name in LABELLED + UNLABELLED:
        shutil.copy(nab_series_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark, nab_series_dir):
    """Two versions of a one-feature ('value') model trained on a NAB CPU series."""
    folder = tmp_path_factory.mktemp("replay-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with isolated_store(uri) as service:
        training = nab_series_dir / "ec2_cpu_utilization_5f5533.csv"
        train_job.train(spark, service, train_args(training, features="value", model_name=MODEL, k=5))
        train_job.train(
            spark, service, train_args(training, features="value", model_name=MODEL, k=3, threshold_quantile=0.9)
        )
        promote.promote(service.client, MODEL, version="1")
        yield service


def replay_args(data, labels=None, models=(f"{MODEL}@production",), **overrides):
    defaults = dict(
        model=list(models),
        model_name=MODEL,
        data=str(data),
        labels=str(labels) if labels else None,
        window_minutes=60,
        master=None,
        conf=[],
    )
    return argparse.Namespace(**{**defaults, **overrides})


def labels_file(nab_dir):
    return nab_dir / "labels" / "combined_windows.json"


def test_replay_logs_counts_labels_and_artifacts(spark, store, nab_subset, nab_dir):
    # when replaying two labelled files and one unlabelled file
    (result,) = replay.run_replay(spark, store, replay_args(nab_subset, labels_file(nab_dir)))
    client = store.client
    run = client.get_run(result.run_id)
    params, metrics = run.data.params, run.data.metrics
    # then params identify the model and the data
    assert (params["model_name"], params["model_version"]) == (MODEL, "1")
    assert params["model_run_id"] == client.get_model_version(MODEL, "1").run_id
    assert params["rule"] == "distance" and len(params["data_sha256"]) == 64
    assert params["data_files"] == ",".join(n[:-4] for n in sorted(LABELLED + UNLABELLED))
    # counts, per file and per event-time window
    rows = sum(len(pd.read_csv(nab_subset / n)) for n in LABELLED + UNLABELLED)
    assert metrics["rows"] == rows and metrics["invalid_rows"] == 0
    assert metrics["anomaly_rate"] == pytest.approx(metrics["anomaly_count"] / rows)
    per_file = sum(metrics[f"anomalies_{n[:-4]}"] for n in LABELLED + UNLABELLED)
    assert per_file == metrics["anomaly_count"]
    per_window = client.get_metric_history(result.run_id, "anomalies_per_window")
    assert sum(m.value for m in per_window) == metrics["anomaly_count"]
    assert len({m.step for m in per_window}) == len(per_window) > 10
    # labelled files only: accuracy and NAB scores
    assert metrics["labelled_files"] == 2
    for key in ("precision_window", "recall_window", "f1_window", "precision_row", "recall_row", "f1_row"):
        assert 0 <= metrics[key] <= 1, key
    assert "nab_score_standard" in metrics
    assert {f"nab_raw_standard_{n[:-4]}" for n in LABELLED} <= metrics.keys()
    assert f"nab_raw_standard_{UNLABELLED[0][:-4]}" not in metrics
    # artifacts: every row in input order, a plot per file, a summary
    model_params = load_params(f"models:/{MODEL}/1")
    local = mlflow.artifacts.download_artifacts(run_id=result.run_id, tracking_uri=store.tracking_uri)
    for name in LABELLED + UNLABELLED:
        stem = name[:-4]
        rows_csv = pd.read_csv(f"{local}/rows/{stem}.csv", float_precision="round_trip")
        source = pd.read_csv(nab_subset / name)
        assert rows_csv["timestamp"].tolist() == source["timestamp"].tolist()
        assert {"cluster", "distance", "anomaly_score", "is_anomaly"} <= set(rows_csv.columns)
        assert rows_csv["anomaly_score"].between(0, 1).all()
        # and each row's explanation is the scoring core's, number for number
        core_rows = score_files(model_params, [(name, (nab_subset / name).read_bytes())])
        for column in EXPLANATION_COLUMNS:
            got = rows_csv[column].fillna("") if column == "explained_by" else rows_csv[column]
            pd.testing.assert_series_equal(got, core_rows[column], check_names=False, check_exact=True)
        assert rows_csv.loc[rows_csv["is_alert"], "explained_by"].ne("").all()
        assert pd.io.common.file_exists(f"{local}/plots/{stem}.png")
    summary = pd.read_csv(f"{local}/summary.csv")
    assert sorted(summary["file"]) == sorted(n[:-4] for n in LABELLED + UNLABELLED)


def test_two_replays_of_the_same_model_and_data_give_identical_metrics(spark, store, nab_subset, nab_dir):
    first, second = (
        replay.run_replay(spark, store, replay_args(nab_subset, labels_file(nab_dir)))[0] for _ in range(2)
    )
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
    assert strip(first.metrics) == strip(second.metrics)
    assert first.window_counts.equals(second.window_counts)


def test_replay_counts_equal_the_monitors_on_the_same_files(spark, store, nab_subset, tmp_path):
    # given the monitor has processed the files
    for name in LABELLED + UNLABELLED:
        drop(tmp_path / "in", (nab_subset / name).read_bytes(), name=name)
    drop(tmp_path / "in", b"timestamp,value\n2024-01-01 00:00:00,abc\n", name="bad.csv")
    handle = RunningMonitor(spark, store, monitor_args(tmp_path, model_name=MODEL))
    try:
        summaries = handle.process()
    finally:
        handle.stop()
    # when replay runs the same files through the same model
    (result,) = replay.run_replay(spark, store, replay_args(tmp_path / "in"))
    # then the counts agree
    assert result.metrics["rows"] == sum(s["rows"] for s in summaries)
    assert result.metrics["anomaly_count"] == sum(s["anomalies"] for s in summaries)
    assert result.metrics["invalid_rows"] == sum(s["invalid_rows"] for s in summaries) == 1


def test_compare_ranks_labelled_replays_by_nab_score_and_promote_best_by_picks_the_leader(
    spark, store, nab_subset, nab_dir, capsys
):
    # given both versions replayed on the same labelled files
    specs = [f"{MODEL}/1", f"{MODEL}/2"]
    results = replay.run_replay(spark, store, replay_args(nab_subset, labels_file(nab_dir), models=specs))
    scores = {r.model_label: (r.metrics["nab_score_standard"], r.metrics["f1_alert"]) for r in results}
    # when comparing with no metric named, then the NAB score ranks them, F1 of the alerts breaking ties
    table = compare.compare(store.client)
    assert table.attrs["ranking"].metric == "nab_score_standard"
    ranked = [scores[f"{MODEL} v{v}"] for v in table["model_version"]]
    assert sorted(table["model_version"]) == ["1", "2"] and ranked == sorted(ranked, reverse=True)
    expected = table["model_version"].tolist()
    # a count ranks only in the direction the user names
    with pytest.raises(UserError, match="not a measure of quality"):
        compare.compare(store.client, None, "anomaly_rate")
    ascending = compare.compare(store.client, None, "anomaly_count", "asc")
    assert ascending["anomaly_count"].is_monotonic_increasing
    # promote --best-by the NAB score: the leader becomes production
    assert promote.main(["--model-name", MODEL, "--best-by", "nab_score_standard"]) == 0
    aliases = {a: str(v) for a, v in store.client.get_registered_model(MODEL).aliases.items()}
    assert aliases["production"] == expected[0]
    assert "ranked by the NAB standard score" in capsys.readouterr().out
    version = store.client.get_model_version(MODEL, expected[0])
    if expected[0] != "1":  # the alias moved: the version says who, when, from where and why
        assert version.tags["production.reason"] == "best by nab_score_standard"
        assert version.tags["production.replaced_version"] == "1"
        assert version.tags["production.set_by"] and version.tags["production.set_at"]
    assert promote.main(["--model-name", MODEL, "--best-by", "anomaly_rate"]) == 2
    assert "not a measure of quality" in capsys.readouterr().err
    assert promote.main(["--model-name", MODEL, "--best-by", "no_such_metric", "--order", "desc"]) == 2
    promote.promote(store.client, MODEL, version="1")


def test_compare_does_not_rank_unlabelled_replays_unless_told_how(spark, store, nab_subset, tmp_path, capsys):
    # given both versions replayed on one file without labels
    only = tmp_path / "one"
    only.mkdir()
    shutil.copy(nab_subset / UNLABELLED[0], only / UNLABELLED[0])
    replay.run_replay(spark, store, replay_args(only, models=[f"{MODEL}/1", f"{MODEL}/2"]))
    # when comparing with no metric, then the table lists both and says it is not ranked
    table = compare.compare(store.client)
    assert not table.attrs["ranking"].ranked and len(table) == 2
    compare.print_table(table)
    assert "not ranked" in capsys.readouterr().out
    # and promote cannot choose a best version from it
    assert promote.main(["--model-name", MODEL, "--best-by", "nab_score_standard"]) == 2
    assert "has the metric 'nab_score_standard'" in capsys.readouterr().err


def test_a_killed_replay_is_marked_failed_by_the_next_attempt(store, nab_subset, tmp_path):
    uri = store.tracking_uri
    killed = run_command(
        [PYTHON, "-m", "replay.replay", "--model", f"{MODEL}/1", "--data", str(nab_subset)],
        MLFLOW_TRACKING_URI=uri,
        REPLAY_FAULT="after_run_created",
    )
    assert killed.returncode == -signal.SIGKILL
    orphan = killed.stdout.split("FAULT INJECTED: after_run_created (")[1].split(")")[0]
    assert store.client.get_run(orphan).info.status == "RUNNING"
    again = run_command(
        [PYTHON, "-m", "replay.replay", "--model", f"{MODEL}/1", "--data", str(nab_subset)], MLFLOW_TRACKING_URI=uri
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"marked replay run {orphan} FAILED" in again.stdout
    assert store.client.get_run(orphan).info.status == "FAILED"


def test_replay_errors_are_clear(spark, store, tmp_path):
    from core.errors import UserError

    with pytest.raises(UserError, match="no CSV files"):
        replay.run_replay(spark, store, replay_args(tmp_path / "nothing"))
    with pytest.raises(UserError, match="has no version 9"):
        replay.run_replay(spark, store, replay_args(tmp_path, models=[f"{MODEL}/9"]))
