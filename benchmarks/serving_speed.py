"""The serving benchmark: request latencies of `mlflow models serve` for 1-row and 1,000-row
requests, against in-process predict, with the server's own floor (a model that returns a fixed frame)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import PYTHON, row
from core.errors import UserError
from core.schema import SPEED_BENCHMARK_EXPERIMENT as BENCHMARK_EXPERIMENT


class KeepAliveClient:
    """POSTs one body to /invocations over a kept-alive connection, reconnecting when the
    server closed it (uvicorn closes idle connections after 5 s)."""

    def __init__(self, host: str, port: int, body: bytes):
        import http.client

        self._connect = lambda: http.client.HTTPConnection(host, port, timeout=30)  # noqa: E731
        self.connection = self._connect()
        self.body = body

    def __call__(self) -> bytes:
        import http.client

        for attempt in (1, 2):
            try:
                self.connection.request(
                    "POST", "/invocations", body=self.body, headers={"Content-Type": "application/json"}
                )
                response = self.connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise UserError(f"the scoring server answered {response.status}: {payload[:300]!r}")
                return payload
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                if attempt == 2:
                    raise
                self.connection = self._connect()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def scoring_server(store: str, model_uri: str):
    """``mlflow models serve`` on a free 127.0.0.1 port, as a user starts it; yields the port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise UserError(f"mlflow models serve did not start for the benchmark ({model_uri})") from None
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def request_latencies_ms(port: int, frame: pd.DataFrame, count: int) -> list[float]:
    """Milliseconds of ``count`` POSTs of ``frame`` to /invocations, after 50 to warm up."""
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode()
    request = KeepAliveClient("127.0.0.1", port, body)
    try:
        for _ in range(50):
            request()
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            request()
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies
    finally:
        request.close()


def log_fixed_frame_model(service, model, frame: pd.DataFrame) -> str:
    """Log a model with ours' signature whose predict returns ours' output for ``frame``,
    whatever it is asked: served, it costs what MLflow's server costs, with no model in it."""
    import mlflow

    from benchmarks.serving_floor import FixedFrameModel
    from core.model import serving_requirements

    with service.start_run(BENCHMARK_EXPERIMENT + "-serving-floor", run_name="fixed-frame model"):
        return mlflow.pyfunc.log_model(
            name="fixed_frame",
            python_model=FixedFrameModel(model.predict(frame)),
            signature=model.metadata.signature,
            pip_requirements=serving_requirements(),
        ).model_uri


def bench_serving(
    service, store: str, model_uri: str, requests: int, features: list[str], repeat: int = 1
) -> list[dict]:
    """``repeat`` rounds of ``requests`` requests of each size (after a warm-up), each round's
    percentiles beside the same number of in-process predicts; rows give the rounds' median."""
    import mlflow

    rng = np.random.default_rng(1)
    model = mlflow.pyfunc.load_model(model_uri)
    frames = {
        size: pd.DataFrame(rng.uniform(1, 50, size=(size, len(features))), columns=features) for size in (1, 1000)
    }
    note = "baseline: in-process pyfunc predict; client: one keep-alive connection, as a pooled HTTP client keeps"
    quantiles = (50, 95, 99)

    def local_latencies(frame) -> list[float]:
        local = []
        for _ in range(requests):
            started = time.perf_counter()
            model.predict(frame)
            local.append((time.perf_counter() - started) * 1000)
        return local

    served = {size: {q: [] for q in quantiles} for size in frames}
    in_process = {size: {q: [] for q in quantiles} for size in frames}
    with scoring_server(store, model_uri) as port:
        for _ in range(repeat):
            for size, frame in frames.items():
                latencies, local = request_latencies_ms(port, frame, requests), local_latencies(frame)
                for q in quantiles:
                    served[size][q].append(float(np.percentile(latencies, q)))
                    in_process[size][q].append(float(np.percentile(local, q)))
    rows_out = [
        row(f"serving {size}-row request p{q} ({requests} requests)", "ms", served[size][q], in_process[size][q], note)
        for size in frames
        for q in quantiles
    ]
    # What the server costs with no model in it: the part of our latency no predict can remove.
    floor = {q: [] for q in quantiles}
    with scoring_server(store, log_fixed_frame_model(service, model, frames[1])) as port:
        for _ in range(repeat):
            latencies = request_latencies_ms(port, frames[1], requests)
            for q in quantiles:
                floor[q].append(float(np.percentile(latencies, q)))
    for q in quantiles:
        rows_out.append(
            row(
                f"serving floor, 1-row request p{q} ({requests} requests)",
                "ms",
                floor[q],
                in_process[1][q],
                "ours: the same server and requests with a model of our signature whose predict "
                "returns a fixed frame of our output (MLflow's server alone); " + note,
            )
        )
    return rows_out
