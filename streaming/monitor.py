"""The monitor: Spark Structured Streaming over a directory of metric CSV files.

Input: CSV files dropped (atomically renamed) into ``--input``, with a header naming
``timestamp``, the model's features and optionally ``host`` or ``source``; the model
``models:/<name>@production`` by default, or any model URI / ``name@alias`` / ``name/version``.
Output, under ``--output``: per micro-batch the anomaly events, the alerts, the quarantined
rows and a summary (see ``streaming/sinks.py``), exactly once across restarts; one line per
window and one per alert on stdout; and an MLflow run in the monitor experiment with
per-batch counts (step = batch id), the model version in use and every switch.

Rows are scored per series (the ``host`` or ``source`` column, else the file name) in time
order. Each series' state (its last rows, for the history features, and the rows since its
last alert, for the cooldown) lives in Spark's state store (``applyInPandasWithState``), in
the query's checkpoint, so it survives micro-batches and restarts. A row older than its
series' latest scored row (a file that came after a later one) is quarantined as late. The model is part of the
query, so the monitor checks the alias once per window between batches and, when it moved,
stops the query and starts it again from the same checkpoint with the new model: no row is
lost or scored twice, series state carries over, and every event names the version that
scored it.

``--available-now`` is a catch-up run: the files present at its start, in batches of at most
``--max-files-per-trigger``, then exit 0 (the alias is still followed; a switch restarts the
catch-up, which then also takes files that came since). ``--clean-source delete|archive`` has
Spark remove or move (under ``--archive-dir``, keeping their full path) the files of each
committed batch; Spark does so when it plans the next batch, so the last batch's files stay
until the next batch, in this run or the next one.

``--alertmanager URL`` posts every alert to Prometheus Alertmanager, at least once across
restarts (``streaming/alert_delivery.py``); ``--metrics-port N`` serves Prometheus metrics
(``streaming/monitor_metrics.py``).

A version under the alias ``challenger`` is scored beside production on every row, with its own
series state, and never pages (``streaming/challenger.py``; ``--challenger none`` turns it off).

    python -m streaming.monitor --input streamdata --window 3
    python -m streaming.monitor --input streamdata --available-now --clean-source delete
    mlflow run . -e monitor --env-manager local -P input=streamdata -P window=3
"""

from __future__ import annotations

import os
import signal
import threading
import time

from core.alerts import cooldown_text
from core.csv_input import record_ddl
from core.errors import UserError, exit_process, main_guard
from core.paths import to_uri
from core.schema import MONITOR_EXPERIMENT
from core.spark import spark_session
from core.spark_scoring import (
    BINARY_FILE_SCHEMA,
    FOLDED_ROWS,
    parse_binary_files,
    score_series_streaming,
    unseen_file_frame,
)
from core.tracking import MlflowService
from streaming.alert_delivery import AlertDelivery
from streaming.batch_report import ALERT_LINE_COLUMNS, alert_lines, batch_metrics, print_batch
from streaming.challenger import Challenger
from streaming.input_cleanup import archive_target
from streaming.model_tracker import ModelTracker
from streaming.monitor_metrics import MonitorMetrics
from streaming.monitor_options import parse_args
from streaming.sinks import BatchSink, files_in_batch

# Spark, MLflow and matplotlib are imported inside the functions that use them, so that --help,
# argument errors and the scoring core answer without starting to load them.

FAULT_ENV = "MONITOR_FAULT"  # test hook: "<point>:<batch id>", point in FAULT_POINTS
FAULT_POINTS = ("before_write", "after_write", "after_commit")
OPEN_COST_KEY = "spark.sql.files.openCostInBytes"
SMALL_FILE_OPEN_COST_BYTES = 8 * 1024
# Namespaces built by hand (benchmarks, older tests) predate these options: they get the defaults.
SOURCE_OPTION_DEFAULTS = {"clean_source": "off", "archive_dir": "", "available_now": False}


def crash_now(point: str, batch_id: int) -> None:
    """Simulate a hard crash (kill -9 of driver and JVM) at a chosen point."""
    print(f"FAULT INJECTED: {point} at batch {batch_id}", flush=True)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def fault_at(point: str) -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    name, _, batch = spec.partition(":")
    return int(batch) if name == point and batch.isdigit() else None


