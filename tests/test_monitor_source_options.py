"""The monitor's catch-up mode (--available-now) and source cleaning (--clean-source).

Real SparkSession, real file stream, real MLflow registry in a sqlite store under tmp_path.
Spark cleans (deletes or archives) a batch's files when it plans the next batch, on a thread of
its own; a query's stop waits for cleanings already handed to that thread.
"""

import contextlib
import re

import pytest
from pyspark.errors import StreamingQueryException

from core.paths import local_path, to_uri
from core.spark_config import parse_conf
from streaming import monitor as monitor_job
from streaming.sinks import files_in_batch, read_summaries
from training import promote
from training import train as train_job

from conftest import isolated_store, run_command, wait_for
from helpers import SAMPLE, drop, monitor_args, monitor_command, train_args
from streaming_cases import HEADER

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

MODEL = "source-options-detector"
ROWS_PER_FILE = 100


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark):
    """A sqlite store with version 1 trained on the sample and promoted to production."""
    folder = tmp_path_factory.mktemp("source-options-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with isolated_store(uri) as service:
        train_job.train(spark, service, train_args(SAMPLE, model_name=MODEL))
        promote.promote(service.client, MODEL)
        yield {"uri": uri, "service": service}


def sample_files(folder, count):
    """``count`` files of consecutive sample rows, ROWS_PER_FILE each, in the order they came."""
    rows = SAMPLE.read_bytes().splitlines()[1:]
    return [
        drop(
            folder, HEADER + b"\n".join(rows[i * ROWS_PER_FILE : (i + 1) * ROWS_PER_FILE]) + b"\n", name=f"part-{i}.csv"
        )
        for i in range(count)
    ]


def catch_up(spark, store, tmp_path, **overrides):
    """The monitor's run loop in-process, as `--available-now` runs it; bounded by a timeout."""
    args = monitor_args(tmp_path, model_name=MODEL, available_now=True, timeout=240, **overrides)
    tracker = monitor_job.ModelTracker(store["service"].client, args.model, args.model_name)
    monitor = monitor_job.Monitor(spark, store["service"], args, tracker)
    return monitor, monitor.run()


def test_available_now_processes_every_file_present_then_exits_0_by_itself(store, tmp_path):
    # given five files already in the input directory, more than two batches' worth
    sample_files(tmp_path / "in", 5)
    # when the monitor runs in catch-up mode as the MLproject passes it (a "true" string), two files a batch
    result = run_command(
        monitor_command(tmp_path, MODEL, "--max-files-per-trigger", "2", "--available-now", "true"),
        timeout=300,
        MLFLOW_TRACKING_URI=store["uri"],
    )
    # then it stops by itself with exit code 0, having processed every row in three batches
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summaries = read_summaries(str(tmp_path / "out"))
    assert [(s["batch_id"], s["files"], s["rows"]) for s in summaries] == [
        (0, 2, 2 * ROWS_PER_FILE),
        (1, 2, 2 * ROWS_PER_FILE),
        (2, 1, ROWS_PER_FILE),
    ]
    assert sum(s["invalid_rows"] for s in summaries) == 0
    out = result.stdout
    assert "(the files there now, at most 2 a batch, then stopping)" in out and "window: no new files" not in out
    assert "caught up: every file present at the start is processed; stopping" in out
    anomalies = sum(s["anomalies"] for s in summaries)
    assert f"monitor stopped after 3 batches: rows {5 * ROWS_PER_FILE}, anomalies {anomalies}," in out
    # and its MLflow run finished, with the trigger and cleaning it ran with and a metric per batch
    client = store["service"].client
    run = client.get_run(re.search(r"MLflow run (\w+)", out).group(1))
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["trigger_mode"], params["clean_source_mode"], params["archive_uri"]) == ("availableNow", "off", "")
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "rows")] == [
        (0, 200.0),
        (1, 200.0),
        (2, 100.0),
    ]


