"""The monitor's Prometheus metrics (``--metrics-port``), served by prometheus-client.

The metrics live in a registry of their own, not prometheus-client's global one, so several
monitors in one process (tests) do not collide, and the endpoint shows the monitor's metrics
only. They are kept whether or not they are served, and served on ``--metrics-host``
(127.0.0.1 by default: nothing leaves the machine unless asked; 0.0.0.0 lets a Prometheus on
another host scrape it) at ``--metrics-port`` (0: not served).

    server_anomaly_monitor_rows_total                  rows read (scored or quarantined)
    server_anomaly_monitor_anomalies_total             anomalous rows
    server_anomaly_monitor_alerts_total                alerts raised
    server_anomaly_monitor_invalid_rows_total          rows quarantined
    server_anomaly_monitor_files_total                 files read
    server_anomaly_monitor_batch_duration_seconds      histogram of micro-batch durations
    server_anomaly_monitor_last_batch_timestamp_seconds  when the last batch was reported (Unix time)
    server_anomaly_monitor_model_version{model}        the version in use (-1: a model URI without one)
    server_anomaly_monitor_alerts_delivered_total      alerts Alertmanager accepted
    server_anomaly_monitor_alerts_pending              alerts in the outbox, not yet delivered

Counters start at 0 with each monitor process, as Prometheus counters do.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.errors import UserError

PREFIX = "server_anomaly_monitor"
BATCH_SECONDS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
COUNTED = {
    "rows": "rows read, scored or quarantined",
    "anomalies": "anomalous rows",
    "alerts": "alerts raised",
    "invalid_rows": "rows that could not be scored (quarantined)",
    "files": "files read",
}


class MonitorMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.counters = {key: Counter(f"{PREFIX}_{key}", text, registry=self.registry) for key, text in COUNTED.items()}
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_duration_seconds",
            "time to score, count and write one micro-batch",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.last_batch = Gauge(
            f"{PREFIX}_last_batch_timestamp_seconds", "when the last micro-batch was reported", registry=self.registry
        )
        self.model_version = Gauge(
            f"{PREFIX}_model_version", "the model version in use", ["model"], registry=self.registry
        )
        self.delivered = Counter(f"{PREFIX}_alerts_delivered", "alerts Alertmanager accepted", registry=self.registry)
        self.pending = Gauge(f"{PREFIX}_alerts_pending", "alerts waiting in the outbox", registry=self.registry)
        self._model = None
        self.server = None

    def serve(self, host: str, port: int) -> MonitorMetrics:
        """Serve /metrics on ``host:port``; a port in use is a clear error, before Spark starts."""
        try:
            self.server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise UserError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        print(f"Prometheus metrics on http://{host}:{port}/metrics", flush=True)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def set_model(self, model) -> None:
        label = model.name or model.uri
        if label != self._model:
            self.model_version.clear()
            self._model = label
        self.model_version.labels(model=label).set(float(model.version) if model.version else -1.0)

    def observe_batch(self, counts: dict, seconds: float, model) -> None:
        for key, counter in self.counters.items():
            counter.inc(counts.get(key, 0))
        self.batch_seconds.observe(seconds)
        self.last_batch.set(time.time())
        self.set_model(model)

    def observe_delivery(self, delivered: int, pending: int) -> None:
        self.delivered.inc(delivered)
        self.pending.set(pending)
