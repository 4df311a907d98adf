"""The monitor benchmark: backlogs drained by the monitor against the same file stream with no
scoring (and a SQL-only floor), and paced sweeps of rising rates with the latency at the highest
rate held."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import row
from core.errors import UserError
from core.paths import PROJECT_ROOT

# The paced sweep's two streams, as its lines and its JSON rungs name them.
MONITOR_STREAM, PLAIN_STREAM = "monitor", "no-scoring stream"


SAMPLE_TABLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"


def chunk_header() -> list[str]:
    """The columns of ``write_chunks``' files: the sample table's, and the host's name."""
    with SAMPLE_TABLE.open() as table:
        return [*table.readline().strip().split(","), "source"]


def write_chunks(
    folder: Path,
    count: int,
    rows_per_file: int,
    staging: Path,
    pace: float = 0.0,
    renamed: dict | None = None,
    prefix: str = "bench",
) -> None:
    lines = SAMPLE_TABLE.read_text().splitlines()
    # 20 hosts, as the streamer labels its chunks: each file continues its host's series, in
    # time order (the monitor quarantines rows older than their series' latest as late).
    header, values = ",".join(chunk_header()), [line.split(",", 1)[1] for line in lines[1:]]
    first = np.datetime64(lines[1].split(",", 1)[0].replace(" ", "T"), "s")
    # Every time stamp the files need, formatted once: formatting them per file held the paced
    # writer to about 1,000 files/s, near the rates it must reach.
    steps = ((count - 1) // 20 + 1) * rows_per_file
    all_stamps = np.char.replace(np.datetime_as_string(first + np.arange(steps) * np.timedelta64(5, "m")), "T", " ")
    staging.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    next_due = time.monotonic()
    for i in range(count):
        start = (i * rows_per_file) % len(values)
        host = f"{prefix}-host-{i % 20:02d}"  # each call its own hosts: its times start again
        step = (i // 20) * rows_per_file  # this host's rows so far
        stamps = all_stamps[step : step + rows_per_file].tolist()
        rows = [f"{stamps[j + 1]},{values[(start + j) % len(values)]},{host}" for j in range(rows_per_file - 1)]
        # One sure anomaly per file, so every file leaves an event to time.
        chunk = [header, f"{stamps[0]},99,90000000,1,{host}", *rows]
        name = f"{prefix}-{i:06d}.csv"
        (staging / name).write_text("\n".join(chunk) + "\n")
        os.replace(staging / name, folder / name)
        if renamed is not None:
            renamed[name] = time.time()
        if pace:
            next_due += pace
            time.sleep(max(0.0, next_due - time.monotonic()))


def _monitor_args(work: Path, name: str, window: float, model_uri: str, **extra):
    values = dict(
        input=str(work / name / "in"),
        window=window,
        model=model_uri,
        model_name="",
        output=str(work / name / "out"),
        checkpoint="",
        show=0,
        scored_rows=False,
        series_idle_minutes=1440,
        max_files_per_trigger=100000,
        idle_windows=0,
        timeout=0,
        master=None,
        conf=[],
    )
    values.update(extra)
    return argparse.Namespace(**values)


def _drain(
    spark, service, model_uri: str, work: Path, name: str, files: int, rows_per_file: int
) -> tuple[float, float, float]:
    """Seconds for the monitor, for a no-scoring file stream and for the SQL-only floor scorer
    (``sql_floor_scorer``) to drain the same backlog, one after the other."""
    from core.spark_scoring import BINARY_FILE_SCHEMA
    from streaming import monitor as monitor_job

    write_chunks(work / name / "in", files, rows_per_file, work / name / ".staging")
    tracker = monitor_job.ModelTracker(service.client, model_uri, "")
    monitor = monitor_job.Monitor(spark, service, _monitor_args(work, name, 0.5, model_uri), tracker)
    started = time.perf_counter()
    query = monitor.start()
    try:
        query.processAllAvailable()
    finally:
        query.stop()
        service.end_run(monitor.run_id)
    ours = time.perf_counter() - started
    _check_all_scored(work / name / "out")

    def drained_in(writer) -> float:
        """Seconds for a query over the same files (``writer``: its sink) to drain them."""
        started = time.perf_counter()
        files_stream = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA).load(str(work / name / "in"))
        query = (
            writer(files_stream)
            .option("checkpointLocation", str(work / name / f"{writer.__name__}-checkpoint"))
            .trigger(processingTime="0.5 seconds")
            .start()
        )
        try:
            query.processAllAvailable()
        finally:
            query.stop()
        return time.perf_counter() - started

    def plain(files_stream):
        return no_scoring_stream(files_stream, work / name / "plain-out")

    def floor(files_stream):
        return files_stream.writeStream.foreachBatch(
            sql_floor_scorer(tracker.current.params, work / name / "floor-out")
        )

    plain_seconds, floor_seconds = drained_in(plain), drained_in(floor)
    if not list((work / name / "floor-out").glob("*.parquet")):
        raise UserError("the SQL-only floor scorer wrote no events; its figures would time nothing")
    return ours, plain_seconds, floor_seconds


def sql_floor_scorer(params, events: Path):
    """A foreachBatch function scoring the benchmark's files in Spark SQL alone: the floor of
    a design without Python workers, measured to tell whether one could reach the drain goal.

    Lines and fields split in SQL (the benchmark's files are clean; no per-line checks, no
    quarantine), the model's history features as window functions over the batch's rows only
    (no series state carried between batches, no late-row check), the distance to the nearest
    centroid as an expression, the rows past the distance threshold appended to parquet (no
    exactly-once commit, no alerts or cooldown). Every omission makes it faster than a real
    scorer could be.
    """
    from pyspark.sql import functions as F

    from core.spark_scoring import nearest_distance_expression, training_features

    position = {name: i for i, name in enumerate(chunk_header())}

    def score(files, batch_id):
        lines = files.select(
            F.posexplode(F.split(F.col("content").cast("string"), "\n")).alias("number", "line")
        ).where("number > 0 AND line != ''")
        fields = F.split("line", ",")
        table = lines.select(
            fields[position["timestamp"]].alias("timestamp"),
            fields[position["source"]].alias("source"),
            *[fields[position[f]].try_cast("double").alias(f) for f in params.features],
        )
        vectors = training_features(table, params.features, params.history, params.span, "source", True)
        scored = vectors.withColumn("distance", nearest_distance_expression(params))
        scored.where(F.col("distance") > F.lit(params.threshold)).write.mode("append").parquet(str(events))

    return score


def _check_all_scored(output: Path, tolerated: str | None = None) -> tuple[int, int]:
    """The benchmark's files are all valid; a quarantined row means the figures time the
    quarantine path, not scoring, so the run stops instead of reporting them. Rows quarantined
    for the ``tolerated`` reason (its first word) are counted instead. Returns (rows the sink
    accounts for, rows tolerated)."""
    from streaming.sinks import read_output, read_summaries

    summaries = read_summaries(str(output))
    rows, invalid = sum(s["rows"] for s in summaries), sum(s["invalid_rows"] for s in summaries)
    if not invalid:
        return rows, 0
    reasons = read_output(str(output), "quarantine")["reason"].str.split(" \\(").str[0].value_counts()
    tolerated_rows = sum(n for r, n in reasons.items() if tolerated and r.split(":")[0] == tolerated)
    if tolerated_rows < invalid:
        raise UserError(
            f"the monitor quarantined {invalid} of the benchmark's own rows "
            f"({', '.join(f'{n}: {r}' for r, n in reasons.items())}); figures not reported"
        )
    return rows, tolerated_rows


def bench_monitor(
    spark,
    service,
    model_uri: str,
    work: Path,
    files: int,
    large_files: int,
    large_rows: int,
    rates: list[float],
    segment_seconds: float,
    window: float = 3.0,
    repeat: int = 1,
) -> list[dict]:
    from streaming import monitor as monitor_job

    results = []
    # (a) throughput: drain a backlog of small files, then of large files, against no scoring;
    # each repeat drains a fresh backlog with a fresh query and checkpoint
    for label, count, size in (("small", files, 100), ("large", large_files, large_rows)):
        drains = [_drain(spark, service, model_uri, work, f"drain-{label}-{i}", count, size) for i in range(repeat)]
        results.append(
            row(
                f"monitor drain of {count} files x {size} rows: files/min",
                "files/min",
                [count / ours * 60 for ours, _, _ in drains],
                [count / plain * 60 for _, plain, _ in drains],
                "baseline: same file stream, no scoring (read, count, parquet sink)",
                higher_is_better=True,
            )
        )
        results.append(
            row(
                f"monitor drain of {count} files x {size} rows: rows/s",
                "rows/s",
                [count * size / ours for ours, _, _ in drains],
                [count * size / plain for _, plain, _ in drains],
                higher_is_better=True,
            )
        )
        results.append(
            row(
                f"monitor drain floor, {count} files x {size} rows: files/min",
                "files/min",
                [count / floor * 60 for _, _, floor in drains],
                [count / plain * 60 for _, plain, _ in drains],
                "ours: an SQL-only scorer without series state, quarantine or exactly-once "
                "(sql_floor_scorer), the floor of a design without Python workers; baseline: "
                "the same no-scoring stream",
                higher_is_better=True,
            )
        )
    # (b) rising paced rates, window 3 s, until the backlog grows, for the monitor and for the
    # no-scoring stream in turn; each sweep a fresh query on a fresh directory, so neither lists
    # the other's files nor an earlier sweep's. A rate counts as sustained when every sweep kept
    # up with it; its figure is the rate the writer achieved, not the rate asked for.
    tracker = monitor_job.ModelTracker(service.client, model_uri, "")
    ours_runs: dict[float, list[dict]] = {}
    plain_runs: dict[float, list[dict]] = {}
    rungs: list[dict] = []  # every rate of every sweep, held or not, for the README's per-rate table
    sweep_rows = late_rows = 0
    for sweep in range(repeat):
        name = f"paced-{sweep}"
        monitor = monitor_job.Monitor(spark, service, _monitor_args(work, name, window, model_uri), tracker)
        query = monitor.start()
        try:
            _paced_sweep(
                spark,
                query,
                monitor.checkpoint_uri,
                work / name,
                MONITOR_STREAM,
                rates,
                segment_seconds,
                window,
                sweep,
                repeat,
                ours_runs,
                rungs,
            )
        finally:
            query.stop()
            service.end_run(monitor.run_id)
        # Files renamed into the directory while Spark lists it can be missed by that listing
        # and come a batch later, after a later file of their series (README, "Monitor"): the
        # monitor quarantines their rows as late. Seen at the rate a stream falls behind at;
        # counted and reported, not a reason to throw the run away.
        rows, late = _check_all_scored(work / name / "out", tolerated="late")
        sweep_rows += rows
        late_rows += late
        plain_query = _plain_paced_query(spark, work / f"plain-{name}", window)
        try:
            _paced_sweep(
                spark,
                plain_query,
                str(work / f"plain-{name}" / "checkpoint"),
                work / f"plain-{name}",
                PLAIN_STREAM,
                rates,
                segment_seconds,
                window,
                sweep,
                repeat,
                plain_runs,
                rungs,
            )
        finally:
            plain_query.stop()
    tried = f"rates tried {', '.join(f'{r:.0f}' for r in rates)}/min, each for {segment_seconds:g} s"
    ours = _sustained(ours_runs, repeat)
    plain = _sustained(plain_runs, repeat)
    if ours:
        ours_rate, ours_held = ours
        plain_rates = [run["achieved"] for run in plain[1]] if plain else None
        # A side that kept up at every rate tried was never pushed to its limit: its figure is a
        # lower bound, and the ratio a bound (or none) accordingly.
        ours_capped, plain_capped = ours_rate == max(rates), bool(plain) and plain[0] == max(rates)
        ratio_bound, bound = {
            (False, False): (None, ""),
            (False, True): (
                "upper",
                "; the no-scoring stream kept up at every rate tried, so its figure is a "
                "lower bound and the ratio an upper bound",
            ),
            (True, False): (
                "lower",
                "; the monitor kept up at every rate tried, so its figure and the ratio are lower bounds",
            ),
            (True, True): (
                "none",
                "; both kept up at every rate tried, so the ratio is no bound either way: add higher --rates",
            ),
        }[(ours_capped, plain_capped)]
        sustained = [run["achieved"] for run in ours_held]
        results.append(
            row(
                f"monitor sustained without backlog ({tried}): files/min",
                "files/min",
                sustained,
                plain_rates,
                f"100-row files; the highest rate kept up with in all {repeat} sweep(s), "
                f"as the writer achieved it; baseline: the same paced sweep into the no-scoring "
                f"stream (read, count, parquet sink), window {window:g} s{bound}"
                + (
                    f"; the monitor quarantined {late_rows} of the sweeps' {sweep_rows} rows as late "
                    "(a file a directory listing missed came a batch later)"
                    if late_rows
                    else ""
                ),
                higher_is_better=True,
            )
        )
        if ratio_bound:
            results[-1]["ratio_bound"] = ratio_bound
        results[-1]["rungs"] = rungs
        results[-1]["rung_streams"] = [MONITOR_STREAM, PLAIN_STREAM]  # ours, baseline
        results.append(
            row(
                "monitor sustained without backlog: rows/s",
                "rows/s",
                [r * 100 / 60 for r in sustained],
                [r * 100 / 60 for r in plain_rates] if plain_rates else None,
                higher_is_better=True,
            )
        )
        results.append(
            row(
                f"monitor latency at {ours_rate:.0f} files/min, window {window:g} s: p50",
                "s",
                [run["p50"] for run in ours_held],
                None,
                "rename into the directory -> its batch committed (the query's commit log); median of the sweeps' p50",
            )
        )
        results.append(
            row(
                f"monitor latency at {ours_rate:.0f} files/min, window {window:g} s: p95",
                "s",
                [run["p95"] for run in ours_held],
                None,
            )
        )
    return results


def _plain_paced_query(spark, folder: Path, window: float):
    """The no-scoring stream (read, count, parquet sink) on ``folder / 'in'``, started."""
    from core.spark_scoring import BINARY_FILE_SCHEMA

    (folder / "in").mkdir(parents=True, exist_ok=True)
    files = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA).load(str(folder / "in"))
    return (
        no_scoring_stream(files, folder / "out")
        .option("checkpointLocation", str(folder / "checkpoint"))
        .trigger(processingTime=f"{window:g} seconds")
        .start()
    )


