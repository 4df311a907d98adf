"""The challenger: a second model the monitor scores beside production, on the same rows in the
same batch, with its own per-series state (``core.paired_scoring``), that never pages.

Which model: ``--challenger auto`` (the default) follows the alias ``challenger`` of the model
whose ``production`` alias the monitor follows; ``none`` scores production alone; a model URI,
``name@alias`` or ``name/version`` names one (an alias is followed, a version is pinned). Like
production it is looked up between batches, never within one, and a change restarts the query
from its checkpoint: a challenger added while the monitor runs is scored from the next batch on,
continuing from production's series state (no warm-up); one removed (or promoted: the same
version as production) leaves production alone; when ``production`` moves to the challenger's
version, that model continues from the state it built as challenger. A challenger whose input
columns differ from production's is not scored (said once).

What it adds to each batch: the rows carry ``challenger_*`` columns, its alerts go to the
``challenger_alerts`` part (never to ``alerts``, never an ``ALERT`` line or a delivery), one
``challenger`` line is printed, ``summary.json`` holds its counts, and the monitor's MLflow run
gets, at step = batch id: ``challenger_version``, ``challenger_anomaly_count``,
``challenger_alert_count`` and the agreement of the alerts, row by row: ``alerts_both``,
``alerts_production_only``, ``alerts_challenger_only``; and the tag ``challenger_version``.
"""

from __future__ import annotations

import time

from core.paired_scoring import CHALLENGER_COLUMNS
from core.schema import CHALLENGER_ALIAS

# Spark and MLflow are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

AUTO = "auto"
PART = "challenger_alerts"
COUNTS = (
    "challenger_anomaly_count",
    "challenger_alert_count",
    "alerts_both",
    "alerts_production_only",
    "alerts_challenger_only",
)


def label(model) -> str:
    return f"{model.name} v{model.version}" if model.name else model.uri


