"""prepare: collating per-metric series into one table, its alignment rule and its errors."""

from pathlib import Path

import pandas as pd
import pytest

from training import prepare, sample_data

from conftest import PROJECT_ROOT


def write(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def small_series(folder: Path, cpu_rows=3, disk_rows=4, network_rows=5, start_hour=0):
    def series(rows, base):
        lines = [f"2024-01-01 {start_hour + i // 12:02d}:{(i % 12) * 5:02d}:00,{base + i}" for i in range(rows)]
        return "timestamp,value\n" + "\n".join(lines) + "\n"

    write(folder, "b_cpu_utilization.csv", series(cpu_rows, 10))
    write(folder, "disk_write_bytes.csv", series(disk_rows, 100))
    write(folder, "x_network_in.csv", series(network_rows, 1000))
    return folder


def test_positional_alignment_pairs_the_ith_values_and_stops_at_the_shortest_kind(tmp_path):
    # given 3 cpu, 4 disk and 5 network samples
    folder = small_series(tmp_path / "in")
    # when
    collation = prepare.collate(folder, "positional")
    # then
    table = collation.table
    assert list(table.columns) == ["timestamp", "cpu", "disk", "network"]
    assert table["cpu"].tolist() == [10, 11, 12]
    assert table["disk"].tolist() == [100, 101, 102]
    assert table["network"].tolist() == [1000, 1001, 1002]
    assert collation.rows_dropped == {"cpu": 0, "disk": 1, "network": 2}
    assert table["timestamp"].diff().dropna().eq(pd.Timedelta(minutes=5)).all()


def test_positional_alignment_concatenates_files_of_one_kind_in_name_order(tmp_path):
    folder = small_series(tmp_path / "in", cpu_rows=2, disk_rows=6, network_rows=6)
    write(folder, "c_cpu_utilization.csv", "timestamp,value\n2020-01-01 00:05:00,99\n2020-01-01 00:00:00,98\n")
    table = prepare.collate(folder, "positional").table
    # b_cpu's two rows, then c_cpu's rows sorted by time
    assert table["cpu"].tolist() == [10, 11, 98, 99]


def test_timestamp_alignment_keeps_shared_timestamps_only(tmp_path):
    folder = small_series(tmp_path / "in")
    table = prepare.collate(folder, "timestamp").table
    assert len(table) == 3
    assert table["network"].tolist() == [1000, 1001, 1002]


def test_timestamp_alignment_on_disjoint_ranges_explains_the_positional_rule(tmp_path):
    folder = tmp_path / "in"
    small_series(folder)
    write(folder, "disk_write_bytes.csv", "timestamp,value\n2030-01-01 00:00:00,1\n")
    with pytest.raises(prepare.UserError, match="share no timestamp; use --alignment positional"):
        prepare.collate(folder, "timestamp")


def test_nab_series_collate_into_one_table(nab_series_dir):
    collation = prepare.collate(nab_series_dir)
    assert len(collation.files["cpu"]) == 10 and len(collation.files["disk"]) == 2
    assert len(collation.files["network"]) == 3
    assert set(collation.skipped_files) == {"elb_request_count_8c0756.csv", "grok_asg_anomaly.csv"}
    # the disk series are the shortest kind
    assert len(collation.table) == collation.rows_per_kind["disk"]
    assert collation.table[["cpu", "disk", "network"]].notna().all().all()


BAD_INPUTS = [
    ("missing column", "timestamp,val\n2024-01-01 00:00:00,1\n", "line 1: missing column(s) value"),
    (
        "non-numeric",
        "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n",
        "line 3: non-numeric value 'abc'",
    ),
    ("non-finite", "timestamp,value\n2024-01-01 00:00:00,inf\n", "line 2: non-finite value"),
    (
        "bad timestamp",
        "timestamp,value\n2024-01-01 00:00:00,1\nyesterday,2\n",
        "line 3: unreadable timestamp 'yesterday'",
    ),
    ("empty", "", "is empty"),
    ("header only", "timestamp,value\n", "has a header but no data rows"),
    ("short row", "timestamp,value\n2024-01-01 00:00:00\n", "line 2: 1 fields, header has 2"),
    ("not utf-8", b"timestamp,value\n2024-01-01 00:00:00,\xff\xfe\n", "line 2: not UTF-8 text"),
]


@pytest.mark.parametrize("case, cpu_text, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_a_clear_error_naming_file_and_line(tmp_path, capsys, case, cpu_text, message):
    # given a folder whose cpu file is broken
    folder = small_series(tmp_path / "in")
    broken = write(folder, "b_cpu_utilization.csv", cpu_text)
    # when
    code = prepare.main(["--input", str(folder), "--out", str(tmp_path / "t.csv"), "--no-mlflow"])
    # then
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(broken) in err and message in err
    assert not (tmp_path / "t.csv").exists()


def test_a_missing_kind_is_named(tmp_path, capsys):
    folder = small_series(tmp_path / "in")
    (folder / "disk_write_bytes.csv").unlink()
    code = prepare.main(["--input", str(folder), "--out", str(tmp_path / "t.csv"), "--no-mlflow"])
    assert code == 2
    assert "no disk series" in capsys.readouterr().err


def test_an_unreadable_or_missing_path_is_named(tmp_path, capsys):
    code = prepare.main(["--input", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t.csv"), "--no-mlflow"])
    assert code == 2
    assert f"{tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    # root can read any file, so make the path unreadable by making it a directory
    folder = small_series(tmp_path / "in")
    locked = folder / "b_cpu_utilization.csv"
    locked.unlink()
    locked.mkdir()
    code = prepare.main(["--input", str(folder), "--out", str(tmp_path / "t.csv"), "--no-mlflow"])
    assert code == 2
    assert f"cannot read {locked}" in capsys.readouterr().err


def test_prepare_logs_its_alignment_rule_to_mlflow(tmp_path, mlflow_service):
    folder = small_series(tmp_path / "in")
    code = prepare.main(["--input", str(folder), "--out", str(tmp_path / "t.csv")])
    assert code == 0
    runs = mlflow_service.client.search_runs(
        [mlflow_service.experiment_id("server-anomaly-training")], "tags.step = 'prepare'"
    )
    assert len(runs) == 1
    assert runs[0].data.params["alignment"] == "positional"
    assert runs[0].data.params["rows"] == "3"
    assert runs[0].data.metrics["rows_dropped_network"] == 2


def test_committed_sample_is_what_the_generator_makes(tmp_path):
    sample_data.write_sample(tmp_path)
    committed = PROJECT_ROOT / "data" / "sample"
    # Every file the generator writes, so a new one (such as the labels) cannot go unchecked.
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    expected = [
        sample_data.TABLE_FILE,
        sample_data.LABELS_FILE,
        sample_data.REQUEST_FILE,
        *[f"series/{n}" for n in sample_data.SERIES_FILES.values()],
    ]
    assert written == sorted(expected)
    for relative in written:
        assert (tmp_path / relative).read_bytes() == (committed / relative).read_bytes(), relative
