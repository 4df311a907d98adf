"""The monitor's alerts to Prometheus Alertmanager, at least once across restarts (kill -9 too).

With ``--alertmanager URL`` every alert of a committed batch is posted to Alertmanager's own
API (``POST {URL}/api/v2/alerts``, a JSON list), one alert per alert row:

- labels (an alert's identity in Alertmanager): ``alertname`` (``ServerMetricAnomaly``),
  ``series``, ``model`` (the registered model's name, else its URI) and ``model_version``;
- annotations: ``summary``, ``score`` (anomaly_score), ``threshold`` (the model's alert
  threshold), ``explanation`` (which model input drove the distance, when the scored rows carry
  the ``explained_*`` columns; else empty), ``file`` and ``line`` (where the row came from) and
  ``timestamp`` (the row's own, as written);
- ``startsAt``: the row's timestamp in RFC 3339 UTC, or now for a row stamped in the future,
  since Alertmanager refuses an alert that starts after it ends.

``endsAt`` is left out on purpose. The monitor raises an alert once, from one row, and never
hears of the incident again (the per-series cooldown stops repeats), so it has no end time to
give; Alertmanager then ends the alert ``resolve_timeout`` (5 minutes by default, a setting of
its ``global`` section) after receiving it. An end time derived from the row's timestamp would
be in the past whenever files arrive late or history is replayed, and Alertmanager treats an
alert that ended in the past as resolved on arrival: it would never page. Since the label set
is the identity, a second alert for the same series and model version before the first is
resolved updates that alert (annotations of the newer one, the earlier ``startsAt``), and the
same alert posted twice (after a restart) is one alert.

Delivery goes through an outbox under the output root (Hadoop FS, so it works on a cluster):
``alerts_outbox/batch_id=<12 digits>.alerts=<n>.json``. ``process_batch`` writes the batch's
alerts there before the batch is committed (a re-run of the same batch after a crash rewrites
it: same name, same content, or none when it has no alerts), and after the commit posts every
outbox file of a committed batch in batch order, removing each once Alertmanager accepted it.
A file whose batch is not committed (a crash between the two) is left for the batch's re-run.
An unreachable Alertmanager costs at most ``TRIES`` tries with short waits, then one WARNING
line; its files stay for the next batch and the next start. A file Alertmanager refuses as
invalid (HTTP 4xx) is moved to ``alerts_outbox/rejected/`` with a WARNING, so it does not block
the ones after it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import pandas as pd

from core.explanation import EXPLANATION_COLUMNS, explanation_text

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

ALERT_NAME = "ServerMetricAnomaly"
OUTBOX = "alerts_outbox"
REJECTED = "rejected"
TRIES = 3
WAITS_SECONDS = (0.25, 0.75)  # between tries: an unreachable Alertmanager costs ~1 s a batch
REQUEST_TIMEOUT_SECONDS = 2.0
_FILE = re.compile(r"^batch_id=(\d+)\.alerts=(\d+)\.json$")


def rfc3339(stamp: pd.Timestamp) -> str:
    """A UTC instant as RFC 3339 with a Z, as Alertmanager's API reads it."""
    text = stamp.tz_convert("UTC").isoformat()
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def explanation(row: dict) -> str:
    """Why the row scored as it did, in the ALERT line's words, or '' without the columns."""
    values = [row.get(name) for name in EXPLANATION_COLUMNS]
    if any(value is None for value in values):
        return ""
    return explanation_text(*values)


def alertmanager_alerts(raised: pd.DataFrame | None, model, now: datetime | None = None) -> list[dict]:
    """The batch's alert rows (``streaming.batch_report.alert_lines``) as Alertmanager alerts."""
    if raised is None or not len(raised):
        return []
    latest = pd.Timestamp(now or datetime.now(timezone.utc))
    threshold = f"{model.params.alert_threshold:.12g}"
    alerts = []
    for row in raised.to_dict("records"):
        labels = {"alertname": ALERT_NAME, "series": str(row["series"]), "model": model.name or model.uri}
        if model.version:
            labels["model_version"] = str(model.version)
        score = float(row["anomaly_score"])
        alert = {
            "labels": labels,
            "annotations": {
                "summary": f"series {row['series']}: anomaly score {score:.3f} at {row['timestamp']} "
                f"(alert threshold {threshold})",
                "score": f"{score:.12g}",
                "threshold": threshold,
                "explanation": explanation(row),
                "file": str(row["source_file"]),
                "line": str(row["line_number"]),
                "timestamp": str(row["timestamp"]),
            },
        }
        stamp = pd.to_datetime(row["timestamp"], errors="coerce", format="mixed", utc=True)
        if not pd.isna(stamp):
            alert["startsAt"] = rfc3339(min(stamp, latest))
        alerts.append(alert)
    return alerts


class DeliveryFailed(Exception):
    """Alertmanager could not be reached or failed; worth trying again later."""


class AlertsRejected(Exception):
    """Alertmanager refused the alerts as invalid (HTTP 4xx); trying again would not help."""


