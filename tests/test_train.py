"""Training on the NAB table with a real SparkSession and a real MLflow store in tmp_path."""

import hashlib
import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest

from core.distances import squared_distances
from core.errors import UserError
from core.model import load_params
from core.scoring import ModelParams, score_frame
from core.spark_scoring import (
    nearest_distance_expression,
    score_dataframe,
    training_features,
)
from training import config, evaluate, kmeans, kmeans_large
from training import train as train_job
from training.features import load_feature_table

from helpers import train_args

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow


@pytest.fixture
def trained(spark, mlflow_service, nab_table):
    return train_job.train(spark, mlflow_service, train_args(nab_table))


def test_training_run_logs_params_metrics_artifacts_and_a_registered_model(trained, mlflow_service, nab_table):
    client = mlflow_service.client
    run = client.get_run(trained.run_id)
    params, metrics = run.data.params, run.data.metrics
    rows = len(pd.read_csv(nab_table))
    # params
    assert params["k"] == str(config.DEFAULT_K) and params["seed"] == "42" and params["rule"] == "distance"
    # the history features and the alert policy are params, and travel inside the model
    assert params["history"] == ",".join(config.DEFAULT_HISTORY) and params["span"] == str(config.DEFAULT_SPAN)
    assert params["range_tolerance"] == str(config.DEFAULT_RANGE_TOLERANCE)
    assert params["alert_threshold"] == str(config.DEFAULT_ALERT_THRESHOLD)
    assert params["cooldown"] == str(config.DEFAULT_COOLDOWN)
    assert params["rearm_after"] == config.rearm_after_text(config.DEFAULT_REARM_AFTER)
    assert params["features"] == "cpu,disk,network"
    assert params["data_sha256"] == hashlib.sha256(nab_table.read_bytes()).hexdigest()
    assert params["rows"] == str(rows)
    # metrics: every cluster's size, the expected label and its share
    sizes = [metrics[f"cluster_size_{i}"] for i in range(config.DEFAULT_K)]
    assert sum(sizes) == int(params["valid_rows"]) == rows
    assert metrics["expected_label"] == int(np.argmax(sizes))
    assert metrics["expected_label_share"] == pytest.approx(max(sizes) / rows)
    assert metrics["training_cost"] > 0 and -1 <= metrics["silhouette"] <= 1
    assert metrics["distance_threshold"] > 0 and metrics["log_model_seconds"] > 0
    # artifacts
    names = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"cluster_summary.json", "cluster_summary.csv", "cluster_summary.png"} <= names
    summary = json.loads(mlflow.artifacts.load_text(f"runs:/{trained.run_id}/cluster_summary.json"))
    assert summary["expected_label"] == trained.params.expected_label
    assert [c["size"] for c in summary["clusters"]] == sizes
    # the registered model: version 1, from this run, with a signature and an input example
    version = client.get_model_version("test-detector", "1")
    assert version.run_id == trained.run_id and trained.model_version == "1"
    info = mlflow.models.get_model_info("models:/test-detector/1")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["cpu", "disk", "network", "series", "timestamp"]
    assert {"is_anomaly", "is_alert", "cpu_mean", "cpu_std"} <= {c["name"] for c in info.signature.outputs.to_dict()}
    assert info.saved_input_example_info is not None
    # the expected label travels inside the model
    loaded = load_params("models:/test-detector/1")
    assert loaded.expected_label == metrics["expected_label"]
    assert (loaded.history, loaded.span, loaded.cooldown_seconds, loaded.range_tolerance, loaded.rearm_after) == (
        list(config.DEFAULT_HISTORY),
        config.DEFAULT_SPAN,
        config.parse_cooldown(config.DEFAULT_COOLDOWN).seconds,
        config.DEFAULT_RANGE_TOLERANCE,
        config.DEFAULT_REARM_AFTER,
    )
    # and so does each input's range in training, where a series' range starts
    table = pd.read_csv(nab_table)
    assert loaded.training_range == [[table[f].min(), table[f].max()] for f in ("cpu", "disk", "network")]


