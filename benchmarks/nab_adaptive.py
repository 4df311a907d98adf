"""Offline harness: adaptive alert policies on the cross-validation's cached model scores.

Not the deployed detector. Input: a NAB root and the cache that ``replay.cross_validation``
left under ``--cv-out`` (each file's model scores, one folder per k and span). Each policy
turns a file's scores into alerts; ``replay.cross_validation.cross_validate`` then chooses
the policy's settings leave-one-category-out, exactly as for the deployed alert policy.
Policies:
- ``rows``: the deployed policy (alert threshold, cooldown in rows), for reference;
- ``hours``: the same with the cooldown in hours, turned into rows by each file's median
  interval;
- ``likelihood``: an anomaly likelihood in the spirit of Ahmad et al. (2017): the distance
  ratio d / t (= s / (1 - s)) averaged over a short window, judged against the mean and spread
  of the same series' ratio over a long trailing window by the Gaussian tail Q(z); an alert
  when Q(z) <= eps (the likelihood 1 - Q(z) >= 1 - eps), then the cooldown in rows.
Output: per policy and profile, out-of-fold and in-sample scores per category and pooled.

    python -m benchmarks.nab_adaptive --nab-root $NAB_DATA_DIR --cv-out data/cv
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError, exit_process, main_guard


@dataclass(frozen=True)
class Policy:
    kind: str
    k: int
    span: int
    level: float  # alert threshold (rows, hours) or eps (likelihood)
    cooldown: float  # rows, or hours for "hours"
    long: int = 0  # likelihood: trailing window, rows
    short: int = 1  # likelihood: averaging window, rows

    def label(self) -> str:
        base = f"k={self.k}, span={self.span}"
        if self.kind == "likelihood":
            return f"{base}, eps {self.level:g}, long {self.long}, short {self.short}, cooldown {self.cooldown:g}"
        unit = "h" if self.kind == "hours" else " rows"
        return f"{base}, alert {self.level:g}, cooldown {self.cooldown:g}{unit}"


def tail_log10(scores: np.ndarray, long: int, short: int) -> np.ndarray:
    """-log10 Q(z) of each row's short-window mean ratio against the trailing long window."""
    from scipy.special import log_ndtr

    ratio = pd.Series(scores / (1.0 - scores))
    mean = ratio.rolling(long, min_periods=min(long, 50)).mean()
    std = ratio.rolling(long, min_periods=min(long, 50)).std(ddof=0)
    recent = ratio.rolling(short, min_periods=1).mean()
    z = ((recent - mean) / std.clip(lower=1e-9)).to_numpy()
    return -log_ndtr(-z) / np.log(10.0)  # Q(z) = Phi(-z), in log space so tiny tails stay exact


def median_minutes(path: Path) -> float:
    stamps = pd.to_datetime(pd.read_csv(path, usecols=["timestamp"])["timestamp"])
    return float(np.median(np.diff(stamps.to_numpy()).astype("timedelta64[s]").astype(float)) / 60.0)


def policy_alerts(policy: Policy, scores: np.ndarray, minutes: float, cache: dict) -> np.ndarray:
    from core.scoring import tail_rows
    from replay.nab_benchmark import alert_detector

    warmup = tail_rows(["mean", "std"], policy.span)
    if policy.kind == "likelihood":
        key = (policy.k, policy.span, policy.long, policy.short, id(scores))
        if key not in cache:
            cache[key] = tail_log10(scores, policy.long, policy.short)
        return alert_detector(int(policy.cooldown), warmup)(cache[key], -np.log10(policy.level))
    rows = int(policy.cooldown) if policy.kind == "rows" else int(round(policy.cooldown * 60.0 / minutes))
    return alert_detector(rows, warmup)(scores, policy.level)


