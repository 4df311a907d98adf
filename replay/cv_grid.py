"""The cross-validation's grid: the settings it tries (``Setting``), made from its options, and
their one-line description for the report (``replay.cross_validation`` scores them)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from core.errors import UserError


@dataclass(frozen=True)
class Setting:
    k: int
    span: int
    alert_threshold: float
    cooldown: str  # rows or a duration between the rows' timestamps (training.config.parse_cooldown)
    score: str = "distance"
    likelihood_window: str = ""  # rows or a duration (training.sampling.parse_window)
    likelihood_recent: int = 1
    range_tolerance: float | None = None
    history: str = "mean,std"
    rearm_after: int | None = None
    scales: str = ""  # further time scales' spans, comma-separated ("" for none; core/scales.py)

    @property
    def spans(self) -> tuple[int, ...]:
        """The model's own span, then its further time scales'."""
        return (self.span, *(int(s) for s in self.scales.split(",") if s))

    def label(self) -> str:
        policy = f"alert {self.alert_threshold:.12g}, cooldown {window_text(self.cooldown)}"
        if self.score == "likelihood":
            policy = (
                f"likelihood over {window_text(self.likelihood_window)} (recent {self.likelihood_recent}), "
                f"alert {self.alert_threshold:.12g}, cooldown {window_text(self.cooldown)}"
            )
        if self.range_tolerance is not None:
            policy += f", range tolerance {self.range_tolerance:g}"
        if self.rearm_after is not None:
            policy += f", re-armed after {self.rearm_after} quiet rows"
        spans = f"span={self.span}" + (f" and time scales {self.scales}" if self.scales else "")
        return f"{self.history}, k={self.k}, {spans}, {policy}"


def window_text(window: str) -> str:
    return f"{window} rows" if window.isdigit() else window


def windows(text: str) -> list[str]:
    """The likelihood windows to try, each checked as train checks ``--likelihood-window``."""
    from training.sampling import parse_window

    return [parse_window(w).text for w in text.split(",") if w.strip()]


def cooldowns(text: str) -> list[str]:
    """The cooldowns to try, each checked as train checks ``--cooldown``."""
    from training.config import parse_cooldown

    return [parse_cooldown(c).text for c in text.split(",") if c.strip()]


def numbers(text: str, kind=float) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"expected a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise UserError(f"expected at least one number, got {text!r}")
    return values


def grid_settings(args) -> tuple[list[Setting], int | None]:
    """Every setting the options name, and the index of train's defaults among them (None when
    the grid leaves them out)."""
    from training.config import (
        DEFAULT_ALERT_THRESHOLD,
        DEFAULT_COOLDOWN,
        DEFAULT_HISTORY,
        DEFAULT_K,
        DEFAULT_LIKELIHOOD_RECENT,
        DEFAULT_LIKELIHOOD_WINDOW,
        DEFAULT_RANGE_TOLERANCE,
        DEFAULT_REARM_AFTER,
        DEFAULT_SCALES,
        DEFAULT_SCORE_KIND,
        DEFAULT_SPAN,
        parse_history,
        parse_range_tolerance,
        parse_rearm_after,
        parse_scales,
    )

    ks, spans = numbers(args.ks, int), numbers(args.spans, int)
    thresholds = numbers(args.alert_thresholds)
    settings = [Setting(*combo) for combo in itertools.product(ks, spans, thresholds, cooldowns(args.cooldowns))]
    if args.likelihood_windows != "none":
        settings += [
            Setting(k, span, level, cooldown, "likelihood", window, recent)
            for k, span, level, cooldown, window, recent in itertools.product(
                ks,
                spans,
                numbers(args.likelihood_thresholds),
                cooldowns(args.likelihood_cooldowns),
                windows(args.likelihood_windows),
                numbers(args.likelihood_recents, int),
            )
        ]
    defaults = Setting(DEFAULT_K, DEFAULT_SPAN, DEFAULT_ALERT_THRESHOLD, DEFAULT_COOLDOWN)
    if DEFAULT_SCORE_KIND == "likelihood":
        defaults = Setting(
            DEFAULT_K,
            DEFAULT_SPAN,
            DEFAULT_ALERT_THRESHOLD,
            DEFAULT_COOLDOWN,
            DEFAULT_SCORE_KIND,
            DEFAULT_LIKELIHOOD_WINDOW,
            DEFAULT_LIKELIHOOD_RECENT,
        )
    tolerances = [parse_range_tolerance(t) for t in args.range_tolerances.split(",")]
    histories = [",".join(parse_history(h)) for h in args.histories.split(";")]
    rearms = [parse_rearm_after(r) for r in args.rearm_afters.split(",")]
    # Further time scales are judged by a likelihood each, so they go with the likelihood score only.
    # 'auto' is train's choice for the likelihood: its default scales.
    scale_options = [
        ",".join(map(str, DEFAULT_SCALES if (spans := parse_scales(text)) is None else spans))
        for text in args.scales_options.split(";")
    ]
    settings = [
        replace(s, range_tolerance=t, history=h, rearm_after=r, scales=sc)
        for h in histories
        for sc in scale_options
        for t in tolerances
        for r in rearms
        for s in settings
        if not sc or s.score == "likelihood"
    ]
    defaults = replace(
        defaults,
        range_tolerance=DEFAULT_RANGE_TOLERANCE,
        history=",".join(DEFAULT_HISTORY),
        rearm_after=DEFAULT_REARM_AFTER,
        scales=",".join(map(str, DEFAULT_SCALES)),
    )
    default = settings.index(defaults) if defaults in settings else None
    return settings, default


def grid_text(args, count: int) -> str:
    """The grid in a sentence, for the report's first line."""
    grid = (
        f"history {args.histories.replace(';', ' or ')}; k {args.ks}; span {args.spans} rows; "
        f"alert threshold {args.alert_thresholds} on the distance score; cooldown {args.cooldowns}"
    )
    if args.likelihood_windows != "none":
        grid += (
            f"; and the likelihood score over {args.likelihood_windows} (in time: rows at each file's sampling "
            f"interval; recent mean of "
            f"{args.likelihood_recents}), alert threshold {args.likelihood_thresholds}, cooldown "
            f"{args.likelihood_cooldowns} (in time: between the rows' timestamps)"
        )
    grid += f"; each with the range tolerance {args.range_tolerances} and re-armed after {args.rearm_afters} quiet rows"
    if args.scales_options != "none":
        grid += f"; the likelihood with further time scales {args.scales_options.replace(';', ' or ')} rows"
    return grid + f" ({count} settings)"
