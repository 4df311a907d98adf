"""The monitor's output: one directory per micro-batch, made visible by one rename.

Layout under the output root (any Hadoop-compatible URI)::

    checkpoint/                         Spark's offsets and commits (one query, one checkpoint)
    batches/batch_id=000000000007/      one committed micro-batch
        events/*.parquet                the anomalous rows (row, history features, cluster, distance, score,
                                        alert flag, model version, batch, file)
        alerts/*.parquet                the rows that raised an alert (threshold, then per-series cooldown)
        scored/*.parquet                every scored row, with --scored-rows only
        quarantine/*.parquet            rows that could not be scored, with line, raw text and reason
        summary.json                    counts and the model version that scored the batch
    _staging/                           work in progress; never read

A part directory exists only when the batch has rows for it, with a file per task that had
rows for it; ``summary.json`` always does and counts rows, anomalies, alerts, invalid rows and
files.

``foreachBatch`` is at-least-once: after a crash Spark re-runs the last planned batch with the
same id and the same files. A batch whose directory exists is therefore skipped, and a batch is
written in staging and renamed into place whole, which makes the sink exactly-once.
"""

from __future__ import annotations

import json
import uuid

from core.hadoop_fs import HadoopFs, canonical_path
from core.paths import local_path

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

BATCHES = "batches"
STAGING = "_staging"
PART_COLUMN = "_sink_part"  # which part a row belongs to, only while a batch is written
WRITTEN = "_written"  # a batch's one write, inside its staging directory


def batch_dir_name(batch_id: int) -> str:
    return f"batch_id={batch_id:012d}"


class BatchSink:
    def __init__(self, spark, output_uri: str):
        self.fs = HadoopFs(spark)
        self.root = output_uri.rstrip("/")
        self.batches = f"{self.root}/{BATCHES}"
        self.staging = f"{self.root}/{STAGING}"
        self.fs.mkdirs(self.batches)
        self.fs.mkdirs(self.staging)

    def committed(self, batch_id: int) -> bool:
        return self.fs.exists(f"{self.batches}/{batch_dir_name(batch_id)}")

    def begin(self, batch_id: int) -> StagedBatch:
        """A fresh staging directory for ``batch_id``, committed whole or never seen."""
        return StagedBatch(self, batch_id)


class StagedBatch:
    """One batch's parts being written in staging, made visible by one rename in ``commit``."""

    def __init__(self, sink: BatchSink, batch_id: int):
        self.sink = sink
        self.batch_id = batch_id
        self.stage = f"{sink.staging}/{batch_dir_name(batch_id)}-{uuid.uuid4().hex[:8]}"
        self.written = f"{self.stage}/{WRITTEN}"

    def write(self, records, parts: dict) -> None:
        """Append each of ``records`` to every part whose condition (a Column) it meets.

        One Spark job whatever the parts: each task writes a file per part it holds rows for,
        into its own partition directory, and a part with no rows leaves no directory. The
        monitor writes the scored batch this way in the job that scores it, so the counts
        (observed in that job) and the output need no cached copy and no second job.
        """
        from pyspark.sql import functions as F

        names = F.array(*[F.when(condition, F.lit(name)) for name, condition in parts.items()])
        tagged = records.withColumn(PART_COLUMN, F.explode(F.filter(names, lambda name: name.isNotNull())))
        tagged.write.mode("append").partitionBy(PART_COLUMN).parquet(self.written)

    def part_uri(self, part: str) -> str | None:
        """Where ``part``'s rows are while staged, or None when none were written."""
        uri = f"{self.written}/{PART_COLUMN}={part}"
        return uri if self.sink.fs.exists(uri) else None

    def commit(self, summary: dict) -> None:
        fs = self.sink.fs
        fs.mkdirs(self.stage)
        if fs.exists(self.written):
            prefix = f"{PART_COLUMN}="
            for name in fs.list_names(self.written):
                if name.startswith(prefix) and not fs.rename(
                    f"{self.written}/{name}", f"{self.stage}/{name[len(prefix) :]}"
                ):
                    raise RuntimeError(f"could not move part {name} of batch {self.batch_id} out of {self.written}")
            fs.delete(self.written)
        fs.write_text(f"{self.stage}/summary.json", json.dumps(summary, sort_keys=True))
        target = f"{self.sink.batches}/{batch_dir_name(self.batch_id)}"
        if not fs.rename(self.stage, target):
            raise RuntimeError(f"could not move batch {self.batch_id} from {self.stage} to {target}")


def _source_offset(fs: HadoopFs, checkpoint: str, batch_id: int) -> int | None:
    """The file source's log offset that ends query batch ``batch_id`` (offsets/<id>, last line)."""
    log = f"{checkpoint}/offsets/{batch_id}"
    if batch_id < 0 or not fs.exists(log):
        return None
    last = [line for line in fs.read_text(log).splitlines() if line.strip()][-1]
    return int(json.loads(last)["logOffset"])


def files_in_batch(fs: HadoopFs, checkpoint_uri: str, batch_id: int) -> list[str]:
    """The files Spark's file source assigned to query batch ``batch_id``.

    Spark drops zero-length files from the scan, so the batch's DataFrame never shows them;
    the source's log still lists them, which is how the monitor quarantines empty files.
    The source log is numbered by the source's own offsets, which drift from query batch ids
    after a restart (a planned but unrun source batch is folded into the next query batch),
    so the query's offset log gives the range: (offset of batch - 1, offset of batch].
    """
    checkpoint = checkpoint_uri.rstrip("/")
    end = _source_offset(fs, checkpoint, batch_id)
    if end is None:
        return []
    start = _source_offset(fs, checkpoint, batch_id - 1)
    wanted = set(range((start if start is not None else end - 1) + 1, end + 1))
    source_log = f"{checkpoint}/sources/0"
    names = fs.list_names(source_log)
    compacted = sorted(int(n.split(".")[0]) for n in names if n.endswith(".compact"))
    logs = set()
    for log_id in wanted:
        if str(log_id) in names:
            logs.add(str(log_id))
        else:  # folded into a compact file, which holds every entry up to its own id
            later = [c for c in compacted if c >= log_id]
            if later:
                logs.add(f"{later[0]}.compact")
    paths = []
    for name in sorted(logs):
        for line in fs.read_text(f"{source_log}/{name}").splitlines()[1:]:
            entry = json.loads(line) if line.strip() else None
            if entry and entry.get("batchId") in wanted:
                paths.append(canonical_path(entry["path"]))
    return sorted(set(paths))


def read_output(output_root: str, part: str):
    """All committed rows of ``part`` ('events', 'alerts', 'scored' or 'quarantine') as pandas,
    local roots only."""

    import pandas as pd

    root = local_path(output_root)
    files = sorted((root / BATCHES).glob(f"batch_id=*/{part}/*.parquet")) if root else []
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_summaries(output_root: str) -> list[dict]:

    root = local_path(output_root)
    return [json.loads(p.read_text()) for p in sorted((root / BATCHES).glob("batch_id=*/summary.json"))]
