"""Replay stage: score history with registered models and compare them in MLflow."""
