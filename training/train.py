"""Step 2, train: fit KMeans in Spark and register it as one MLflow model.

The pieces: ``training.features`` loads and validates the table, ``training.kmeans`` (and
``training.kmeans_large`` for large tables) fits, ``training.evaluate`` takes the threshold,
the silhouette and the summary; this module is the job that ties them to one MLflow run.

Input: a feature table (CSV with a header: ``timestamp`` and the feature columns), any
Hadoop-compatible URI or local path.
Output, in one MLflow run of the training experiment:
- params: k, seed, features, rule, threshold quantile, the data URI, its sha256, row counts,
  the KMeans method;
- metrics: every cluster's size, the expected label (the most populous cluster) and its
  share, the distance threshold, training cost (WSSSE), KMeans iterations, silhouette, timings;
- artifacts: ``cluster_summary.json``/``.csv`` (centroids in original units, sizes,
  expected label) and ``cluster_summary.png``;
- the model (pyfunc, with signature and input example), registered under ``--model-name``.
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.cli import add_spark_args, job_parser, optional_text
from core.errors import UserError, exit_process, main_guard
from core.paths import local_input_bytes, local_path, to_uri
from core.scales import WINDOWLESS_SCALES, Scale, windowed
from core.schema import (
    DEFAULT_FEATURES,
    DEFAULT_MODEL_NAME,
    STEP_TAG,
    TIMESTAMP,
    TRAINING_EXPERIMENT,
)
from core.scoring import (
    SCORE_LIKELIHOOD,
    ModelParams,
    bounds_for,
    check_alert_policy,
    check_rule,
    check_score,
)
from core.spark import spark_session_in_background
from core.spark_scoring import training_features
from core.tracking import MlflowService, log_dataset
from training.config import (
    ORIGINAL_SPEC,
    HistorySpec,
    add_model_settings,
    range_tolerance_text,
    rearm_after_text,
    scales_text,
    spec_from_args,
)
from training.evaluate import (
    cluster_summary,
    distance_threshold,
    plot_cluster_summary,
    silhouette,
)
from training.features import Moments, load_feature_table, moment_expressions, moments_from_row
from training.kmeans import FittedKMeans, fit_kmeans
from training.sampling import sampling_interval_seconds

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def params_from_fit(
    fitted: FittedKMeans, features, rule, threshold=0.0, spec: HistorySpec | None = None
) -> ModelParams:
    """The model's scoring parameters from a fit; the expected label is the most populous cluster."""
    spec = spec or ORIGINAL_SPEC
    sizes = fitted.cluster_sizes
    return ModelParams(
        history=list(spec.history),
        span=spec.span,
        alert_threshold=spec.alert_threshold,
        cooldown=spec.cooldown.rows_at(None),
        cooldown_seconds=spec.cooldown.seconds,
        score_kind=spec.score_kind,
        likelihood_window=spec.likelihood_window.rows_at(None),
        likelihood_recent=spec.likelihood_recent,
        range_tolerance=spec.range_tolerance,
        range_pages_in_cooldown=spec.range_tolerance is not None,
        rearm_after=spec.rearm_after,
        features=list(features),
        mean=list(fitted.mean),
        scale=fitted.scale,
        centroids=[[float(v) for v in c] for c in fitted.centroids],
        expected_label=int(np.argmax(sizes)),
        rule=rule,
        threshold=float(threshold),
        bounds={f: list(bounds_for(f)) for f in features},
    )


@dataclass
class FittedModel:
    kmeans: FittedKMeans
    params: ModelParams
    cluster_sizes: list[int]
    vectors: object  # the training rows as feature vectors (Spark DataFrame, cached)
    # Seconds between a series' rows (training.sampling), measured when a window was given in time.
    sampling_interval: float | None = None