def test_spark_ml_and_the_scoring_core_agree_on_every_nab_row(spark, nab_table):
    # given the Spark ML pipeline fitted on the NAB table
    table = load_feature_table(spark, str(nab_table), ["cpu", "disk", "network"]).valid
    pipeline = kmeans.fit_kmeans(table, ["cpu", "disk", "network"], 10, 42, 20)
    params = train_job.params_from_fit(pipeline, ["cpu", "disk", "network"], "distance", 0.5)
    # when Spark ML, Spark scoring (mapInPandas) and pandas scoring each label the rows
    spark_ml = pipeline.transform(table).select("cluster").toPandas()["cluster"]
    spark_core = score_dataframe(table, params).toPandas()
    pandas_core = score_frame(params, pd.read_csv(nab_table))
    # then they agree row for row
    assert len(pandas_core) == len(spark_core) == len(spark_ml)
    assert (spark_ml.to_numpy() == pandas_core["cluster"].to_numpy()).all()
    for column in ["cluster", "is_anomaly", "is_valid"]:
        assert (spark_core[column].to_numpy() == pandas_core[column].to_numpy()).all(), column
    np.testing.assert_allclose(spark_core["distance"], pandas_core["distance"], rtol=1e-12)
    np.testing.assert_allclose(spark_core["anomaly_score"], pandas_core["anomaly_score"], rtol=1e-12)
    # and the Spark SQL distance that training's threshold uses is the core's distance
    sql = table.select(nearest_distance_expression(params).alias("d")).toPandas()["d"]
    np.testing.assert_allclose(sql, pandas_core["distance"], rtol=1e-9)


def test_the_row_solver_gives_the_centroids_that_sparks_own_choice_gives(spark, nab_table):
    # given the NAB table
    features = ["cpu", "disk", "network"]
    table = load_feature_table(spark, str(nab_table), features).valid
    # when the pipeline fits as trained, and with Spark choosing the solver
    ours = kmeans.fit_kmeans(table, features, 10, 42, 20)
    spark_choice = kmeans.fit_kmeans(table, features, 10, 42, 20, solver="auto")
    # then the pass Spark spends choosing buys nothing: the same centroids, bit for bit
    assert ours.kmeans.getOrDefault("solver") == "row"
    np.testing.assert_array_equal(
        np.array(ours.kmeans.clusterCenters()), np.array(spark_choice.kmeans.clusterCenters())
    )
    assert ours.kmeans.summary.clusterSizes == spark_choice.kmeans.summary.clusterSizes


LLOYD_FEATURES = ["cpu", "disk", "network"]


@pytest.fixture
def lloyd_nab_table(spark, nab_table, monkeypatch):
    """The NAB table's valid rows (about 67,000), with a sample size well below them, so that
    training takes the large-table Lloyd path."""
    monkeypatch.setattr(kmeans_large, "SAMPLE_INIT_ROWS", 5000)
    return load_feature_table(spark, str(nab_table), LLOYD_FEATURES).valid


def assert_the_core_finds_the_counts(fitted, rows: pd.DataFrame) -> pd.DataFrame:
    """The scoring core, labelling every row, finds the sizes and cost the fit reported, and
    its distances' exact 0.99 quantile (the ceil(0.99 n)-th smallest) is the threshold. Returns
    the core's scores."""
    core = score_frame(fitted.params, rows)
    assert fitted.cluster_sizes == [int((core["cluster"] == i).sum()) for i in range(len(fitted.params.centroids))]
    assert fitted.kmeans.training_cost == pytest.approx(float((core["distance"] ** 2).sum()), rel=1e-9)
    ranked = np.sort(core["distance"].to_numpy())
    assert fitted.params.threshold == pytest.approx(ranked[int(np.ceil(0.99 * len(ranked))) - 1], rel=1e-12)
    return core


