"""Train's settings and their defaults: the history features and the alert policy that travel in
the model, and the KMeans settings. The defaults are the configuration the NAB benchmark chose
(docs/quality.md says how)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.errors import UserError
from core.history import tail_rows
from core.scales import windowed
from core.scoring import (
    HISTORY_TRANSFORMS,
    RULE_DISTANCE,
    RULES,
    SCORE_DISTANCE,
    SCORE_KINDS,
    SCORE_LIKELIHOOD,
    check_history,
    derived_name,
    warmup_rows,
)
from training.sampling import WindowLength, parse_window

DEFAULT_K = 7
DEFAULT_SEED = 42
DEFAULT_MAX_ITER = 20
DEFAULT_THRESHOLD_QUANTILE = 0.99
# k=7 over each input's value and its rolling mean and spread across its last 24 rows, and two
# more KMeans over the same transforms across 2 rows and a day of 5-minute rows (288), each time
# scale judged by its own likelihood. A row's anomaly score is the highest of the scales'
# likelihoods (each further scale's weighed by how often it draws a fresh recent mean) of the
# mean of its series' last 10 distances against the same means over the series' last 14 days
# (rows at the training data's sampling interval), or 1 for a value past the series' range so far
# by 5% of it; an alert at 0.999999999; then no other alert for the series within 18 hours
# of its timestamps, unless a value passes its range further still. k and span
# were set on NAB's AWS files; the rest was chosen by leave-one-category-out cross-validation
# over NAB's six labelled categories (docs/quality.md).
DEFAULT_HISTORY = ("value", "mean", "std")
DEFAULT_SPAN = 24
DEFAULT_SCORE_KIND = SCORE_LIKELIHOOD
DEFAULT_LIKELIHOOD_WINDOW = "14d"
DEFAULT_LIKELIHOOD_RECENT = 10
DEFAULT_ALERT_THRESHOLD = 0.999999999
# Time between the rows' timestamps, so a series with gaps is not held quiet for longer.
DEFAULT_COOLDOWN = "18h"
DEFAULT_RANGE_TOLERANCE: float | None = 0.05
DEFAULT_REARM_AFTER: int | None = None
# Further time scales (core/scales.py): spans, in rows, of more KMeans over the same transforms,
# each judged by its own likelihood: the likelihood score's default (the distance score has none).
DEFAULT_SCALES: tuple[int, ...] = (2, 288)


def parse_cooldown(text) -> WindowLength:
    """``--cooldown``: whole rows (0 for none), or a duration such as 18h between rows' timestamps."""
    text = str(text).strip()
    if text.isdigit():
        return WindowLength(rows=int(text), text=text)
    try:
        return parse_window(text)
    except UserError:
        raise UserError(
            f"cooldown: expected a whole number of rows or a duration such as 18h, 90min or 2d; got {text!r}"
        ) from None


@dataclass(frozen=True)
class HistorySpec:
    """The history features and the alert policy: training params that travel in the model."""

    history: tuple[str, ...] = DEFAULT_HISTORY
    span: int = DEFAULT_SPAN
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    # Rows, or a duration: time between the rows' timestamps (and rows at the training data's
    # sampling interval for rows without times).
    cooldown: WindowLength = parse_cooldown(DEFAULT_COOLDOWN)
    score_kind: str = DEFAULT_SCORE_KIND
    # Rows, or a duration that fit_model turns into rows at its training data's sampling interval.
    likelihood_window: WindowLength = parse_window(DEFAULT_LIKELIHOOD_WINDOW)
    likelihood_recent: int = DEFAULT_LIKELIHOOD_RECENT
    range_tolerance: float | None = DEFAULT_RANGE_TOLERANCE
    rearm_after: int | None = DEFAULT_REARM_AFTER
    # None: DEFAULT_SCALES with the likelihood score over a rolling mean or spread, none otherwise.
    scales: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.scales is None:
            auto = DEFAULT_SCALES if self.score_kind == SCORE_LIKELIHOOD and windowed(self.history) else ()
            object.__setattr__(self, "scales", auto)

    def vector_columns(self, features) -> list[str]:
        return [derived_name(f, t) for f in features for t in self.history]

    @property
    def warmup_rows(self) -> int:
        """A series' first rows, which a model of these settings scores but lets raise no alert
        (of a spec in rows: see ``at_interval``)."""
        own = warmup_rows(self.history, self.span, self.score_kind, self.likelihood_window.rows_at(None))
        return max([own] + [tail_rows(list(self.history), span) for span in self.scales])

    @property
    def measures_interval(self) -> bool:
        """Whether a window given in time needs the training data's sampling interval."""
        return self.cooldown.rows is None or (
            self.likelihood_window.rows is None and self.score_kind == SCORE_LIKELIHOOD
        )

    def at_interval(self, interval_seconds: float | None) -> HistorySpec:
        """These settings with the likelihood window and the cooldown in rows at data sampled every
        ``interval_seconds`` (a score without the likelihood has no use for the window, and gets 0
        rows; a cooldown in time keeps its seconds, which rows with timestamps go by)."""
        spec = self
        if spec.likelihood_window.rows is None:
            rows = spec.likelihood_window.rows_at(interval_seconds) if spec.score_kind == SCORE_LIKELIHOOD else 0
            spec = replace(spec, likelihood_window=WindowLength(rows=rows, text=spec.likelihood_window.text))
        if spec.cooldown.rows is None:
            if interval_seconds is None or not interval_seconds > 0:
                raise UserError(
                    f"a cooldown of {spec.cooldown.text} needs the training data's timestamps, for rows that "
                    "come without times, and they give no interval: give the cooldown in rows instead (e.g. 216)"
                )
            rows = spec.cooldown.rows_at(interval_seconds)
            spec = replace(spec, cooldown=WindowLength(rows, spec.cooldown.seconds, spec.cooldown.text))
        return spec