def post_alerts(url: str, alerts: list[dict], tries: int = TRIES, waits=WAITS_SECONDS) -> None:
    """POST ``alerts`` to ``{url}/api/v2/alerts``, trying up to ``tries`` times."""
    body = json.dumps(alerts).encode("utf-8")
    endpoint = f"{url.rstrip('/')}/api/v2/alerts"
    reason = ""
    for attempt in range(tries):
        if attempt:
            time.sleep(waits[min(attempt - 1, len(waits) - 1)])
        request = urllib.request.Request(
            endpoint, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                response.read()
            return
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", errors="replace").strip()[:300]
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise AlertsRejected(f"HTTP {error.code}: {detail}") from None
            reason = f"HTTP {error.code}: {detail}"
        except (urllib.error.URLError, OSError) as error:
            reason = str(getattr(error, "reason", None) or error)
    raise DeliveryFailed(f"{reason} ({tries} tries)")


class AlertOutbox:
    """The alerts of committed or committing batches not yet delivered, one file per batch."""

    def __init__(self, fs, output_uri: str):
        self.fs = fs
        self.dir = f"{output_uri.rstrip('/')}/{OUTBOX}"
        self.fs.mkdirs(self.dir)

    def files(self) -> list[tuple[int, int, str]]:
        """(batch id, alert count, file name) of every outbox file, in batch order."""
        found = [(int(m[1]), int(m[2]), name) for name in self.fs.list_names(self.dir) if (m := _FILE.match(name))]
        return sorted(found)

    def write(self, batch_id: int, alerts: list[dict]) -> None:
        """Make the outbox hold exactly ``alerts`` for ``batch_id`` (none: no file)."""
        prefix = f"batch_id={batch_id:012d}."
        for name in self.fs.list_names(self.dir):
            if name.startswith((prefix, f".{prefix}")):  # an earlier run's file, or its half-written copy
                self.fs.delete(f"{self.dir}/{name}")
        if not alerts:
            return
        name = f"{prefix}alerts={len(alerts)}.json"
        staged = f"{self.dir}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        self.fs.write_text(staged, json.dumps({"batch_id": batch_id, "alerts": alerts}))
        if not self.fs.rename(staged, f"{self.dir}/{name}"):
            raise RuntimeError(f"could not move the alerts of batch {batch_id} into {self.dir}")

    def read(self, name: str) -> list[dict]:
        return json.loads(self.fs.read_text(f"{self.dir}/{name}"))["alerts"]

    def remove(self, name: str) -> None:
        self.fs.delete(f"{self.dir}/{name}")

    def set_aside(self, name: str) -> str:
        target = f"{self.dir}/{REJECTED}/{name}"
        self.fs.mkdirs(f"{self.dir}/{REJECTED}")
        self.fs.delete(target)
        self.fs.rename(f"{self.dir}/{name}", target)
        return target


class AlertDelivery:
    """Stages each batch's alerts in the outbox and delivers the outbox; idle without a URL."""

    def __init__(self, url: str | None, outbox: AlertOutbox | None, committed, metrics=None):
        self.url = url
        self.outbox = outbox
        self.committed = committed  # batch id -> bool: is the batch's output committed?
        self.metrics = metrics
        self.delivered_total = 0

    @classmethod
    def for_monitor(cls, url: str | None, sink, metrics=None) -> AlertDelivery:
        outbox = AlertOutbox(sink.fs, sink.root) if url else None
        return cls(url, outbox, sink.committed, metrics)

    def stage(self, batch_id: int, raised: pd.DataFrame | None, model) -> None:
        """Before the batch's commit: its alerts into the outbox (a re-run rewrites them)."""
        if self.url:
            self.outbox.write(batch_id, alertmanager_alerts(raised, model))

    def flush_at_start(self, client=None, run_id=None) -> None:
        """What an earlier run left undelivered, before the first batch (logged at its batch)."""
        if self.url and (files := self.outbox.files()):
            self.flush(files[-1][0], client, run_id)

    def flush(self, step: int, client=None, run_id=None) -> tuple[int, int] | None:
        """Deliver the outbox's committed batches in order; returns (delivered, pending)."""
        if not self.url:
            return None
        files = self.outbox.files()
        if not files:
            return 0, 0  # nothing waits: nothing to say or log
        delivered = 0
        failure = None
        for batch_id, count, name in files:
            if not self.committed(batch_id):
                continue  # staged before a crash, not committed: the batch's re-run rewrites it
            try:
                post_alerts(self.url, self.outbox.read(name))
            except AlertsRejected as error:
                kept = self.outbox.set_aside(name)
                print(
                    f"WARNING: Alertmanager refused the {count} alerts of batch {batch_id} ({error}); kept in {kept}",
                    flush=True,
                )
                continue
            except DeliveryFailed as error:
                failure = error
                break
            self.outbox.remove(name)
            delivered += count
        pending = sum(count for _, count, _ in self.outbox.files())
        self.delivered_total += delivered
        if failure is not None:
            print(
                f"WARNING: Alertmanager at {self.url} unreachable: {failure}; {pending} alerts kept in "
                f"{self.outbox.dir}, retried at the next batch and the next start",
                flush=True,
            )
        elif delivered:
            print(f"alerts to Alertmanager: {delivered} delivered, {pending} pending", flush=True)
        if self.metrics is not None:
            self.metrics.observe_delivery(delivered, pending)
        if client is not None and run_id:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric("alerts_delivered", delivered, now, step),
                    Metric("alerts_pending", pending, now, step),
                ],
            )
        return delivered, pending
