"""Speed benchmarks: every job beside a baseline measured in the same run, on this machine.

Output: a table on stdout, the same as JSON (``--out``), and an MLflow run in the experiment
``server-anomaly-benchmarks`` (one metric per figure and ratio), so commits can be compared in
the UI. Each row: figure, ours, baseline, ratio (ours / baseline), machine. Figures are medians
over ``--repeat`` runs, with min and max: train, replay, the drains and the paced sweep repeat,
and serving repeats its rounds of ``--requests`` requests of each size (the median of the
rounds' percentiles); the memory run (10 minutes) runs once and reports its own growth ratio.

    python -m benchmarks.speed --nab-dir $NAB_DATA_DIR --out data/benchmarks/speed.json
    python -m benchmarks.speed --smoke --out /tmp/speed.json       # seconds, for the test suite

Figures and their baselines:
- train: the train entry point as a process (JVM start and log_model shown apart) on the NAB
  table and synthetic 3-feature tables; baseline: scikit-learn KMeans with the same k,
  k-means++ initialisation (Spark's default is k-means||), iteration cap and data.
- monitor: (a) throughput, a backlog of 100-row files and one of large files drained by the
  monitor's query, against the same Spark file stream with no scoring (read, count, file sink),
  and the floor of a design without Python workers (``sql_floor_scorer``) on the same backlog;
  (b) rising paced rates until the backlog grows, into the monitor and into the same no-scoring
  stream: the highest rate each held in every sweep (files/min and rows/s), and the monitor's
  latency there from a file's rename into the directory to its batch's commit.
- replay: the 17 NAB files through one model; baseline: the model's pandas predict in-process.
- serving: p50/p95/p99 of 1-row and 1,000-row requests to ``mlflow models serve``; baseline:
  in-process pyfunc predict of the same rows. Its floor: the same server and 1-row requests
  with a model that only returns a fixed frame of our output, i.e. MLflow's server alone.
- memory: peak RSS of the monitor's process tree (driver Python, JVM, Python workers) during a
  paced run (10 minutes by default), and whether it still grows in the last third.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError, exit_process, main_guard
from core.schema import SPEED_BENCHMARK_EXPERIMENT as BENCHMARK_EXPERIMENT

PARTS = ("train", "replay", "monitor", "serving", "memory")
# The paced sweep's two streams, as its lines and its JSON rungs name them.
MONITOR_STREAM, PLAIN_STREAM = "monitor", "no-scoring stream"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, {platform.machine()}"


def summary(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def row(figure: str, unit: str, ours: list[float], baseline: list[float] | None, note: str = "",
        higher_is_better: bool = False) -> dict:
    ours_s = summary(ours)
    base_s = summary(baseline) if baseline else None
    ratio = ours_s["median"] / base_s["median"] if base_s and base_s["median"] else None
    return {"figure": figure, "unit": unit, "ours": ours_s, "baseline": base_s, "ratio": ratio,
            "higher_is_better": higher_is_better, "note": note, "machine": machine()}


def synthetic_table(rows: int, path: Path, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    centres = rng.uniform([5, 1e6, 1e6], [90, 5e7, 5e7], size=(6, 3))
    pick = rng.integers(0, len(centres), rows)
    values = np.abs(centres[pick] * rng.normal(1.0, 0.05, size=(rows, 3)))
    values[:, 0] = np.clip(values[:, 0], 0, 100)
    frame = pd.DataFrame(values, columns=["cpu", "disk", "network"])
    frame.insert(0, "timestamp", "2026-01-01 00:00:00")
    frame.to_csv(path, index=False)
    return path


# -- train -------------------------------------------------------------------------------------
def run_train(store: str, *arguments: str, root: Path = PROJECT_ROOT) -> str:
    """The train entry point of the project at ``root`` in its own process (its JVM start is
    part of what is measured); returns its MLflow run's id."""
    result = subprocess.run(
        [PYTHON, "-m", "training.train", *arguments],
        cwd=root, env={**os.environ, "MLFLOW_TRACKING_URI": store, "SPARK_LOG_LEVEL": "ERROR"},
        capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"train failed in the benchmark ({root}): {result.stderr[-500:]}")
    return result.stdout.split("\nrun ")[1].split()[0].rstrip(";")


