"""Compare: the replays of one data set, one row per model, ranked only where ranking means something.

Input: replay runs in any experiment of the tracking store; a data set (``--data-sha256``;
default: the data of the newest replay); optionally a metric and direction.
Output: a table on stdout and, under ``mlflow run``, ``compare.csv`` and the ranking in that run.
How it ranks is ``core.comparison``'s: with labels by the NAB standard score of the alerts, then
their F1; without labels not at all, unless told a metric and which way is better.

    mlflow run . -e compare --env-manager local
    mlflow run . -e compare --env-manager local -P metric=anomaly_rate -P order=asc

``--monitor-run RUN_ID`` compares production and its challenger on what that monitor run saw
instead (``core.monitor_comparison``; with ``--labels``, their alerts' NAB scores and F1, from
``replay.monitor_compare``).
"""

from __future__ import annotations

from core.cli import job_parser, optional_text
from core.comparison import compare, log_table, print_table
from core.errors import UserError, exit_process, main_guard
from core.schema import STEP_TAG
from core.tracking import MlflowService


@main_guard
def main(argv=None) -> int:

    parser = job_parser("Compare the replays of one data set, one row per model.")
    parser.add_argument(
        "--metric",
        default="none",
        type=optional_text,
        help="rank by this replay metric ('none': by NAB score where there are labels, else not ranked)",
    )
    parser.add_argument(
        "--order",
        default="none",
        type=optional_text,
        help="asc or desc: which way is better for --metric (needed for counts and rates)",
    )
    parser.add_argument(
        "--data-sha256", default="none", type=optional_text, help="data set to compare on ('none': the newest replay's)"
    )
    parser.add_argument(
        "--monitor-run",
        default="none",
        type=optional_text,
        help="compare production and challenger on this monitor run's batches instead of replays",
    )
    parser.add_argument(
        "--labels", default="none", type=optional_text, help="with --monitor-run: NAB label windows to judge alerts by"
    )
    parser.add_argument(
        "--data",
        default="none",
        type=optional_text,
        help="with --monitor-run and --labels: the files the monitor read, if its input folder no longer holds them",
    )
    args = parser.parse_args(argv)
    if args.monitor_run:
        return compare_monitor(args)
    with MlflowService() as service:
        table = compare(service.client, args.data_sha256, args.metric, args.order)
        run_id = service.describe_joined_run(f"compare {table.attrs['data_sha256'][:12]}", tags={STEP_TAG: "compare"})
        if run_id:
            log_table(service.client, run_id, table)
    print_table(table)
    return 0


def compare_monitor(args) -> int:
    from core.monitor_comparison import log_pairs, print_pairs
    from replay.monitor_compare import compare_monitor_run

    if args.metric or args.order or args.data_sha256:
        raise UserError(
            "--monitor-run compares one monitor run's models; --metric, --order and --data-sha256 are for replays"
        )
    with MlflowService() as service:
        data = args.data.split(",") if args.data else None
        table = compare_monitor_run(service.client, args.monitor_run, args.labels, data)
        run_id = service.describe_joined_run(f"compare monitor {args.monitor_run[:8]}", tags={STEP_TAG: "compare"})
        if run_id:
            log_pairs(service.client, run_id, table)
    print_pairs(table)
    return 0


if __name__ == "__main__":
    exit_process(main())
