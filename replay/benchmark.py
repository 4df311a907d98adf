"""NAB benchmark: evaluate one model configuration the way NAB evaluates detectors.

Input: a directory of NAB-format files (``timestamp,value``), optionally NAB label windows
(``combined_windows.json``), and a configuration (k, seed, rule, threshold quantile).
For each file: train on its probationary period (the first min(floor(0.15 n), 750) rows;
the feature is ``value``), replay the whole file through the monitor's scoring path, and
write every row to ``<out>/<file stem>.csv`` in the file's order.
Output: one MLflow run in the benchmark experiment with the configuration as params and,
for the labelled files, the NAB score per profile, overall and per file: at the model's own
rule (``nab_<profile>_at_rule``) and at the one corpus-wide anomaly-score threshold that
maximises the score, as NAB chooses it (``nab_<profile>``).

    mlflow run . -e benchmark --env-manager local -P data=$NAB_DATA_DIR/data/realAWSCloudwatch \\
        -P labels=$NAB_DATA_DIR/labels/combined_windows.json -P out=data/benchmark
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from core.errors import UserError, main_guard
from core.scoring import RULE_DISTANCE, RULES

BENCHMARK_EXPERIMENT = "server-anomaly-nab-benchmark"
FEATURES = ["value"]
ROW_COLUMNS = ["timestamp", "value", "cluster", "distance", "anomaly_score", "is_anomaly"]


@dataclass
class FileResult:
    name: str
    rows: pd.DataFrame  # every row, in file order
    spans: list[tuple[int, int]] | None  # label windows as row spans; None when unlabelled


def probation_table(spark, content: bytes, path: str):
    """The file's probationary rows (valid ones), as a Spark DataFrame for training."""
    from core.csv_input import parse_file
    from core.scoring import validity
    from replay.nab_scoring import probationary_rows

    rows, _ = parse_file(path, content, FEATURES)
    if rows.empty:
        raise UserError(f"{path} has no data rows in NAB format (timestamp,value)")
    head = rows.head(probationary_rows(len(rows)))
    values = pd.to_numeric(head["value"], errors="coerce")
    keep = np.isfinite(values.to_numpy(dtype=float))
    return spark.createDataFrame(pd.DataFrame({"value": values[keep].astype(float)})), int(keep.sum())


def benchmark_file(spark, fs, path: str, args, windows) -> FileResult:
    from core.spark_scoring import score_binary_files
    from replay.nab_scoring import window_rows
    from training.train import fit_model

    content = bytes(fs.read_bytes(path))
    table, training_rows = probation_table(spark, content, path)
    k = min(args.k, max(training_rows, 1))
    if training_rows < 2:
        raise UserError(f"{path}: too few valid rows in the probationary period to train")
    fitted = fit_model(table, FEATURES, k, args.seed, args.max_iter, args.rule, args.threshold_quantile)
    files = spark.read.format("binaryFile").load(path)
    records = score_binary_files(spark, files, fitted.params, [path]).toPandas()
    records = records.sort_values("line_number", kind="stable").reset_index(drop=True)
    name = PurePosixPath(path).name
    label = windows.get(name) if windows is not None else None
    spans = None
    if label is not None:
        stamps = pd.to_datetime(records["timestamp"], errors="coerce", format="mixed")
        spans = window_rows(stamps, label)
    return FileResult(name, records, spans)


