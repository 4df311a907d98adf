"""The built-in sample's incident and its NAB label window."""

import json

import numpy as np
import pandas as pd

from replay.nab_scoring import load_labels, probationary_rows, window_rows
from training import sample_data

from conftest import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "data" / "sample"


def test_the_labels_load_and_their_one_window_covers_the_incident_in_nabs_way():
    # given the committed sample table and its labels
    table = pd.read_csv(SAMPLE / sample_data.TABLE_FILE)
    incident = sample_data.incident_rows(len(table))
    # when replay's loader reads them and the window is mapped onto the table's rows
    windows = load_labels(str(SAMPLE / sample_data.LABELS_FILE))
    spans = window_rows(table["timestamp"], windows["metrics.csv"])
    # then there is one window, keyed by the name replay looks the table up by
    assert list(windows) == ["metrics.csv"] and len(spans) == 1
    first, last = spans[0]
    # and it holds every incident row, centred as NAB centres a window (10% of the rows) on the
    # anomaly's first row, after the rows NAB's scoring leaves out
    assert first <= incident.start and incident.stop - 1 <= last
    half = int(0.10 * len(table)) // 2
    assert (first, last) == (incident.start - half, incident.start + half)
    assert first >= probationary_rows(len(table))
    # and its timestamps are written as NAB writes them
    raw = json.loads((SAMPLE / sample_data.LABELS_FILE).read_text())
    assert raw["metrics.csv"][0][0] == pd.Timestamp(table["timestamp"][first]).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_the_incident_rows_are_the_only_ones_where_the_cpu_saturates():
    # given the generator's table
    table = sample_data.generate()
    # when the rows with a saturated CPU are picked out
    saturated = np.flatnonzero(table["cpu"].to_numpy() > 90)
    # then they are exactly the incident's rows: the sample holds one incident
    assert saturated.tolist() == list(sample_data.incident_rows(len(table)))
