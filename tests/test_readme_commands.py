"""The README's two commands, word for word, in a copy of the project as a clone has it."""

import re
import subprocess

import pytest
from mlflow import MlflowClient

from conftest import PROJECT_ROOT, PYTHON
from helpers import copy_project, env_without_tracking

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

README = (PROJECT_ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start, flags=re.S)


def test_the_readme_gives_exactly_two_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert commands == ["bash bin/setup", "bash bin/test"]
    assert commands[1] in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()


def run_readme_command(command, cwd, *extra, wrap=lambda command: command):
    # PROJECT_VENV reuses this suite's virtualenv instead of installing 1.5 GB again.
    env = {**env_without_tracking(), "PROJECT_VENV": str(PROJECT_ROOT / ".venv"), "PYTHON": PYTHON}
    for key in ("SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME", "SPARK_MASTER", "SPARK_LOG_LEVEL"):
        env.pop(key, None)
    return subprocess.run(
        wrap(["bash", "-c", " ".join([command, *extra])]), cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_setup_command_runs_the_main_job_where_the_hostname_does_not_resolve(tmp_path, unresolvable):
    # given a fresh copy of the project, on a machine whose hostname does not resolve
    project = copy_project(tmp_path / "clone")
    setup, _ = readme_commands()
    # when the README's first command runs, word for word
    result = run_readme_command(setup, project, wrap=unresolvable)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "prepared 2016 rows" in out
    assert "model version: server-anomaly-detector version 1, alias production" in out
    # the sample's incident (09:00-10:10) raises an alert in the monitor, and the replay catches
    # it. The model trained on the sample, incident included, so its values lie inside the
    # training range; the likelihood pages once the mean of the last 10 distances stands out.
    alert = re.search(r"^ALERT series metrics at 2026-01-09 (\d\d:\d\d):00: anomaly score", out, re.M)
    assert alert and "09:00" <= alert[1] <= "10:10", out[-3000:]
    assert re.search(r"monitor:\s+2016 rows in \d+ batches, \d+ anomalies, 0 invalid, 1 alerts", out)
    assert re.search(r"replay server-anomaly-detector v1: 2016 rows, \d+ anomalies .*NAB standard \d", out)
    assert "ranked by the NAB standard score" in out
    run_id = re.search(r"training run:\s+(\w+)", out).group(1)
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert str(client.get_registered_model("server-anomaly-detector").aliases["production"]) == "1"


def test_the_test_command_runs_pytest(tmp_path):
    project = copy_project(tmp_path / "clone")
    _, test_command = readme_commands()
    # the whole suite is what CI runs; here one quick module proves the command works as written
    result = run_readme_command(test_command, project, "tests/test_scoring.py", "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)
