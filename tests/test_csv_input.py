"""Parsing and scoring raw files: every data line comes back once, scored or quarantined."""

import math

import pytest

from core.csv_input import record_columns, score_files
from core.scoring import ModelParams

from streaming_cases import CASES, HEADER, NORMAL

PARAMS = ModelParams(
    features=["cpu", "disk", "network"],
    mean=[30.0, 3e6, 8e6],
    scale=[0.1, 1e-6, 1e-6],
    centroids=[[0.0, 0.0, 0.0]],
    expected_label=0,
    rule="distance",
    threshold=3.0,
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


def test_rows_older_than_the_series_latest_scored_row_are_quarantined_as_late():
    from core.csv_input import parse_files, score_records

    def records(name, *times):
        body = b"".join(f"{t},30,3000000,8000000,web-1\n".encode() for t in times)
        return parse_files(PARAMS, [(f"/in/{name}.csv", b"timestamp,cpu,disk,network,host\n" + body)])

    # given a series scored up to 00:10
    first, state = score_records(PARAMS, records("a", "2026-01-05 00:05:00", "2026-01-05 00:10:00"))
    assert first["is_valid"].all() and state.last_time == "2026-01-05T00:10:00+00:00"
    # when a later file brings one row older than that, one equal to it and one newer
    second, after = score_records(
        PARAMS, records("b", "2026-01-05 00:00:00", "2026-01-05 00:10:00", "2026-01-05 00:15:00"), state
    )
    # then only the older row is quarantined, with the time it missed; the rest continue the series
    late = second[~second["is_valid"]]
    assert late["line_number"].tolist() == [2]
    assert late["reason"].iloc[0] == "late: older than this series' latest scored row (2026-01-05T00:10:00+00:00)"
    assert late["raw"].iloc[0].startswith("2026-01-05 00:00:00,30")
    assert second["is_valid"].sum() == 2 and after.rows == 4 and after.last_time == "2026-01-05T00:15:00+00:00"


def test_a_state_saved_before_late_rows_were_tracked_still_loads():
    from core.scoring import SeriesState

    old = SeriesState.from_json('{"tail": [[1.0, 2.0, 3.0]], "rows_since_alert": null, "rows": 1}')
    assert old.last_time is None and old.rows == 1


CLEAN_AND_NEARLY_CLEAN = [
    HEADER + NORMAL + b"\n" + NORMAL + b"\n",
    HEADER + NORMAL,  # no trailing newline
    b"host,network,timestamp,disk,cpu,region\nweb-1,1,2026-01-05 00:00:00,2,3,eu\nweb-2,4,2026-01-05 00:05:00,5,6,us\n",
    b"source,timestamp,cpu,disk,network\ns1,2026-01-05T00:00:00Z,1e3,2,3\n",
    HEADER + b"2026-01-05 00:00:00, 23.5,1,1\n",  # a space at a field's edge
    HEADER + b"2026-01-05 00:00:00,23.5,1,1\t\n",  # a tab at a line's end
    HEADER + b" 2026-01-05 00:00:00,23.5,1,1\n",  # a space at a line's start
    HEADER + NORMAL + b"\n \n" + NORMAL + b"\n",  # a line of spaces
    HEADER + NORMAL + b"\n\x0c\n",  # other ASCII whitespace
    HEADER + b"2026-01-05 00:00:00,23.5,1,\xc2\xa01\n",  # non-ASCII whitespace
    HEADER + b'2026-01-05 00:00:00,"23.5",1,1\n',  # quotes
    HEADER + NORMAL + b",\n",  # one field too many
    HEADER + NORMAL + b"\n\n",  # a blank last line
    b"timestamp,cpu,cpu,disk,network\n2026-01-05 00:00:00,1,2,3,4\n",  # a repeated column
    HEADER + b"2026-01-05 00:00:00,1,1," + b"9" * 20_000 + b"\n",  # long, not over the limit
]


@pytest.mark.parametrize("content", [c[1] for c in CASES] + CLEAN_AND_NEARLY_CLEAN)
def test_the_split_in_c_of_a_clean_file_equals_the_line_by_line_parse(content):
    # given a file, clean or with one thing that needs a line-by-line look
    from core.csv_input import _parse_columns

    # when it is parsed with the fast path allowed, and line by line
    fast = _parse_columns("file:///in/f.csv", content, PARAMS.features)
    slow = _parse_columns("file:///in/f.csv", content, PARAMS.features, fast=False)
    # then both give the same columns and quarantine records
    assert fast == slow


def test_only_a_clean_file_takes_the_split_in_c():
    from core.csv_input import _clean_file_columns

    taken = [
        _clean_file_columns("file:///in/f.csv", content, PARAMS.features) is not None
        for content in CLEAN_AND_NEARLY_CLEAN
    ]
    assert taken == [True] * 4 + [False] * (len(CLEAN_AND_NEARLY_CLEAN) - 4)


@pytest.mark.parametrize(
    "times",
    [
        ["2026-01-05 00:00:00", "2026-01-05 00:05:00", "2026-01-05 00:10:00"],  # rising: no sort needed
        ["2026-01-05 00:10:00", "2026-01-05 00:00:00", "2026-01-05 00:05:00"],
        ["2026-01-05 00:05:00", "2026-01-05 00:05:00", "2026-01-05 00:00:00"],  # ties: file and line decide
    ],
)
def test_series_order_is_time_then_file_then_line(times):
    import pandas as pd

    from core.csv_input import record_times, series_order

    records = pd.DataFrame(
        {"timestamp": times, "source_file": ["/in/b.csv", "/in/a.csv", "/in/a.csv"], "line_number": [2, 3, 2]}
    )
    keys = list(zip(record_times(records), records["source_file"], records["line_number"]))
    assert list(series_order(records, record_times(records))) == sorted(range(3), key=lambda i: keys[i])
