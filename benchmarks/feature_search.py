"""Offline search over history features and alert settings: the harness behind the README's
"What else was tried" figures.

Input: a NAB copy (``--nab-dir``, default ``$NAB_DATA_DIR``). For each labelled file it computes
the history features with the core's ``history_features``, fits scikit-learn KMeans (a
benchmark-only dependency: fast enough to try many configurations) on the probationary rows,
scores d / (d + threshold) as the core does, raises alerts with the core's ``apply_alerts``
(warm-up included) and sweeps one corpus threshold per configuration with NAB's rules.
Output: one line per configuration and seed with the standard-profile score. The chosen
configuration's reported score comes from ``replay.nab_benchmark`` (Spark), not from here.

    python -m benchmarks.feature_search --history mean,std --spans 12,18,24,36 --ks 5,7 --cooldowns 144,216
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError, exit_process, main_guard


def labelled_series(nab_dir: Path):
    from replay.nab_scoring import load_windows, window_rows

    windows = load_windows(nab_dir / "labels" / "combined_windows.json")
    for path in sorted((nab_dir / "data" / "realAWSCloudwatch").glob("*.csv")):
        if path.name in windows:
            frame = pd.read_csv(path)
            yield frame["value"].to_numpy(float), window_rows(pd.to_datetime(frame["timestamp"]), windows[path.name])


def file_scores(values, history, span, k, seed, quantile) -> np.ndarray:
    from sklearn.cluster import KMeans

    from core.history import history_features
    from replay.nab_scoring import probationary_rows

    vectors, _ = history_features(history, span, values[:, None], [])
    train = vectors[: probationary_rows(len(values))]
    std = train.std(axis=0)
    scaled = (vectors - train.mean(axis=0)) * np.where(std > 0, 1 / np.where(std > 0, std, 1), 0)
    model = KMeans(min(k, len(train)), n_init=1, random_state=seed, max_iter=20).fit(scaled[: len(train)])
    distance = np.sqrt(((scaled[:, None, :] - model.cluster_centers_[None]) ** 2).sum(axis=2)).min(axis=1)
    threshold = np.quantile(distance[: len(train)], quantile)
    return distance / (distance + threshold) if threshold > 0 else (distance > 0).astype(float)


def corpus_score(files, scores, cooldown: int, warmup: int) -> tuple[float, float]:
    from replay.nab_benchmark import alert_detector
    from replay.nab_scoring import best_threshold

    every = np.concatenate(scores)
    candidates = np.unique(np.quantile(every, np.linspace(0.5, 1.0, 401)))
    return best_threshold(
        [(s, spans) for s, (_, spans) in zip(scores, files)], "standard", candidates, alert_detector(cooldown, warmup)
    )


@main_guard
def main(argv=None) -> int:
    from core.scoring import tail_rows

    parser = argparse.ArgumentParser(description="Try history features and alert settings on NAB.")
    parser.add_argument("--nab-dir", default=os.environ.get("NAB_DATA_DIR", ""))
    parser.add_argument("--history", action="append", default=[], help="e.g. mean,std (repeatable)")
    parser.add_argument("--spans", default="24")
    parser.add_argument("--ks", default="7")
    parser.add_argument("--cooldowns", default="216")
    parser.add_argument("--seeds", default="1,7,42")
    parser.add_argument("--quantile", type=float, default=0.99)
    args = parser.parse_args(argv)
    if not args.nab_dir or not Path(args.nab_dir, "labels").is_dir():
        raise UserError("set --nab-dir (or NAB_DATA_DIR) to a NAB copy; see README 'Getting NAB'")
    files = list(labelled_series(Path(args.nab_dir)))
    numbers = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
    print("history span k cooldown seed standard")
    for history in [h.split(",") for h in (args.history or ["mean,std"])]:
        for span in numbers(args.spans):
            for k in numbers(args.ks):
                for seed in numbers(args.seeds):
                    scores = [file_scores(v, history, span, k, seed, args.quantile) for v, _ in files]
                    for cooldown in numbers(args.cooldowns):
                        _, value = corpus_score(files, scores, cooldown, tail_rows(history, span))
                        print(f"{','.join(history)} {span} {k} {cooldown} {seed} {value:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    exit_process(main())