def no_scoring_stream(files_stream, out: Path):
    """The baseline's writer: the same file stream read and its lines counted, into parquet."""
    return (
        files_stream.selectExpr("path", "size(split(cast(content as string), '\\n')) - 2 as rows")
        .writeStream.format("parquet")
        .option("path", str(out))
    )


def _paced_sweep(
    spark,
    query,
    checkpoint: str,
    folder: Path,
    label: str,
    rates: list[float],
    segment_seconds: float,
    window: float,
    sweep: int,
    repeat: int,
    kept_up: dict[float, list[dict]],
    rungs: list[dict],
) -> None:
    """Feed ``query`` 100-row files at each rate in turn, until its backlog grows; adds each
    rate it kept up with to ``kept_up`` (achieved rate, p50 and p95 latency), and every rate
    tried, held or not, to ``rungs``."""
    commits = CommitLog(spark, checkpoint)
    # A warm-up batch first, untimed: a new query's first batch also starts its Python workers
    # and state stores, which on a loaded machine pushed the first rate's tail past two windows.
    write_chunks(folder / "in", 2, 100, folder / ".staging", prefix="warmup")
    query.processAllAvailable()
    for rate in rates:
        renamed: dict[str, float] = {}
        count = max(int(rate * segment_seconds / 60), 3)
        write_chunks(folder / "in", count, 100, folder / ".staging", 60 / rate, renamed, prefix=f"rate{int(rate)}")
        query.processAllAvailable()
        times = sorted(renamed.values())
        achieved = (len(times) - 1) / (times[-1] - times[0]) * 60 if times[-1] > times[0] else rate
        latencies = commits.latencies(renamed)
        values = list(latencies.values())
        p50, p95 = float(np.percentile(values, 50)), float(np.percentile(values, 95))
        # a backlog that grows shows as the last files waiting longer than two windows
        tail = sorted(renamed, key=renamed.get)[-max(count // 5, 1) :]
        tail_latency = float(np.median([latencies[name] for name in tail]))
        growing = tail_latency > 2 * window + 1
        print(
            f"paced sweep {sweep + 1}/{repeat}, {label}, {rate:.0f} files/min (written at {achieved:.0f}): "
            f"p50 {p50:.2f} s, p95 {p95:.2f} s, {'backlog grows' if growing else 'keeps up'}",
            flush=True,
        )
        rungs.append(
            {
                "stream": label,
                "sweep": sweep + 1,
                "rate": rate,
                "achieved": achieved,
                "p50": p50,
                "p95": p95,
                "kept_up": not growing,
            }
        )
        if growing:
            break
        kept_up.setdefault(rate, []).append({"achieved": achieved, "p50": p50, "p95": p95})


def _sustained(kept_up: dict[float, list[dict]], repeat: int) -> tuple[float, list[dict]] | None:
    """The highest rate kept up with in every sweep, and its sweeps' figures."""
    held = [rate for rate, runs in kept_up.items() if len(runs) == repeat]
    return (max(held), kept_up[max(held)]) if held else None


class CommitLog:
    """When each input file's batch was committed, read from a query's checkpoint: the file
    source's log names the batch that took a file, the commit log's file time when that batch
    finished. The same reading for any query over a file source, scored or not."""

    def __init__(self, spark, checkpoint: str):
        from core.hadoop_fs import HadoopFs
        from core.paths import local_path

        self.fs = HadoopFs(spark)
        self.checkpoint = checkpoint
        self.commits = local_path(checkpoint) / "commits"
        self.committed: dict[str, float] = {}  # file name -> its batch's commit time
        self.read_batches: set[int] = set()

    def latencies(self, renamed: dict[str, float]) -> dict[str, float]:
        """Seconds from each file's rename to its batch's commit; every file must be committed."""
        from streaming.sinks import files_in_batch

        for entry in self.commits.iterdir():
            if entry.name.isdigit() and int(entry.name) not in self.read_batches:
                self.read_batches.add(int(entry.name))
                for path in files_in_batch(self.fs, self.checkpoint, int(entry.name)):
                    self.committed[path.rsplit("/", 1)[-1]] = entry.stat().st_mtime
        missing = [name for name in renamed if name not in self.committed]
        if missing:
            raise UserError(
                f"{len(missing)} paced file(s) not in any committed batch after the query drained, "
                f"e.g. {missing[0]}; figures not reported"
            )
        return {name: self.committed[name] - at for name, at in renamed.items()}
