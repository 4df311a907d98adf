"""Pieces every stage shares: the scoring core, the model contract, Spark and MLflow set-up.

Nothing here starts a JVM or connects to MLflow at import time.
"""
