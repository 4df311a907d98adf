"""One monitor batch of a given size, timed: where the monitor's throughput goes, batch by batch.

Input: nothing but the sample table (a model is trained on it, as the speed benchmark's monitor
model is). Output: a "timed batch" line per batch with Spark's own timings of its phases
(``addBatch`` is the scoring and the sink; ``latestOffset`` and ``getBatch`` list and plan the
new files; ``triggerExecution`` is the whole batch), and the medians of ``addBatch`` and
``triggerExecution`` over the steady batches (the first batch also starts the Python workers).

Each batch is ``--files`` benchmark files (100 rows each, 20 hosts, as the speed benchmark's
paced sweep writes them) renamed into the monitored directory at once, so every batch holds
exactly them: 1,920 files is one 3-s window at 38,400 files/min. ``--no-injected-anomaly``
drops the sure anomaly the benchmark puts in every file (which raises the share of anomalous
rows, through the history features, to about a quarter).

    python -m benchmarks.monitor_batch --files 1920 --batches 5
    python -m benchmarks.monitor_batch --files 1920 --conf spark.eventLog.enabled=true
    python -m benchmarks.monitor_batch --files 960 --score distance   # what the likelihood costs
    python -m benchmarks.monitor_batch --files 960 --scales 2,288     # what further time scales cost

Run it on two commits in turn (alternating, on a quiet machine) to compare them; add Spark's
event log (``--conf``) for the stages of each batch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from core.errors import UserError, exit_process, main_guard


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Time monitor batches of a given number of small files.")
    parser.add_argument("--files", type=int, default=1920, help="100-row files per batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches (the first is a cold one)")
    parser.add_argument(
        "--no-injected-anomaly", action="store_true", help="drop the sure anomaly the benchmark writes into every file"
    )
    parser.add_argument(
        "--score", default=None, help="the model's anomaly score (train's --score; default: train's default)"
    )
    parser.add_argument(
        "--scales", default=None, help="the model's further time scales (train's --scales; default: train's default)"
    )
    parser.add_argument("--master", default=None)
    parser.add_argument("--conf", action="append", default=[], help="extra Spark setting key=value")
    args = parser.parse_args(argv)
    if args.files < 1 or args.batches < 1:
        parser.error("--files and --batches must be at least 1")
    return args


def stage_files(work: Path, name: str, files: int, drop_injected: bool) -> Path:
    """``files`` benchmark files written to a folder of their own, ready to be renamed at once."""
    from benchmarks.monitor_speed import write_chunks

    folder = work / "batches" / name
    write_chunks(folder, files, 100, work / ".staging", prefix=name)
    if drop_injected:
        for path in folder.iterdir():
            header, _injected, *rows = path.read_text().splitlines(keepends=True)
            path.write_text(header + "".join(rows))
    return folder


def time_batches(spark, service, model_uri: str, work: Path, args) -> list[dict]:
    """Each batch's progress timings (ms) and rows, one query over every batch."""
    from benchmarks.monitor_speed import _monitor_args, write_chunks
    from streaming import monitor as monitor_job

    tracker = monitor_job.ModelTracker(service.client, model_uri, "")
    # A long window: the next trigger must not list the directory while a batch's files are
    # still being renamed into it (a split batch is refused below); the wait is not timed.
    monitor_args = _monitor_args(work, "monitor", 10, model_uri, max_files_per_trigger=args.files)
    monitor = monitor_job.Monitor(spark, service, monitor_args, tracker)
    incoming = Path(monitor_args.input)
    write_chunks(incoming, 2, 100, work / ".staging", prefix="warmup")
    query = monitor.start()
    timings = []
    try:
        query.processAllAvailable()
        for number in range(args.batches):
            staged = stage_files(work, f"b{number}", args.files, args.no_injected_anomaly)
            for path in sorted(staged.iterdir()):
                os.replace(path, incoming / path.name)
            query.processAllAvailable()
            progress = query.lastProgress
            if progress["numInputRows"] != args.files:
                raise UserError(
                    f"batch {progress['batchId']} took {progress['numInputRows']} of the "
                    f"{args.files} files renamed in together (a listing came during the "
                    "renames); its timings would mislead: run it again"
                )
            timings.append(
                {
                    "batch": progress["batchId"],
                    "files": progress["numInputRows"],
                    **{key: progress["durationMs"].get(key, 0) for key in ("addBatch", "triggerExecution")},
                }
            )
            # Every phase Spark timed, so the time outside addBatch (listing, planning, the
            # offset and commit logs) is seen too.
            phases = ", ".join(f"{key} {value}" for key, value in sorted(progress["durationMs"].items()))
            print(f"timed batch {progress['batchId']}: {args.files} files; ms: {phases}", flush=True)
    finally:
        query.stop()
        service.end_run(monitor.run_id)
    return timings


@main_guard
def main(argv=None) -> int:
    from benchmarks.train_speed import train_benchmark_model
    from core.spark import spark_session
    from core.spark_config import parse_conf
    from core.tracking import MlflowService

    args = parse_args(argv)
    parse_conf(args.conf)  # a bad --conf is said before the model is trained
    with tempfile.TemporaryDirectory(prefix="monitor-batch-") as scratch:
        work = Path(scratch)
        store = f"sqlite:///{work / 'mlflow.db'}"
        extra = (["--score", args.score] if args.score else []) + (["--scales", args.scales] if args.scales else [])
        model_uri = train_benchmark_model(store, *extra)
        with (
            MlflowService(store, store) as service,
            spark_session("monitor-batch", args.master, args.conf, long_running=True) as spark,
        ):
            timings = time_batches(spark, service, model_uri, work, args)
    steady = timings[1:] or timings
    print(
        f"steady batches ({len(steady)} of {len(timings)}, the first left out when there are more): median "
        f"addBatch {statistics.median(t['addBatch'] for t in steady):.0f} ms, triggerExecution "
        f"{statistics.median(t['triggerExecution'] for t in steady):.0f} ms",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    exit_process(main())
