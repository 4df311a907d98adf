"""The monitor's alerts reach a real Alertmanager at least once, across an unreachable receiver
and a kill -9 between a batch's commit and its delivery.

No fakes: Debian's prometheus-alertmanager binary on 127.0.0.1, the monitor as a subprocess on a
real file stream, a real MLflow registry under tmp_path.
"""

import json
import os
import re
import shutil
import signal
import urllib.request

import pandas as pd
import pytest

from core.csv_input import score_files
from core.explanation import explanation_text
from streaming.alert_delivery import OUTBOX

from conftest import SAMPLE_MODEL, ManagedProcess, free_port, wait_for
from helpers import SAMPLE, drop, http_ok, monitor_command

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

MODEL = SAMPLE_MODEL
BINARIES = ("prometheus-alertmanager", "alertmanager")
# One route to a receiver that sends nothing: the test reads the alerts back from the API.
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'


@pytest.fixture(scope="module")
def store(sample_store):
    """A store whose production model was trained on the sample (which has one incident)."""
    return sample_store


@pytest.fixture
def alertmanager(tmp_path):
    """A real Alertmanager on a free port of 127.0.0.1, stopped by its process id afterwards."""
    binary = next((found for name in BINARIES if (found := shutil.which(name))), None)
    if binary is None:
        pytest.fail(
            "no Alertmanager binary (prometheus-alertmanager) on PATH: install Debian's package with "
            "`apt-get install -y prometheus-alertmanager` (.ci/run does) to run the Alertmanager tests"
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)
    port = free_port()
    process = ManagedProcess(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp_path / "alertmanager.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.process.poll() is None and http_ok(f"{url}/-/ready"), 30, "Alertmanager to be ready")
        yield url
    finally:
        process.stop()


def series_file(folder, host: str):
    """The sample as one host's metrics: a host column names the series."""
    table = pd.read_csv(SAMPLE).assign(host=host)
    return drop(folder, table.to_csv(index=False).encode(), name=f"{host}.csv")


def expected_alerts(params, path) -> pd.DataFrame:
    records = score_files(params, [(path.as_uri(), path.read_bytes())])
    return records[records["is_alert"]]


def received(url) -> dict[str, list[dict]]:
    """The monitor's alerts Alertmanager holds, by series."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=10) as response:
        alerts = json.load(response)
    found: dict[str, list[dict]] = {}
    for alert in alerts:
        if alert["labels"].get("alertname") == "ServerMetricAnomaly":
            found.setdefault(alert["labels"]["series"], []).append(alert)
    return found


def monitor(tmp_path, store, log_name, alertmanager_url, *extra, **env):
    args = monitor_command(tmp_path, MODEL, "--max-files-per-trigger", "1", "--alertmanager", alertmanager_url, *extra)
    return ManagedProcess(args, tmp_path / log_name, MLFLOW_TRACKING_URI=store["uri"], **env)


def finish(process: ManagedProcess, timeout=240) -> int:
    try:
        wait_for(lambda: process.process.poll() is not None, timeout, "the monitor to exit")
    finally:
        process.stop()
    return process.process.returncode


def outbox(tmp_path) -> list[str]:
    folder = tmp_path / "out" / OUTBOX
    return sorted(p.name for p in folder.glob("batch_id=*.json"))


def metrics_text(port) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def delivered_count(port, count: int) -> str | None:
    """The metrics page once it counts ``count`` delivered alerts."""
    text = metrics_text(port)
    return text if metric(text, "server_anomaly_monitor_alerts_delivered_total") == count else None


def assert_delivered(alert: dict, row, params, series: str) -> None:
    assert alert["labels"] == {
        "alertname": "ServerMetricAnomaly",
        "series": series,
        "model": MODEL,
        "model_version": "1",
    }
    notes = alert["annotations"]
    assert float(notes["score"]) == pytest.approx(row.anomaly_score, abs=1e-4)
    assert notes["threshold"] == f"{params.alert_threshold:.12g}"
    assert (notes["file"], notes["line"], notes["timestamp"]) == (row.source_file, str(row.line_number), row.timestamp)
    assert notes["explanation"] == explanation_text(
        *(
            getattr(row, c, None)
            for c in ("explained_by", "explained_share", "explained_value", "explained_centroid_value")
        )
    )
    assert pd.Timestamp(alert["startsAt"]) == pd.Timestamp(row.timestamp, tz="UTC")


def test_alerts_reach_alertmanager_once_each_across_an_outage_and_a_kill_9(tmp_path, store, alertmanager):
    params = store["params"]
    inbox = tmp_path / "in"
    files = {host: series_file(inbox, host) for host in ("web-a", "web-b")}
    expected = {host: expected_alerts(params, path) for host, path in files.items()}
    assert all(len(rows) == 1 for rows in expected.values()), "the sample's incident alerts once per series"

    # given Alertmanager unreachable (a closed port), when the monitor catches up on two series' files
    closed = f"http://127.0.0.1:{free_port()}"
    first = monitor(tmp_path, store, "unreachable.log", closed, "--available-now")
    # then it processes both, one batch each, says once a batch that the alerts wait, and exits 0
    assert finish(first) == 0, first.log()[-3000:]
    log = first.log()
    warnings = [line for line in log.splitlines() if line.startswith("WARNING: Alertmanager")]
    assert len(warnings) == 2 and all("unreachable" in line and "kept in" in line for line in warnings), log
    assert "Traceback" not in log and "batch 1: rows" in log
    # and the outbox keeps the two batches' alerts
    assert outbox(tmp_path) == ["batch_id=000000000000.alerts=1.json", "batch_id=000000000001.alerts=1.json"]
    assert received(alertmanager) == {}

    # when Alertmanager is reachable and the monitor restarts, and a third series comes, and the
    # monitor is killed (-9) after writing that series' batch, before delivering it
    files["web-c"] = series_file(inbox, "web-c")
    expected["web-c"] = expected_alerts(params, files["web-c"])
    second = monitor(tmp_path, store, "killed.log", alertmanager, "--available-now", MONITOR_FAULT="after_write:2")
    assert finish(second) == -signal.SIGKILL, second.log()[-3000:]
    assert "FAULT INJECTED: after_write at batch 2" in second.log()
    # then the alerts the outage held back went out at its start; the third is still in the outbox
    assert "alerts to Alertmanager: 2 delivered, 0 pending" in second.log()
    assert set(received(alertmanager)) == {"web-a", "web-b"}
    assert outbox(tmp_path) == ["batch_id=000000000002.alerts=1.json"]

    # when the monitor runs again, live, with its metrics served, and a fourth series comes
    port = free_port()
    third = monitor(tmp_path, store, "restarted.log", alertmanager, "--metrics-port", str(port))
    try:
        wait_for(lambda: "batch 2: already written before a restart" in third.log(), 180, "the re-run of batch 2")
        files["web-d"] = series_file(inbox, "web-d")
        expected["web-d"] = expected_alerts(params, files["web-d"])
        wait_for(lambda: len(received(alertmanager)) == 4, 120, "the fourth series' alert")
        scraped = wait_for(lambda: delivered_count(port, 2), 30, "the delivered count on /metrics")
        # stopped as a service manager stops it: SIGTERM to the monitor's own process
        os.kill(third.process.pid, signal.SIGTERM)
        assert finish(third, 120) == 0, third.log()[-3000:]
    finally:
        third.stop()
    # then every series' alert is in Alertmanager exactly once, with its labels and annotations
    alerts = received(alertmanager)
    assert sorted(alerts) == ["web-a", "web-b", "web-c", "web-d"]
    for host, rows in expected.items():
        [alert] = alerts[host]
        assert_delivered(alert, next(rows.itertuples()), params, host)
    assert outbox(tmp_path) == []
    # and the restarted run counts what it delivered and what waits, in Prometheus and in MLflow
    assert metric(scraped, "server_anomaly_monitor_alerts_pending") == 0
    run_id = re.search(r"MLflow run (\w+)", third.log()).group(1)
    history = store["client"].get_metric_history(run_id, "alerts_delivered")
    assert sorted((m.step, m.value) for m in history) == [(2, 1.0), (3, 1.0)]
    assert [m.value for m in store["client"].get_metric_history(run_id, "alerts_pending")] == [0.0, 0.0]
