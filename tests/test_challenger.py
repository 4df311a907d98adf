"""Champion and challenger on one stream: the monitor in-process with a real SparkSession, a real
file stream and a real MLflow registry (tmp_path) holding two trained versions."""

import json

import numpy as np
import pandas as pd
import pytest

from core.csv_input import score_files
from core.monitor_comparison import monitor_batches, pair_table
from replay import compare
from replay.monitor_compare import compare_monitor_run
from streaming.sinks import read_output
from training import promote
from training import train as train_job

from conftest import isolated_store
from helpers import SAMPLE, RunningMonitor, drop, monitor_args, train_args

pytestmark = pytest.mark.slow

MODEL = "duel-detector"
HEADER = "timestamp,cpu,disk,network,source\n"
ROWS_PER_FILE = 120


@pytest.fixture(scope="module")
def registry(tmp_path_factory, spark):
    """Version 1 (k=7) and version 2 (noisy: k=3, low thresholds, short cooldown), both scoring
    by distance with history windows of 24 rows: fixed here, not train's defaults, so that both
    raise alerts within the test's 720 rows and their scores follow from the rows alone."""
    folder = tmp_path_factory.mktemp("duel-store")
    scoring = dict(model_name=MODEL, score="distance", history="mean,std", span=24)
    with isolated_store(f"sqlite:///{folder / 'mlflow.db'}") as service:
        train_job.train(spark, service, train_args(SAMPLE, **scoring, alert_threshold=0.75, cooldown=216))
        train_job.train(
            spark,
            service,
            train_args(SAMPLE, **scoring, k=3, threshold_quantile=0.5, alert_threshold=0.5, cooldown=24),
        )
        yield service


def series_files(count: int) -> list[str]:
    """One series (source web-1) in ``count`` files, in time order; spikes at row 30 of the first
    file and at row 5 of the third, the first rows the swapped-in production sees."""
    lines = SAMPLE.read_text().splitlines()[1:]
    files = []
    for part in range(count):
        chunk = lines[part * ROWS_PER_FILE : (part + 1) * ROWS_PER_FILE]
        for at in {0: [30], 2: [5]}.get(part, []):
            chunk[at] = chunk[at].split(",", 1)[0] + ",99,50000000,1"
        files.append(HEADER + "\n".join(f"{line},web-1" for line in chunk) + "\n")
    return files


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    names = frame["source_file"].str.rsplit("/", n=1).str[-1]
    return frame.assign(file=names).set_index(["file", "line_number"]).sort_index()


