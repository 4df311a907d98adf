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
- challenger (only with ``--only challenger``): the monitor's drain time of ``--monitor-files``
  100-row files and its p50/p95 latency at ``--challenger-rate`` files/min with a challenger
  scored beside production; baseline: production alone, in the same run
  (``benchmarks/challenger_speed.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.challenger_speed import bench_challenger, train_challenger_model
from benchmarks.common import json_destination, machine, print_table, synthetic_table
from benchmarks.memory_speed import bench_memory
from benchmarks.monitor_speed import bench_monitor
from benchmarks.replay_speed import bench_replay
from benchmarks.serving_speed import bench_serving
from benchmarks.train_speed import bench_train, train_benchmark_model
from core.errors import UserError, exit_process, main_guard
from core.schema import SPEED_BENCHMARK_EXPERIMENT as BENCHMARK_EXPERIMENT

PARTS = ("train", "replay", "monitor", "serving", "memory")
OPTIONAL_PARTS = ("challenger",)  # run only when named in --only


@main_guard
def main(argv=None) -> int:
    import mlflow

    from core.spark import create_spark, stop_state_stores
    from core.tracking import MlflowService
    from training.prepare import collate, write_table

    parser = argparse.ArgumentParser(description="Measure every job beside its baseline.")
    parser.add_argument("--nab-dir", default=os.environ.get("NAB_DATA_DIR", ""))
    parser.add_argument(
        "--out", default="data/benchmarks/speed.json", help="the JSON file to write (a directory: speed.json inside it)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="synthetic train table rows")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--monitor-files", type=int, default=600)
    parser.add_argument("--large-files", type=int, default=5, help="files of --large-rows rows in the drain test")
    parser.add_argument("--large-rows", type=int, default=100000)
    parser.add_argument(
        "--rates",
        default="1200,2400,4800,9600,19200,38400,76800,153600,307200",
        help="paced files/min, tried in turn until the backlog grows",
    )
    parser.add_argument("--segment-seconds", type=float, default=30)
    parser.add_argument("--memory-minutes", type=float, default=10)
    parser.add_argument("--memory-rate", type=float, default=300, help="files/min in the memory run")
    parser.add_argument(
        "--challenger-rate", type=float, default=4800, help="paced files/min in the challenger part's latency run"
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default all but {', '.join(OPTIONAL_PARTS)}): "
        f"{', '.join(PARTS + OPTIONAL_PARTS)}",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs, in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.sizes, args.requests = 1, "", 50
        args.monitor_files, args.large_files, args.large_rows = 30, 2, 5000
        args.rates, args.segment_seconds, args.memory_minutes, args.memory_rate = "120", 6, 0.3, 120
        args.challenger_rate = 120
    out = json_destination(Path(args.out))
    nab = Path(args.nab_dir) if args.nab_dir else None
    series = nab / "data" / "realAWSCloudwatch" if nab else None
    if series is None or not series.is_dir():
        raise UserError("set --nab-dir (or NAB_DATA_DIR) to a NAB copy; see README 'Getting NAB'")
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = parts - set(PARTS + OPTIONAL_PARTS)
    if unknown:
        raise UserError(
            f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS + OPTIONAL_PARTS)}"
        )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="speed-") as scratch:
        work = Path(scratch)
        store = f"sqlite:///{work / 'mlflow.db'}"
        # Every job measured logs to this run's scratch store; the run that `mlflow run` started
        # lives in the results store, and joining it from the scratch one failed every job.
        saved = {
            k: os.environ.get(k)
            for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")
        }
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
                    rows += bench_train(
                        synthetic_table(size, work / f"synthetic-{size}.csv"), f"{size:.0e} rows", store, args.repeat
                    )
            # The model under test is trained by the train entry point, in its own process, so
            # serving is measured before this process starts a JVM: a deployed scoring server
            # has no Spark driver beside it competing for the 2 cores.
            model_uri = train_benchmark_model(store) if parts & {"monitor", "serving", "memory", "challenger"} else ""
            if "serving" in parts:
                rows += bench_serving(service, store, model_uri, args.requests, ["cpu", "disk", "network"], args.repeat)
            if parts & {"replay", "monitor", "challenger"}:
                spark = create_spark("speed-benchmark")
                try:
                    if "replay" in parts:
                        rows += bench_replay(spark, service, series, args.repeat)
                    if "monitor" in parts:
                        rows += bench_monitor(
                            spark,
                            service,
                            model_uri,
                            work / "monitor",
                            args.monitor_files,
                            args.large_files,
                            args.large_rows,
                            [float(r) for r in args.rates.split(",") if r],
                            args.segment_seconds,
                            repeat=args.repeat,
                        )
                    if "challenger" in parts:
                        rows += bench_challenger(
                            spark,
                            service,
                            model_uri,
                            train_challenger_model(store),
                            work / "challenger",
                            args.monitor_files,
                            args.challenger_rate,
                            args.segment_seconds,
                            repeat=args.repeat,
                        )
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
    report = {
        "machine": machine(),
        "smoke": args.smoke,
        "repeat": args.repeat,
        "command": "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
    }
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
