"""The feature table: what prepare writes, train reads and the monitor streams."""

from __future__ import annotations

TIMESTAMP = "timestamp"
DEFAULT_FEATURES = ("cpu", "disk", "network")
# Optional column naming the series (host, file) that a row belongs to.
SOURCE_COLUMNS = ("host", "source")
FEATURE_TABLE_COLUMNS = (TIMESTAMP, *DEFAULT_FEATURES)

DEFAULT_MODEL_NAME = "server-anomaly-detector"
PRODUCTION_ALIAS = "production"
PREVIOUS_ALIAS = "previous"
TRAINING_EXPERIMENT = "server-anomaly-training"