def test_a_table_over_the_sample_size_is_clustered_by_lloyd_from_a_sample_and_agrees_with_the_core(
    lloyd_nab_table, nab_table
):
    # given the NAB table and a sample size well below it
    table = lloyd_nab_table
    # when the model is fitted
    fitted = train_job.fit_model(table, LLOYD_FEATURES, 10, 42, 20, "distance", 0.99)
    pipeline, params = fitted.kmeans, fitted.params
    # then Lloyd's iterations over every row fitted it, not Spark ML, within the iteration cap
    assert pipeline.method == kmeans_large.METHOD_SAMPLE_LLOYD and pipeline.kmeans is None
    assert 1 <= pipeline.iterations <= 20 and len(params.centroids) == 10
    # and the scoring core, labelling every row, finds the sizes, cost and expected label it
    # logged, and the threshold, bracketed on the fit's last pass, is the exact 0.99 quantile
    rows = pd.read_csv(nab_table)
    core = assert_the_core_finds_the_counts(fitted, rows)
    assert params.expected_label == int(np.argmax(fitted.cluster_sizes))
    # and it converged within the cap: every centroid is the mean of its rows, up to the last
    # move Lloyd allows (the tolerance)
    assert pipeline.iterations < 20
    z = (rows[LLOYD_FEATURES].to_numpy() - np.array(params.mean)) * np.array(params.scale)
    for i, centroid in enumerate(params.centroids):
        mean = z[core["cluster"].to_numpy() == i].mean(axis=0)
        assert np.sqrt(((mean - np.array(centroid)) ** 2).sum()) <= 2 * kmeans_large.KMEANS_TOLERANCE
    # and Spark's approximate quantile is near the exact threshold
    ranked = np.sort(core["distance"].to_numpy())
    approximate = evaluate.distance_threshold(table, params, 0.99)
    assert (
        abs((ranked <= approximate).mean() - (ranked <= params.threshold).mean())
        <= 2 * evaluate.QUANTILE_RELATIVE_ERROR
    )
    # and Spark SQL's labels are the core's
    labels = pipeline.transform(table).select("cluster").toPandas()["cluster"].to_numpy()
    assert (labels == core["cluster"].to_numpy()).all()


def test_a_lloyd_fit_stopped_by_the_iteration_cap_counts_its_last_centroids(lloyd_nab_table, nab_table):
    # given the NAB table and a sample size well below it
    # when a single pass over the table is allowed, too few to converge
    fitted = train_job.fit_model(lloyd_nab_table, LLOYD_FEATURES, 10, 42, 1, "distance", 0.99)
    # then the sizes, cost and threshold are those of the centroids it returns, as the core finds them
    assert fitted.kmeans.iterations == 1
    assert_the_core_finds_the_counts(fitted, pd.read_csv(nab_table))


def test_the_centroid_passes_assign_and_count_rows_as_the_core_does(spark):
    # given 4 centroids, two of them mirror images across z0 = 0, and 300 standardised rows, the
    # last on that plane (so exactly as far from both)
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(4, 3))
    centres[2] = [-centres[1][0], centres[1][1], centres[1][2]]
    points = np.vstack([rng.normal(size=(299, 3)), [0.0, 0.3, -0.2]])
    vectors = spark.createDataFrame([tuple(map(float, p)) for p in points], "_z0 double, _z1 double, _z2 double")
    passes = kmeans_large.CentroidPasses(spark, vectors, ["_z0", "_z1", "_z2"], 4)
    squared = squared_distances(points, centres)
    labels, distances = squared.argmin(axis=1), np.sqrt(squared.min(axis=1))
    assert labels[-1] == 1  # the tie goes to the lower index, in the core
    # when a Lloyd pass sums the rows per centroid
    sizes, sums = passes.sums(centres)
    # then every row went to the centroid the core chooses, ties to the lowest index
    assert sizes.tolist() == np.bincount(labels, minlength=4).tolist()
    for j in range(4):
        np.testing.assert_allclose(sums[j], points[labels == j].sum(axis=0), rtol=1e-12, atol=1e-12)
    # and when the last pass counts them with a band of distances
    low, high = np.quantile(distances, [0.4, 0.6])
    counts = passes.count(centres, (low, high))
    # then sizes, cost, the rows below the band and each distance inside it are the core's
    assert counts.sizes.tolist() == sizes.tolist()
    assert counts.cost == pytest.approx(float(squared.min(axis=1).sum()), rel=1e-12)
    assert counts.below == int((distances < low).sum())
    assert sorted(counts.inside) == sorted(d for d in distances.tolist() if low <= d <= high)
    # and without a band nothing is inside it
    assert passes.count(centres).inside == [] and passes.count(centres).below == 0
    # and the centroids reach each pass as a table held in the driver (no job, no Python worker)
    plan = passes.labelled(centres)._jdf.queryExecution().optimizedPlan().toString()
    assert re.search(r"LocalRelation \[_centroid0_0#", plan), plan