def test_challenger_scores_beside_production_never_pages_and_swaps_roles_with_its_state(
    registry, spark, tmp_path, capsys
):
    client = registry.client
    promote.promote(client, MODEL, version="1")
    promote.promote(client, MODEL, version="2", alias="challenger")
    files = series_files(6)
    handle = RunningMonitor(spark, registry, monitor_args(tmp_path, model_name=MODEL, scored_rows=True))
    try:
        # batches 0 and 1: production v1, challenger v2
        for part in (0, 1):
            drop(tmp_path / "in", files[part].encode(), name=f"part-{part}.csv")
            handle.process()
        # when production moves to the challenger's version and v1 becomes the challenger
        promote.promote(client, MODEL, version="2")
        promote.promote(client, MODEL, version="1", alias="challenger")
        handle.process()  # the monitor looks at the aliases between batches
        for part in (2, 3):
            drop(tmp_path / "in", files[part].encode(), name=f"part-{part}.csv")
            handle.process()
        # when the challenger alias is removed: production alone (batch 4)
        promote.remove_alias(client, MODEL, "challenger")
        handle.process()
        drop(tmp_path / "in", files[4].encode(), name="part-4.csv")
        handle.process()
        # when a challenger is added while the monitor runs: scored from the next batch (5)
        promote.promote(client, MODEL, version="1", alias="challenger")
        handle.process()
        drop(tmp_path / "in", files[5].encode(), name="part-5.csv")
        summaries = handle.process()
    finally:
        handle.stop()
    out = capsys.readouterr().out
    run_id = handle.monitor.run_id

    # then every batch names both models, and the roles swapped at a batch boundary
    assert [s["model_version"] for s in summaries] == ["1", "1", "2", "2", "2", "2"]
    assert [s.get("challenger_version") for s in summaries] == ["2", "2", "1", "1", None, "1"]
    assert "MODEL SWITCH: production moved from duel-detector v1 to duel-detector v2 (from batch 2)" in out
    assert "CHALLENGER: challenger moved from duel-detector v2 to duel-detector v1 (from batch 2)" in out
    assert "CHALLENGER: alias 'challenger' of duel-detector removed (was duel-detector v1) (from batch 4)" in out
    assert "CHALLENGER: challenger moved from none to duel-detector v1 (from batch 5)" in out

    # and each model's verdicts, in whichever role, equal scoring the whole series with it alone
    # from its first row: the per-series state carried over the swap (no second warm-up), and a
    # challenger added mid-run continued from production's raw tail
    paths = [(str(tmp_path / "in" / f"part-{i}.csv"), files[i].encode()) for i in range(6)]
    v2 = handle.monitor.tracker.current.params  # production is v2 at the end
    v1 = handle.monitor.challenger.active.params
    alone = {name: keyed(score_files(p, paths)) for name, p in (("1", v1), ("2", v2))}
    scored = keyed(read_output(str(tmp_path / "out"), "scored"))
    assert len(scored) == 6 * ROWS_PER_FILE
    for version, alone_rows in alone.items():
        for summary in summaries:
            batch = scored[scored["batch_id"] == summary["batch_id"]]
            if summary["model_version"] == version:
                got = batch[["anomaly_score", "is_alert"]]
            elif summary.get("challenger_version") == version:
                got = batch[["challenger_anomaly_score", "challenger_is_alert"]].set_axis(
                    ["anomaly_score", "is_alert"], axis=1
                )
            else:
                continue
            want = alone_rows.loc[got.index, ["anomaly_score", "is_alert"]]
            np.testing.assert_array_equal(got["anomaly_score"], want["anomaly_score"], err_msg=f"v{version} {summary}")
            if summary["batch_id"] != 5:  # batch 5's challenger took production's cooldown with its state
                np.testing.assert_array_equal(got["is_alert"], want["is_alert"], err_msg=f"v{version} {summary}")
    # a fresh v2 at the swap would have been warming up at the third file's spike: it did not
    third = alone["2"].xs("part-2.csv", level="file")
    fresh = keyed(score_files(v2, [paths[2]])).xs("part-2.csv", level="file")
    assert not np.array_equal(third["anomaly_score"], fresh["anomaly_score"])

    # and the challenger's alerts are in their own part and counted, never in alerts nor an ALERT line
    alerts = keyed(read_output(str(tmp_path / "out"), "alerts"))
    theirs = keyed(read_output(str(tmp_path / "out"), "challenger_alerts"))
    assert set(alerts.index) == set(scored.index[scored["is_alert"]])
    # (batch 4, production alone, has no challenger columns)
    assert set(theirs.index) == set(scored.index[scored["challenger_is_alert"].eq(True)])
    only_theirs = set(theirs.index) - set(alerts.index)
    assert only_theirs, "the noisy challenger raised no alert of its own: the test shows nothing"
    assert sum(line.startswith("ALERT series ") for line in out.splitlines()) == len(alerts)
    assert [line.split(" challenger ")[0] for line in out.splitlines() if " challenger duel-detector v" in line] == [
        f"batch {b}" for b in (0, 1, 2, 3, 5)
    ]

    # and the monitor's run has the challenger's counts per batch (step = batch id), and its version
    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]

    paired = [s for s in summaries if s.get("challenger_version")]
    assert history("challenger_version") == [(s["batch_id"], float(s["challenger_version"])) for s in paired]
    assert history("challenger_alert_count") == [(s["batch_id"], float(s["challenger_alert_count"])) for s in paired]
    for s in paired:
        batch = scored[scored["batch_id"] == s["batch_id"]]
        assert s["challenger_alert_count"] == int(batch["challenger_is_alert"].sum())
        assert s["challenger_anomaly_count"] == int(batch["challenger_is_anomaly"].sum())
        assert s["alerts_both"] == int((batch["is_alert"] & batch["challenger_is_alert"]).sum())
        assert s["alerts_production_only"] + s["alerts_both"] == s["alerts"]
        assert s["alerts_challenger_only"] + s["alerts_both"] == s["challenger_alert_count"]
    for key in ("challenger_anomaly_count", "alerts_both", "alerts_production_only", "alerts_challenger_only"):
        assert [step for step, _ in history(key)] == [s["batch_id"] for s in paired]
    assert client.get_run(run_id).data.tags["challenger_version"] == "1"

    # and compare ranks nothing on counts, but lists both pairs with their counts
    table = pair_table(monitor_batches(client, run_id), run_id)
    assert table["pair"].unique().tolist() == [
        "production v1 / challenger v2",
        "production v2 / challenger v1",
    ]
    first = table[table["pair"] == "production v1 / challenger v2"].set_index("role")
    assert first.loc["production", "alerts"] == sum(s["alerts"] for s in summaries[:2])
    assert first.loc["challenger", "alerts"] == sum(s["challenger_alert_count"] for s in summaries[:2])
    assert first.loc["challenger", "model_version"] == "2"
    assert compare.main(["--monitor-run", run_id]) == 0
    printed = capsys.readouterr().out
    assert "not ranked" in printed and "production v2 / challenger v1" in printed

    # and with labels (a window on the third file's spike) each pair's alerts get NAB scores
    rows = files[2].splitlines()[1:]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"web-1.csv": [[rows[0].split(",")[0], rows[20].split(",")[0]]]}))
    ranked = compare_monitor_run(client, run_id, str(labels))
    assert ranked.attrs["ranked"] and {"rank", "nab_score_standard", "f1_alert"} <= set(ranked.columns)
    assert ranked["labelled_series"].eq(1).all() and ranked["nab_score_standard"].notna().all()
    # the second pair saw the spike: v1, now the challenger, alerted in the window, while v2 was
    # still in the cooldown of an earlier alert, so the challenger leads that pair
    second = ranked[ranked["pair"] == "production v2 / challenger v1"].set_index("role")
    assert second.loc["challenger", "recall_alert"] == 1.0 and second.loc["production", "recall_alert"] == 0.0
    assert second.loc["challenger", "rank"] == 1 and second.loc["challenger", "nab_score_standard"] > 0
    assert compare.main(["--monitor-run", run_id, "--labels", str(labels)]) == 0
    assert "each pair ranked by nab_score_standard" in capsys.readouterr().out