class Monitor:
    def __init__(self, spark, service, args, tracker: ModelTracker, metrics: MonitorMetrics | None = None):

        self.spark = spark
        self.service = service
        self.args = args
        self.input_uri = to_uri(args.input)
        self.output_uri = to_uri(args.output)
        self.checkpoint_uri = to_uri(args.checkpoint) if args.checkpoint else f"{self.output_uri}/checkpoint"
        option = {name: getattr(args, name, default) for name, default in SOURCE_OPTION_DEFAULTS.items()}
        self.clean_source = option["clean_source"]
        self.archive_uri = archive_target(self.input_uri, self.clean_source, option["archive_dir"])
        self.available_now = bool(option["available_now"])
        self.tracker = tracker
        self.active = tracker.current  # the model inside the running query
        # A second model scored beside production, never paging (streaming/challenger.py).
        self.challenger = Challenger(service.client, tracker, getattr(args, "challenger", "auto"))
        self.last_batch_id = -1
        self.sink = BatchSink(spark, self.output_uri)
        self.metrics = metrics or MonitorMetrics()  # served by main() with --metrics-port
        self.metrics.set_model(tracker.current)
        self.alerts = AlertDelivery.for_monitor(getattr(args, "alertmanager", None), self.sink, self.metrics)
        self.run_id = None
        self.last_activity = time.monotonic()
        self.batches_seen = 0
        self.totals = {"rows": 0, "anomalies": 0, "alerts": 0, "invalid_rows": 0}
        self._lock = threading.Lock()

    # -- the stream -------------------------------------------------------------------------
    def source(self):

        # Streaming file sources need the schema up front; binaryFile's is fixed.
        self.sink.fs.mkdirs(self.input_uri)
        reader = (
            self.spark.readStream.format("binaryFile")
            .schema(BINARY_FILE_SCHEMA)
            .option("pathGlobFilter", "*.csv")
            .option("maxFilesPerTrigger", self.args.max_files_per_trigger)
        )
        if self.clean_source != "off":
            # Spark cleans a batch's files when it plans the next batch, after the batch's commit.
            reader = reader.option("cleanSource", self.clean_source)
            if self.archive_uri:
                reader = reader.option("sourceArchiveDir", self.archive_uri)
        return reader.load(self.input_uri)

    def start(self):
        self.open_run()
        self.alerts.flush_at_start(self.service.client, self.run_id)  # what a stopped or killed run left
        return self.start_query()

    def start_query(self):

        self.active = self.tracker.current
        # Idle series are forgotten when the next batch with data runs; without this setting a
        # processing-time timeout makes Spark run an empty batch every window.
        self.spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
        # Each batch's new files are listed by a Spark job with one task per file by default; a
        # task per core lists them as widely for far less.
        if self.spark.conf.get("spark.sql.sources.parallelPartitionDiscovery.parallelism", None) is None:
            self.spark.conf.set(
                "spark.sql.sources.parallelPartitionDiscovery.parallelism",
                str(self.spark.sparkContext.defaultParallelism),
            )
        # Spark packs files into read tasks as if opening one cost reading 4 MiB, so a backlog
        # of small files becomes many parse tasks, each starting its Python worker. Priced at
        # their size, they fill a task per core (up to 128 MiB each).
        if self.spark.conf.get(OPEN_COST_KEY, None) is None:
            self.spark.conf.set(OPEN_COST_KEY, str(SMALL_FILE_OPEN_COST_BYTES))
        # Without --scored-rows only anomalies, alerts and quarantined rows are written, so the
        # normal rows come back from the scoring workers as per-file counts.
        records = score_series_streaming(
            parse_binary_files(self.source(), self.active.params),
            self.active.params,
            int(self.args.series_idle_minutes * 60_000),
            fold_normal=not self.args.scored_rows,
            model_key=self.active.uri,
            challenger=self.challenger.activate(self.active, self.service.client, self.run_id),
        )
        writer = records.writeStream.foreachBatch(self.process_batch).option("checkpointLocation", self.checkpoint_uri)
        if self.available_now:
            # The files listed at the query's start, in batches of maxFilesPerTrigger, then the query ends.
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{self.args.window} seconds")
        return writer.queryName("anomaly-monitor").start()

    def open_run(self) -> None:
        self.run_id = self.service.create_run(MONITOR_EXPERIMENT, run_name="monitor", tags={"step": "monitor"})
        client = self.service.client
        for key, value in {
            # Names distinct from the MLproject parameters, which mlflow run logs as typed.
            "input_uri": self.input_uri,
            "output_uri": self.output_uri,
            "checkpoint_uri": self.checkpoint_uri,
            "window_seconds": self.args.window,
            "model_spec": self.tracker.spec,
            "trigger_mode": "availableNow" if self.available_now else "processingTime",
            "clean_source_mode": self.clean_source,
            "archive_uri": self.archive_uri,
            "initial_model_version": self.tracker.current.version or "",
            "initial_model_uri": self.tracker.current.uri,
            # The alert policy and history features travel in the model; recorded here too so
            # a monitor run says how its alerts were decided.
            "history": ",".join(self.tracker.current.params.history),
            "span": self.tracker.current.params.span,
            "alert_threshold": self.tracker.current.params.alert_threshold,
            "cooldown": cooldown_text(
                self.tracker.current.params.cooldown, self.tracker.current.params.cooldown_seconds
            ),
        }.items():
            client.log_param(self.run_id, key, value)
        client.set_tag(self.run_id, "model_version", self.tracker.current.version or "")
        if self.available_now:
            doing = (
                f"catching up on {self.input_uri} (the files there now, at most "
                f"{self.args.max_files_per_trigger} a batch, then stopping)"
            )
        else:
            doing = f"monitoring {self.input_uri} every {self.args.window:g} s"
        cleaning = {
            "off": "",
            "delete": "; processed files deleted",
            "archive": f"; processed files moved under {self.archive_uri}",
        }[self.clean_source]
        print(
            f"{doing} with {self.tracker.label}; output {self.output_uri}; MLflow run {self.run_id}{cleaning}",
            flush=True,
        )

    def process_batch(self, scored, batch_id: int) -> None:
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        started = time.perf_counter()
        model = self.active  # the model that scored this batch inside the query
        challenger = self.challenger.active  # and the one beside it, or None
        self.last_batch_id = batch_id
        if self.sink.committed(batch_id):
            # Re-run of a batch that was written before a crash: its output already stands, but
            # the series state must still advance past it, so the scoring runs, into nowhere.
            scored.write.format("noop").mode("overwrite").save()
            print(f"batch {batch_id}: already written before a restart; not written again", flush=True)
            self.alerts.flush(batch_id, self.service.client, self.run_id)  # its alerts may not have gone out
            return
        planned = files_in_batch(self.sink.fs, self.checkpoint_uri, batch_id)
        # The batch is scored, counted and written in one Spark job: the counts, the files
        # seen and the alerts to print are observed as its rows go to the sink, since every job
        # is a fixed cost per batch. Alerts are few by design: one per series at most every
        # `cooldown` rows.
        observation = Observation(f"monitor_batch_{batch_id}")
        observed = scored.observe(
            observation,
            F.coalesce(F.sum(F.coalesce(F.col(FOLDED_ROWS), F.lit(1))), F.lit(0)).alias("rows"),
            F.coalesce(F.sum(F.col("is_anomaly").cast("long")), F.lit(0)).alias("anomalies"),
            F.coalesce(F.sum(F.col("is_alert").cast("long")), F.lit(0)).alias("alerts"),
            F.coalesce(F.sum((~F.col("is_valid")).cast("long")), F.lit(0)).alias("invalid_rows"),
            F.collect_set("source_file").alias("seen_files"),
            F.collect_list(F.when(F.col("is_alert"), F.struct(*ALERT_LINE_COLUMNS))).alias("raised"),
            *self.challenger.observed(challenger),
        )
        parts = {"events": F.col("is_anomaly"), "alerts": F.col("is_alert"), "quarantine": ~F.col("is_valid")}
        parts.update(self.challenger.parts(challenger))
        if self.args.scored_rows:
            parts["scored"] = F.col("is_valid")
        staged = self.sink.begin(batch_id)
        if fault_at("before_write") == batch_id:
            crash_now("before_write", batch_id)
        staged.write(
            self.challenger.columns(self._with_model(observed.drop(FOLDED_ROWS), model, batch_id), challenger), parts
        )
        counted = dict(observation.get)
        seen = set(counted.pop("seen_files", None) or [])
        raised = alert_lines(counted.pop("raised", None) or [])
        counts = {key: int(counted.get(key) or 0) for key in self.totals}
        counts["files"] = len(seen)
        versus = self.challenger.counts(challenger, counted, counts)
        unseen = unseen_file_frame(model.params, seen, planned)
        if unseen is not None:
            # Files Spark never read (zero length): quarantined, and counted here.
            empty = self.spark.createDataFrame(unseen, record_ddl(model.params))
            staged.write(
                self.challenger.columns(self._with_model(empty, model, batch_id), challenger),
                {"quarantine": F.lit(True)},
            )
            counts["rows"] += len(unseen)
            counts["invalid_rows"] += int((~unseen["is_valid"]).sum())
            counts["files"] += unseen["source_file"].nunique()
        shown = None
        if counts["anomalies"] and self.args.show and (events := staged.part_uri("events")):
            shown = self.spark.read.parquet(events).limit(self.args.show).toPandas()
        summary = {"batch_id": batch_id, "model_version": model.version, "model_uri": model.uri, **counts}
        summary.update(self.challenger.summary(challenger, versus))
        self.alerts.stage(batch_id, raised, model)  # before the commit: a crash after it still delivers
        staged.commit(summary)
        if fault_at("after_write") == batch_id:
            crash_now("after_write", batch_id)
        seconds = time.perf_counter() - started
        self._report(batch_id, counts, seconds, shown, model, raised)
        self.challenger.report(challenger, self.service.client, self.run_id, batch_id, versus)

    @staticmethod
    def _with_model(records, model, batch_id: int):
        from pyspark.sql import functions as F

        return records.withColumns(
            {
                "model_version": F.lit(model.version or ""),
                "model_uri": F.lit(model.uri),
                "batch_id": F.lit(batch_id).cast("long"),
            }
        )

    def _report(self, batch_id, counts, seconds, shown, model, raised=None) -> None:
        print_batch(batch_id, counts, seconds, shown, model, raised)
        self.service.client.log_batch(self.run_id, metrics=batch_metrics(batch_id, counts, seconds, model))
        self.metrics.observe_batch(counts, seconds, model)
        self.alerts.flush(batch_id, self.service.client, self.run_id)
        with self._lock:
            self.batches_seen += 1
            self.last_activity = time.monotonic()
            for key in self.totals:
                self.totals[key] += counts[key]

    def follow_alias(self, query):
        """Between batches: when the alias moved, restart the query with the new model.

        Returns the query to keep running (the same one, or its restart)."""
        if not query.isActive:
            return query  # ended (a catch-up that finished, or a failure): the run loop ends it, not a restart
        said = [self.tracker.refresh()]  # production's alias, then the challenger's (aliases read once)
        said = [m for m in (*said, self.challenger.refresh(self.tracker.aliases)) if m]
        message = "; ".join(said) or None
        if self.tracker.current.uri == self.active.uri and not self.challenger.changed(self.tracker.current):
            for line in said:  # e.g. the alias vanished: said, and the running model kept
                print(line, flush=True)
            return query
        deadline = time.monotonic() + 600
        while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.05)  # let the batch in flight finish; stopping it would only redo it
        if not query.isActive:
            # A catch-up that finished meanwhile: restarting would start another catch-up.
            print(f"{message}; the catch-up had finished, so the next run uses it", flush=True)
            return query
        query.stop()
        # Only now is the first batch of the new model known: one may have started with the old
        # model between the alias moving and this call.
        first_batch = self.last_batch_id + 1
        for line in said or ["model changed"]:
            print(f"{line} (from batch {first_batch})", flush=True)
        self._log_switch(first_batch, message or "model changed")
        restarted = self.start_query()  # a restarted catch-up lists the input again: later files join it
        print(f"query restarted from its checkpoint with {self.tracker.label}; series state kept", flush=True)
        return restarted

    def _log_switch(self, batch_id: int, message: str) -> None:
        client = self.service.client
        client.set_tag(self.run_id, f"model_switch_batch_{batch_id}", message)
        client.set_tag(self.run_id, "model_version", self.tracker.current.version or "")
        self.metrics.set_model(self.tracker.current)

    # -- running until told to stop ------------------------------------------------------------
    def run(self) -> int:
        from pyspark.errors import StreamingQueryException

        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        query = self.start()
        deadline = time.monotonic() + self.args.timeout if self.args.timeout > 0 else None
        # A catch-up ends when its files are done, not when a window passes without a batch.
        idle_limit = (
            self.args.idle_windows * self.args.window if self.args.idle_windows > 0 and not self.available_now else None
        )
        crash_after_commit = fault_at("after_commit")
        status = "FINISHED"
        ended_by_itself = False
        last_idle_line = time.monotonic()
        try:
            next_alias_check = time.monotonic() + self.args.window
            while not stop.is_set():
                try:
                    if query.awaitTermination(0.25):
                        ended_by_itself = True
                        break
                except StreamingQueryException:
                    break  # the query failed; query.exception() below says how
                if time.monotonic() >= next_alias_check:
                    query = self.follow_alias(query)
                    next_alias_check = time.monotonic() + self.args.window
                progress = query.lastProgress
                if (
                    crash_after_commit is not None
                    and progress
                    and progress["batchId"] >= crash_after_commit
                    and progress["numInputRows"] > 0
                ):
                    crash_now("after_commit", crash_after_commit)
                if deadline and time.monotonic() > deadline:
                    print(f"time limit of {self.args.timeout:g} s reached; stopping", flush=True)
                    break
                with self._lock:
                    idle = time.monotonic() - self.last_activity
                    quiet = time.monotonic() - max(self.last_activity, last_idle_line)
                if not self.available_now and quiet >= self.args.window and not query.status["isTriggerActive"]:
                    # Spark runs no batch for an empty window; say so, so silence means stopped.
                    print(
                        f"window: no new files; rows 0, anomalies 0, invalid 0, model {self.tracker.label}", flush=True
                    )
                    last_idle_line = time.monotonic()
                if idle_limit and idle > idle_limit and not query.status["isTriggerActive"]:
                    print(f"no new data for {self.args.idle_windows} windows; stopping", flush=True)
                    break
        except KeyboardInterrupt:
            print("interrupted; stopping", flush=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            error = query.exception()
            query.stop()
            if error is not None:
                status = "FAILED"
            self.service.end_run(self.run_id, status)
        if error is not None:
            raise UserError(f"the monitor's query failed: {str(error).splitlines()[0]}")
        if ended_by_itself and self.available_now:
            print("caught up: every file present at the start is processed; stopping", flush=True)
        if self.clean_source != "off" and self.last_batch_id >= 0:
            verb = "deletes" if self.clean_source == "delete" else "archives"
            print(
                f"the files of the last batch ({self.last_batch_id}) stay in {self.input_uri} until the next "
                f"batch, in this monitor or the next: Spark {verb} a batch's files when it plans the one after",
                flush=True,
            )
        print(
            f"monitor stopped after {self.batches_seen} batches: rows {self.totals['rows']}, "
            f"anomalies {self.totals['anomalies']}, alerts {self.totals['alerts']}, "
            f"invalid {self.totals['invalid_rows']}; "
            f"events under {self.output_uri}/batches",
            flush=True,
        )
        return 0


@main_guard
def main(argv=None) -> int:

    args = parse_args(argv)
    # Checked before MLflow and Spark start, so a bad archive directory fails at once.
    archive_target(to_uri(args.input), args.clean_source, args.archive_dir)
    with MlflowService() as service:
        # Resolve the model before starting Spark: a missing alias fails in a second, not twenty.
        tracker = ModelTracker(service.client, args.model, args.model_name)
        # Served before Spark starts, so a port in use fails at once.
        metrics = MonitorMetrics().serve(args.metrics_host, args.metrics_port) if args.metrics_port else None
        try:
            with spark_session("monitor", args.master, args.conf, long_running=True) as spark:
                return Monitor(spark, service, args, tracker, metrics).run()
        finally:
            if metrics is not None:
                metrics.stop()


if __name__ == "__main__":
    exit_process(main())