def test_the_feature_tables_moments_are_its_valid_rows_and_standardise_as_the_fit_would(spark, tmp_path):
    # given a table with an invalid row (cpu above 100)
    path = tmp_path / "table.csv"
    path.write_text("cpu,disk,network\n10,1,5\n20,3,7\n400,2,2\n35,8,1\n")
    features = ["cpu", "disk", "network"]
    # when it is loaded, and the pipeline fitted with its moments and without them
    table = load_feature_table(spark, str(path), features)
    with_moments = kmeans.fit_kmeans(table.valid, features, 2, 42, 20, moments=table.moments)
    without = kmeans.fit_kmeans(table.valid, features, 2, 42, 20)
    # then the moments are those of the 3 valid rows
    valid = np.array([[10, 1, 5], [20, 3, 7], [35, 8, 1]], dtype=float)
    assert table.moments.rows == 3 and table.moments.columns == features
    np.testing.assert_allclose(table.moments.mean, valid.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table.moments.std, valid.std(axis=0, ddof=1), rtol=1e-12)
    # and the fit standardises with them as it would have computed them itself
    np.testing.assert_allclose(with_moments.mean, without.mean, rtol=1e-12)
    np.testing.assert_allclose(with_moments.std, without.std, rtol=1e-12)
    np.testing.assert_allclose(np.array(with_moments.centroids), np.array(without.centroids), rtol=1e-9, atol=1e-12)


def test_kmeans_plus_plus_on_a_sample_finds_well_separated_groups():
    # given three tight, well separated groups of points
    rng = np.random.default_rng(5)
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.vstack([m + rng.normal(scale=0.1, size=(200, 2)) for m in means])
    # when k-means++ and Lloyd's iterations cluster them into 3
    centres = kmeans_large.kmeans_plus_plus(points, 3, 42, 20)
    # then each centroid is one group's mean
    found = sorted(map(tuple, np.round(centres).tolist()))
    assert found == sorted(map(tuple, means.tolist()))
    for centre in centres:
        group = points[np.linalg.norm(points - centre, axis=1) < 3]
        np.testing.assert_allclose(centre, group.mean(axis=0), atol=kmeans_large.KMEANS_TOLERANCE)


def test_the_exact_quantile_is_taken_inside_the_bracket_and_approximated_when_the_bracket_misses(spark):
    # given 1,000 distances 1..1000, whose 0.9 quantile is the 900th smallest
    distances = spark.createDataFrame([(float(i),) for i in range(1, 1001)], "_distance double")
    # when the bracket holds rank 900 (899 below 899.5, 905 at most 905)
    inside = evaluate.exact_quantile_from_bracket(distances, 0.9, 1000, 899.5, 905.0, 899, 905)
    # and when it does not (the bracket sits above the quantile)
    missed = evaluate.exact_quantile_from_bracket(distances, 0.9, 1000, 950.0, 960.0, 949, 960)
    # then the first is exact and the second Spark's approximate quantile, within its rank error
    assert inside == 900.0
    # and a quantile whose product with the rows is a whole number in floating point's error is that rank
    assert evaluate.exact_quantile_from_bracket(distances, 0.07, 100, 5.5, 9.5, 5, 9) == 7.0
    assert abs(missed - 900.0) <= 1000 * evaluate.QUANTILE_RELATIVE_ERROR + 1


