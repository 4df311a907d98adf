"""What a challenger costs the monitor: the same backlog drained, and the same paced stream's
latency (a file's rename to its batch's commit), with production alone and with a challenger
scored beside it, in the same run, one after the other (the order alternating between repeats,
so neither always runs in the machine's warmer phase).

    python -m benchmarks.speed --only challenger --nab-dir $NAB_DATA_DIR --out /tmp/challenger.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import row
from benchmarks.monitor_speed import CommitLog, _check_all_scored, _monitor_args, write_chunks
from benchmarks.train_speed import run_train
from core.errors import UserError
from core.paths import PROJECT_ROOT

ALONE, PAIRED = "production alone", "with a challenger"


def train_challenger_model(store: str) -> str:
    """A second version of the benchmark's model, noisy (distance score, low thresholds, short
    cooldown), so its alerts differ from production's and are written too."""
    from mlflow import MlflowClient

    run_train(
        store,
        *("--data", str(PROJECT_ROOT / "data/sample/metrics.csv"), "--model-name", "bench-monitor"),
        *("--k", "3", "--threshold-quantile", "0.5", "--score", "distance"),
        *("--alert-threshold", "0.5", "--cooldown", "24"),
    )
    versions = MlflowClient(store, store).search_model_versions("name='bench-monitor'")
    return f"models:/bench-monitor/{max(int(v.version) for v in versions)}"


def _monitor(spark, service, model_uri: str, challenger: str, work: Path, name: str, window: float):
    from streaming import monitor as monitor_job

    tracker = monitor_job.ModelTracker(service.client, model_uri, "")
    args = _monitor_args(work, name, window, model_uri, challenger=challenger)
    return monitor_job.Monitor(spark, service, args, tracker)


def _check_paired(output: Path, challenger: str) -> None:
    from streaming.sinks import read_summaries

    unpaired = [
        s["batch_id"] for s in read_summaries(str(output)) if bool(s.get("challenger_uri")) != (challenger != "none")
    ]
    if unpaired:
        raise UserError(
            f"batches {unpaired[:5]} of {output} were not scored as asked ({challenger}); figures not reported"
        )


def _drain(spark, service, model_uri, challenger, work: Path, name: str, files: int) -> float:
    write_chunks(work / name / "in", files, 100, work / name / ".staging")
    monitor = _monitor(spark, service, model_uri, challenger, work, name, 0.5)
    started = time.perf_counter()
    query = monitor.start()
    try:
        query.processAllAvailable()
    finally:
        query.stop()
        service.end_run(monitor.run_id)
    seconds = time.perf_counter() - started
    _check_all_scored(work / name / "out")
    _check_paired(work / name / "out", challenger)
    return seconds


def _paced(spark, service, model_uri, challenger, work: Path, name: str, rate: float, seconds: float, window: float):
    """p50 and p95 of rename -> commit for 100-row files written at ``rate`` files/min."""
    monitor = _monitor(spark, service, model_uri, challenger, work, name, window)
    query = monitor.start()
    try:
        folder = work / name
        write_chunks(folder / "in", 2, 100, folder / ".staging", prefix="warmup")  # untimed: workers start
        query.processAllAvailable()
        renamed: dict[str, float] = {}
        count = max(int(rate * seconds / 60), 3)
        write_chunks(folder / "in", count, 100, folder / ".staging", 60 / rate, renamed, prefix=f"rate{int(rate)}")
        query.processAllAvailable()
        latencies = list(CommitLog(spark, monitor.checkpoint_uri).latencies(renamed).values())
    finally:
        query.stop()
        service.end_run(monitor.run_id)
    _check_all_scored(work / name / "out", tolerated="late")
    _check_paired(work / name / "out", challenger)
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))


def bench_challenger(
    spark,
    service,
    model_uri: str,
    challenger_uri: str,
    work: Path,
    files: int,
    rate: float,
    segment_seconds: float,
    window: float = 3.0,
    repeat: int = 1,
) -> list[dict]:
    drains: dict[str, list[float]] = {ALONE: [], PAIRED: []}
    p50s: dict[str, list[float]] = {ALONE: [], PAIRED: []}
    p95s: dict[str, list[float]] = {ALONE: [], PAIRED: []}
    # Untimed: the first query of a session also starts the Python workers and loads the models.
    _drain(spark, service, model_uri, challenger_uri, work, "warm-up", 20)
    for i in range(repeat):
        modes = [(ALONE, "none"), (PAIRED, challenger_uri)]
        for mode, challenger in modes if i % 2 == 0 else modes[::-1]:
            tag = "alone" if mode == ALONE else "paired"
            drains[mode].append(_drain(spark, service, model_uri, challenger, work, f"drain-{tag}-{i}", files))
            p50, p95 = _paced(
                spark, service, model_uri, challenger, work, f"paced-{tag}-{i}", rate, segment_seconds, window
            )
            p50s[mode].append(p50)
            p95s[mode].append(p95)
            print(
                f"challenger benchmark {i + 1}/{repeat}, {mode}: drain of {files} files {drains[mode][-1]:.1f} s; "
                f"at {rate:.0f} files/min p50 {p50:.2f} s, p95 {p95:.2f} s",
                flush=True,
            )
    baseline = f"baseline: production alone ({model_uri}), same run; challenger {challenger_uri}"
    return [
        row(
            f"monitor drain of {files} files x 100 rows {PAIRED}: seconds", "s", drains[PAIRED], drains[ALONE], baseline
        ),
        row(
            f"monitor latency at {rate:.0f} files/min, window {window:g} s, {PAIRED}: p50",
            "s",
            p50s[PAIRED],
            p50s[ALONE],
            f"rename -> batch committed; {baseline}",
        ),
        row(
            f"monitor latency at {rate:.0f} files/min, window {window:g} s, {PAIRED}: p95",
            "s",
            p95s[PAIRED],
            p95s[ALONE],
        ),
    ]
