"""Offline harness: model variants (multi-scale features, normal that follows drift) on NAB,
cross-validated leave-one-category-out as ``replay.cross_validation`` chooses the deployed settings.

Not the deployed detector: a replica that is fast enough to try what the core does not do yet.
Per labelled file it builds the core's history features (``core.history``) at one or more spans,
standardises them on the probationary period, fits training's in-driver KMeans
(``training.kmeans_large.kmeans_plus_plus``) there, and takes each row's distance to the nearest
centroid; the core's likelihood and alert policy (``core.likelihood``, ``core.scoring``) turn the
distances into alerts, and NAB's rules score them (``replay.nab_scoring``).
Variants, each a grid dimension the folds choose from like any other setting:
- ``--features``: feature sets, ``;``-separated, each ``transform@span`` comma-separated
  (``value@1,mean@24,std@24`` is train's default; ``mean@6,std@6,mean@24,std@24`` two time scales
  in one KMeans). A set of ``|``-separated parts is an ensemble over time scales: one KMeans per
  part, each judged by its own likelihood, and a row scores the highest of them
  (``value@1,mean@24,std@24|value@1,mean@2,std@2``);
- ``--drift``: how a series' normal follows it past the probationary period, comma-separated:
  ``none``; ``centroids:RATE:BLOCK`` moves each centroid toward the mean of the rows that were
  nearest it, once per ``BLOCK`` rows, as ``RATE`` per row would (online KMeans when BLOCK is 1);
  ``shift:RATE`` subtracts an exponentially weighted mean of the standardised features.
The alert policy is the core's: the series' range (``--range-tolerance``, ``none`` to leave it
out) scores a row 1, then threshold, cooldown and re-arming (``--rearms``); the likelihood's window
is rows or a duration (``14d``, each file's rows at its probationary sampling interval, as
train turns it into rows).
Output: per variant and for the whole grid, the pooled out-of-fold and in-sample NAB scores per
profile and per category, and the variant each fold chose.

    python -m benchmarks.nab_variants --nab-root $NAB_DATA_DIR
    python -m benchmarks.nab_variants --nab-root $NAB_DATA_DIR --drift none,centroids:0.003:1,centroids:0.003:64
    python -m benchmarks.nab_variants --nab-root $NAB_DATA_DIR --drift none \
        --features "value@1,mean@24,std@24;value@1,mean@24,std@24|value@1,mean@2,std@2"
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError, exit_process, main_guard


def features(values: np.ndarray, spec: list[tuple[str, int]]) -> np.ndarray:
    """The core's history features of one series, each transform at its own span."""
    from core.history import history_features

    columns = [history_features([transform], span, values[:, None], [])[0] for transform, span in spec]
    return np.hstack(columns)


def parse_features(text: str) -> list[tuple[str, int]]:
    spec = []
    for item in text.split(","):
        transform, _, span = item.strip().partition("@")
        if transform not in ("mean", "std", "value", "delta") or not span.isdigit():
            raise UserError(f"--features: {item!r} is not transform@span (mean, std, value or delta)")
        spec.append((transform, int(span)))
    return spec


def parse_ensemble(text: str) -> list[list[tuple[str, int]]]:
    """One feature set per model of a variant: ``|`` separates the time scales of an ensemble."""
    return [parse_features(part) for part in text.split("|")]


def parse_rearms(text: str) -> list[int | None]:
    """Re-arming settings: rows, or ``none`` for the cooldown alone."""
    from replay.cv_grid import numbers

    return [None if item.strip().lower() == "none" else numbers(item, int)[0] for item in text.split(",")]


