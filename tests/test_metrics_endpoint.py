"""The monitor's Prometheus endpoint (--metrics-port), scraped as Prometheus would: counts of
rows, anomalies, alerts and invalid rows, batch durations and the model version in use.

No fakes: the monitor as a subprocess on a real file stream, a real MLflow registry under
tmp_path, a plain HTTP GET of /metrics read with prometheus-client's own text parser.
"""

import os
import signal
import urllib.request

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.csv_input import score_files

from conftest import SAMPLE_MODEL, ManagedProcess, free_port, wait_for
from helpers import SAMPLE, drop, monitor_command
from streaming_cases import HEADER

# Real JVMs, servers or subprocess jobs: the full suite runs them, the quick tier (-m "not slow") does not.
pytestmark = pytest.mark.slow

MODEL = SAMPLE_MODEL
PREFIX = "server_anomaly_monitor"


@pytest.fixture(scope="module")
def store(sample_store):
    return sample_store


def scrape(port) -> dict:
    """Every sample on the page: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counted(port, rows: int) -> dict | None:
    page = scrape(port)
    return page if page.get((f"{PREFIX}_rows_total", ())) == rows else None


def test_the_metrics_endpoint_counts_what_the_monitor_scored(tmp_path, store):
    # given a monitor serving its metrics on a free port
    port = free_port()
    monitor = ManagedProcess(
        monitor_command(tmp_path, MODEL, "--metrics-port", str(port)),
        tmp_path / "monitor.log",
        MLFLOW_TRACKING_URI=store["uri"],
    )
    try:
        # then before any data the page is up, with zero counts and the model version in use
        wait_for(lambda: "monitoring file://" in monitor.log(), 180, "the monitor to start")
        page = scrape(port)
        assert page[(f"{PREFIX}_rows_total", ())] == 0
        assert page[(f"{PREFIX}_model_version", (("model", MODEL),))] == 1
        # when two hosts' metrics (each with the sample's incident) and a file with bad rows arrive
        files = [
            drop(tmp_path / "in", pd.read_csv(SAMPLE).assign(host=host).to_csv(index=False).encode(), f"{host}.csv")
            for host in ("web-a", "web-b")
        ]
        files.append(drop(tmp_path / "in", HEADER + b"2026-01-05 00:00:00,abc,1,1\nnot a time,1,1,1\n", "bad.csv"))
        expected = score_files(store["params"], [(f.as_uri(), f.read_bytes()) for f in files])
        # then the counters reach what scoring the files as a batch finds
        page = wait_for(lambda: counted(port, len(expected)), 180, "the rows counter to count every row")
        assert page[(f"{PREFIX}_anomalies_total", ())] == int(expected["is_anomaly"].sum()) > 0
        assert page[(f"{PREFIX}_alerts_total", ())] == int(expected["is_alert"].sum()) == 2
        assert page[(f"{PREFIX}_invalid_rows_total", ())] == int((~expected["is_valid"]).sum()) == 2
        assert page[(f"{PREFIX}_files_total", ())] == 3
        batches = page[(f"{PREFIX}_batch_duration_seconds_count", ())]
        assert batches >= 1 and page[(f"{PREFIX}_batch_duration_seconds_sum", ())] > 0
        assert page[(f"{PREFIX}_model_version", (("model", MODEL),))] == 1
        assert page[(f"{PREFIX}_last_batch_timestamp_seconds", ())] > 0
        # and without --alertmanager nothing is delivered or waiting
        assert page[(f"{PREFIX}_alerts_delivered_total", ())] == 0
        assert page[(f"{PREFIX}_alerts_pending", ())] == 0
        # when the monitor is stopped (SIGTERM to its own process), it ends cleanly
        os.kill(monitor.process.pid, signal.SIGTERM)
        wait_for(lambda: monitor.process.poll() is not None, 120, "the monitor to exit")
        assert monitor.process.returncode == 0, monitor.log()[-3000:]
    finally:
        monitor.stop()
