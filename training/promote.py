"""Step 3, promote: move the registry alias ``production`` (or any other, ``--alias``) to a model version.

Input: a registered model name and a choice of version: by number (``--version``), by
training run (``--run-id``), by replay results (``--best-by METRIC``: the version leading
``core.comparison``'s ranking), or, with none of these, the newest version. ``--rollback`` swaps
``production`` and ``previous`` back.
Output: the aliases ``production`` (the chosen version) and ``previous`` (the version it
replaced). Stages are deprecated in MLflow 3; aliases are what the monitor and serving read.
``--alias challenger`` moves ``challenger`` instead (no ``previous``): the monitor scores that
version beside production without paging (docs/monitoring.md); ``--remove`` takes an alias
other than ``production`` away. Each move is recorded on the versions as ``<alias>.set_at``,
``.set_by``, ``.replaced_version`` and ``.reason`` (and ``.removed_at``, ``.replaced_by`` on the
version that lost it).
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
    production: str | None  # the version the alias now names (None: the alias was removed)
    previous: str | None
    changed: bool
    alias: str = PRODUCTION_ALIAS

    def describe(self) -> str:
        if self.production is None:
            return f"{self.name}: {self.alias} removed (was version {self.previous})"
        if not self.changed:
            return f"{self.name}: version {self.production} is already {self.alias}; nothing changed"
        if self.alias != PRODUCTION_ALIAS:
            replaced = f" (replaced: {self.previous})" if self.previous else ""
            return f"{self.name}: {self.alias} -> version {self.production}{replaced}"
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


def check_alias(alias: str) -> str:
    alias = (alias or "").strip()
    if not alias or alias == PREVIOUS_ALIAS or not alias.replace("_", "").replace("-", "").isalnum():
        raise UserError(
            f"--alias must be a plain name such as {PRODUCTION_ALIAS} or challenger "
            f"({PREVIOUS_ALIAS!r} is set by promote and rollback themselves); got {alias!r}"
        )
    return alias


def promote(
    client, name: str, version: str | None = None, run_id: str | None = None, alias: str = PRODUCTION_ALIAS
) -> Promotion:
    """Move ``alias`` to the chosen version; only ``production`` keeps the one it replaced as ``previous``."""
    alias = check_alias(alias)
    current = alias_versions(client, name).get(alias)
    target = choose_version(client, name, version, run_id)
    if current == target:
        return Promotion(name, target, None, changed=False, alias=alias)
    if current is not None and alias == PRODUCTION_ALIAS:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    client.set_registered_model_alias(name, alias, target)
    return Promotion(name, target, current, changed=True, alias=alias)


def remove_alias(client, name: str, alias: str) -> Promotion:
    """Take ``alias`` (not ``production``: promote or roll back instead) away from its version."""
    alias = check_alias(alias)
    if alias == PRODUCTION_ALIAS:
        raise UserError(f"{PRODUCTION_ALIAS!r} is not removed, only moved: promote another version or roll back")
    current = alias_versions(client, name).get(alias)
    if current is None:
        raise UserError(f"model {name!r} has no version under alias {alias!r}")
    client.delete_registered_model_alias(name, alias)
    return Promotion(name, None, current, changed=True, alias=alias)


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
    """The registry keeps who moved the alias, when, from which version and why, on the versions
    (``<alias>.set_at``, ``.set_by``, ``.replaced_version``, ``.reason``; ``.removed_at`` and
    ``.replaced_by`` on the version that lost it)."""
    if not result.changed:
        return
    alias = result.alias
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if result.production is not None:
        tags = {
            "set_at": when,
            "set_by": current_user(),
            "replaced_version": result.previous or "none",
            "reason": reason,
        }
        for key, value in tags.items():
            client.set_model_version_tag(result.name, result.production, f"{alias}.{key}", value)
    if result.previous:
        client.set_model_version_tag(result.name, result.previous, f"{alias}.removed_at", when)
        client.set_model_version_tag(result.name, result.previous, f"{alias}.replaced_by", result.production or "none")


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
    # production_version for production, as before (the workflow test reads it); <alias>_version otherwise
    key = f"{result.alias}_version"
    service.client.log_param(run_id, "alias", result.alias)
    service.client.log_param(run_id, key, result.production or "none")
    service.client.log_param(run_id, "replaced_version", result.previous or "none")
    service.client.log_param(run_id, "reason", reason)
    if result.production is not None:
        service.client.log_metric(run_id, key, float(result.production))
    service.client.log_metric(run_id, "alias_moved", 1.0 if result.changed else 0.0)


def parse_args(argv):
    parser = job_parser("Move the 'production' alias (or another, --alias) of a registered model.")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument(
        "--alias",
        default=PRODUCTION_ALIAS,
        help="the alias to move: production (the monitor pages with it), or e.g. challenger "
        "(scored beside production, never pages)",
    )
    parser.add_argument("--remove", action="store_true", help="take --alias away from its version (not production)")
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
    alias = check_alias(args.alias)
    with MlflowService() as service:
        if args.rollback:
            if args.version or args.run_id or args.best_by:
                raise UserError("--rollback takes no version, run id or --best-by")
            if alias != PRODUCTION_ALIAS or args.remove:
                raise UserError(
                    f"--rollback swaps {PRODUCTION_ALIAS} and {PREVIOUS_ALIAS}; it takes no --alias or --remove"
                )
            result = rollback(service.client, args.model_name)
            reason = "rollback"
        elif args.remove:
            if args.version or args.run_id or args.best_by or args.order:
                raise UserError("--remove takes no version, run id or --best-by")
            result = remove_alias(service.client, args.model_name, alias)
            reason = "removed"
        elif args.best_by:
            if args.version or args.run_id:
                raise UserError("--best-by chooses the version itself; give no version or run id")
            version = best_version(service.client, args.model_name, args.best_by, args.order, args.data_sha256)
            result = promote(service.client, args.model_name, version, alias=alias)
            reason = f"best by {args.best_by}" + (f" ({args.order})" if args.order else "")
        else:
            if args.order:
                raise UserError("--order goes with --best-by")
            result = promote(service.client, args.model_name, args.version, args.run_id, alias=alias)
            reason = (
                f"version {args.version} chosen"
                if args.version
                else f"version of training run {args.run_id}"
                if args.run_id
                else "newest version"
            )
        record_promotion(service.client, result, reason)
        log_promotion(service, result, reason)
        shared = [
            other
            for other, version in alias_versions(service.client, args.model_name).items()
            if result.production and version == result.production and other not in (result.alias, PREVIOUS_ALIAS)
        ]
    print(result.describe())
    if shared:
        # e.g. a challenger promoted to production: the monitor scores it once, as production
        print(f"version {result.production} also holds {', '.join(shared)}")
    return 0


if __name__ == "__main__":
    exit_process(main())