def bench_train(table: Path, label: str, store: str, repeat: int, k: int = 10,
                history_args: tuple[str, ...] = ("--history", "value")) -> list[dict]:
    """The train entry point; by default on the rows' own values, like for like with the
    scikit-learn baseline (which clusters the same 3 columns)."""
    from mlflow import MlflowClient
    from sklearn.cluster import KMeans

    walls, jvm, log_model, fit = [], [], [], []
    client = MlflowClient(store, store)
    for _ in range(repeat):
        started = time.perf_counter()
        run_id = run_train(store, "--data", str(table), "--k", str(k), "--model-name", "", *history_args)
        walls.append(time.perf_counter() - started)
        metrics = client.get_run(run_id).data.metrics
        jvm.append(metrics["jvm_start_seconds"])
        log_model.append(metrics["log_model_seconds"])
        fit.append(metrics["fit_seconds"])
    data = pd.read_csv(table, usecols=["cpu", "disk", "network"]).to_numpy(float)
    scaled = (data - data.mean(axis=0)) / np.where(data.std(axis=0) > 0, data.std(axis=0), 1)
    sklearn_fit = []
    for _ in range(repeat):
        started = time.perf_counter()
        KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=20, random_state=42).fit(scaled)
        sklearn_fit.append(time.perf_counter() - started)
    return [
        row(f"train {label}: whole run (JVM included)", "s", walls, sklearn_fit,
            "baseline: scikit-learn KMeans fit alone"),
        row(f"train {label}: Spark KMeans pipeline fit", "s", fit, sklearn_fit, "baseline: scikit-learn KMeans fit"),
        row(f"train {label}: JVM start", "s", jvm, None),
        row(f"train {label}: log_model", "s", log_model, None),
    ]


# -- replay ------------------------------------------------------------------------------------
def bench_replay(spark, service, series_dir: Path, repeat: int) -> list[dict]:
    from core.registry import resolve_model
    from core.scoring import score_frame
    from replay import replay
    from training import train as train_job

    args = train_job.parse_args(["--data", str(next(iter(sorted(series_dir.glob("*.csv"))))),
                                 "--features", "value", "--model-name", "bench-value"])
    result = train_job.train(spark, service, args)
    loaded = resolve_model(service.client, f"bench-value/{result.model_version}")
    replay_args = argparse.Namespace(model=[loaded.uri], model_name="bench-value", data=str(series_dir),
                                     labels="", window_minutes=60, master=None, conf=[])
    ours, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        (outcome,) = replay.run_replay(spark, service, replay_args)
        ours.append(time.perf_counter() - started)
        rows = outcome.metrics["rows"]
    # One series per file, as replay scores them.
    frames = pd.concat([pd.read_csv(p).assign(series=p.stem) for p in sorted(series_dir.glob("*.csv"))],
                       ignore_index=True)
    base = []
    for _ in range(repeat):
        started = time.perf_counter()
        score_frame(loaded.params, frames)
        base.append(time.perf_counter() - started)
    files = len(list(series_dir.glob("*.csv")))
    return [
        row(f"replay {files} files ({rows:.0f} rows): wall (with MLflow logging and artifacts)", "s", ours, base,
            "baseline: pandas predict of the same rows in-process"),
        row("replay rows/s", "rows/s", [rows / t for t in ours], [rows / t for t in base],
            higher_is_better=True),
    ]


