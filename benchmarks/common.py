"""What every speed benchmark shares: the machine, medians with min and max, a table row with its
ratio to a baseline measured in the same run, and the synthetic tables."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError

PYTHON = sys.executable


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, {platform.machine()}"


def summary(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def row(
    figure: str,
    unit: str,
    ours: list[float],
    baseline: list[float] | None,
    note: str = "",
    higher_is_better: bool = False,
) -> dict:
    ours_s = summary(ours)
    base_s = summary(baseline) if baseline else None
    ratio = ours_s["median"] / base_s["median"] if base_s and base_s["median"] else None
    return {
        "figure": figure,
        "unit": unit,
        "ours": ours_s,
        "baseline": base_s,
        "ratio": ratio,
        "higher_is_better": higher_is_better,
        "note": note,
        "machine": machine(),
    }


def synthetic_table(rows: int, path: Path, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    centres = rng.uniform([5, 1e6, 1e6], [90, 5e7, 5e7], size=(6, 3))
    pick = rng.integers(0, len(centres), rows)
    values = np.abs(centres[pick] * rng.normal(1.0, 0.05, size=(rows, 3)))
    values[:, 0] = np.clip(values[:, 0], 0, 100)
    frame = pd.DataFrame(values, columns=["cpu", "disk", "network"])
    # One row every 5 minutes, so train's default window in time has an interval to take its rows at.
    frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=rows, freq="5min").strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path


def json_destination(out: Path) -> Path:
    """Where the JSON goes, checked before an hour of measuring rather than after it: a
    directory gets ``speed.json`` inside it, and a place that cannot be written is a clear error."""
    if out.is_dir():
        out = out / "speed.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out: cannot create {out.parent}: {error.strerror}") from None
    if out.is_dir() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UserError(f"--out: cannot write {out}")
    return out


def print_table(rows: list[dict]) -> None:
    print(f"\n{'figure':<78} {'ours':>12} {'baseline':>12} {'ratio':>8}")
    for r in rows:
        base = f"{r['baseline']['median']:.4g}" if r["baseline"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        print(f"{r['figure'][:78]:<78} {r['ours']['median']:>10.4g} {r['unit'][:2]:<1} {base:>12} {ratio:>8}")
    print(f"machine: {machine()}")