def test_the_quantile_bracket_from_a_uniform_sample_holds_the_full_quantile():
    # given a million distances and a 200,000-row uniform sample of them
    rng = np.random.default_rng(7)
    full = rng.exponential(size=1_000_000)
    sample = rng.choice(full, size=200_000, replace=False)
    # when the sample brackets the 0.99 quantile
    low, high = evaluate.quantile_bracket(sample, 0.99)
    # then the full quantile lies inside, and the bracket holds well under 1% of the rows
    exact = np.sort(full)[int(np.ceil(0.99 * len(full))) - 1]
    assert low < exact <= high
    assert ((full >= low) & (full <= high)).mean() < 0.005


def test_a_sample_with_fewer_points_than_k_leaves_the_fit_to_spark_ml_over_every_row(spark, monkeypatch):
    # given more rows than the sample size, holding 3 distinct points
    monkeypatch.setattr(kmeans_large, "SAMPLE_INIT_ROWS", 10)
    table = spark.createDataFrame([(float(i % 3), float(i % 3) * 2) for i in range(60)], "a double, b double")
    # when 5 clusters are asked for
    pipeline = kmeans.fit_kmeans(table, ["a", "b"], 5, 42, 20)
    # then Spark ML fitted every row and, as it does, found the 3 points (the train job turns
    # that into a clear error about the table, not about a sample)
    assert pipeline.method == kmeans.METHOD_SPARK_ML
    assert len(pipeline.centroids) == 3 and sorted(pipeline.cluster_sizes)[-3:] == [20, 20, 20]
    assert sum(pipeline.cluster_sizes) == 60


def test_the_standardisation_is_spark_mls_standard_scaler(spark, nab_table):
    # given the NAB table's history features
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    features = ["cpu", "disk", "network"]
    table = load_feature_table(spark, str(nab_table), features)
    spec = config.HistorySpec()
    columns = spec.vector_columns(features)
    vectors = training_features(table.valid, features, list(spec.history), spec.span, table.series)
    # when the pipeline standardises them in SQL, and Spark ML's StandardScaler fits them
    ours = kmeans.fit_kmeans(vectors, columns, 7, 42, 20)
    assembled = VectorAssembler(inputCols=columns, outputCol="raw").transform(vectors)
    scaler = StandardScaler(inputCol="raw", outputCol="z", withMean=True, withStd=True).fit(assembled)
    # then they learn the same mean and (sample) standard deviation, up to the order of the sums
    np.testing.assert_allclose(ours.mean, scaler.mean.toArray(), rtol=1e-12)
    np.testing.assert_allclose(ours.std, scaler.std.toArray(), rtol=1e-12)
    # and the vectors KMeans clustered are the scaler's output
    z = np.array([v.toArray() for v in scaler.transform(assembled).select("z").toPandas()["z"]])
    ours_z = np.array([v.toArray() for v in ours.vectors(vectors).select("features").toPandas()["features"]])
    np.testing.assert_allclose(ours_z, z, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("history", ["mean,std", "value"])
def test_the_silhouette_is_spark_mls_own(spark, nab_table, history):
    # given models fitted on the NAB table, with history features and on the rows' own values
    # (the latter has clusters of one row, whose silhouette is 0 by definition)
    from pyspark.ml.evaluation import ClusteringEvaluator

    features = ["cpu", "disk", "network"]
    table = load_feature_table(spark, str(nab_table), features)
    spec = config.HistorySpec(config.parse_history(history))
    fitted = train_job.fit_model(table.valid, features, 7, 42, 20, "distance", 0.99, spec, table.series)
    # when the silhouette is computed from the clusters' sums, and by Spark ML's evaluator
    ours = evaluate.silhouette(fitted.vectors, fitted.params)
    evaluator = ClusteringEvaluator(featuresCol="features", predictionCol="cluster", metricName="silhouette")
    theirs = evaluator.evaluate(fitted.kmeans.transform(fitted.vectors))
    # then they are the same number
    assert 0 < ours < 1
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)
    if history == "value":
        assert 1 in fitted.cluster_sizes


