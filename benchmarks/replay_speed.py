"""The replay benchmark: NAB files through one model with Spark, against the model's pandas
predict in-process."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import row


def bench_replay(spark, service, series_dir: Path, repeat: int) -> list[dict]:
    from core.registry import resolve_model
    from core.scoring import score_frame
    from replay import replay
    from training import train as train_job

    args = train_job.parse_args(
        [
            "--data",
            str(next(iter(sorted(series_dir.glob("*.csv"))))),
            "--features",
            "value",
            "--model-name",
            "bench-value",
        ]
    )
    result = train_job.train(spark, service, args)
    loaded = resolve_model(service.client, f"bench-value/{result.model_version}")
    replay_args = argparse.Namespace(
        model=[loaded.uri],
        model_name="bench-value",
        data=str(series_dir),
        labels="",
        window_minutes=60,
        master=None,
        conf=[],
    )
    ours, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        (outcome,) = replay.run_replay(spark, service, replay_args)
        ours.append(time.perf_counter() - started)
        rows = outcome.metrics["rows"]
    # One series per file, as replay scores them.
    frames = pd.concat(
        [pd.read_csv(p).assign(series=p.stem) for p in sorted(series_dir.glob("*.csv"))], ignore_index=True
    )
    base = []
    for _ in range(repeat):
        started = time.perf_counter()
        score_frame(loaded.params, frames)
        base.append(time.perf_counter() - started)
    files = len(list(series_dir.glob("*.csv")))
    return [
        row(
            f"replay {files} files ({rows:.0f} rows): wall (with MLflow logging and artifacts)",
            "s",
            ours,
            base,
            "baseline: pandas predict of the same rows in-process",
        ),
        row("replay rows/s", "rows/s", [rows / t for t in ours], [rows / t for t in base], higher_is_better=True),
    ]
