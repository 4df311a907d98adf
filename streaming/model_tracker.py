"""The model the monitor scores with: resolved from the registry, and following its alias
(``production`` by default) between batches, never within one."""

from __future__ import annotations

from core.schema import PRODUCTION_ALIAS


class ModelTracker:
    """The model in use; follows a registry alias between batches, never within one."""

    def __init__(self, client, spec: str, default_name: str):
        from core.registry import parse_registry_spec, resolve_model

        self._client = client
        self._resolve = resolve_model
        self.spec = spec or f"{default_name}@{PRODUCTION_ALIAS}"
        self.name, self.alias, _ = parse_registry_spec(self.spec) or (None, None, None)
        self.current = resolve_model(client, self.spec)
        self._alias_missing_warned = False
        self.aliases: dict[str, str] | None = None  # every alias of the model at the last refresh

    @property
    def label(self) -> str:
        if self.current.name:
            return f"{self.current.name} v{self.current.version}"
        return self.current.uri

    def refresh(self) -> str | None:
        """Check the alias; returns a message when the model changed or went missing."""
        if not self.alias:
            return None
        from core.registry import alias_versions

        self.aliases = None
        try:
            self.aliases = alias_versions(self._client, self.name)
            version = self.aliases.get(self.alias)
        except Exception as error:  # noqa: BLE001 - a registry hiccup must not stop monitoring
            return f"WARNING: cannot read alias {self.alias!r} ({error}); keeping {self.label}"
        if version is None:
            if self._alias_missing_warned:
                return None
            self._alias_missing_warned = True
            return f"WARNING: alias {self.alias!r} of {self.name} disappeared; keeping {self.label}"
        self._alias_missing_warned = False
        if version == self.current.version:
            return None
        previous = self.label
        self.current = self._resolve(self._client, f"{self.name}/{version}")
        return f"MODEL SWITCH: {self.alias} moved from {previous} to {self.label}"
