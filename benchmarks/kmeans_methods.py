"""The two ways training fits KMeans, timed in turn in one process on the same table.

Input: ``--rows`` rows of the speed benchmark's synthetic 3-feature table (written to a scratch
directory), or ``--data`` a feature table of your own. Output: a line per fit with its wall
time, iterations, cost (sum of squared distances) and distance threshold, then each method's
median time and the ratio of Spark ML's to the sample-started Lloyd's. Both fits go through
``training.train.fit_model`` (moments, KMeans, sizes, threshold), alternating, after the table
is loaded and cached once, so the ratio is not the JVM's start or the reading.

    python -m benchmarks.kmeans_methods --rows 10000000 --repeat 2
    python -m benchmarks.kmeans_methods --rows 10000000 --repeat 1 --seeds 42,1,2,3,4,5

``--seeds`` fits each method once per seed in each repeat: how many iterations Lloyd's method
needs depends on where its seeding lands (two centroids in one group of rows converge slowly),
so one seed's time is not the method's.

``--sample-rows`` sets the sample size (``SAMPLE_INIT_ROWS``, also the size up to which
training uses Spark ML's KMeans); the test suite sets it low to run the Lloyd path on a small table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from core.errors import UserError, exit_process, main_guard

FEATURES = ["cpu", "disk", "network"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Time Spark ML's KMeans against Lloyd from a sample.")
    parser.add_argument("--rows", type=int, default=10_000_000, help="synthetic table rows (without --data)")
    parser.add_argument("--data", default="", help="a feature table with cpu, disk and network columns")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="fits of each method, alternating")
    parser.add_argument("--sample-rows", type=int, default=None, help="SAMPLE_INIT_ROWS for this run")
    parser.add_argument("--seeds", default="42", help="comma-separated KMeans seeds, each fitted by both methods")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if args.repeat < 1 or args.k < 2 or (not args.data and args.rows < args.k):
        raise UserError("--repeat must be at least 1, --k at least 2 and --rows at least --k")
    return args


@main_guard
def main(argv=None) -> int:
    from benchmarks.common import synthetic_table
    from core.paths import local_input_bytes
    from core.spark import create_spark, stop_state_stores
    from training import features, kmeans, kmeans_large, train

    args = parse_args(argv)
    lloyd_from = args.sample_rows if args.sample_rows is not None else kmeans_large.SAMPLE_INIT_ROWS
    with tempfile.TemporaryDirectory(prefix="kmeans-methods-") as scratch:
        data = args.data or str(synthetic_table(args.rows, Path(scratch) / "synthetic.csv"))
        spark = create_spark("kmeans-methods", input_bytes=local_input_bytes(data))
        try:
            table = features.load_feature_table(spark, data, FEATURES)
            if table.total_rows - table.invalid_rows <= lloyd_from:
                raise UserError(
                    f"the table's valid rows must be more than the sample size ({lloyd_from}) "
                    "for the Lloyd path to run: pass more --rows or a lower --sample-rows"
                )
            seconds: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                for seed in args.seeds:
                    # Spark ML's KMeans: no table is over an unreachable sample size
                    for cap in (float("inf"), lloyd_from):
                        kmeans_large.SAMPLE_INIT_ROWS = cap
                        started = time.perf_counter()
                        fitted = train.fit_model(
                            table.valid, FEATURES, args.k, seed, 20, "distance", 0.99, moments=table.moments
                        )
                        elapsed = time.perf_counter() - started
                        pipeline = fitted.kmeans
                        seconds.setdefault(pipeline.method, []).append(elapsed)
                        print(
                            f"fit {pipeline.method}, seed {seed}: {elapsed:.2f} s, {pipeline.iterations} "
                            f"iterations, cost {pipeline.training_cost:.6g}, threshold "
                            f"{fitted.params.threshold:.6g}",
                            flush=True,
                        )
        finally:
            stop_state_stores(spark)
            spark.stop()
    medians = {method: statistics.median(times) for method, times in seconds.items()}
    for method, median in medians.items():
        print(f"median {method}: {median:.2f} s over {len(seconds[method])} fit(s)")
    print(
        f"ratio {kmeans.METHOD_SPARK_ML} / {kmeans_large.METHOD_SAMPLE_LLOYD}: "
        f"{medians[kmeans.METHOD_SPARK_ML] / medians[kmeans_large.METHOD_SAMPLE_LLOYD]:.2f}"
    )
    return 0


if __name__ == "__main__":
    exit_process(main())
