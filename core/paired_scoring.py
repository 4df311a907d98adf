"""Champion and challenger on one stream: the production model scores a series' rows exactly as
it would alone, and a challenger scores the same rows beside it, with its own per-series state.

Plain pandas (no Spark): the monitor's scoring workers call ``score_pair`` per series and batch,
and the tests call it directly.

A series' state in the monitor's state store is one string:
- with one model, ``SeriesState``'s own JSON, as the monitor has always written it, so a
  checkpoint written before challengers existed loads unchanged, and one written without a
  challenger loads in an older monitor;
- with a challenger, ``{"models": {<model key>: <SeriesState JSON>, ...}, "production": <key>}``,
  one state per model, keyed by the model's pinned URI (``models:/<name>/<version>``), so each
  model keeps its own history features, warm-up count and alert state whatever its role.

Which state a model continues from, at the start of a batch:
- production: its own state when it has one (a challenger promoted to production continues from
  the state it built as challenger: no warm-up again); else the state of the model that was
  production when the state was written (a plain state is always that), as a switch of
  production has always carried the series' state over (``SeriesState.tail`` holds raw input
  rows, not features, so a model with the same inputs can continue where another stopped);
- challenger: its own state when it has one; else a copy of production's state as it stood
  before the batch, the whole state, so a challenger added while the monitor runs is scored from
  its first batch without a warm-up, and inherits production's alert state (cooldown) there.

Only the states of the models in the query are written back: a model that leaves both roles
leaves the state with them, and starts from production's state if it comes back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.csv_input import score_records, unscored_columns
from core.scoring import ModelParams, SeriesState

# The challenger's verdicts beside production's in each output row (Spark DDL types). Its flags
# are false where it scored nothing (a row production quarantined, or one it cannot score);
# its distance and score are null there.
CHALLENGER_COLUMNS = {
    "challenger_distance": "double",
    "challenger_anomaly_score": "double",
    "challenger_is_anomaly": "boolean",
    "challenger_is_alert": "boolean",
}
CHALLENGER_FLAGS = ("challenger_is_anomaly", "challenger_is_alert")
STATES_PREFIX = '{"models": '


def challenger_ddl() -> str:
    return ", ".join(f"{name} {kind}" for name, kind in CHALLENGER_COLUMNS.items())


@dataclass
class SeriesStates:
    """One series' states, per model key; ``production``: the key of the model that was
    production when they were written (None for a plain state, which is production's)."""

    models: dict[str | None, str] = field(default_factory=dict)
    production: str | None = None

    @classmethod
    def read(cls, text: str | None) -> SeriesStates:
        if not text:
            return cls()
        if text.startswith(STATES_PREFIX):
            data = json.loads(text)
            return cls(dict(data["models"]), data.get("production"))
        return cls({None: text}, None)  # a plain SeriesState: production's, whichever model that is

    def for_production(self, key: str) -> str | None:
        """Production's state: its own, else the last production's."""
        own = self.models.get(key)
        return own if own is not None else self.models.get(self.production)

    def for_challenger(self, key: str, production_state: str | None) -> str | None:
        """The challenger's state: its own, else a copy of production's (``production_state``)."""
        own = self.models.get(key)
        return own if own is not None else production_state

    @staticmethod
    def write(production: tuple[str, str], challenger: tuple[str, str] | None) -> str:
        """The state to store: (key, SeriesState JSON) per model in the query."""
        if challenger is None:
            return production[1]  # plain, as a monitor without a challenger has always written it
        return json.dumps({"models": dict([production, challenger]), "production": production[0]})


def score_pair(
    params: ModelParams,
    records: pd.DataFrame,
    state: str | None,
    model_key: str = "",
    challenger: tuple[str, ModelParams] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Score one series' records with production (``params``, keyed ``model_key``) and, when
    given, a challenger (its key and params); returns the scored records and the state to store.

    Production's output is exactly ``score_records``' (every record column, in its order), plus,
    with a challenger, ``CHALLENGER_COLUMNS``. The challenger scores the rows production scored,
    in the same (time) order; what production quarantined it does not see.
    """
    states = SeriesStates.read(state)
    production_text = states.for_production(model_key)
    scored, production_state = score_records(params, records, SeriesState.from_json(production_text))
    if challenger is None:
        return scored, SeriesStates.write((model_key, production_state.to_json()), None)
    key, challenger_params = challenger
    previous = SeriesState.from_json(states.for_challenger(key, production_text))
    valid = scored["is_valid"].to_numpy(dtype=bool)
    rows = scored.loc[valid, unscored_columns(challenger_params)]
    theirs, challenger_state = score_records(challenger_params, rows.reset_index(drop=True), previous)
    scored = with_challenger_verdicts(scored, valid, theirs)
    stored = SeriesStates.write((model_key, production_state.to_json()), (key, challenger_state.to_json()))
    return scored, stored


def with_challenger_verdicts(scored: pd.DataFrame, valid: np.ndarray, theirs: pd.DataFrame) -> pd.DataFrame:
    """``scored`` plus the challenger's columns from ``theirs``, its records of ``scored``'s valid rows."""
    n = len(scored)
    columns = {
        "challenger_distance": np.full(n, np.nan),
        "challenger_anomaly_score": np.full(n, np.nan),
        "challenger_is_anomaly": np.zeros(n, dtype=bool),
        "challenger_is_alert": np.zeros(n, dtype=bool),
    }
    positions = np.flatnonzero(valid)
    ours = scored.iloc[positions]
    same_order = len(theirs) == len(positions) and (
        np.array_equal(theirs["line_number"].to_numpy(), ours["line_number"].to_numpy())
        and np.array_equal(theirs["source_file"].to_numpy(), ours["source_file"].to_numpy())
    )
    if same_order:
        at, picked = positions, theirs  # the usual case: the challenger kept production's order
    else:
        # It quarantined rows production scored (other bounds): match them by file and line.
        keys = pd.MultiIndex.from_arrays([ours["source_file"].to_numpy(), ours["line_number"].to_numpy()])
        where = keys.get_indexer(pd.MultiIndex.from_arrays([theirs["source_file"], theirs["line_number"]]))
        found = where >= 0
        at, picked = positions[where[found]], theirs[found]
    judged = picked["is_valid"].to_numpy(dtype=bool)
    at, picked = at[judged], picked[judged]
    columns["challenger_distance"][at] = picked["distance"].to_numpy(dtype=float)
    columns["challenger_anomaly_score"][at] = picked["anomaly_score"].to_numpy(dtype=float)
    columns["challenger_is_anomaly"][at] = picked["is_anomaly"].to_numpy(dtype=bool)
    columns["challenger_is_alert"][at] = picked["is_alert"].to_numpy(dtype=bool)
    return scored.assign(**columns)
