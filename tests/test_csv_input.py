"""Parsing and scoring raw files: every data line comes back once, scored or quarantined."""

import math

import pytest

from core.csv_input import record_columns, score_files
from core.scoring import ModelParams
from streaming_cases import CASES, HEADER, NORMAL

PARAMS = ModelParams(
    features=["cpu", "disk", "network"], mean=[30.0, 3e6, 8e6], scale=[0.1, 1e-6, 1e-6],
    centroids=[[0.0, 0.0, 0.0]], expected_label=0, rule="distance", threshold=3.0,
    bounds={"cpu": [0, 100], "disk": [0, math.inf], "network": [0, math.inf]},
)


@pytest.mark.parametrize("name, content, expected", CASES, ids=[c[0] for c in CASES])
def test_each_bad_input_gives_its_record(name, content, expected):
    records = score_files(PARAMS, [(f"/in/{name}.csv", content)])
    got = sorted(
        ("event" if r.is_anomaly else "quarantine" if not r.is_valid else "normal", r.reason)
        for r in records.itertuples()
    )
    assert len(got) == len(expected), got
    for (kind, reason), (want_kind, want_reason) in zip(got, sorted(expected)):
        assert kind == want_kind and reason.startswith(want_reason), (got, expected)
    assert all(len(raw) <= 200 for raw in records["raw"])


def test_reordered_columns_are_read_by_name():
    records = score_files(PARAMS, [("/in/r.csv", b"network,disk,timestamp,cpu\n1,50000000,2026-01-05 00:00:00,99\n")])
    assert records.loc[0, ["cpu", "disk", "network"]].tolist() == [99.0, 5e7, 1.0]


def test_line_numbers_and_series_follow_the_file():
    content = b"timestamp,cpu,disk,network,host\n" + NORMAL + b",web-1\n\n" + NORMAL + b",web-2\n"
    records = score_files(PARAMS, [("/in/a.csv", content)]).sort_values("line_number")
    assert records["line_number"].tolist() == [2, 3, 4]
    assert records["series"].tolist() == ["web-1", "a", "web-2"]
    assert records["reason"].tolist() == ["", "blank line", ""]


def test_many_files_keep_their_own_headers():
    files = [("/in/a.csv", HEADER + NORMAL + b"\n"), ("/in/b.csv", b"cpu,timestamp,disk,network\n1,t,2,3\n")]
    records = score_files(PARAMS, files)
    assert list(records.columns) == record_columns(PARAMS)
    assert records.groupby("source_file").size().to_dict() == {"/in/a.csv": 1, "/in/b.csv": 1}


def test_no_files_give_an_empty_frame_with_the_record_columns():
    assert list(score_files(PARAMS, []).columns) == record_columns(PARAMS)
