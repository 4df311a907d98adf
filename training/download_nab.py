"""Download NAB's series and label windows, every category or those named (optional; tests never
download).

Input: a base URL laid out like NAB's repository (``data/<category>/<file>.csv`` and
``labels/combined_windows.json``).
Output: ``<dest>/data/<category>/*.csv`` and ``<dest>/labels/combined_windows.json`` (the windows
of the categories downloaded), each written to a temporary name and renamed, and checked to be
in NAB's format: a NAB root, as the benchmark and the cross-validation read it.

    mlflow run . -e download_nab --env-manager local -P dest=data/nab
    export NAB_DATA_DIR=data/nab
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from core.cli import job_parser
from core.errors import UserError, exit_process, main_guard

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/numenta/NAB/master"
# NAB's corpus, per category: the series the cross-validation and the benchmark read.
CORPUS = {
    "artificialNoAnomaly": (
        "art_daily_no_noise",
        "art_daily_perfect_square_wave",
        "art_daily_small_noise",
        "art_flatline",
        "art_noisy",
    ),
    "artificialWithAnomaly": (
        "art_daily_flatmiddle",
        "art_daily_jumpsdown",
        "art_daily_jumpsup",
        "art_daily_nojump",
        "art_increase_spike_density",
        "art_load_balancer_spikes",
    ),
    "realAWSCloudwatch": (
        "ec2_cpu_utilization_24ae8d",
        "ec2_cpu_utilization_53ea38",
        "ec2_cpu_utilization_5f5533",
        "ec2_cpu_utilization_77c1ca",
        "ec2_cpu_utilization_825cc2",
        "ec2_cpu_utilization_ac20cd",
        "ec2_cpu_utilization_c6585a",
        "ec2_cpu_utilization_fe7f93",
        "ec2_disk_write_bytes_1ef3de",
        "ec2_disk_write_bytes_c0d644",
        "ec2_network_in_257a54",
        "ec2_network_in_5abac7",
        "elb_request_count_8c0756",
        "grok_asg_anomaly",
        "iio_us-east-1_i-a2eb1cd9_NetworkIn",
        "rds_cpu_utilization_cc0c53",
        "rds_cpu_utilization_e47b3b",
    ),
    "realAdExchange": (
        "exchange-2_cpc_results",
        "exchange-2_cpm_results",
        "exchange-3_cpc_results",
        "exchange-3_cpm_results",
        "exchange-4_cpc_results",
        "exchange-4_cpm_results",
    ),
    "realTraffic": (
        "TravelTime_387",
        "TravelTime_451",
        "occupancy_6005",
        "occupancy_t4013",
        "speed_6005",
        "speed_7578",
        "speed_t4013",
    ),
    "realTweets": tuple(
        f"Twitter_volume_{name}" for name in ("AAPL", "AMZN", "CRM", "CVS", "FB", "GOOG", "IBM", "KO", "PFE", "UPS")
    ),
}
LABELS = "labels/combined_windows.json"
TIMEOUT_SECONDS = 60


def fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise UserError(f"download of {url} failed: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise UserError(f"download of {url} failed: {getattr(error, 'reason', error)}") from None


def save(content: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.part")
    staging.write_bytes(content)
    staging.replace(path)


def parse_categories(text: str) -> list[str]:
    """``--categories``: NAB categories, comma-separated, or 'all'."""
    if text.strip().lower() == "all":
        return list(CORPUS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CORPUS]
    if unknown or not names:
        raise UserError(f"unknown NAB categories: {', '.join(unknown) or repr(text)}; choose from {', '.join(CORPUS)}")
    return names


def download(base_url: str, dest: Path, categories=tuple(CORPUS)) -> list[Path]:
    base = base_url.rstrip("/")
    written = []
    for category, stem in ((c, stem) for c in categories for stem in CORPUS[c]):
        relative = f"data/{category}/{stem}.csv"
        content = fetch(f"{base}/{relative}")
        if not content.startswith(b"timestamp,value"):
            raise UserError(f"{base}/{relative} is not a NAB series (no 'timestamp,value' header)")
        save(content, dest / relative)
        written.append(dest / relative)
    labels = fetch(f"{base}/{LABELS}")
    try:
        windows = json.loads(labels)
    except json.JSONDecodeError:
        raise UserError(f"{base}/{LABELS} is not JSON") from None
    # NAB's file covers every category; keep the windows of those downloaded.
    kept = {k: v for k, v in windows.items() if k.split("/", 1)[0] in categories}
    save(json.dumps(kept, indent=2).encode(), dest / LABELS)
    written.append(dest / LABELS)
    return written


@main_guard
def main(argv=None) -> int:
    parser = job_parser("Download NAB's series and label windows.")
    parser.add_argument("--dest", default="data/nab")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument(
        "--categories",
        default="all",
        type=parse_categories,
        help=f"comma-separated, from {', '.join(CORPUS)}; 'all' (the cross-validation needs every one)",
    )
    args = parser.parse_args(argv)
    written = download(args.base_url, Path(args.dest), args.categories)
    print(f"downloaded {len(written)} files to {args.dest}; export NAB_DATA_DIR={args.dest}")
    return 0


if __name__ == "__main__":
    exit_process(main())
