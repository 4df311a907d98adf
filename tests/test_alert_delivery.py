"""The alerts outbox and its delivery: written before a batch's commit, posted after it, removed
once accepted, kept while the receiver is down. A real HTTP server on 127.0.0.1 (the standard
library's) stands in for Alertmanager's API; the files go through Hadoop's FileSystem as the
monitor's do. The real Alertmanager is in test_alertmanager.py."""

import json
import math
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.csv_input import score_files
from core.explanation import explanation_text
from core.model import LoadedModel
from core.scoring import ModelParams
from streaming.alert_delivery import OUTBOX, AlertDelivery, alertmanager_alerts
from streaming.batch_report import ALERT_LINE_COLUMNS
from streaming.sinks import BatchSink, batch_dir_name

from conftest import free_port

PARAMS = ModelParams(
    features=["cpu", "disk", "network"],
    mean=[30.0, 3e6, 8e6],
    scale=[0.1, 1e-6, 1e-6],
    centroids=[[0.0, 0.0, 0.0]],
    expected_label=0,
    rule="distance",
    threshold=3.0,
    bounds={"cpu": [0, 100], "disk": [0, math.inf], "network": [0, math.inf]},
    alert_threshold=0.75,
)
MODEL = LoadedModel("models:/unit-detector/4", PARAMS, "unit-detector", "4")
CSV = (
    b"timestamp,cpu,disk,network,host\n"
    b"2026-01-05 00:00:00,30,3000000,8000000,web-1\n"
    b"2026-01-05 00:05:00,99,50000000,1,web-1\n"
    b"2026-01-05 00:05:00,99,50000000,1,web-2\n"
    b"2099-01-05 00:10:00,99,50000000,1,web-3\n"
)


def raised_rows():
    """Alert rows as the monitor collects them (ALERT_LINE_COLUMNS), from the real scoring core."""
    records = score_files(PARAMS, [("file:///in/a.csv", CSV)])
    raised = records.loc[records["is_alert"], list(ALERT_LINE_COLUMNS)].reset_index(drop=True)
    assert list(raised["series"]) == ["web-1", "web-2", "web-3"]
    return raised