def fit_model(
    table,
    features,
    k,
    seed,
    max_iter,
    rule,
    threshold_quantile,
    spec: HistorySpec | None = None,
    series: str | None = None,
    times_readable: bool | None = None,
    moments: Moments | None = None,
) -> FittedModel:
    """Compute the history features, fit KMeans, and turn it into scoring parameters
    with a learned distance threshold. Without ``spec`` the model is the original one: each
    row's own values, no history, an alert for every anomalous row. ``moments`` are the
    features' (``FeatureTable.moments``): they standardise the rows' own values."""

    spec = spec or ORIGINAL_SPEC
    columns = spec.vector_columns(features)
    if spec.range_tolerance is not None and (moments is None or moments.columns != list(features)):
        moments = moments_from_row(list(features), table.agg(*moment_expressions(list(features))).first())
    with ThreadPoolExecutor(max_workers=1 + len(spec.scales), thread_name_prefix="train-beside") as pool:
        # Their own Spark jobs, run beside the fit: only the parameters made after the fit need them.
        measuring = spec.measures_interval
        if measuring and TIMESTAMP not in table.columns:
            in_rows(spec, None)  # no time to measure: the clear error before a fit, not after
        interval_job = pool.submit(sampling_interval_seconds, table, series) if measuring else None
        scale_jobs = [
            pool.submit(fit_scale, table, list(features), spec, span, k, seed, max_iter, series, times_readable)
            for span in spec.scales
        ]
        vectors = training_features(table, list(features), list(spec.history), spec.span, series, times_readable)
        if spec.history != ("value",):
            vectors = vectors.cache()
        fitted_kmeans = fit_kmeans(
            vectors,
            columns,
            k,
            seed,
            max_iter,
            threshold_quantile=threshold_quantile,
            moments=moments if spec.history == ("value",) else None,
        )
        interval = interval_job.result() if interval_job else None
        scales = [job.result() for job in scale_jobs]
    spec = in_rows(spec, interval)
    sizes = list(fitted_kmeans.cluster_sizes)
    params = replace(params_from_fit(fitted_kmeans, features, rule, spec=spec), scales=scales)
    if spec.range_tolerance is not None:
        params = replace(params, training_range=moments.ranges)
    threshold = (
        fitted_kmeans.threshold
        if fitted_kmeans.threshold is not None
        else distance_threshold(vectors, params, threshold_quantile)
    )
    return FittedModel(fitted_kmeans, replace(params, threshold=threshold), sizes, vectors, interval)


def fit_scale(table, features, spec: HistorySpec, span: int, k, seed, max_iter, series, times_readable) -> Scale:
    """A further time scale of the model (core/scales.py): KMeans over the same transforms at ``span``."""
    vectors = training_features(table, features, list(spec.history), span, series, times_readable).cache()
    try:
        fitted = fit_kmeans(vectors, spec.vector_columns(features), k, seed, max_iter)
    finally:
        vectors.unpersist()
    return Scale(span, list(fitted.mean), fitted.scale, [[float(v) for v in c] for c in fitted.centroids])


def in_rows(spec: HistorySpec, interval: float | None) -> HistorySpec:
    """``spec`` with its likelihood window in rows at ``interval``, or a clear error when it cannot be."""
    spec = spec.at_interval(interval)
    try:
        check_score(spec.score_kind, spec.likelihood_window.rows, spec.likelihood_recent)
    except ValueError:
        at = f" at the training data's sampling interval ({interval:g} s)" if interval else ""
        raise UserError(
            f"a likelihood window of {spec.likelihood_window.text} is {spec.likelihood_window.rows} row(s){at}, "
            f"fewer than the {spec.likelihood_recent} recent rows it judges: give a longer window"
        ) from None
    return spec


