"""Step 3, promote: move the registry alias ``production`` to a model version.

Input: a registered model name and a choice of version: by number (``--version``), by
training run (``--run-id``), by replay results (``--best-by METRIC``: the version leading
``replay.compare``'s table), or, with none of these, the newest version. ``--rollback`` swaps
``production`` and ``previous`` back.
Output: the aliases ``production`` (the chosen version) and ``previous`` (the version it
replaced). Stages are deprecated in MLflow 3; aliases are what the monitor and serving read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from core.errors import UserError, exit_process, main_guard
from core.registry import alias_versions, version_or_error
from core.schema import DEFAULT_MODEL_NAME, PREVIOUS_ALIAS, PRODUCTION_ALIAS


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


def best_version(client, name: str, metric: str, data_sha256: str | None) -> str:
    """The version of ``name`` that leads the replay comparison by ``metric``."""
    from replay.compare import compare, print_table

    table = compare(client, data_sha256, metric)
    table = table[table["model_name"] == name].reset_index(drop=True)
    if table.empty:
        raise UserError(f"no replay of model {name!r} on that data has the metric {metric!r}")
    print_table(table, metric)
    return str(table.loc[0, "model_version"])


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Move the 'production' alias of a registered model.")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--version", default="", help="version number to promote")
    parser.add_argument("--run-id", default="", help="promote the version this training run made")
    parser.add_argument("--rollback", action="store_true", help="swap 'production' and 'previous'")
    parser.add_argument("--best-by", default="", help="promote the version leading the replay comparison by this metric")
    parser.add_argument("--data-sha256", default="", help="with --best-by: the replayed data set (default: newest)")
    return parser.parse_args(argv)


@main_guard
def main(argv=None) -> int:
    from core.tracking import MlflowService

    args = parse_args(argv)
    with MlflowService() as service:
        if args.rollback:
            if args.version or args.run_id or args.best_by:
                raise UserError("--rollback takes no version, run id or --best-by")
            result = rollback(service.client, args.model_name)
        elif args.best_by:
            if args.version or args.run_id:
                raise UserError("--best-by chooses the version itself; give no version or run id")
            version = best_version(service.client, args.model_name, args.best_by, args.data_sha256 or None)
            result = promote(service.client, args.model_name, version)
        else:
            result = promote(service.client, args.model_name, args.version or None, args.run_id or None)
    print(result.describe())
    return 0


if __name__ == "__main__":
    exit_process(main())