class Receiver:
    """An HTTP server that records what is posted and answers with the statuses it is given."""

    def __init__(self):
        self.bodies, self.statuses = [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.bodies.append((self.path, status, body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"bad alert" if status == 400 else b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    try:
        yield server
    finally:
        server.stop()


def outbox_names(tmp_path):
    """The outbox's files, without the checksum files Hadoop's local filesystem keeps beside them."""
    return sorted(p.name for p in (tmp_path / "out" / OUTBOX).iterdir() if p.is_file() and not p.name.startswith("."))


def commit(tmp_path, batch_id):
    """Mark a batch committed, as the sink's rename into batches/ does."""
    (tmp_path / "out" / "batches" / batch_dir_name(batch_id)).mkdir(parents=True)


def test_an_alert_row_becomes_an_alertmanager_alert_with_its_labels_and_annotations():
    # given the alert rows of a batch, one row stamped in the future
    raised = raised_rows()
    now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    # when they are turned into Alertmanager's alerts
    alerts = alertmanager_alerts(raised, MODEL, now=now)
    # then each names its series and model in its labels, the row's details in its annotations
    first = alerts[0]
    row = raised.iloc[0]
    assert first["labels"] == {
        "alertname": "ServerMetricAnomaly",
        "series": "web-1",
        "model": "unit-detector",
        "model_version": "4",
    }
    notes = first["annotations"]
    assert notes["score"] == f"{row.anomaly_score:.12g}" and notes["threshold"] == "0.75"
    assert (notes["file"], notes["line"], notes["timestamp"]) == ("file:///in/a.csv", "3", "2026-01-05 00:05:00")
    assert notes["explanation"] == explanation_text(
        row.explained_by, row.explained_share, row.explained_value, row.explained_centroid_value
    )
    assert notes["explanation"].startswith(row.explained_by) and "at the nearest centroid" in notes["explanation"]
    assert first["startsAt"] == "2026-01-05T00:05:00Z" and "endsAt" not in first
    # and a row from the future starts now, since Alertmanager refuses an alert that starts after it ends
    assert alerts[2]["startsAt"] == "2026-06-01T12:00:00Z"
    assert alerts[2]["annotations"]["timestamp"] == "2099-01-05 00:10:00"
    # and rows without the explanation columns explain nothing, and a model URI labels itself
    bare = raised.drop(columns=["explained_by", "explained_share", "explained_value", "explained_centroid_value"])
    plain = alertmanager_alerts(bare, LoadedModel("runs:/abc/model", PARAMS), now=now)[0]
    assert plain["annotations"]["explanation"] == ""
    assert plain["labels"] == {"alertname": "ServerMetricAnomaly", "series": "web-1", "model": "runs:/abc/model"}


def test_the_outbox_is_rewritten_by_a_re_run_and_delivered_only_once_its_batch_is_committed(
    spark, tmp_path, receiver, capsys
):
    # given a sink and its alert delivery
    sink = BatchSink(spark, (tmp_path / "out").as_uri())
    delivery = AlertDelivery.for_monitor(receiver.url, sink)
    raised = raised_rows()
    # when batch 3's alerts are staged, and staged again by a re-run of the batch
    delivery.stage(3, raised, MODEL)
    first = (tmp_path / "out" / OUTBOX / "batch_id=000000000003.alerts=3.json").read_text()
    delivery.stage(3, raised, MODEL)
    # then the outbox holds one file for the batch
    assert outbox_names(tmp_path) == ["batch_id=000000000003.alerts=3.json"]
    assert json.loads(first)["alerts"][0]["labels"]["series"] == "web-1"
    # and a batch not committed yet is not delivered (its re-run may differ)
    assert delivery.flush(3) == (0, 3) and receiver.bodies == []
    # when batch 3 is committed and the outbox flushed
    commit(tmp_path, 3)
    assert delivery.flush(3) == (3, 0)
    # then its alerts went to Alertmanager's API in one POST and the file is gone
    [(path, status, body)] = receiver.bodies
    assert (path, status) == ("/api/v2/alerts", 200)
    assert [a["labels"]["series"] for a in body] == ["web-1", "web-2", "web-3"]
    assert outbox_names(tmp_path) == []
    assert "alerts to Alertmanager: 3 delivered, 0 pending" in capsys.readouterr().out
    # and a re-run that now finds no alerts leaves no file behind
    delivery.stage(4, raised, MODEL)
    delivery.stage(4, None, MODEL)
    assert outbox_names(tmp_path) == []


def test_an_unreachable_receiver_keeps_the_alerts_and_says_so_in_one_line(spark, tmp_path, receiver, capsys):
    # given two committed batches with alerts, and a receiver at a closed port
    sink = BatchSink(spark, (tmp_path / "out").as_uri())
    raised = raised_rows()
    closed = AlertDelivery.for_monitor(f"http://127.0.0.1:{free_port()}", sink)
    for batch_id, rows in ((0, raised.iloc[:1]), (1, raised.iloc[1:])):
        closed.stage(batch_id, rows, MODEL)
        commit(tmp_path, batch_id)
    # when the outbox is flushed
    assert closed.flush(1) == (0, 3)
    # then one WARNING line says so, no traceback, and both files stay
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "3 alerts kept" in warnings[0], out
    assert "Traceback" not in out
    assert outbox_names(tmp_path) == ["batch_id=000000000000.alerts=1.json", "batch_id=000000000001.alerts=2.json"]
    # when the receiver answers 503 once, then accepts: delivery retries and delivers in batch order
    receiver.statuses = [503]
    reachable = AlertDelivery.for_monitor(receiver.url, sink)
    assert reachable.flush(1) == (3, 0)
    assert [status for _, status, _ in receiver.bodies] == [503, 200, 200]
    assert [a["labels"]["series"] for a in receiver.bodies[1][2]] == ["web-1"]
    assert outbox_names(tmp_path) == []


def test_alerts_the_receiver_refuses_are_set_aside_so_later_ones_still_go(spark, tmp_path, receiver, capsys):
    sink = BatchSink(spark, (tmp_path / "out").as_uri())
    delivery = AlertDelivery.for_monitor(receiver.url, sink)
    raised = raised_rows()
    for batch_id in (0, 1):
        delivery.stage(batch_id, raised, MODEL)
        commit(tmp_path, batch_id)
    # when Alertmanager refuses the first batch's alerts as invalid
    receiver.statuses = [400]
    assert delivery.flush(1) == (3, 0)
    # then they are moved aside with a WARNING, not retried, and the next batch is delivered
    assert [status for _, status, _ in receiver.bodies] == [400, 200]
    assert "WARNING: Alertmanager refused the 3 alerts of batch 0 (HTTP 400: bad alert)" in capsys.readouterr().out
    assert (tmp_path / "out" / OUTBOX / "rejected" / "batch_id=000000000000.alerts=3.json").is_file()
    assert outbox_names(tmp_path) == []


def test_without_a_url_nothing_is_staged_or_sent(spark, tmp_path):
    sink = BatchSink(spark, (tmp_path / "out").as_uri())
    delivery = AlertDelivery.for_monitor(None, sink)
    delivery.stage(0, raised_rows(), MODEL)
    assert delivery.flush(0) is None
    assert not (tmp_path / "out" / OUTBOX).exists()
