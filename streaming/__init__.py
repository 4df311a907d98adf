"""Streaming stage: the Spark Structured Streaming monitor and the streamer that feeds it."""
