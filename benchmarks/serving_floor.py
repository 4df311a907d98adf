"""The serving benchmark's floor: a model that does no work, served as ours is.

Input: any request that ours' signature accepts. Output: the frame it was built with, the
same columns and types as our model's output, so MLflow's server parses, checks and writes
just what it does for ours: served, it measures the server's own share of a request.
"""

import mlflow
import pandas as pd


class FixedFrameModel(mlflow.pyfunc.PythonModel):
    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def predict(self, context, model_input, params=None):
        return self.frame