# -- serving -----------------------------------------------------------------------------------
class KeepAliveClient:
    """POSTs one body to /invocations over a kept-alive connection, reconnecting when the
    server closed it (uvicorn closes idle connections after 5 s)."""

    def __init__(self, host: str, port: int, body: bytes):
        import http.client

        self._connect = lambda: http.client.HTTPConnection(host, port, timeout=30)  # noqa: E731
        self.connection = self._connect()
        self.body = body

    def __call__(self) -> bytes:
        import http.client

        for attempt in (1, 2):
            try:
                self.connection.request("POST", "/invocations", body=self.body,
                                        headers={"Content-Type": "application/json"})
                response = self.connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise UserError(f"the scoring server answered {response.status}: {payload[:300]!r}")
                return payload
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                if attempt == 2:
                    raise
                self.connection = self._connect()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def scoring_server(store: str, model_uri: str):
    """``mlflow models serve`` on a free 127.0.0.1 port, as a user starts it; yields the port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store,
           "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([PYTHON, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise UserError(f"mlflow models serve did not start for the benchmark ({model_uri})") from None
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def request_latencies_ms(port: int, frame: pd.DataFrame, count: int) -> list[float]:
    """Milliseconds of ``count`` POSTs of ``frame`` to /invocations, after 50 to warm up."""
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()
    request = KeepAliveClient("127.0.0.1", port, body)
    try:
        for _ in range(50):
            request()
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            request()
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies
    finally:
        request.close()


def log_fixed_frame_model(service, model, frame: pd.DataFrame) -> str:
    """Log a model with ours' signature whose predict returns ours' output for ``frame``,
    whatever it is asked: served, it costs what MLflow's server costs, with no model in it."""
    import mlflow

    from benchmarks.serving_floor import FixedFrameModel
    from core.model import serving_requirements

    with service.start_run(BENCHMARK_EXPERIMENT + "-serving-floor", run_name="fixed-frame model"):
        return mlflow.pyfunc.log_model(name="fixed_frame", python_model=FixedFrameModel(model.predict(frame)),
                                       signature=model.metadata.signature,
                                       pip_requirements=serving_requirements()).model_uri


def bench_serving(service, store: str, model_uri: str, requests: int, features: list[str], repeat: int = 1
                  ) -> list[dict]:
    """``repeat`` rounds of ``requests`` requests of each size (after a warm-up), each round's
    percentiles beside the same number of in-process predicts; rows give the rounds' median."""
    import mlflow

    rng = np.random.default_rng(1)
    model = mlflow.pyfunc.load_model(model_uri)
    frames = {size: pd.DataFrame(rng.uniform(1, 50, size=(size, len(features))), columns=features)
              for size in (1, 1000)}
    note = "baseline: in-process pyfunc predict; client: one keep-alive connection, as a pooled HTTP client keeps"
    quantiles = (50, 95, 99)

    def local_latencies(frame) -> list[float]:
        local = []
        for _ in range(requests):
            started = time.perf_counter()
            model.predict(frame)
            local.append((time.perf_counter() - started) * 1000)
        return local

    served = {size: {q: [] for q in quantiles} for size in frames}
    in_process = {size: {q: [] for q in quantiles} for size in frames}
    with scoring_server(store, model_uri) as port:
        for _ in range(repeat):
            for size, frame in frames.items():
                latencies, local = request_latencies_ms(port, frame, requests), local_latencies(frame)
                for q in quantiles:
                    served[size][q].append(float(np.percentile(latencies, q)))
                    in_process[size][q].append(float(np.percentile(local, q)))
    rows_out = [row(f"serving {size}-row request p{q} ({requests} requests)", "ms", served[size][q],
                    in_process[size][q], note)
                for size in frames for q in quantiles]
    # What the server costs with no model in it: the part of our latency no predict can remove.
    floor = {q: [] for q in quantiles}
    with scoring_server(store, log_fixed_frame_model(service, model, frames[1])) as port:
        for _ in range(repeat):
            latencies = request_latencies_ms(port, frames[1], requests)
            for q in quantiles:
                floor[q].append(float(np.percentile(latencies, q)))
    for q in quantiles:
        rows_out.append(row(f"serving floor, 1-row request p{q} ({requests} requests)", "ms",
                            floor[q], in_process[1][q],
                            "ours: the same server and requests with a model of our signature whose predict "
                            "returns a fixed frame of our output (MLflow's server alone); " + note))
    return rows_out


