"""The NAB benchmark and its cross-validation, with real Spark and MLflow: the written files alone
give the logged scores, and settings are chosen without the category they are scored on."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from replay import cross_validation
from replay import nab_benchmark as benchmark
from replay.nab_scoring import PROFILES, score_written

from conftest import PROJECT_ROOT

SMALL_ROOT = {
    "realAdExchange": ["exchange-3_cpc_results.csv"],
    "realAWSCloudwatch": ["iio_us-east-1_i-a2eb1cd9_NetworkIn.csv", "ec2_cpu_utilization_ac20cd.csv"],
}


def nab_copy(nab_dir, tmp_path, files=SMALL_ROOT):
    """A NAB root with a few of the files (one of them unlabelled) and NAB's own labels."""
    root = tmp_path / "nab"
    for category, names in files.items():
        (root / "data" / category).mkdir(parents=True)
        for name in names:
            shutil.copy(nab_dir / "data" / category / name, root / "data" / category / name)
    (root / "labels").mkdir()
    shutil.copy(nab_dir / "labels" / "combined_windows.json", root / "labels" / "combined_windows.json")
    return root


def test_settings_are_chosen_without_the_category_they_are_scored_on():
    # given two settings over three one-window files in categories a, b, c (raw score per file;
    # null -1 and perfect 1 each): setting 0 catches a and b, setting 1 catches c only
    raw = np.array([[1.0, 1.0, -1.0], [-1.0, 0.0, 1.0]])
    table = np.zeros((2, 3, len(PROFILES), 3))
    table[..., 0], table[..., 1], table[..., 2] = raw[:, :, None], -1.0, 1.0
    # when cross-validated by category
    report = cross_validation.cross_validate(table, ["a", "b", "c"], default=0)["standard"]
    # then in-sample picks setting 0 on all three: S = 1, so 100 * (1 + 3) / 6 = 66.7
    assert report["in_sample_setting"] == 0 and report["in_sample"] == pytest.approx(400 / 6)
    # held-out c is scored with setting 0 (best on a, b) and missed; held-out a with setting 1
    # (best on b, c) and missed; b ties on a, c and keeps the first, setting 0, and is caught
    folds = report["categories"]
    assert [folds[c]["chosen"] for c in "abc"] == [1, 0, 0]
    assert [folds[c]["out_of_fold"] for c in "abc"] == [0.0, 100.0, 0.0]
    # pooled out of fold: S = -1 + 1 - 1 = -1, so 100 * (-1 + 3) / 6 = 33.3
    assert report["out_of_fold"] == pytest.approx(200 / 6)


def test_every_profile_scores_the_one_setting_each_fold_chose_on_the_standard_profile():
    # given two settings over two one-window files in categories a and b: setting 0 does best
    # on the standard profile, setting 1 on the other two
    table = np.zeros((2, 2, len(PROFILES), 3))
    table[..., 1], table[..., 2] = -1.0, 1.0
    table[0, :, :, 0] = [1.0, -1.0, -1.0]
    table[1, :, :, 0] = [0.0, 1.0, 1.0]
    # when cross-validated by category
    report = cross_validation.cross_validate(table, ["a", "b"], default=None)
    # then every profile scores setting 0, the one a deployment would run: low FP misses both
    for profile in PROFILES:
        assert [report[profile]["categories"][c]["chosen"] for c in "ab"] == [0, 0]
    assert report["reward_low_FP_rate"]["out_of_fold"] == pytest.approx(0.0)
    # and each profile's own choice is reported beside it
    own = report["reward_low_FP_rate"]["own_choice"]
    assert own["in_sample_setting"] == 1 and own["out_of_fold"] == pytest.approx(100.0)
    assert report["standard"]["own_choice"]["out_of_fold"] == report["standard"]["out_of_fold"] == 100.0