class Challenger:
    """The challenger the registry names now (``current``) and the one in the running query
    (``active``); followed between batches like production (``ModelTracker``)."""

    def __init__(self, client, tracker, spec: str | None = AUTO):
        from core.registry import parse_registry_spec

        self._client = client
        self._tracker = tracker
        spec = (spec or "").strip()
        if spec.lower() == AUTO:
            spec = f"{tracker.name}@{CHALLENGER_ALIAS}" if tracker.alias and tracker.name else ""
        elif spec.lower() == "none":
            spec = ""
        self.spec = spec
        self.name, self.alias, _ = (parse_registry_spec(spec) if spec else None) or (None, None, None)
        self.current = None
        self.active = None
        self._said: str | None = None  # the last reason a named challenger is not scored
        if self.spec and not self.alias:
            from core.registry import resolve_model

            self.current = resolve_model(client, self.spec)  # named by the user: a bad one is an error
        elif self.alias:
            message = self.refresh()
            if message and message.startswith("WARNING"):
                print(message, flush=True)

    # -- following the registry, between batches ------------------------------------------------
    def refresh(self, aliases: dict | None = None) -> str | None:
        """Look the alias up (in ``aliases``, the model's aliases production's tracker has just
        read, when they are this model's); returns a message when the challenger changed or
        cannot be read."""
        if not self.alias:
            return None
        from core.registry import alias_versions, resolve_model

        try:
            if aliases is None or self._tracker.name != self.name:
                aliases = alias_versions(self._client, self.name)
            version = aliases.get(self.alias)
            if version is None:
                if self.current is None:
                    return None
                previous, self.current = label(self.current), None
                return f"CHALLENGER: alias {self.alias!r} of {self.name} removed (was {previous})"
            if self.current is not None and version == self.current.version:
                return None
            loaded = resolve_model(self._client, f"{self.name}/{version}")
        except Exception as error:  # noqa: BLE001 - a registry hiccup must not stop monitoring
            return self._once(f"WARNING: cannot read the challenger {self.spec} ({str(error).splitlines()[0]})")
        previous, self.current = (label(self.current) if self.current else "none"), loaded
        return f"CHALLENGER: {self.alias} moved from {previous} to {label(loaded)}"

    def _once(self, message: str) -> str | None:
        said, self._said = self._said, message
        return None if said == message else message

    def usable(self, production):
        """(the challenger to score beside ``production``, or None; why not, or None)."""
        model = self.current
        if model is None:
            return None, None
        if model.uri == production.uri:
            return None, f"challenger {label(model)} is production now: production alone"
        if list(model.params.features) != list(production.params.features):
            return None, (
                f"WARNING: challenger {label(model)} takes {', '.join(model.params.features)}, production "
                f"{', '.join(production.params.features)}: not scored"
            )
        return model, None

    def changed(self, production) -> bool:
        """Whether the query must restart for the challenger (production being ``production``)."""
        model, _ = self.usable(production)
        return (model.uri if model else None) != (self.active.uri if self.active else None)

    def activate(self, production, client=None, run_id: str | None = None):
        """At a query's start: the challenger it scores, as ``score_series_streaming`` takes it
        ((key, params), or None); said when it changes, and tagged on the monitor's run."""
        model, why = self.usable(production)
        before = self.active
        self.active = model
        if model is not None and (before is None or before.uri != model.uri):
            print(
                f"challenger {label(model)} scored beside {label(production)}: its alerts go to {PART}, never paged",
                flush=True,
            )
        elif model is None and why and self._once(why):
            print(why, flush=True)
        elif model is None and before is not None:
            print(f"challenger {label(before)} no longer scored: production alone", flush=True)
        if client is not None and run_id:
            client.set_tag(run_id, "challenger_version", (model.version or model.uri) if model else "none")
        return (model.uri, model.params) if model else None

    # -- a batch -------------------------------------------------------------------------------
    @staticmethod
    def observed(model) -> list:
        """The counts ``Observation`` collects as the batch is written (none without a challenger)."""
        if model is None:
            return []
        from pyspark.sql import functions as F

        def total(condition):
            return F.coalesce(F.sum(condition.cast("long")), F.lit(0))

        theirs = F.col("challenger_is_alert")
        return [
            total(F.col("challenger_is_anomaly")).alias("challenger_anomaly_count"),
            total(theirs).alias("challenger_alert_count"),
            total(theirs & F.col("is_alert")).alias("alerts_both"),
        ]

    @staticmethod
    def parts(model) -> dict:
        if model is None:
            return {}
        from pyspark.sql import functions as F

        return {PART: F.col("challenger_is_alert")}

    @staticmethod
    def columns(records, model):
        """``records`` plus which challenger scored them; the challenger's columns (null) where
        missing, so every part of a batch has one schema."""
        if model is None:
            return records
        from pyspark.sql import functions as F

        added = {
            name: F.lit(None).cast(kind) for name, kind in CHALLENGER_COLUMNS.items() if name not in records.columns
        }
        added.update({"challenger_version": F.lit(model.version or ""), "challenger_uri": F.lit(model.uri)})
        return records.withColumns(added)

    @staticmethod
    def counts(model, counted: dict, counts: dict) -> dict | None:
        """The batch's challenger counts from the observation (``counted``) and production's ``counts``."""
        if model is None:
            return None
        versus = {key: int(counted.get(key) or 0) for key in COUNTS[:3]}
        versus["alerts_production_only"] = counts["alerts"] - versus["alerts_both"]
        versus["alerts_challenger_only"] = versus["challenger_alert_count"] - versus["alerts_both"]
        return versus

    @staticmethod
    def summary(model, versus: dict | None) -> dict:
        if model is None or versus is None:
            return {}
        return {"challenger_version": model.version, "challenger_uri": model.uri, **versus}

    @staticmethod
    def report(model, client, run_id: str, batch_id: int, versus: dict | None) -> None:
        """The batch's challenger line, and its metrics in the monitor's run (step = batch id)."""
        if model is None or versus is None:
            return
        print(
            f"batch {batch_id} challenger {label(model)}: anomalies {versus['challenger_anomaly_count']}, "
            f"alerts {versus['challenger_alert_count']} (not paged); alerts of both {versus['alerts_both']}, "
            f"production only {versus['alerts_production_only']}, "
            f"challenger only {versus['alerts_challenger_only']}",
            flush=True,
        )
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        version = float(model.version) if model.version else -1.0
        metrics = [Metric("challenger_version", version, now, batch_id)]
        metrics += [Metric(key, float(versus[key]), now, batch_id) for key in COUNTS]
        client.log_batch(run_id, metrics=metrics)
