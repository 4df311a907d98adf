"""Step 3, promote: move the registry alias ``production`` to a model version.

Input: a registered model name and a choice of version: by number (``--version``), by
training run (``--run-id``), by replay results (``--best-by METRIC``: the version leading
``core.comparison``'s ranking), or, with none of these, the newest version. ``--rollback`` swaps
``production`` and ``previous`` back.
Output: the aliases ``production`` (the chosen version) and ``previous`` (the version it
replaced). Stages are deprecated in MLflow 3; aliases are what the monitor and serving read.
"""

from __future__ import annotations

import datetime
import getpass
from dataclasses import dataclass

from core.cli import job_parser, optional_text
from core.comparison import compare, print_table
from core.errors import UserError, exit_process, main_guard
from core.registry import alias_versions, version_or_error
from core.schema import DEFAULT_MODEL_NAME, PREVIOUS_ALIAS, PRODUCTION_ALIAS, STEP_TAG
from core.tracking import MlflowService


@dataclass(frozen=True)
class Promotion:
    name: str
    production: str
    previous: str | None
    changed: bool

    def describe(self) -> str:
        if not self.changed:
            return f"{self.name}: version {self.production} is already {PRODUCTION_ALIAS}; nothing changed"
        previous = f" (previous: {self.previous})" if self.previous else ""
        return f"{self.name}: {PRODUCTION_ALIAS} -> version {self.production}{previous}"


def choose_version(client, name: str, version: str | None = None, run_id: str | None = None) -> str:
    if version and run_id:
        raise UserError("give either a version or a run id, not both")
    if version:
        return str(version_or_error(client, name, version).version)
    versions = client.search_model_versions(f"name = '{name}'")
    if run_id:
        versions = [v for v in versions if v.run_id == run_id]
        if not versions:
            raise UserError(f"no version of model {name!r} was trained by run {run_id}")
    if not versions:
        raise UserError(f"model {name!r} has no versions yet; train one first")
    return str(max(int(v.version) for v in versions))


def promote(client, name: str, version: str | None = None, run_id: str | None = None) -> Promotion:
    current = alias_versions(client, name).get(PRODUCTION_ALIAS)
    target = choose_version(client, name, version, run_id)
    if current == target:
        return Promotion(name, target, None, changed=False)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    client.set_registered_model_alias(name, PRODUCTION_ALIAS, target)
    return Promotion(name, target, current, changed=True)


def rollback(client, name: str) -> Promotion:
    aliases = alias_versions(client, name)
    current, previous = aliases.get(PRODUCTION_ALIAS), aliases.get(PREVIOUS_ALIAS)
    if previous is None:
        raise UserError(f"model {name!r} has no {PREVIOUS_ALIAS!r} version to roll back to")
    client.set_registered_model_alias(name, PRODUCTION_ALIAS, previous)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    return Promotion(name, previous, current, changed=True)


def best_version(client, name: str, metric: str | None, order: str | None, data_sha256: str | None) -> str:
    """The version of ``name`` that leads the replay comparison (see ``core.comparison``)."""

    table = compare(client, data_sha256, metric, order)
    ranking = table.attrs["ranking"]
    if not ranking.ranked:
        raise UserError(f"cannot choose a best version: {ranking.says}")
    table = table[table["model_name"] == name].reset_index(drop=True)
    table.attrs.update(ranking=ranking)
    if table.empty:
        raise UserError(f"no replay of model {name!r} on that data has the metric {ranking.metric!r}")
    print_table(table)
    return str(table.loc[0, "model_version"])


def record_promotion(client, result: Promotion, reason: str) -> None:
    """The registry keeps who moved the alias, when, from which version and why, on the versions."""
    if not result.changed:
        return
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tags = {"set_at": when, "set_by": current_user(), "replaced_version": result.previous or "none", "reason": reason}
    for key, value in tags.items():
        client.set_model_version_tag(result.name, result.production, f"{PRODUCTION_ALIAS}.{key}", value)
    if result.previous:
        client.set_model_version_tag(result.name, result.previous, f"{PRODUCTION_ALIAS}.removed_at", when)
        client.set_model_version_tag(result.name, result.previous, f"{PRODUCTION_ALIAS}.replaced_by", result.production)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def log_promotion(service, result: Promotion, reason: str) -> None:
    """Under ``mlflow run``, the promotion is what its run records."""
    run_id = service.describe_joined_run(
        f"{'rollback' if reason == 'rollback' else 'promote'} {result.name}",
        tags={STEP_TAG: "promote"},
        description=f"{result.describe()}: {reason}",
    )
    if run_id is None:
        return
    service.client.log_param(run_id, "production_version", result.production)
    service.client.log_param(run_id, "replaced_version", result.previous or "none")
    service.client.log_param(run_id, "reason", reason)
    service.client.log_metric(run_id, "production_version", float(result.production))
    service.client.log_metric(run_id, "alias_moved", 1.0 if result.changed else 0.0)


def parse_args(argv):
    parser = job_parser("Move the 'production' alias of a registered model.")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument(
        "--version",
        default="none",
        type=optional_text,
        help="version number to promote ('none': see --run-id, --best-by, else the newest)",
    )
    parser.add_argument(
        "--run-id", default="none", type=optional_text, help="promote the version this training run made"
    )
    parser.add_argument("--rollback", action="store_true", help="swap 'production' and 'previous'")
    parser.add_argument(
        "--best-by",
        default="none",
        type=optional_text,
        help="promote the version leading the replay comparison by this metric "
        "(nab_score_standard: the NAB score, then F1 of the alerts)",
    )
    parser.add_argument(
        "--order",
        default="none",
        type=optional_text,
        help="with --best-by: asc or desc, needed for metrics that are not label scores",
    )
    parser.add_argument(
        "--data-sha256",
        default="none",
        type=optional_text,
        help="with --best-by: the replayed data set (default: the newest replay's)",
    )
    return parser.parse_args(argv)


@main_guard
def main(argv=None) -> int:

    args = parse_args(argv)
    with MlflowService() as service:
        if args.rollback:
            if args.version or args.run_id or args.best_by:
                raise UserError("--rollback takes no version, run id or --best-by")
            result = rollback(service.client, args.model_name)
            reason = "rollback"
        elif args.best_by:
            if args.version or args.run_id:
                raise UserError("--best-by chooses the version itself; give no version or run id")
            version = best_version(service.client, args.model_name, args.best_by, args.order, args.data_sha256)
            result = promote(service.client, args.model_name, version)
            reason = f"best by {args.best_by}" + (f" ({args.order})" if args.order else "")
        else:
            if args.order:
                raise UserError("--order goes with --best-by")
            result = promote(service.client, args.model_name, args.version, args.run_id)
            reason = (
                f"version {args.version} chosen"
                if args.version
                else f"version of training run {args.run_id}"
                if args.run_id
                else "newest version"
            )
        record_promotion(service.client, result, reason)
        log_promotion(service, result, reason)
    print(result.describe())
    return 0


if __name__ == "__main__":
    exit_process(main())