def drifted_distances(z: np.ndarray, centroids: np.ndarray, start: int, drift: str) -> np.ndarray:
    """Each row's distance to its nearest centroid while the series' normal follows ``drift``
    from row ``start`` on (rows before it are scored against the fitted centroids)."""
    from core.distances import squared_distances

    kind, *numbers = drift.split(":")
    if kind == "none":
        return np.sqrt(squared_distances(z, centroids).min(axis=1))
    if kind == "shift":
        rate = float(numbers[0])
        shift = np.zeros_like(z)
        level = np.zeros(z.shape[1])
        for i in range(start, len(z)):
            shift[i] = level  # judged against the normal before the row moves it
            level = (1.0 - rate) * level + rate * z[i]
        return np.sqrt(squared_distances(z - shift, centroids).min(axis=1))
    if kind == "centroids":
        rate, block = float(numbers[0]), int(numbers[1])
        centres = centroids.copy()
        distances = np.empty(len(z))
        for first in range(0, len(z), block):
            rows = z[first : first + block]
            squared = squared_distances(rows, centres)
            nearest = squared.argmin(axis=1)
            distances[first : first + len(rows)] = np.sqrt(squared[np.arange(len(rows)), nearest])
            if first >= start and len(rows) == block:
                for centre in np.unique(nearest):
                    mine = rows[nearest == centre]
                    weight = 1.0 - (1.0 - rate) ** len(mine)  # as len(mine) steps of ``rate`` would
                    centres[centre] += weight * (mine.mean(axis=0) - centres[centre])
        return distances
    raise UserError(f"--drift: {drift!r} is not none, centroids:RATE:BLOCK or shift:RATE")


def file_distances(values: np.ndarray, spec, drift: str, k: int, seed: int, max_iter: int) -> np.ndarray:
    from replay.nab_scoring import probationary_rows
    from training.kmeans_large import kmeans_plus_plus

    x = features(values, spec)
    probation = probationary_rows(len(values))
    mean, std = x[:probation].mean(axis=0), x[:probation].std(axis=0)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    centroids = kmeans_plus_plus(z[:probation], min(k, probation), seed, max_iter)
    return drifted_distances(z, centroids, probation, drift)


def file_range_flags(values: np.ndarray, tolerance: float | None) -> np.ndarray:
    """The core's range flags of a file's rows, the range starting from its probationary rows."""
    from core.value_range import range_flags
    from replay.nab_scoring import probationary_rows

    if tolerance is None:
        return np.zeros(len(values), dtype=bool)
    trained = values[: probationary_rows(len(values))]
    return range_flags(values[:, None], [[trained.min(), trained.max()]], tolerance)[0]


def ensemble_scores(distances: list[np.ndarray], window: int, recent: int, out_of_range: np.ndarray) -> np.ndarray:
    """A file's scores from its models' distances (one per time scale): each judged by its own
    likelihood, a row scores as its most surprised scale, and 1 where its value is out of range."""
    from core.likelihood import likelihood_scores

    judged = [likelihood_scores(d, None, window, recent)[0] for d in distances]
    return np.where(out_of_range, 1.0, np.maximum.reduce(judged))


def variant_table(files, values, variants, args) -> tuple[np.ndarray, list]:
    """NAB's (raw, null, perfect) per setting, file and profile, and the settings."""
    from core.history import tail_rows
    from core.likelihood import likelihood_warmup
    from replay.cross_validation import profile_parts
    from replay.cv_grid import numbers
    from replay.nab_benchmark import alert_detector
    from replay.nab_scoring import PROFILES
    from training.sampling import parse_window

    window = parse_window(args.window)
    windows = [window.rows_at(item.interval) for item in files]
    tolerance = None if str(args.range_tolerance).lower() == "none" else float(args.range_tolerance)
    out_of_range = [file_range_flags(series, tolerance) for series in values]
    policies = list(
        itertools.product(
            numbers(args.recents, int),
            numbers(args.likelihood_thresholds),
            numbers(args.cooldowns, int),
            parse_rearms(args.rearms),
        )
    )
    settings, rows = [], []
    for features_text, drift in variants:
        models = parse_ensemble(features_text)
        longest = max(span for spec in models for _, span in spec)
        distances = [
            [file_distances(series, spec, drift, args.k, args.seed, args.max_iter) for series in values]
            for spec in models
        ]
        judged = {
            recent: [
                ensemble_scores([d[f] for d in distances], windows[f], recent, out_of_range[f])
                for f in range(len(files))
            ]
            for recent in numbers(args.recents, int)
        }
        for recent, threshold, cooldown, rearm in policies:
            settings.append((features_text, drift, recent, threshold, cooldown, rearm))
            table = np.zeros((len(files), len(PROFILES), 3))
            for f, item in enumerate(files):
                warmup = max(tail_rows(["mean", "std"], longest), likelihood_warmup(windows[f]))
                detect = alert_detector(cooldown, warmup, rearm)
                table[f] = profile_parts(detect(judged[recent][f], threshold), item.spans)
            rows.append(table)
    return np.stack(rows), settings


