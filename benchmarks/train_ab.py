"""A/B of the train job: this checkout against another commit, run by run in alternation.

Input: a git ref to compare with (``--baseline``, default ``HEAD``), a feature table
(``--data``, or a synthetic one of ``--rows`` rows, as ``benchmarks.speed`` makes them).
Output: each run's fit time (the ``fit_seconds`` the train job logs), wall time, passes, cost
and threshold, then the medians and the ratio (this checkout / baseline).

Each run is the train entry point in a fresh process (cold JVM, as a user runs it), the two
checkouts taking turns (A B, B A, ...), so that a slow phase of the machine weighs on both
alike. Differences in the results (passes, cost, threshold) are printed: a change meant only
to be faster should show none.

    python -m benchmarks.train_ab --baseline HEAD~1 --rows 10000000 --pairs 4
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from core.errors import UserError, exit_process, main_guard
from core.paths import PROJECT_ROOT

RESULT_METRICS = ("kmeans_iterations", "training_cost", "distance_threshold")


def checkout(ref: str, into: Path) -> Path:
    """The project at ``ref``, as a detached git worktree under ``into``."""
    target = into / "baseline"
    result = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", str(target), ref],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"git exited with {result.returncode}"])[-1]
        raise UserError(f"cannot check out {ref!r}: {reason}")
    return target


def train_once(root: Path, data: Path, store: str, train_args: list[str]) -> dict:
    """One train run of the project at ``root``: its fit and wall seconds and its results."""
    from mlflow import MlflowClient

    from benchmarks.train_speed import run_train

    started = time.perf_counter()
    run_id = run_train(store, "--data", str(data), "--model-name", "", *train_args, root=root)
    wall = time.perf_counter() - started
    metrics = MlflowClient(store, store).get_run(run_id).data.metrics
    return {"fit": metrics["fit_seconds"], "wall": wall, **{m: metrics.get(m) for m in RESULT_METRICS}}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Time the train job here against another commit, alternating.")
    parser.add_argument("--baseline", default="HEAD", help="git ref to compare this checkout with")
    parser.add_argument("--data", default="", help="feature table (default: a synthetic one of --rows rows)")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pairs", type=int, default=4, help="runs of each, alternating")
    parser.add_argument(
        "--train-args",
        default="--k 10 --history value",
        help="arguments for training.train (default: as benchmarks.speed trains)",
    )
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


@main_guard
def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train-ab-") as scratch:
        work = Path(scratch)
        data = Path(args.data) if args.data else None
        if data is None:
            from benchmarks.common import synthetic_table

            data = synthetic_table(args.rows, work / f"synthetic-{args.rows}.csv")
        elif not data.exists():
            raise UserError(f"no feature table at {data}")
        baseline = checkout(args.baseline, work)
        roots = {"this checkout": PROJECT_ROOT, f"baseline {args.baseline}": baseline}
        store = f"sqlite:///{work / 'mlflow.db'}"
        runs: dict[str, list[dict]] = {name: [] for name in roots}
        try:
            for pair in range(args.pairs):
                order = list(roots) if pair % 2 == 0 else list(reversed(roots))
                for name in order:
                    runs[name].append(train_once(roots[name], data, store, args.train_args.split()))
                    run = runs[name][-1]
                    print(
                        f"{name:<24} fit {run['fit']:7.2f} s  wall {run['wall']:7.2f} s  "
                        + "  ".join(f"{m} {run[m]:.6g}" for m in RESULT_METRICS if run[m] is not None),
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), "worktree", "remove", "--force", str(baseline)], capture_output=True
            )
    ours, theirs = runs["this checkout"], runs[f"baseline {args.baseline}"]
    fit = [statistics.median(r["fit"] for r in side) for side in (ours, theirs)]
    wall = [statistics.median(r["wall"] for r in side) for side in (ours, theirs)]
    print(f"\nfit median: this checkout {fit[0]:.2f} s, baseline {fit[1]:.2f} s, ratio {fit[0] / fit[1]:.3f}")
    print(f"wall median: this checkout {wall[0]:.2f} s, baseline {wall[1]:.2f} s, ratio {wall[0] / wall[1]:.3f}")
    print(f"results: {compare_results(ours + theirs)}")
    return 0


def compare_results(runs: list[dict]) -> str:
    """Whether the runs' passes, cost and threshold agree: exactly, or by how much they differ
    (a sum taken in another order differs in its last bits, which a change may accept)."""
    if len({tuple(r[m] for m in RESULT_METRICS) for r in runs}) == 1:
        return "identical in every run"
    said = []
    for metric in RESULT_METRICS:
        values = sorted({r[metric] for r in runs if r[metric] is not None})
        if len(values) <= 1:
            said.append(f"{metric} identical")
        else:
            spread = (values[-1] - values[0]) / max(abs(values[-1]), abs(values[0]))
            said.append(f"{metric} differs: {values[0]!r} to {values[-1]!r} (relative {spread:.1e})")
    return "; ".join(said)


if __name__ == "__main__":
    exit_process(main())
