"""The monitor's command line: its options, their defaults and the checks between them."""

from __future__ import annotations

from core.cli import add_spark_args, flag, job_parser, optional_text
from core.schema import DEFAULT_MODEL_NAME
from streaming.input_cleanup import CLEAN_SOURCE_MODES


def parse_args(argv):
    parser = job_parser("Monitor a directory of metric CSV files for anomalies.")
    parser.add_argument("--input", required=True, help="directory (path or URI) that files are renamed into")
    parser.add_argument(
        "--window",
        type=float,
        default=3.0,
        help="trigger interval in seconds (with --available-now: how often the alias is checked)",
    )
    parser.add_argument(
        "--model",
        default="none",
        type=optional_text,
        help="model URI, name@alias or name/version ('none': <model-name>@production, followed live)",
    )
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="registered model whose alias is followed")
    parser.add_argument("--output", default="data/monitor", help="output root for events and quarantine")
    parser.add_argument(
        "--checkpoint", default="none", type=optional_text, help="checkpoint URI ('none': <output>/checkpoint)"
    )
    parser.add_argument("--show", type=int, default=10, help="anomalous rows printed per window")
    parser.add_argument(
        "--scored-rows",
        nargs="?",
        const="true",
        default="false",
        type=flag,
        help="also sink every scored row (with its history features), not only anomalies",
    )
    parser.add_argument("--max-files-per-trigger", type=int, default=1000, help="most files in one micro-batch")
    parser.add_argument(
        "--series-idle-minutes",
        type=float,
        default=1440,
        help="forget a series' state after this long without rows (it then starts afresh)",
    )
    parser.add_argument("--idle-windows", type=int, default=0, help="stop after this many idle windows (0: never)")
    parser.add_argument("--timeout", type=float, default=0, help="stop after this many seconds (0: never)")
    parser.add_argument(
        "--available-now",
        nargs="?",
        const="true",
        default="false",
        type=flag,
        help="catch up: process the files present at the start, in batches of at most "
        "--max-files-per-trigger, then stop with exit code 0",
    )
    parser.add_argument(
        "--clean-source",
        type=str.lower,
        choices=CLEAN_SOURCE_MODES,
        default="off",
        help="what Spark does with the files of a committed batch once it plans the next batch: "
        "keep them, move them under --archive-dir, or delete them",
    )
    parser.add_argument(
        "--archive-dir",
        default="none",
        type=optional_text,
        help="with --clean-source archive: where processed files go, each under its full path; "
        "outside the input directory, on its filesystem",
    )
    parser.add_argument(
        "--alertmanager",
        default="none",
        type=optional_text,
        help="Alertmanager base URL (e.g. http://alertmanager:9093): every alert is posted to its "
        "/api/v2/alerts, at least once across restarts ('none': alerts are not sent)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics at /metrics on this port (0: off)"
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="address the metrics endpoint listens on (0.0.0.0: every one)"
    )
    parser.add_argument(
        "--challenger",
        default="auto",
        type=lambda text: optional_text(text) or "none",
        help="a model scored beside production on every row, never paging: 'auto' follows the "
        "'challenger' alias of the model whose production alias is followed; 'none': production alone; "
        "or a model URI, name@alias or name/version (streaming/challenger.py)",
    )
    add_spark_args(parser)
    args = parser.parse_args(argv)
    if args.window <= 0:
        parser.error("--window must be positive")
    if args.series_idle_minutes <= 0:
        parser.error("--series-idle-minutes must be positive")
    if args.max_files_per_trigger <= 0:
        parser.error("--max-files-per-trigger must be positive")
    if args.alertmanager and not args.alertmanager.startswith(("http://", "https://")):
        parser.error(f"--alertmanager must be an http:// or https:// URL, got {args.alertmanager!r}")
    if not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be between 0 (off) and 65535")
    if args.available_now and args.idle_windows > 0:
        parser.error(
            "--idle-windows does not apply with --available-now, which stops once the files present at "
            "its start are processed; --timeout still bounds the run"
        )
    return args