def score_corpus(results: list[FileResult]) -> dict[str, float]:
    from replay.nab_scoring import PROFILES, best_threshold, normalised, score_file

    labelled = [r for r in results if r.spans is not None]
    metrics: dict[str, float] = {"files": len(results), "labelled_files": len(labelled)}
    if not labelled:
        return metrics
    for profile in PROFILES:
        at_rule = [score_file(r.rows["is_anomaly"].to_numpy(bool), r.spans, profile) for r in labelled]
        metrics[f"nab_{profile}_at_rule"] = normalised(at_rule)
        scores = [(r.rows["anomaly_score"].to_numpy(float), r.spans) for r in labelled]
        threshold, value = best_threshold(scores, profile)
        metrics[f"nab_{profile}"] = value
        metrics[f"threshold_{profile}"] = threshold if np.isfinite(threshold) else 2.0
        for r in labelled:
            flags = np.nan_to_num(r.rows["anomaly_score"].to_numpy(float), nan=-1.0) >= threshold
            stem = PurePosixPath(r.name).stem
            metrics[f"nab_raw_{profile}_{stem}"] = score_file(flags, r.spans, profile).raw
    return metrics


def run_benchmark(spark, service, args) -> dict[str, float]:
    import mlflow

    from core.hadoop_fs import HadoopFs
    from core.paths import to_uri
    from replay.nab_scoring import load_labels

    if args.rule not in RULES:
        raise UserError(f"unknown rule {args.rule!r}; choose one of {', '.join(RULES)}")
    fs = HadoopFs(spark)
    paths = fs.list_files(to_uri(args.data))
    if not paths:
        raise UserError(f"no CSV files in {args.data}")
    windows = load_labels(args.labels)
    out = to_uri(args.out).rstrip("/")
    fs.mkdirs(out)
    started = time.perf_counter()
    with service.start_run(BENCHMARK_EXPERIMENT, run_name=f"nab k={args.k} {args.rule}"):
        mlflow.set_tag("step", "benchmark")
        mlflow.log_params({
            "k": args.k, "seed": args.seed, "max_iter": args.max_iter, "rule": args.rule,
            "features": ",".join(FEATURES), "threshold_quantile": args.threshold_quantile,
            "data_dir": to_uri(args.data), "labels_file": args.labels or "", "out_dir": out,
        })
        results = []
        for path in paths:
            result = benchmark_file(spark, fs, path, args, windows)
            buffer = io.StringIO()
            result.rows[ROW_COLUMNS].to_csv(buffer, index=False)
            fs.write_text(f"{out}/{PurePosixPath(path).stem}.csv", buffer.getvalue())
            results.append(result)
            flagged = int(result.rows["is_anomaly"].sum())
            print(f"{result.name}: {len(result.rows)} rows, {flagged} flagged"
                  + ("" if result.spans is None else f", {len(result.spans)} label windows"), flush=True)
        metrics = score_corpus(results)
        metrics["benchmark_seconds"] = time.perf_counter() - started
        mlflow.log_metrics(metrics)
        table = pd.DataFrame([
            {"file": r.name, "rows": len(r.rows), "flagged": int(r.rows["is_anomaly"].sum()),
             "windows": None if r.spans is None else len(r.spans),
             "nab_raw_standard": metrics.get(f"nab_raw_standard_{PurePosixPath(r.name).stem}")}
            for r in results
        ])
        mlflow.log_table(table, "results.json")
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        if f"nab_{profile}" in metrics:
            print(f"NAB {profile}: {metrics[f'nab_{profile}']:.1f} at the best corpus threshold, "
                  f"{metrics[f'nab_{profile}_at_rule']:.1f} at the model's {args.rule} rule")
    return metrics


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Evaluate a configuration on NAB-format files.")
    parser.add_argument("--data", required=True, help="directory of NAB-format CSV files")
    parser.add_argument("--labels", default="", help="NAB combined_windows.json (optional)")
    parser.add_argument("--out", default="data/benchmark", help="where the per-row CSVs go")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--rule", default=RULE_DISTANCE, choices=RULES)
    parser.add_argument("--threshold-quantile", type=float, default=0.99)
    parser.add_argument("--master", default=None)
    parser.add_argument("--conf", action="append", default=[], help="extra Spark setting key=value")
    return parser.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    from core.spark import spark_session
    from core.tracking import MlflowService

    args = parse_args(argv)
    with MlflowService() as service, spark_session("nab-benchmark", args.master, args.conf) as spark:
        run_benchmark(spark, service, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
