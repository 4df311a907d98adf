"""Names every job shares: the feature table's columns, the model, its aliases and the experiments."""

from __future__ import annotations

TIMESTAMP = "timestamp"
DEFAULT_FEATURES = ("cpu", "disk", "network")
# Optional column naming the series (host, file) that a row belongs to.
SOURCE_COLUMNS = ("host", "source")
FEATURE_TABLE_COLUMNS = (TIMESTAMP, *DEFAULT_FEATURES)

DEFAULT_MODEL_NAME = "server-anomaly-detector"
PRODUCTION_ALIAS = "production"
PREVIOUS_ALIAS = "previous"
# A version the monitor scores beside production, with its own series state, never paging.
CHALLENGER_ALIAS = "challenger"

# Where a job's run goes when it is run as a module or by the main job; under `mlflow run` the
# run goes to the experiment mlflow chose (--experiment-name, else Default).
TRAINING_EXPERIMENT = "server-anomaly-training"
REPLAY_EXPERIMENT = "server-anomaly-replay"
MONITOR_EXPERIMENT = "server-anomaly-monitor"
NAB_BENCHMARK_EXPERIMENT = "server-anomaly-nab-benchmark"
SPEED_BENCHMARK_EXPERIMENT = "server-anomaly-benchmarks"

# The run tag that says which job made a run: compare finds replays by it in any experiment.
STEP_TAG = "step"