def test_the_silhouette_of_fewer_than_two_clusters_is_nan(spark):
    # given a table whose rows all sit at one of two centroids, so the other stays empty
    params = ModelParams(
        history=["value"],
        span=1,
        alert_threshold=0.5,
        cooldown=0,
        features=["cpu"],
        mean=[0.0],
        scale=[1.0],
        centroids=[[0.0], [10.0]],
        expected_label=0,
        rule="distance",
        threshold=1.0,
        bounds={"cpu": [0.0, 100.0]},
    )
    rows = spark.createDataFrame([(0.5,), (1.0,), (1.5,)], "cpu double")
    # then the silhouette says so, instead of failing as Spark ML's evaluator does
    assert np.isnan(evaluate.silhouette(rows, params))
    # and with both clusters populated it is the textbook value over squared distances:
    # 1 and 2 share a cluster (a = 1 each; b = 81 and 64 to the 10), and 10 is alone (0)
    two = spark.createDataFrame([(1.0,), (2.0,), (10.0,)], "cpu double")
    expected = np.mean([1 - 1 / 81, 1 - 1 / 64, 0.0])
    assert evaluate.silhouette(two, params) == pytest.approx(expected, rel=1e-12)


def test_the_distance_threshold_is_the_chosen_quantile_of_training_distances(trained, nab_table):
    distances = score_frame(trained.params, pd.read_csv(nab_table))["distance"]
    share_above = (distances > trained.params.threshold).mean()
    assert share_above == pytest.approx(0.01, abs=0.002)


def test_cluster_rule_is_the_original_rule(spark, mlflow_service, nab_table):
    # the original: the cluster alone decides, without the series' range
    args = train_args(nab_table, rule="cluster", model_name="", range_tolerance=None)
    result = train_job.train(spark, mlflow_service, args)
    scored = score_frame(result.params, pd.read_csv(nab_table))
    assert result.model_version is None  # model_name '' logs without registering
    assert (scored["is_anomaly"] == (scored["cluster"] != result.params.expected_label)).all()


def test_invalid_training_rows_are_counted_and_left_out(spark, mlflow_service, tmp_path):
    table = tmp_path / "t.csv"
    rows = ["timestamp,network,cpu,disk"]  # reordered columns are read by name
    rows += [f"2024-01-01 00:{i:02d}:00,{100 + i},{i % 7}.5,{i * 3}" for i in range(40)]
    rows += ["2024-01-01 01:00:00,5,-1,1", "2024-01-01 01:05:00,5,abc,1", "2024-01-01 01:10:00,,1,1"]
    table.write_text("\n".join(rows) + "\n")
    result = train_job.train(spark, mlflow_service, train_args(table, k=3, model_name=""))
    params = mlflow_service.client.get_run(result.run_id).data.params
    assert params["rows"] == "43" and params["invalid_rows"] == "3"
    assert sum(result.cluster_sizes) == 40


@pytest.mark.parametrize(
    "content, message",
    [
        ("timestamp,cpu,disk\n2024-01-01,1,2\n", "lacks column(s) network"),
        ("timestamp,cpu,disk,network\n", "has no data rows"),
        ("timestamp,cpu,disk,network\n2024-01-01,-5,1,1\n", "has no valid rows"),
        # an idle server: every row the same, so Spark's KMeans finds one centroid for k=2
        (
            "timestamp,cpu,disk,network\n" + "".join(f"2024-01-01 00:{m:02d}:00,5,6,7\n" for m in range(30)),
            "hold only 1 distinct point(s) in cpu, cpu_mean, cpu_std, disk, disk_mean, disk_std, network, "
            "network_mean, network_std, fewer than --k 2",
        ),
    ],
)
def test_bad_training_tables_are_clear_errors(spark, mlflow_service, tmp_path, content, message):
    table = tmp_path / "t.csv"
    table.write_text(content)
    with pytest.raises(UserError, match=re.escape(message)):
        train_job.train(spark, mlflow_service, train_args(table, k=2))