def test_clean_source_delete_removes_each_batch_s_files_once_the_next_batch_is_planned(spark, store, tmp_path, capsys):
    # given three files, and a catch-up that takes one file a batch and deletes processed files
    files = sample_files(tmp_path / "in", 3)
    # when it runs
    monitor, code = catch_up(spark, store, tmp_path, clean_source="delete", max_files_per_trigger=1)
    # then it processed all three and stopped by itself
    assert code == 0 and "caught up:" in capsys.readouterr().out
    summaries = read_summaries(str(tmp_path / "out"))
    assert [s["rows"] for s in summaries] == [ROWS_PER_FILE] * 3
    # and the files of the first two batches are deleted, while the last batch's file stays: Spark
    # cleans a batch's files when it plans the next batch, and no batch came after it
    last = {local_path(path) for path in files_in_batch(monitor.sink.fs, monitor.checkpoint_uri, 2)}
    assert len(last) == 1 and last < set(files)
    wait_for(lambda: set((tmp_path / "in").glob("*.csv")) == last, 30, "the first two batches' files to go")
    # when a new file arrives and the monitor catches up again from its checkpoint
    new = drop(tmp_path / "in", HEADER + b"2026-01-06 00:00:00,23.5,2562056.0,5933743.0\n", name="later.csv")
    _, code = catch_up(spark, store, tmp_path, clean_source="delete", max_files_per_trigger=1)
    # then only the new file is processed, and planning its batch deletes the earlier run's last file
    assert code == 0
    assert [s["rows"] for s in read_summaries(str(tmp_path / "out"))] == [ROWS_PER_FILE] * 3 + [1]
    wait_for(lambda: set((tmp_path / "in").glob("*.csv")) == {new}, 30, "the earlier run's last file to go")
    assert "the files of the last batch (3) stay in" in capsys.readouterr().out


def test_clean_source_archive_moves_processed_files_under_the_archive_dir_keeping_their_path(spark, store, tmp_path):
    # given two files and an archive directory beside the input
    first, second = sample_files(tmp_path / "in", 2)
    contents = {first: first.read_bytes(), second: second.read_bytes()}
    archive = tmp_path / "archive"
    # when a catch-up runs one file a batch, archiving processed files
    monitor, code = catch_up(
        spark, store, tmp_path, clean_source="archive", archive_dir=str(archive), max_files_per_trigger=1
    )
    assert code == 0
    # then the first batch's file is moved under the archive directory at its full path, unchanged,
    # and the last batch's file is still in the input
    [done] = [local_path(path) for path in files_in_batch(monitor.sink.fs, monitor.checkpoint_uri, 0)]
    [kept] = [local_path(path) for path in files_in_batch(monitor.sink.fs, monitor.checkpoint_uri, 1)]
    moved = archive / str(done).lstrip("/")
    wait_for(lambda: moved.is_file() and not done.exists(), 30, "the first batch's file to be archived")
    assert moved.read_bytes() == contents[done]
    assert kept.exists() and list(archive.rglob("*.csv")) == [moved]
    # and the monitor's MLflow run says where processed files go
    params = store["service"].client.get_run(monitor.run_id).data.params
    assert (params["clean_source_mode"], params["archive_uri"], params["trigger_mode"]) == (
        "archive",
        to_uri(archive),
        "availableNow",
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--clean-source", "archive"], "--clean-source archive needs --archive-dir"),
        (["--clean-source", "archive", "--archive-dir", "{input}/archive"], "must not be the input directory"),
        (["--clean-source", "archive", "--archive-dir", "{input}"], "must not be the input directory"),
        (["--clean-source", "archive", "--archive-dir", "{input}/.."], "must not be the input directory"),
        (["--clean-source", "delete", "--archive-dir", "{input}-archive"], "--archive-dir is used only with"),
    ],
)
def test_an_archive_dir_that_cannot_work_is_a_clear_error_with_exit_code_2(tmp_path, capsys, arguments, message):
    # given the input directory, when the monitor is started with these source settings
    folder = str(tmp_path / "in")
    code = monitor_job.main(["--input", folder, *[a.format(input=folder) for a in arguments]])
    # then it stops at once, before MLflow or Spark, with one line saying why
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_the_values_mlflow_run_passes_read_as_not_given_and_help_shows_every_default(capsys):
    # given the monitor's arguments as the MLproject entry fills them when the user gives nothing
    args = monitor_job.parse_args(
        [
            "--input",
            "in",
            "--model",
            "none",
            "--checkpoint",
            "none",
            "--master",
            "auto",
            "--conf",
            "none",
            "--scored-rows",
            "false",
            "--available-now",
            "false",
            "--clean-source",
            "off",
            "--archive-dir",
            "none",
        ]
    )
    # then each reads as not given
    assert (args.model, args.checkpoint, args.master, parse_conf(args.conf)) == (None, None, None, {})
    assert (args.available_now, args.clean_source, args.archive_dir) == (False, "off", None)
    assert monitor_job.parse_args(["--input", "in", "--available-now", "true"]).available_now is True
    assert monitor_job.parse_args(["--input", "in", "--available-now"]).available_now is True
    # and --help says each option's default
    with pytest.raises(SystemExit):
        monitor_job.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: off)", "(default: false)", "(default: 1000)", "(default: 3.0)"):
        assert default in text