def report_line(name: str, report: dict, settings: list, counts: dict) -> str:
    from replay.cv_report import PROFILE_TITLES

    profiles = "; ".join(f"{PROFILE_TITLES[p]} {r['out_of_fold']:.1f}/{r['in_sample']:.1f}" for p, r in report.items())
    standard = report["standard"]["categories"]
    per_category = ", ".join(
        f"{c} {standard[c]['out_of_fold']:.1f}/{standard[c]['in_sample']:.1f}"
        for c in counts
        if np.isfinite(standard[c]["out_of_fold"])
    )
    chosen = sorted({settings[standard[c]["chosen"]][:2] for c in counts})
    return (
        f"{name}: pooled out-of-fold/in-sample {profiles} | standard by category: {per_category} "
        f"| variants the folds chose: {chosen}"
    )


@main_guard
def main(argv=None) -> int:
    from replay.cross_validation import cross_validate, labelled_files

    parser = argparse.ArgumentParser(description="Model variants on NAB, cross-validated offline.")
    parser.add_argument("--nab-root", required=True, help="a NAB root: data/<category>/*.csv and labels/")
    parser.add_argument(
        "--features",
        default=(
            "value@1,mean@24,std@24;value@1,mean@2,std@2,mean@24,std@24;"
            "value@1,mean@24,std@24|value@1,mean@2,std@2;"
            "value@1,mean@24,std@24|value@1,mean@2,std@2|value@1,mean@288,std@288"
        ),
    )
    parser.add_argument("--drift", default="none", help="e.g. none,centroids:0.003:1,centroids:0.003:64,shift:0.001")
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--window", default="14d", help="the likelihood's history window: rows or a duration")
    parser.add_argument("--recents", default="10")
    parser.add_argument("--likelihood-thresholds", default="0.99999,0.999999,0.9999999,0.99999999,0.999999999")
    parser.add_argument("--cooldowns", default="72,216,432")
    parser.add_argument("--rearms", default="none,6,12", help="rows, or none: the cooldown alone")
    parser.add_argument("--range-tolerance", default="0.05", help="a fraction, or none: no range")
    args = parser.parse_args(argv)
    files = labelled_files(Path(args.nab_root))
    values = [pd.read_csv(item.path)["value"].to_numpy(float) for item in files]
    categories = [item.category for item in files]
    counts = {c: categories.count(c) for c in sorted(set(categories))}
    variants = list(itertools.product(args.features.split(";"), args.drift.split(",")))
    table, settings = variant_table(files, values, variants, args)
    per_variant = len(settings) // len(variants)
    for v, (features_text, drift) in enumerate(variants):
        part = slice(v * per_variant, (v + 1) * per_variant)
        report = cross_validate(table[part], categories, None)
        print(report_line(f"{features_text} drift {drift}", report, settings[part], counts), flush=True)
    print(report_line("every variant in one grid", cross_validate(table, categories, None), settings, counts))
    return 0


if __name__ == "__main__":
    exit_process(main())