def test_the_pooled_score_comes_with_its_interval_over_files_drawn_again():
    # given ten one-window files, half caught at the window's left edge (raw 1) and half missed (raw -1)
    parts = np.array([[1.0, -1.0, 1.0]] * 5 + [[-1.0, -1.0, 1.0]] * 5)
    # when the files are drawn again with replacement
    low, high = cross_validation.file_interval(parts)
    # then the interval holds the pooled score, 50, and is wide: which files are drawn matters
    assert low < 50.0 < high and high - low > 20.0
    # and it is the same on a rerun, and a point where every file scores alike
    assert cross_validation.file_interval(parts) == [low, high]
    assert cross_validation.file_interval(parts[:5]) == [100.0, 100.0]


@pytest.mark.slow
def test_the_written_files_alone_reproduce_the_logged_scores_on_a_nab_root(spark, mlflow_service, nab_dir, tmp_path):
    # given a NAB root of two categories, one file unlabelled, and no labels named
    root = nab_copy(nab_dir, tmp_path)
    args = benchmark.parse_args(["--data", str(root), "--out", str(tmp_path / "out")])
    # when the benchmark runs with the defaults
    metrics = benchmark.run_benchmark(spark, mlflow_service, args)
    # then each file is written under its category, every row in file order
    for category, names in SMALL_ROOT.items():
        for name in names:
            rows = pd.read_csv(tmp_path / "out" / category / name)
            assert rows["timestamp"].tolist() == pd.read_csv(root / "data" / category / name)["timestamp"].tolist()
            # and its anomaly_score is the final output: the score where it alerted, else 0
            alert = rows["is_alert"].to_numpy(bool)
            assert (rows["anomaly_score"][~alert] == 0).all()
            assert np.array_equal(rows["anomaly_score"][alert], rows["raw_score"][alert])
    assert metrics["files"] == 3 and metrics["labelled_files"] == 2
    # and NAB's procedure on the written files and the labels alone gives the logged scores
    independent = score_written(tmp_path / "out", root / "labels" / "combined_windows.json")
    for profile in PROFILES:
        assert independent[profile][1] == pytest.approx(metrics[f"nab_{profile}"], abs=0.5), profile
        assert metrics[f"nab_{profile}"] >= metrics[f"nab_{profile}_at_rule"]
    assert {"nab_standard_realAdExchange", "nab_standard_realAWSCloudwatch"} <= metrics.keys()
    run = mlflow_service.client.search_runs(
        [mlflow_service.client.get_experiment_by_name("server-anomaly-nab-benchmark").experiment_id]
    )[0]
    assert run.data.metrics["nab_standard"] == metrics["nab_standard"]