def policy_table(files, scores, minutes, policies) -> np.ndarray:
    from replay.cross_validation import profile_parts
    from replay.nab_scoring import PROFILES

    table = np.zeros((len(policies), len(files), len(PROFILES), 3))
    cache: dict = {}
    for s, policy in enumerate(policies):
        for f, item in enumerate(files):
            flags = policy_alerts(policy, scores[(policy.k, policy.span)][f], minutes[f], cache)
            table[s, f] = profile_parts(flags, item.spans)
    return table


def print_report(name: str, report: dict, policies: list[Policy], counts: dict) -> None:
    for profile, result in report.items():
        cells = []
        for category in counts:
            c = result["categories"][category]
            oof = f"{c['out_of_fold']:.1f}" if np.isfinite(c["out_of_fold"]) else f"({c['raw_out_of_fold']:+.2f})"
            ins = f"{c['in_sample']:.1f}" if np.isfinite(c["in_sample"]) else f"({c['raw_in_sample']:+.2f})"
            cells.append(f"{category} {oof}/{ins}")
        print(
            f"{name} {profile}: pooled out-of-fold {result['out_of_fold']:.1f}, in-sample {result['in_sample']:.1f} "
            f"({policies[result['in_sample_setting']].label()}); " + "; ".join(cells),
            flush=True,
        )


@main_guard
def main(argv=None) -> int:
    from replay.cross_validation import cross_validate, labelled_files
    from replay.cv_grid import numbers

    parser = argparse.ArgumentParser(description="Adaptive alert policies on NAB, cross-validated offline.")
    parser.add_argument("--nab-root", required=True)
    parser.add_argument("--cv-out", default="data/cv", help="replay.cross_validation's --out (its cache)")
    parser.add_argument("--models", default="7:24", help="k:span pairs whose cached scores to use")
    parser.add_argument("--policies", default="rows,hours,likelihood")
    parser.add_argument("--thresholds", default="0.6,0.65,0.7,0.75,0.8,0.85,0.9")
    parser.add_argument("--cooldowns", default="0,36,72,144,216,288")
    parser.add_argument("--hours", default="0,3,6,12,18,24,48")
    parser.add_argument("--eps", default="0.01,0.001,0.0001,0.00001")
    parser.add_argument("--longs", default="288,1152,4032")
    parser.add_argument("--shorts", default="1,10")
    parser.add_argument("--likelihood-cooldowns", default="0,72,216")
    args = parser.parse_args(argv)
    files = labelled_files(Path(args.nab_root))
    models = [tuple(int(v) for v in pair.split(":")) for pair in args.models.split(",")]
    scores = {}
    for k, span in models:
        folder = next(Path(args.cv_out, "cache").glob(f"k{k}-span{span}-mean+std-*"), None)
        if folder is None:
            raise UserError(f"no cached scores for k={k} span={span} under {args.cv_out}; run replay.cross_validation")
        scores[(k, span)] = [np.load(folder / f.category / f"{f.path.stem}.npy") for f in files]
    minutes = [median_minutes(f.path) for f in files]
    categories = [f.category for f in files]
    counts = {c: categories.count(c) for c in sorted(set(categories))}
    grids = {
        "rows": lambda k, s: [
            Policy("rows", k, s, t, c) for t, c in itertools.product(numbers(args.thresholds), numbers(args.cooldowns))
        ],
        "hours": lambda k, s: [
            Policy("hours", k, s, t, h) for t, h in itertools.product(numbers(args.thresholds), numbers(args.hours))
        ],
        "likelihood": lambda k, s: [
            Policy("likelihood", k, s, e, c, lo, sh)
            for e, c, lo, sh in itertools.product(
                numbers(args.eps),
                numbers(args.likelihood_cooldowns),
                numbers(args.longs, int),
                numbers(args.shorts, int),
            )
        ],
    }
    for name in args.policies.split(","):
        policies = [p for k, span in models for p in grids[name](k, span)]
        report = cross_validate(policy_table(files, scores, minutes, policies), categories, None)
        print_report(name, report, policies, counts)
    return 0


if __name__ == "__main__":
    exit_process(main())
