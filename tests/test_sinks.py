"""Which files belong to a query batch, read from a real Spark checkpoint layout."""

import json

from core.hadoop_fs import HadoopFs
from streaming.sinks import files_in_batch


def write_checkpoint(root, offsets: dict[int, int], sources: dict[str, list[tuple[str, int]]]):
    (root / "offsets").mkdir(parents=True)
    (root / "sources" / "0").mkdir(parents=True)
    for batch, offset in offsets.items():
        (root / "offsets" / str(batch)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{{"logOffset":{offset}}}')
    for name, entries in sources.items():
        lines = ["v1"] + [json.dumps({"path": f"file:///in/{p}", "timestamp": 1, "batchId": b}) for p, b in entries]
        (root / "sources" / "0" / name).write_text("\n".join(lines))


def test_a_query_batch_after_a_restart_covers_every_source_batch_folded_into_it(spark, tmp_path):
    # given source batch 2 was planned before a crash and folded into query batch 2 with source batch 3
    write_checkpoint(
        tmp_path,
        {0: 0, 1: 1, 2: 3, 3: 4},
        {"0": [("a.csv", 0)], "1": [("b.csv", 1)], "2": [("c.csv", 2)], "3": [("d.csv", 3)], "4": [("e.csv", 4)]},
    )
    fs = HadoopFs(spark)
    # then
    assert files_in_batch(fs, tmp_path.as_uri(), 2) == ["file:///in/c.csv", "file:///in/d.csv"]
    assert files_in_batch(fs, tmp_path.as_uri(), 3) == ["file:///in/e.csv"]
    assert files_in_batch(fs, tmp_path.as_uri(), 0) == ["file:///in/a.csv"]
    assert files_in_batch(fs, tmp_path.as_uri(), 9) == []


def test_entries_folded_into_a_compact_file_are_found(spark, tmp_path):
    entries = [(f"f{i}.csv", i) for i in range(10)]
    write_checkpoint(tmp_path, {8: 8, 9: 9}, {"9.compact": entries, "10": [("g.csv", 10)]})
    fs = HadoopFs(spark)
    assert files_in_batch(fs, tmp_path.as_uri(), 9) == ["file:///in/f9.csv"]