@pytest.mark.slow
def test_cross_validation_writes_its_table_and_a_second_run_trains_nothing(spark, mlflow_service, nab_dir, tmp_path):
    # given a NAB root of two labelled categories and a page with the generated section's markers
    root = nab_copy(nab_dir, tmp_path, {c: names[:1] for c, names in SMALL_ROOT.items()})
    page = tmp_path / "quality.md"
    page.write_text(f"before\n{cross_validation.CV_BEGIN}\nPREVIOUS TABLE\n{cross_validation.CV_END}\nafter\n")
    argv = [
        "--nab-root",
        str(root),
        "--out",
        str(tmp_path / "cv"),
        "--ks",
        "3",
        "--spans",
        "12",
        "--alert-thresholds",
        "0.7,0.8",
        "--cooldowns",
        "0,72",
        "--report",
        str(page),
    ]
    # when cross-validated over a grid of four alert settings
    report = cross_validation.run_cross_validation(spark, mlflow_service, cross_validation.parse_args(argv))
    # then the page's section holds the table, pooled over both files, and nothing else moved
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "PREVIOUS TABLE" not in text
    assert "| **all 2, pooled** |" in text and "| realAdExchange | 1 |" in text
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["report"] == json.loads(json.dumps(report))
    run = mlflow_service.client.search_runs(
        [mlflow_service.client.get_experiment_by_name("server-anomaly-nab-benchmark").experiment_id]
    )[0]
    assert run.data.tags["step"] == "cross_validation"
    assert run.data.metrics["out_of_fold_standard"] == pytest.approx(report["standard"]["out_of_fold"])
    own_low_fp = report["reward_low_FP_rate"]["own_choice"]["out_of_fold"]
    assert run.data.metrics["own_choice_out_of_fold_reward_low_FP_rate"] == pytest.approx(own_low_fp)
    assert "Each profile choosing its own setting" in text
    low, high = report["standard"]["out_of_fold_interval"]
    assert low <= report["standard"]["out_of_fold"] <= high
    assert run.data.metrics["out_of_fold_standard_low"] == pytest.approx(low)
    # and a second run with other alert settings reuses the cached model scores
    cached = sorted((tmp_path / "cv" / "cache").rglob("*.npy"))
    # two files, each under the two default histories at the span and at the two further time scales
    assert len(cached) == 2 * 2 * 3
    assert {p.parent.parent.name.split("-")[1] for p in cached} == {"span12", "span2", "span288"}
    settings = json.loads((tmp_path / "cv" / "cv.json").read_text())["settings"]
    assert {s["history"] for s in settings} == {"mean,std", "value,mean,std"}
    assert {s["range_tolerance"] for s in settings} == {None, 0.02, 0.05, 0.1}
    # the time scales go with the likelihood score only, each judged by its own likelihood
    assert {(s["score"], s["scales"]) for s in settings} == {
        ("distance", ""),
        ("likelihood", ""),
        ("likelihood", "2"),
        ("likelihood", "288"),
        ("likelihood", "2,288"),
    }
    stamps = [os.stat(p).st_mtime_ns for p in cached]
    argv[argv.index("0,72")] = "0,36,72"
    again = cross_validation.run_cross_validation(spark, mlflow_service, cross_validation.parse_args(argv))
    assert [os.stat(p).st_mtime_ns for p in cached] == stamps
    assert again["standard"]["in_sample"] >= report["standard"]["in_sample"]


@pytest.mark.slow
def test_the_nab_benchmark_reproduces_the_scores_on_the_quality_page(spark, mlflow_service, nab_dir, tmp_path):
    # given the quality page, whose results table the benchmark generated
    page = PROJECT_ROOT / "docs" / "quality.md"
    committed = page.read_text()
    copy = tmp_path / "quality.md"
    copy.write_text(committed)
    labels = nab_dir / "labels" / "combined_windows.json"
    # when the benchmark runs with the defaults on all 17 files of a flat folder and rewrites the copy's table
    args = benchmark.parse_args(
        [
            "--data",
            str(nab_dir / "data" / "realAWSCloudwatch"),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "out"),
            "--report",
            str(copy),
        ]
    )
    metrics = benchmark.run_benchmark(spark, mlflow_service, args)
    # then every score, threshold and per-file figure in the table is reproduced exactly
    assert copy.read_text() == committed
    assert metrics["files"] == 17 and metrics["labelled_files"] == 11
    # and the flat layout's files, with labels keyed "<category>/<file>", alone give the logged scores
    independent = score_written(tmp_path / "out", labels)
    for profile in PROFILES:
        assert independent[profile][1] == pytest.approx(metrics[f"nab_{profile}"], abs=0.5), profile
    for source in sorted((nab_dir / "data" / "realAWSCloudwatch").glob("*.csv"))[:3]:
        rows = pd.read_csv(tmp_path / "out" / source.name)
        assert rows["timestamp"].tolist() == pd.read_csv(source)["timestamp"].tolist()
        assert list(rows.columns) == benchmark.ROW_COLUMNS
    run = mlflow_service.client.search_runs(
        [mlflow_service.client.get_experiment_by_name("server-anomaly-nab-benchmark").experiment_id]
    )[0]
    assert run.data.params["history"] == "value,mean,std" and run.data.params["cooldown"] == "18h"
    assert (run.data.params["scales"], run.data.params["time_scales"]) == ("auto", "2,288")
    assert run.data.params["range_tolerance"] == "0.05"
    assert run.data.params["score"] == "likelihood" and run.data.params["likelihood_window"] == "14d"
    assert run.data.metrics["nab_standard"] == metrics["nab_standard"]