# The original model: each row's own values, its distance as the score, an alert per anomalous row.
ORIGINAL_SPEC = HistorySpec(
    ("value",), 1, 0.5, WindowLength(rows=0, text="0"), SCORE_DISTANCE, WindowLength(rows=0), 1, None, None, ()
)


def spec_from_args(args) -> HistorySpec:
    """The history features and alert policy that ``add_model_settings``' options name."""
    return HistorySpec(
        parse_history(args.history),
        args.span,
        args.alert_threshold,
        args.cooldown if isinstance(args.cooldown, WindowLength) else parse_cooldown(args.cooldown),
        args.score,
        args.likelihood_window,
        args.likelihood_recent,
        args.range_tolerance,
        args.rearm_after,
        getattr(args, "scales", None),
    )


def parse_range_tolerance(text: str) -> float | None:
    """``--range-tolerance``: a fraction of a series' range, or 'none' to leave the range out."""
    if text.strip().lower() == "none":
        return None
    try:
        tolerance = float(text)
    except ValueError:
        raise UserError(f"range tolerance: expected a number or 'none', got {text!r}") from None
    if not tolerance >= 0:
        raise UserError(f"range tolerance must be at least 0, got {text!r}")
    return tolerance


def range_tolerance_text(tolerance: float | None) -> str:
    return "none" if tolerance is None else f"{tolerance:g}"


def parse_rearm_after(text: str) -> int | None:
    """``--rearm-after``: rows below the alert threshold that end an incident, or 'none'."""
    if text.strip().lower() == "none":
        return None
    try:
        rows = int(text)
    except ValueError:
        raise UserError(f"rearm after: expected a whole number of rows or 'none', got {text!r}") from None
    if rows < 1:
        raise UserError(f"rearm after must be at least 1 row, got {text!r}")
    return rows


def rearm_after_text(rows: int | None) -> str:
    return "none" if rows is None else str(rows)


def parse_scales(text: str) -> tuple[int, ...] | None:
    """``--scales``: comma-separated spans of further time scales, in rows; 'none'; or 'auto' (None):
    train's scales with the likelihood score over a rolling mean or std, none otherwise."""
    if text.strip().lower() == "auto":
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        spans = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise UserError(f"scales: expected comma-separated spans in rows or 'none', got {text!r}") from None
    if not spans or min(spans) < 1 or len(set(spans)) != len(spans):
        raise UserError(f"scales: expected distinct spans of at least 1 row, got {text!r}")
    return spans


def scales_text(spans: tuple[int, ...] | None) -> str:
    """``--scales`` as given ('auto' for None): what ``mlflow run`` logs for the parameter."""
    return "auto" if spans is None else ",".join(map(str, spans)) or "none"


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
            type=parse_cooldown,
            default=parse_cooldown(DEFAULT_COOLDOWN),
            help="how long after an alert a series raises no other: a duration between its rows' timestamps "
            "(18h, 90min; rows at the training data's sampling interval where rows carry no time) or rows (216)",
        ),
        "score": dict(
            default=DEFAULT_SCORE_KIND,
            choices=SCORE_KINDS,
            help="the anomaly score: the distance against the model's threshold, or the likelihood of the "
            "distance against the series' own recent distances (then the alert threshold is near 1)",
        ),
        "likelihood-window": dict(
            type=parse_window,
            default=parse_window(DEFAULT_LIKELIHOOD_WINDOW),
            help="with --score likelihood: how far back a series' distances make its normal, in time "
            "(14d, 36h, 90min: rows at the training data's sampling interval) or in rows (4032)",
        ),
        "likelihood-recent": dict(
            type=int,
            default=DEFAULT_LIKELIHOOD_RECENT,
            help="with --score likelihood: rows whose mean distance is judged against that normal",
        ),
        "range-tolerance": dict(
            type=parse_range_tolerance,
            default=DEFAULT_RANGE_TOLERANCE,
            help="a value past its series' range so far by more than this fraction of it scores 1 "
            "('none': leave the range out)",
        ),
        "rearm-after": dict(
            type=parse_rearm_after,
            default=DEFAULT_REARM_AFTER,
            help="within the cooldown, alert again once this many rows of the series scored below the "
            "alert threshold: its incident is over ('none': the cooldown alone)",
        ),
        "scales": dict(
            type=parse_scales,
            default=None,
            help="with --score likelihood: spans (rows) of further time scales, a KMeans each over the same "
            "transforms, judged by its own likelihood; a row scores as its most surprised scale, weighed by "
            "how often each draws a fresh recent mean ('none': one "
            f"scale; 'auto', the default: {scales_text(DEFAULT_SCALES)} with the likelihood over a rolling mean "
            "or std, none otherwise)",
        ),
    }
    for name, spec in options.items():
        if name not in leave_out:
            parser.add_argument(f"--{name}", **spec)
