"""Find a model in the registry by URI, ``name@alias`` or ``name/version``, with clear errors."""

from __future__ import annotations

import re

from core.errors import UserError
from core.model import LoadedModel, load_params
from core.schema import PRODUCTION_ALIAS

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
_SHORT = re.compile(r"^(?P<name>[^/@:]+)(?:@(?P<alias>[^/]+)|[/:](?P<version>\d+))$")


def parse_registry_spec(spec: str) -> tuple[str, str | None, str | None] | None:
    """(name, alias, version) for ``models:/n@a``, ``models:/n/3``, ``n@a`` or ``n/3``; else None."""
    match = _REGISTRY_URI.match(spec) or _SHORT.match(spec)
    return (match["name"], match["alias"], match["version"]) if match else None


def promote_hint(name: str) -> str:
    return f"mlflow run . -e promote --env-manager local -P model_name={name}"


def registered_model_or_error(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise UserError(
            f"no registered model named {name!r}; train one first "
            f"(mlflow run . -e train --env-manager local -P model_name={name})"
        ) from None


def alias_versions(client, name: str) -> dict[str, str]:
    """alias -> version number as text (MLflow hands back ints here, strings elsewhere)."""
    # search_model_versions leaves aliases empty: the registered model has the mapping.
    model = registered_model_or_error(client, name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def version_or_error(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    registered_model_or_error(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise UserError(f"model {name!r} has no version {version}") from None


def version_for_alias(client, name: str, alias: str):
    version = alias_versions(client, name).get(alias)
    if version is None:
        raise UserError(f"model {name!r} has no version under alias {alias!r}; promote one: {promote_hint(name)}")
    return client.get_model_version(name, version)


def resolve_model(client, spec: str, default_name: str | None = None) -> LoadedModel:
    """Load the model ``spec`` names, pinning an alias to the version it points at now."""
    spec = spec.strip() if spec else ""
    if not spec and default_name:
        spec = f"{default_name}@{PRODUCTION_ALIAS}"
    parsed = parse_registry_spec(spec)
    if parsed:
        name, alias, number = parsed
        if alias:
            version = version_for_alias(client, name, alias)
        else:
            version = version_or_error(client, name, number)
        uri = f"models:/{name}/{version.version}"
        return LoadedModel(uri, load_params(uri), name, str(version.version), version.run_id)
    try:
        params = load_params(spec)
    except Exception as error:  # noqa: BLE001 - any load failure is the user's URI
        raise UserError(f"cannot load model {spec!r}: {error}") from None
    run_id = spec.split("/")[1] if spec.startswith("runs:/") else None
    return LoadedModel(spec, params, None, None, run_id)