def test_available_now_with_idle_windows_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        monitor_job.parse_args(["--input", "in", "--available-now", "--idle-windows", "2"])
    assert stopped.value.code == 2
    assert "--idle-windows does not apply with --available-now" in capsys.readouterr().err


@pytest.mark.parametrize(
    "source, archive, refused",
    [
        ("in", "in/archive", True),
        ("in", "in", True),
        ("in", "", True),
        ("in", "in-archive", False),
        ("in", "archive", False),
        ("in*", "inbox", True),
        ("in*", "archive", False),
        ("in/{a,b}", "in/b", True),
        ("in/{a,b}", "in/c", False),
    ],
)
def test_the_archive_check_refuses_what_spark_refuses(spark, tmp_path, source, archive, refused):
    # given an input (a directory or a glob, relative to a root) and an archive directory
    (tmp_path / "in" / "a").mkdir(parents=True)
    source_uri, archive_dir = f"file://{tmp_path / source}", str(tmp_path / archive)  # to_uri would quote a glob
    # when the monitor checks them
    try:
        monitor_job.archive_target(source_uri, "archive", archive_dir)
        checked = False
    except monitor_job.UserError:
        checked = True
    # and Spark starts an archiving file stream with them
    query = (
        spark.readStream.format("binaryFile")
        .schema("path string")
        .option("cleanSource", "archive")
        .option("sourceArchiveDir", to_uri(archive_dir))
        .load(source_uri)
        .writeStream.foreachBatch(lambda frame, batch: None)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    with contextlib.suppress(StreamingQueryException):  # a refusal is read from query.exception() below
        query.awaitTermination(120)
    # then the monitor refuses what Spark refuses, and only that
    assert not query.isActive
    assert checked == refused == (query.exception() is not None), query.exception()


def test_a_finished_catch_up_is_not_restarted_when_the_alias_moves(spark, store, tmp_path, capsys):
    # given a catch-up query that has processed its one file and ended
    sample_files(tmp_path / "in", 1)
    args = monitor_args(tmp_path, model_name=MODEL, available_now=True)
    client = store["service"].client
    monitor = monitor_job.Monitor(spark, store["service"], args, monitor_job.ModelTracker(client, "", MODEL))
    query = monitor.start()
    try:
        assert query.awaitTermination(120), "the catch-up did not end by itself"
        # when the production alias moves to another version and the loop looks at it
        copy = client.copy_model_version(f"models:/{MODEL}/1", MODEL)
        client.set_registered_model_alias(MODEL, "production", copy.version)
        kept = monitor.follow_alias(query)
        # then the finished query is kept, ended, and no new query is started
        assert kept is query and not spark.streams.active
        assert "query restarted" not in capsys.readouterr().out
        assert [s["rows"] for s in read_summaries(str(tmp_path / "out"))] == [ROWS_PER_FILE]
    finally:
        client.set_registered_model_alias(MODEL, "production", "1")
        query.stop()
        store["service"].end_run(monitor.run_id)