def test_a_missing_training_table_is_a_clear_error(spark, mlflow_service, tmp_path):
    with pytest.raises(UserError, match="cannot read feature table"):
        train_job.train(spark, mlflow_service, train_args(tmp_path / "absent.csv"))


@pytest.mark.parametrize(
    "time_format, path_taken",
    [
        ("%Y-%m-%d %H:%M:%S", "spark_sql"),  # ISO: Spark's window functions
        ("%m/%d/%Y %H:%M", "core_in_python"),
    ],  # only pandas reads it: the core orders and computes
)
def test_training_history_features_are_the_cores_on_each_series_in_time_order(spark, tmp_path, time_format, path_taken):
    # given a table of two hosts with its rows shuffled
    from core.history import history_features
    from core.spark_scoring import training_features

    rng = np.random.default_rng(3)
    stamps = pd.date_range("2026-01-05", periods=60, freq="5min")
    frames = []
    for host in ("web-1", "web-2"):
        frames.append(
            pd.DataFrame({"timestamp": stamps.strftime(time_format), "host": host, "cpu": rng.uniform(0, 100, 60)})
        )
    table = pd.concat(frames).sample(frac=1.0, random_state=1)
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    loaded = load_feature_table(spark, str(path), ["cpu"])
    # when training computes the features
    features = training_features(
        loaded.valid, ["cpu"], ["delta", "mean", "std"], 6, loaded.series, loaded.unreadable_times == 0
    )
    got = features.toPandas()
    # then they are the core's, per host in time order (the deltas are exact; means and spreads
    # summed in another order by Spark agree to rounding)
    want = []
    for host in ("web-1", "web-2"):
        series = frames[0 if host == "web-1" else 1]["cpu"].to_numpy()[:, None]
        want.append(history_features(["delta", "mean", "std"], 6, series, [])[0])
    want = pd.DataFrame(np.vstack(want), columns=["cpu_delta", "cpu_mean", "cpu_std"])
    assert loaded.series == "host" and len(got) == 120
    assert loaded.unreadable_times == (0 if path_taken == "spark_sql" else 120)
    plan = features._jdf.queryExecution().executedPlan().toString()
    assert ("FlatMapGroupsInPandas" in plan) == (path_taken == "core_in_python"), plan
    got = got.sort_values(["cpu_delta", "cpu_mean"]).reset_index(drop=True)
    want = want.sort_values(["cpu_delta", "cpu_mean"]).reset_index(drop=True)
    np.testing.assert_array_equal(got["cpu_delta"], want["cpu_delta"])
    np.testing.assert_allclose(got[["cpu_mean", "cpu_std"]], want[["cpu_mean", "cpu_std"]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "text, message",
    [("0", "rearm after must be at least 1 row"), ("soon", "expected a whole number of rows or 'none'")],
)
def test_a_rearm_after_that_cannot_work_is_a_clear_error(text, message):
    from training.config import parse_rearm_after

    with pytest.raises(UserError, match=re.escape(message)):
        parse_rearm_after(text)
    assert parse_rearm_after("none") is None and parse_rearm_after("6") == 6


def test_time_scales_go_with_the_likelihood_unless_given():
    from training.config import parse_scales

    # given train's settings with each score, then the likelihood has train's scales, the distance none
    assert config.HistorySpec().scales == config.DEFAULT_SCALES == (2, 288)
    assert config.HistorySpec(score_kind="distance").scales == ()
    # and a history without a rolling window has none: every span would give the model's own features
    assert config.HistorySpec(history=("value",)).scales == config.HistorySpec(history=("value", "delta")).scales == ()
    # and the option reads 'auto' (that choice), 'none' and spans, and refuses repeats
    assert parse_scales("auto") is None and parse_scales("none") == () and parse_scales("2,288") == (2, 288)
    with pytest.raises(UserError, match="distinct spans"):
        parse_scales("2,2")