# -- monitor -----------------------------------------------------------------------------------
SAMPLE_TABLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"


def chunk_header() -> list[str]:
    """The columns of ``write_chunks``' files: the sample table's, and the host's name."""
    with SAMPLE_TABLE.open() as table:
        return [*table.readline().strip().split(","), "source"]


def write_chunks(folder: Path, count: int, rows_per_file: int, staging: Path, pace: float = 0.0,
                 renamed: dict | None = None, prefix: str = "bench") -> None:
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
        stamps = all_stamps[step:step + rows_per_file].tolist()
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
    values = dict(input=str(work / name / "in"), window=window, model=model_uri, model_name="",
                  output=str(work / name / "out"), checkpoint="", show=0, scored_rows=False,
                  series_idle_minutes=1440,
                  max_files_per_trigger=100000,
                  idle_windows=0, timeout=0, master=None, conf=[])
    values.update(extra)
    return argparse.Namespace(**values)


def _drain(spark, service, model_uri: str, work: Path, name: str, files: int, rows_per_file: int
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
        query = (writer(files_stream).option("checkpointLocation", str(work / name / f"{writer.__name__}-checkpoint"))
                 .trigger(processingTime="0.5 seconds").start())
        try:
            query.processAllAvailable()
        finally:
            query.stop()
        return time.perf_counter() - started

    def plain(files_stream):
        return no_scoring_stream(files_stream, work / name / "plain-out")

    def floor(files_stream):
        return files_stream.writeStream.foreachBatch(sql_floor_scorer(tracker.current.params, work / name / "floor-out"))

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
        lines = (files.select(F.posexplode(F.split(F.col("content").cast("string"), "\n")).alias("number", "line"))
                 .where("number > 0 AND line != ''"))
        fields = F.split("line", ",")
        table = lines.select(fields[position["timestamp"]].alias("timestamp"),
                             fields[position["source"]].alias("source"),
                             *[fields[position[f]].try_cast("double").alias(f) for f in params.features])
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
        raise UserError(f"the monitor quarantined {invalid} of the benchmark's own rows "
                        f"({', '.join(f'{n}: {r}' for r, n in reasons.items())}); figures not reported")
    return rows, tolerated_rows


def bench_monitor(spark, service, model_uri: str, work: Path, files: int, large_files: int, large_rows: int,
                  rates: list[float], segment_seconds: float, window: float = 3.0, repeat: int = 1) -> list[dict]:
    from streaming import monitor as monitor_job

    results = []
    # (a) throughput: drain a backlog of small files, then of large files, against no scoring;
    # each repeat drains a fresh backlog with a fresh query and checkpoint
    for label, count, size in (("small", files, 100), ("large", large_files, large_rows)):
        drains = [_drain(spark, service, model_uri, work, f"drain-{label}-{i}", count, size) for i in range(repeat)]
        results.append(row(f"monitor drain of {count} files x {size} rows: files/min", "files/min",
                           [count / ours * 60 for ours, _, _ in drains],
                           [count / plain * 60 for _, plain, _ in drains],
                           "baseline: same file stream, no scoring (read, count, parquet sink)", higher_is_better=True))
        results.append(row(f"monitor drain of {count} files x {size} rows: rows/s", "rows/s",
                           [count * size / ours for ours, _, _ in drains],
                           [count * size / plain for _, plain, _ in drains], higher_is_better=True))
        results.append(row(f"monitor drain floor, {count} files x {size} rows: files/min", "files/min",
                           [count / floor * 60 for _, _, floor in drains],
                           [count / plain * 60 for _, plain, _ in drains],
                           "ours: an SQL-only scorer without series state, quarantine or exactly-once "
                           "(sql_floor_scorer), the floor of a design without Python workers; baseline: "
                           "the same no-scoring stream", higher_is_better=True))
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
            _paced_sweep(spark, query, monitor.checkpoint_uri, work / name, MONITOR_STREAM, rates, segment_seconds,
                         window, sweep, repeat, ours_runs, rungs)
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
            _paced_sweep(spark, plain_query, str(work / f"plain-{name}" / "checkpoint"), work / f"plain-{name}",
                         PLAIN_STREAM, rates, segment_seconds, window, sweep, repeat, plain_runs, rungs)
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
            (False, True): ("upper", "; the no-scoring stream kept up at every rate tried, so its figure is a "
                                     "lower bound and the ratio an upper bound"),
            (True, False): ("lower", "; the monitor kept up at every rate tried, so its figure and the ratio are "
                                     "lower bounds"),
            (True, True): ("none", "; both kept up at every rate tried, so the ratio is no bound either way: "
                                   "add higher --rates"),
        }[(ours_capped, plain_capped)]
        sustained = [run["achieved"] for run in ours_held]
        results.append(row(f"monitor sustained without backlog ({tried}): files/min", "files/min", sustained,
                           plain_rates, f"100-row files; the highest rate kept up with in all {repeat} sweep(s), "
                           f"as the writer achieved it; baseline: the same paced sweep into the no-scoring "
                           f"stream (read, count, parquet sink), window {window:g} s{bound}"
                           + (f"; the monitor quarantined {late_rows} of the sweeps' {sweep_rows} rows as late "
                              "(a file a directory listing missed came a batch later)" if late_rows else ""),
                           higher_is_better=True))
        if ratio_bound:
            results[-1]["ratio_bound"] = ratio_bound
        results[-1]["rungs"] = rungs
        results[-1]["rung_streams"] = [MONITOR_STREAM, PLAIN_STREAM]  # ours, baseline
        results.append(row("monitor sustained without backlog: rows/s", "rows/s", [r * 100 / 60 for r in sustained],
                           [r * 100 / 60 for r in plain_rates] if plain_rates else None, higher_is_better=True))
        results.append(row(f"monitor latency at {ours_rate:.0f} files/min, window {window:g} s: p50", "s",
                           [run["p50"] for run in ours_held], None,
                           "rename into the directory -> its batch committed (the query's commit log); "
                           "median of the sweeps' p50"))
        results.append(row(f"monitor latency at {ours_rate:.0f} files/min, window {window:g} s: p95", "s",
                           [run["p95"] for run in ours_held], None))
    return results