def data_sha256(spark, uri: str) -> str:
    """sha256 over the bytes of every file behind ``uri``.

    A local file is hashed by the driver, which can read it without a Spark job; any other URI
    is hashed by Spark where the data lives.
    """
    import hashlib

    from pyspark.sql import functions as F

    local = local_path(uri)
    if local is not None and local.is_file():
        digest = hashlib.sha256()
        with open(local, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    files = (
        (spark.read.format("binaryFile").load(uri).select("path", F.sha2("content", 256).alias("sha")))
        .orderBy("path")
        .collect()
    )
    if len(files) == 1:
        return files[0]["sha"]
    combined = hashlib.sha256()
    for row in files:
        combined.update(f"{row['path'].rsplit('/', 1)[-1]}:{row['sha']}\n".encode())
    return combined.hexdigest()


@dataclass
class TrainResult:
    run_id: str
    model_name: str | None
    model_version: str | None
    params: ModelParams
    cluster_sizes: list[int]


def train(spark, service, args) -> TrainResult:
    import mlflow

    from core.model import log_anomaly_model

    features = [f.strip() for f in args.features.split(",") if f.strip()]
    if args.k < 2:
        raise UserError("k must be at least 2")
    if not 0 < args.threshold_quantile < 1:
        raise UserError("threshold quantile must be between 0 and 1")
    spec = spec_from_args(args)
    try:
        check_rule(args.rule)
        check_alert_policy(spec.span, spec.cooldown.rows or 0, spec.rearm_after)
        window = spec.likelihood_window.rows  # a duration is checked once fit_model has it in rows
        check_score(spec.score_kind, spec.likelihood_recent if window is None else window, spec.likelihood_recent)
        if spec.scales and spec.score_kind != SCORE_LIKELIHOOD:
            raise ValueError("--scales needs --score likelihood: each time scale is judged by its own likelihood")
        if spec.scales and not windowed(spec.history):
            raise ValueError(WINDOWLESS_SCALES)
    except ValueError as error:
        raise UserError(str(error)) from None
    uri = to_uri(args.data)
    started = time.perf_counter()
    table = load_feature_table(spark, uri, features)
    valid_rows = table.total_rows - table.invalid_rows
    if valid_rows < args.k:
        raise UserError(f"{valid_rows} valid rows cannot make {args.k} clusters")
    sha256 = data_sha256(spark, uri)
    description = (
        f"KMeans (k={args.k}, seed {args.seed}) on {args.data} (sha256 {sha256[:12]}), "
        f"features {','.join(features)}, history {','.join(spec.history)} over {spec.span} rows, "
        f"rule {args.rule}"
    )
    with service.start_run(
        TRAINING_EXPERIMENT, run_name=f"train-k{args.k}-{args.rule}", description=description
    ) as run:
        mlflow.set_tag(STEP_TAG, "train")
        mlflow.set_tag("spark_master", spark.sparkContext.master)
        log_dataset(
            service.client,
            run.info.run_id,
            uri,
            args.data.rstrip("/").rsplit("/", 1)[-1],
            sha256,
            {TIMESTAMP: "string", **dict.fromkeys(features, "double")},
            context="training",
        )
        # The driver's JVM options move the timings logged below (see core.spark).
        mlflow.set_tag(DRIVER_JAVA_OPTIONS, spark.sparkContext.getConf().get(DRIVER_JAVA_OPTIONS, ""))
        mlflow.log_params(
            {
                "k": args.k,
                "seed": args.seed,
                "max_iter": args.max_iter,
                "features": ",".join(features),
                "rule": args.rule,
                "threshold_quantile": args.threshold_quantile,
                "history": ",".join(spec.history),
                "span": spec.span,
                "alert_threshold": spec.alert_threshold,
                "cooldown": spec.cooldown.text,
                "score": spec.score_kind,
                "likelihood_window": spec.likelihood_window.text,
                "likelihood_recent": spec.likelihood_recent,
                "range_tolerance": range_tolerance_text(spec.range_tolerance),
                "rearm_after": rearm_after_text(spec.rearm_after),
                # As given ('auto', as mlflow run logs it), and the spans it means for this score.
                "scales": scales_text(args.scales),
                "time_scales": scales_text(spec.scales),
                "series_column": table.series or "",
                "data": args.data,  # as given (mlflow run logs it so too)
                "data_uri": uri,
                "data_sha256": sha256,
                "rows": table.total_rows,
                "valid_rows": valid_rows,
                "invalid_rows": table.invalid_rows,
            }
        )
        fit_started = time.perf_counter()
        fitted = fit_model(
            table.valid,
            features,
            args.k,
            args.seed,
            args.max_iter,
            args.rule,
            args.threshold_quantile,
            spec,
            table.series,
            table.unreadable_times == 0,
            table.moments,
        )
        fit_seconds = time.perf_counter() - fit_started
        fitted_kmeans, params, sizes = fitted.kmeans, fitted.params, fitted.cluster_sizes
        mlflow.log_params(
            {
                "kmeans_method": fitted_kmeans.method,
                "likelihood_window_rows": params.likelihood_window,
                # what the cooldown counts for rows that come without times
                "cooldown_rows": params.cooldown,
                "sampling_interval_seconds": "" if fitted.sampling_interval is None else fitted.sampling_interval,
            }
        )
        if len(params.centroids) < args.k:
            # Spark's KMeans returns fewer centroids than k when the vectors hold fewer distinct
            # points; its sizes still count k clusters, and the model would not line up.
            raise UserError(
                f"the {valid_rows} valid rows of {uri} hold only {len(params.centroids)} distinct point(s) "
                f"in {', '.join(params.vector_columns)}, fewer than --k {args.k}: lower --k, or train on "
                "more varied data"
            )
        threshold = params.threshold
        # Spark computes the input example and the silhouette while this thread writes the
        # summary, its plot and the model (Python work). The example goes first: the model
        # waits for it, and not for the silhouette.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="train-spark") as pool:
            example_job = pool.submit(lambda: table.valid.limit(5).toPandas())
            silhouette_job = pool.submit(silhouette, fitted.vectors, params)
            summary = cluster_summary(params, sizes)
            _log_summary(summary, params)
            example = example_job.result()
            log_started = time.perf_counter()
            info = log_anomaly_model(params, example, args.model_name or None)
            log_model_seconds = time.perf_counter() - log_started
            silhouette_value = silhouette_job.result()
        metrics = {f"cluster_size_{i}": size for i, size in enumerate(sizes)}
        metrics.update(
            expected_label=params.expected_label,
            expected_label_share=sizes[params.expected_label] / valid_rows,
            distance_threshold=threshold,
            training_cost=fitted_kmeans.training_cost,
            kmeans_iterations=fitted_kmeans.iterations,
            silhouette=silhouette_value,
            fit_seconds=fit_seconds,
        )
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({"log_model_seconds": log_model_seconds, "train_seconds": time.perf_counter() - started})
        version = getattr(info, "registered_model_version", None)
        if version:
            describe_version(
                service.client,
                args.model_name,
                str(version),
                run.info.run_id,
                description,
                {
                    "data": args.data,
                    "data_sha256": sha256,
                    "k": args.k,
                    "rule": args.rule,
                    "history": ",".join(spec.history),
                    "expected_label": params.expected_label,
                    "distance_threshold": f"{threshold:.6g}",
                    "kmeans_method": fitted_kmeans.method,
                },
            )
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(
            f"expected label {params.expected_label} ({metrics['expected_label_share']:.1%} of rows); "
            f"rule {params.rule}; distance threshold {threshold:.4g}"
        )
        print(f"run {run.info.run_id}" + (f"; registered {args.model_name} version {version}" if version else ""))
        print(f"log_model took {log_model_seconds:.1f} s")
        return TrainResult(run.info.run_id, args.model_name or None, str(version) if version else None, params, sizes)


def describe_version(client, name: str, version: str, run_id: str, description: str, tags: dict) -> None:
    """The registered version says what it is and where it came from, in the registry's own fields."""
    client.update_model_version(name, version, description=f"{description}. Trained by run {run_id}.")
    for key, value in {"training_run": run_id, **tags}.items():
        client.set_model_version_tag(name, version, key, str(value))


def _log_summary(summary: pd.DataFrame, params: ModelParams) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        summary.to_csv(folder / "cluster_summary.csv", index=False)
        (folder / "cluster_summary.json").write_text(
            json.dumps(
                {
                    "expected_label": params.expected_label,
                    "rule": params.rule,
                    "distance_threshold": params.threshold,
                    "features": params.features,
                    "history": params.history,
                    "span": params.span,
                    "alert_threshold": params.alert_threshold,
                    "cooldown": params.cooldown,
                    "cooldown_seconds": params.cooldown_seconds,
                    "score": params.score_kind,
                    "likelihood_window": params.likelihood_window,
                    "likelihood_recent": params.likelihood_recent,
                    "range_tolerance": params.range_tolerance,
                    "range_pages_in_cooldown": params.range_pages_in_cooldown,
                    "rearm_after": params.rearm_after,
                    "scales": [scale.span for scale in params.scales],
                    "vector_columns": params.vector_columns,
                    "clusters": summary.to_dict(orient="records"),
                },
                indent=2,
            )
        )
        plot_cluster_summary(summary, params.vector_columns, folder / "cluster_summary.png")
        mlflow.log_artifacts(scratch)


def parse_args(argv):
    parser = job_parser("Train and register the anomaly model.")
    parser.add_argument("--data", default="data/sample/metrics.csv", help="feature table (path or URI)")
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES))
    add_model_settings(parser)
    parser.add_argument(
        "--model-name",
        default=DEFAULT_MODEL_NAME,
        type=optional_text,
        help="registered name ('none' to skip registering)",
    )
    add_spark_args(parser)
    return parser.parse_args(argv)


def _import_while_the_jvm_starts() -> None:
    """Imports that a training run needs later, done while this thread would only wait."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import pyspark.ml.clustering  # noqa: F401
    import pyspark.ml.functions  # noqa: F401


@main_guard
def main(argv=None) -> int:

    args = parse_args(argv)
    started = time.perf_counter()
    # A small local table makes a short job, whose driver JIT differs (see core.spark_config).
    # Replay does not pass its input's size: its work is in Python workers, where the JIT
    # choice does not help.
    input_bytes = local_input_bytes(to_uri(args.data))
    with spark_session_in_background("train", args.master, args.conf, input_bytes) as started_spark:
        with MlflowService() as service:
            _import_while_the_jvm_starts()
            spark = started_spark()
            # Until the session is up; MLflow's set-up ran meanwhile.
            jvm_seconds = time.perf_counter() - started
            result = train(spark, service, args)
            service.client.log_metric(result.run_id, "jvm_start_seconds", jvm_seconds)
            service.client.log_metric(result.run_id, "wall_seconds", time.perf_counter() - started)
    print(f"train wall time {time.perf_counter() - started:.1f} s (JVM start {jvm_seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    exit_process(main())
