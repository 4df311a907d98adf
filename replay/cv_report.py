"""The cross-validation's table for people: out-of-fold and in-sample NAB scores per category and
pooled, per profile, of the one setting each fold chose; the setting each fold chose; and each
profile's scores had it chosen its own (``replay.cross_validation`` writes it into
docs/quality.md and logs it to MLflow)."""

from __future__ import annotations

import numpy as np

# The pooled out-of-fold score's interval over files drawn again, as the page states it.
INTERVAL_LEVEL = 0.9
INTERVAL_DRAWS = 1000
PROFILE_TITLES = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}


def cell(value: float | None, raw: float) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if np.isfinite(value) else f"({raw:+.2f})"


def cv_markdown(report: dict, settings: list, counts: dict[str, int], grid: str) -> str:
    """The quality page's tables: out-of-fold and in-sample per category and pooled, per profile
    (``settings``: the grid's ``Setting``s, which the report's choices index)."""
    profiles = list(report)
    head = " | ".join(f"{PROFILE_TITLES[p]} out-of-fold | {PROFILE_TITLES[p]} in-sample" for p in profiles)
    lines = [
        f"Grid: {grid}.",
        "",
        f"| category | files | {head} | defaults, standard |",
        "|---|---|" + "---|" * (2 * len(profiles) + 1),
    ]
    for name, count in counts.items():
        cells = []
        for p in profiles:
            c = report[p]["categories"][name]
            cells += [cell(c["out_of_fold"], c["raw_out_of_fold"]), cell(c["in_sample"], c["raw_in_sample"])]
        c = report["standard"]["categories"][name]
        lines.append(f"| {name} | {count} | {' | '.join(cells)} | {cell(c['defaults'], c['raw_defaults'])} |")
    cells = [f"**{report[p][key]:.1f}**" for p in profiles for key in ("out_of_fold", "in_sample")]
    defaults = report["standard"]["defaults"]
    lines.append(
        f"| **all {sum(counts.values())}, pooled** | {sum(counts.values())} | {' | '.join(cells)} | "
        f"{'' if defaults is None else f'{defaults:.1f}'} |"
    )
    lines += [
        "",
        "A category with no windows shows its raw score (false alerts only) in brackets.",
        "",
        f"How far the pooled out-of-fold scores rest on which files are labelled: their central {INTERVAL_LEVEL:.0%} "
        f"interval over the {sum(counts.values())} files drawn again with replacement ({INTERVAL_DRAWS:,} draws, each "
        "fold's choice held): "
        + "; ".join(
            "{} {:.1f} to {:.1f}".format(PROFILE_TITLES[p], *report[p]["out_of_fold_interval"]) for p in profiles
        )
        + ".",
        "",
        "Settings chosen (one per fold, on the standard profile; every profile above scores it): "
        "held out → chosen on the other categories.",
        "",
        "| held out | setting |",
        "|---|---|",
    ]
    for name in counts:
        lines.append(f"| {name} | {settings[report['standard']['categories'][name]['chosen']].label()} |")
    lines.append(f"| none (in-sample) | {settings[report['standard']['in_sample_setting']].label()} |")
    lines += [
        "",
        "Each profile choosing its own setting instead (as NAB sweeps its threshold per profile), pooled:",
        "",
        "| profile | out-of-fold | in-sample | in-sample setting |",
        "|---|---|---|---|",
    ]
    for p in profiles:
        own = report[p]["own_choice"]
        lines.append(
            f"| {PROFILE_TITLES[p]} | {own['out_of_fold']:.1f} | {own['in_sample']:.1f} | "
            f"{settings[own['in_sample_setting']].label()} |"
        )
    return "\n".join(lines)
