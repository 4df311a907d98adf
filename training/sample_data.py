"""Generate the built-in sample: a week of synthetic CPU, disk and network series.

Output: ``<out>/series/ec2_{cpu_utilization,disk_write_bytes,network_in}_sample.csv``
(NAB format, ``timestamp,value``, every 5 minutes) and ``<out>/metrics.csv``, the feature
table that ``training.prepare`` makes of them. Deterministic for a given seed, so the
committed copy under ``data/sample/`` can be regenerated and checked byte for byte:

    python -m training.sample_data --out data/sample

The series have a daily cycle, noise, and a few injected incidents (a CPU spike, a disk
burst, a network outage), so that the main job has something to find.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import exit_process, main_guard

DEFAULT_ROWS = 2016  # one week at 5-minute intervals
START = "2026-01-05 00:00:00"
SERIES_FILES = {
    "cpu": "ec2_cpu_utilization_sample.csv",
    "disk": "ec2_disk_write_bytes_sample.csv",
    "network": "ec2_network_in_sample.csv",
}


def generate(rows: int = DEFAULT_ROWS, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(START, periods=rows, freq="5min")
    day = 2 * np.pi * (stamps.hour * 60 + stamps.minute).to_numpy() / (24 * 60)
    load = 0.5 + 0.4 * np.sin(day - np.pi / 2)  # quiet at night, busy mid-day
    cpu = 20 + 35 * load + rng.normal(0, 2.5, rows)
    disk = 2.0e6 + 3.0e6 * load + rng.normal(0, 2.0e5, rows)
    network = 5.0e6 + 8.0e6 * load + rng.normal(0, 5.0e5, rows)
    incidents = [(rows * 3 // 7, 12), (rows * 5 // 7, 8), (rows * 6 // 7, 10)]
    (cpu_at, cpu_len), (disk_at, disk_len), (net_at, net_len) = incidents
    cpu[cpu_at : cpu_at + cpu_len] = 97 + rng.normal(0, 1, cpu_len)
    disk[disk_at : disk_at + disk_len] *= 6
    network[net_at : net_at + net_len] = rng.uniform(0, 1.0e4, net_len)
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "cpu": np.clip(cpu, 0, 100).round(3),
            "disk": np.clip(disk, 0, None).round(0),
            "network": np.clip(network, 0, None).round(0),
        }
    )


def write_sample(out: Path, rows: int = DEFAULT_ROWS, seed: int = 7) -> None:
    from training.prepare import collate, write_table

    table = generate(rows, seed)
    series_dir = out / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    for kind, file_name in SERIES_FILES.items():
        series = table[["timestamp", kind]].rename(columns={kind: "value"})
        series.to_csv(series_dir / file_name, index=False, date_format="%Y-%m-%d %H:%M:%S")
    write_table(collate(series_dir).table, out / "metrics.csv")


@main_guard
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate the built-in sample data.")
    parser.add_argument("--out", default="data/sample")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    write_sample(Path(args.out), args.rows, args.seed)
    print(f"wrote {args.rows} rows per series under {args.out}")
    return 0


if __name__ == "__main__":
    exit_process(main())