def _plain_paced_query(spark, folder: Path, window: float):
    """The no-scoring stream (read, count, parquet sink) on ``folder / 'in'``, started."""
    from core.spark_scoring import BINARY_FILE_SCHEMA

    (folder / "in").mkdir(parents=True, exist_ok=True)
    files = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA).load(str(folder / "in"))
    return (no_scoring_stream(files, folder / "out").option("checkpointLocation", str(folder / "checkpoint"))
            .trigger(processingTime=f"{window:g} seconds").start())


def no_scoring_stream(files_stream, out: Path):
    """The baseline's writer: the same file stream read and its lines counted, into parquet."""
    return (files_stream.selectExpr("path", "size(split(cast(content as string), '\\n')) - 2 as rows")
            .writeStream.format("parquet").option("path", str(out)))


def _paced_sweep(spark, query, checkpoint: str, folder: Path, label: str, rates: list[float],
                 segment_seconds: float, window: float, sweep: int, repeat: int,
                 kept_up: dict[float, list[dict]], rungs: list[dict]) -> None:
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
        tail = sorted(renamed, key=renamed.get)[-max(count // 5, 1):]
        tail_latency = float(np.median([latencies[name] for name in tail]))
        growing = tail_latency > 2 * window + 1
        print(f"paced sweep {sweep + 1}/{repeat}, {label}, {rate:.0f} files/min (written at {achieved:.0f}): "
              f"p50 {p50:.2f} s, p95 {p95:.2f} s, {'backlog grows' if growing else 'keeps up'}", flush=True)
        rungs.append({"stream": label, "sweep": sweep + 1, "rate": rate, "achieved": achieved,
                      "p50": p50, "p95": p95, "kept_up": not growing})
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
            raise UserError(f"{len(missing)} paced file(s) not in any committed batch after the query drained, "
                            f"e.g. {missing[0]}; figures not reported")
        return {name: self.committed[name] - at for name, at in renamed.items()}


def bench_memory(store: str, model_uri: str, work: Path, minutes: float, rate: float) -> list[dict]:
    """Memory of the monitor's processes (driver Python, JVM, Python workers) in a paced run."""
    folder = work / "memory"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "SPARK_LOG_LEVEL": "ERROR"}
    process = subprocess.Popen(
        [PYTHON, "-m", "streaming.monitor", "--input", str(folder / "in"), "--output", str(folder / "out"),
         "--model", model_uri, "--window", "3", "--show", "0", "--timeout", str(minutes * 60 + 330)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    samples: list[tuple[float, dict]] = []
    stop = threading.Event()

    def sample():
        started = time.monotonic()
        while not stop.is_set() and process.poll() is None:
            kinds = monitor_memory_mib(process.pid)
            if kinds:
                samples.append((time.monotonic() - started, kinds))
            stop.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        count = max(int(rate * minutes), 1)
        write_chunks(folder / "in", count, 100, folder / ".staging", 60 / rate, prefix="mem")
        # Measured until the monitor has scored every file: on a loaded machine a short run could
        # otherwise end before its first batch, and measure a monitor that never started its workers.
        _wait_until_scored(folder / "out", count, process, seconds=300)
    finally:
        stop.set()
        sampler.join()
        os.killpg(process.pid, 15)
        process.wait(timeout=60)
    if not samples:
        raise UserError("the memory run took no samples")
    total = samples[-1][0]

    def peak(kind: str, start: float = 0.0, end: float = float("inf")) -> float:
        return max((k[kind] for t, k in samples if start <= t <= end), default=0.0)

    kinds = ("total", "driver", "jvm", "python_workers")
    per_minute = {kind: [peak(kind, m * 60, (m + 1) * 60 - 1e-9) for m in range(int(total // 60) + 1)]
                  for kind in kinds}
    trace = ", ".join(f"{v:.0f}" for v in per_minute["total"] if v)
    first, middle, last = (peak("total", 0, total / 3), peak("total", total / 3, 2 * total / 3),
                           peak("total", 2 * total / 3))
    peak_row = row(
        f"monitor peak memory (PSS), {minutes:g}-minute paced run at {rate:.0f} files/min", "MiB",
        [peak("total")], None,
        f"driver Python {peak('driver'):.0f} + JVM {peak('jvm'):.0f} + Python workers "
        f"{peak('python_workers'):.0f} MiB at their peaks (up to {peak('workers') - 1:.0f} workers and "
        f"their daemon); RSS summed without sharing: {peak('rss'):.0f} MiB; peak per minute: {trace} MiB")
    peak_row["parts_mib"] = {kind: peak(kind) for kind in kinds[1:]}
    peak_row["per_minute_mib"] = per_minute
    return [
        peak_row,
        row("monitor memory growth: peak of the last third / peak of the first third", "ratio",
            [last / first], None, "includes the start-up"),
        row("monitor memory growth: peak of the last third / peak of the middle third", "ratio",
            [last / middle], None, "about 1 means it stopped growing after the first minutes"),
    ]


def _wait_until_scored(output: Path, files: int, process: subprocess.Popen, seconds: float) -> None:
    from streaming.sinks import read_summaries

    deadline = time.monotonic() + seconds
    while sum(summary["files"] for summary in read_summaries(str(output))) < files:
        if process.poll() is not None:
            raise UserError(f"the monitor of the memory run stopped (exit code {process.returncode}) "
                            "before it scored every file")
        if time.monotonic() > deadline:
            raise UserError(f"the monitor of the memory run did not score every file in {seconds:g} s")
        time.sleep(0.5)


def _proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process. PSS splits pages shared after a fork (the Python workers and
    their daemon) among the processes sharing them, so a sum of PSS is what a tree really holds."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("Rss", "Pss"):
            values[key] = int(line.split()[1]) / 1024
    return values["Rss"], values["Pss"]


def monitor_memory_mib(root: int) -> dict[str, float]:
    """Memory of the monitor's long-lived processes, by kind.

    The tree is followed by parent, not by process group: the Python worker daemon puts itself
    in a group of its own. Transient shell-outs of the JVM (Hadoop runs ``readlink`` and the
    like) are left out: a child spawned with vfork reports its parent's whole memory until it
    runs exec, which made one sample in a minute look like a 1 GiB step."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = _proc_status(int(entry.name))
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        children.setdefault(int(status["PPid"].split()[0]), []).append(int(entry.name))
    kinds = {"driver": 0.0, "jvm": 0.0, "python_workers": 0.0, "workers": 0.0, "rss": 0.0}

    def add(kind: str, pid: int) -> None:
        rss, pss = _memory_mib(pid)
        kinds[kind] += pss
        kinds["rss"] += rss

    try:
        add("driver", root)
        for jvm in children.get(root, []):
            if "java" not in commands.get(jvm, "").split(" ", 1)[0]:
                continue
            add("jvm", jvm)
            for daemon in children.get(jvm, []):
                if "pyspark.daemon" not in commands.get(daemon, ""):
                    continue  # a shell-out, see above
                for pid in [daemon, *children.get(daemon, [])]:
                    add("python_workers", pid)
                    kinds["workers"] += 1
    except (OSError, ValueError, KeyError):
        return {}  # a process ended between listing and reading: the next sample counts
    kinds["total"] = kinds["driver"] + kinds["jvm"] + kinds["python_workers"]
    return kinds


def train_benchmark_model(store: str) -> str:
    """The monitor's and server's model: the sample table with train's defaults, registered."""
    from mlflow import MlflowClient

    run_train(store, "--data", str(PROJECT_ROOT / "data/sample/metrics.csv"), "--model-name", "bench-monitor")
    versions = MlflowClient(store, store).search_model_versions("name='bench-monitor'")
    return f"models:/bench-monitor/{max(int(v.version) for v in versions)}"


def print_table(rows: list[dict]) -> None:
    print(f"\n{'figure':<78} {'ours':>12} {'baseline':>12} {'ratio':>8}")
    for r in rows:
        base = f"{r['baseline']['median']:.4g}" if r["baseline"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['figure'][:78]:<78} {r['ours']['median']:>10.4g} {r['unit'][:2]:<1} {base:>12} {ratio:>8}")
    print(f"machine: {machine()}")


def json_destination(out: Path) -> Path:
    """Where the JSON goes, checked before an hour of measuring rather than after it: a
    directory gets ``speed.json`` inside it, and a place that cannot be written is a clear error."""
    if out.is_dir():
        out = out / "speed.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out: cannot create {out.parent}: {error.strerror}") from None
    if out.is_dir() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"--out: cannot write {out}")
    return out


@main_guard
def main(argv=None) -> int:
    import mlflow

    from core.spark import create_spark, stop_state_stores
    from core.tracking import MlflowService
    from training.prepare import collate, write_table

    parser = argparse.ArgumentParser(description="Measure every job beside its baseline.")
    parser.add_argument("--nab-dir", default=os.environ.get("NAB_DATA_DIR", ""))
    parser.add_argument("--out", default="data/benchmarks/speed.json",
                        help="the JSON file to write (a directory: speed.json inside it)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="synthetic train table rows")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--monitor-files", type=int, default=600)
    parser.add_argument("--large-files", type=int, default=5, help="files of --large-rows rows in the drain test")
    parser.add_argument("--large-rows", type=int, default=100000)
    parser.add_argument("--rates", default="1200,2400,4800,9600,19200,38400,76800,153600,307200",
                        help="paced files/min, tried in turn until the backlog grows")
    parser.add_argument("--segment-seconds", type=float, default=30)
    parser.add_argument("--memory-minutes", type=float, default=10)
    parser.add_argument("--memory-rate", type=float, default=300, help="files/min in the memory run")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default all): {', '.join(PARTS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs, in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.sizes, args.requests = 1, "", 50
        args.monitor_files, args.large_files, args.large_rows = 30, 2, 5000
        args.rates, args.segment_seconds, args.memory_minutes, args.memory_rate = "120", 6, 0.3, 120
    out = json_destination(Path(args.out))
    nab = Path(args.nab_dir) if args.nab_dir else None
    series = nab / "data" / "realAWSCloudwatch" if nab else None
    if series is None or not series.is_dir():
        raise UserError("set --nab-dir (or NAB_DATA_DIR) to a NAB copy; see README 'Getting NAB'")
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise UserError(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="speed-") as scratch:
        work = Path(scratch)
        store = f"sqlite:///{work / 'mlflow.db'}"
        # Every job measured logs to this run's scratch store; the run that `mlflow run` started
        # lives in the results store, and joining it from the scratch one failed every job.
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID",
                                                "MLFLOW_EXPERIMENT_ID")}
        os.environ["MLFLOW_TRACKING_URI"] = store
        for key in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            os.environ.pop(key, None)
        service = MlflowService(store, store).start()
        try:
            if "train" in parts:
                nab_table = work / "nab.csv"
                write_table(collate(series).table, nab_table)
                rows += bench_train(nab_table, "NAB table", store, args.repeat, 7, ())  # train's defaults
                for size in [int(s) for s in args.sizes.split(",") if s]:
                    rows += bench_train(synthetic_table(size, work / f"synthetic-{size}.csv"), f"{size:.0e} rows",
                                        store, args.repeat)
            # The model under test is trained by the train entry point, in its own process, so
            # serving is measured before this process starts a JVM: a deployed scoring server
            # has no Spark driver beside it competing for the 2 cores.
            model_uri = train_benchmark_model(store) if parts & {"monitor", "serving", "memory"} else ""
            if "serving" in parts:
                rows += bench_serving(service, store, model_uri, args.requests, ["cpu", "disk", "network"],
                                      args.repeat)
            if parts & {"replay", "monitor"}:
                spark = create_spark("speed-benchmark")
                try:
                    if "replay" in parts:
                        rows += bench_replay(spark, service, series, args.repeat)
                    if "monitor" in parts:
                        rows += bench_monitor(spark, service, model_uri, work / "monitor", args.monitor_files,
                                              args.large_files, args.large_rows,
                                              [float(r) for r in args.rates.split(",") if r], args.segment_seconds,
                                              repeat=args.repeat)
                finally:
                    stop_state_stores(spark)
                    spark.stop()
            if "memory" in parts:
                rows += bench_memory(store, model_uri, work / "monitor", args.memory_minutes, args.memory_rate)
        finally:
            service.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    report = {"machine": machine(), "smoke": args.smoke, "repeat": args.repeat,
              "command": "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rows": rows}
    print_table(rows)
    out.write_text(json.dumps(report, indent=2))
    with MlflowService() as results_store, results_store.start_run(BENCHMARK_EXPERIMENT, run_name="speed"):
        mlflow.set_tag("machine", machine())
        metrics = {}
        for i, r in enumerate(rows):
            key = f"{i:02d}_" + "".join(c if c.isalnum() else "_" for c in r["figure"])[:200]
            metrics[key] = r["ours"]["median"]
            if r["ratio"] is not None:
                metrics[f"{key}_ratio"] = r["ratio"]
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    exit_process(main())
