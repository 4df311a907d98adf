"""Train's settings and their defaults: the history features and the alert policy that travel in
the model, and the KMeans settings. The defaults are the configuration the NAB benchmark chose
(docs/quality.md says how)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserError
from core.scoring import HISTORY_TRANSFORMS, RULE_DISTANCE, RULES, check_history, derived_name

DEFAULT_K = 7
DEFAULT_SEED = 42
DEFAULT_MAX_ITER = 20
DEFAULT_THRESHOLD_QUANTILE = 0.99
# k=7 over each input's rolling mean and spread across its last 24 rows; an alert at anomaly
# score 0.75; then no other alert for the series within 216 rows.
DEFAULT_HISTORY = ("mean", "std")
DEFAULT_SPAN = 24
DEFAULT_ALERT_THRESHOLD = 0.75
DEFAULT_COOLDOWN = 216


@dataclass(frozen=True)
class HistorySpec:
    """The history features and the alert policy: training params that travel in the model."""

    history: tuple[str, ...] = DEFAULT_HISTORY
    span: int = DEFAULT_SPAN
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    cooldown: int = DEFAULT_COOLDOWN

    def vector_columns(self, features) -> list[str]:
        return [derived_name(f, t) for f in features for t in self.history]


def parse_history(text: str) -> tuple[str, ...]:
    """``--history``'s comma-separated transforms, checked as the model checks them."""
    history = tuple(t.strip() for t in text.split(",") if t.strip())
    try:
        check_history(history)
    except ValueError as error:
        raise UserError(str(error)) from None
    return history


def add_model_settings(parser, leave_out: tuple[str, ...] = ()) -> None:
    """The model's settings as command-line options with train's defaults, for every job that
    fits models (train, the NAB benchmark, cross-validation); ``leave_out`` names ones it sets
    otherwise (cross-validation tries grids of k, span, alert threshold and cooldown)."""
    options = {
        "k": dict(type=int, default=DEFAULT_K, help="clusters"),
        "seed": dict(type=int, default=DEFAULT_SEED),
        "max-iter": dict(type=int, default=DEFAULT_MAX_ITER),
        "rule": dict(default=RULE_DISTANCE, choices=RULES),
        "threshold-quantile": dict(
            type=float,
            default=DEFAULT_THRESHOLD_QUANTILE,
            help="quantile of the training distances that makes the distance threshold",
        ),
        "history": dict(
            default=",".join(DEFAULT_HISTORY),
            help=f"transforms of each feature, from {', '.join(HISTORY_TRANSFORMS)} "
            "('value' alone is the original model)",
        ),
        "span": dict(type=int, default=DEFAULT_SPAN, help="rows in the rolling mean/std window"),
        "alert-threshold": dict(
            type=float, default=DEFAULT_ALERT_THRESHOLD, help="anomaly score at which a row raises an alert"
        ),
        "cooldown": dict(
            type=int, default=DEFAULT_COOLDOWN, help="rows of a series after an alert during which it raises no other"
        ),
    }
    for name, spec in options.items():
        if name not in leave_out:
            parser.add_argument(f"--{name}", **spec)
