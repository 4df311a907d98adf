"""A smoke run of the speed benchmark, so that the command does not rot."""

import json

from conftest import PYTHON, run_command
from benchmarks import report


def test_the_speed_benchmark_smoke_run_prints_writes_and_logs_its_table(nab_dir, tmp_path):
    out = tmp_path / "speed.json"
    uri = f"sqlite:///{tmp_path / 'results.db'}"
    result = run_command([PYTHON, "-m", "benchmarks.speed", "--smoke", "--nab-dir", str(nab_dir), "--out", str(out)],
                         MLFLOW_TRACKING_URI=uri, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    figures = [r["figure"] for r in data["rows"]]
    for expected in ("train NAB table: whole run", "train NAB table: JVM start", "train NAB table: log_model",
                     "replay 17 files", "monitor drain of 30 files x 100 rows", "monitor drain of 2 files x 5000",
                     "monitor drain floor, 30 files x 100 rows", "monitor drain floor, 2 files x 5000",
                     "monitor sustained", "monitor latency", "serving 1-row request p50",
                     "serving 1000-row request p99", "monitor peak memory (PSS)", "monitor memory growth"):
        assert any(f.startswith(expected) for f in figures), expected
    # the paced sweep ran into the monitor and into the no-scoring stream, each to its own figure
    sustained = [r for r in data["rows"] if r["figure"].startswith("monitor sustained without backlog")]
    assert len(sustained) == 2 and all(r["baseline"] for r in sustained), sustained
    # the memory figure counts the JVM and the Python workers, not only the driver process
    (memory,) = [r for r in data["rows"] if r["figure"].startswith("monitor peak memory")]
    assert memory["parts_mib"]["jvm"] > 100 and memory["parts_mib"]["python_workers"] > 20
    for r in data["rows"]:
        assert r["ours"]["median"] > 0 and r["machine"] == data["machine"]
        if r["baseline"]:
            assert r["ratio"] == r["ours"]["median"] / r["baseline"]["median"]
    assert "machine: " in result.stdout and "ratio" in result.stdout
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    runs = client.search_runs([client.get_experiment_by_name("server-anomaly-benchmarks").experiment_id])
    assert len(runs) == 1 and len(runs[0].data.metrics) >= len(data["rows"])
    # the README section is generated from this JSON
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    assert report.main(["--json", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| train NAB table: JVM start |" in text and text.endswith("after\n")


def test_a_goal_read_from_a_bounded_ratio_is_reported_only_as_far_as_the_bound_proves():
    # given sustained-rate rows whose ratio is only a bound: one side kept up at every rate tried
    def goal_line(ratio, bound):
        row = {"figure": "monitor sustained without backlog (rates tried 1/min): files/min", "ratio": ratio,
               "ratio_bound": bound, "ours": {"median": 1.0}}
        lines = report.goals_markdown({"rows": [row]})
        (line,) = [line for line in lines if line.startswith("| monitor sustained paced rate")]
        return line

    # when the goals are read from them, then a bound under the goal is a sure miss and one over
    # it proves nothing
    assert goal_line(0.2, "upper").endswith("| at most 0.20x | at least 0.5x | no |")
    above = goal_line(0.7, "upper")
    assert "| at most 0.70x |" in above and "not known" in above and "| yes |" not in above
    # and when ours never fell behind (a lower bound), only a success is sure
    assert goal_line(0.7, "lower").endswith("| at least 0.70x | at least 0.5x | yes |")
    assert "not known" in goal_line(0.2, "lower") and "not known" in goal_line(0.7, "none")
