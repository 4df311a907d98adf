"""Serving, as clients meet it: the pyfunc loaded by MLflow and `mlflow models serve` on 127.0.0.1.

Every response is strict JSON (no NaN or Infinity tokens), a value too large to score is an
invalid row with a reason, and each row says whether its series' history window was partial.
Real parts: a model logged with ``log_anomaly_model`` to a sqlite store under tmp_path, loaded
with ``mlflow.pyfunc.load_model``, and a real scoring server. The model is a small numpy fit on
the sample table (no Spark), with the production defaults' history: mean and std over 24 rows.
"""

import io
import json
import math
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from core.explanation import EXPLANATION_COLUMNS
from core.history import history_features
from core.model import AnomalyDetectorModel, log_anomaly_model
from core.scoring import ModelParams, score_series

from conftest import (
    PROJECT_ROOT,
    PYTHON,
    ManagedProcess,
    free_port,
    isolated_store,
    run_command,
    wait_for,
)

FEATURES = ["cpu", "disk", "network"]
SAMPLE_TABLE = PROJECT_ROOT / "data" / "sample" / "metrics.csv"
MODEL = "serving-detector"
HISTORY, SPAN = ["mean", "std"], 24  # train's defaults, so warm-up is as long as production's


def tiny_fit(**policy) -> ModelParams:
    """One centroid at the mean of the sample's history features, the threshold at their 99th
    percentile distance: training's shape without Spark."""
    values = pd.read_csv(SAMPLE_TABLE)[FEATURES].to_numpy(float)
    vectors, _ = history_features(HISTORY, SPAN, values, [])
    mean, std = vectors.mean(axis=0), vectors.std(axis=0)
    distances = np.sqrt((((vectors - mean) / std) ** 2).sum(axis=1))
    return ModelParams(
        features=FEATURES,
        mean=mean.tolist(),
        scale=(1 / std).tolist(),
        centroids=[[0.0] * len(mean)],
        expected_label=0,
        rule="distance",
        threshold=float(np.quantile(distances, 0.99)),
        history=HISTORY,
        span=SPAN,
        bounds={"cpu": [0.0, 100.0], "disk": [0.0, math.inf], "network": [0.0, math.inf]},
        **policy,
    )


def ordinary_rows(count: int, start: int = 0) -> list[dict]:
    """Consecutive rows of the sample table, one series: what a host sends."""
    rows = pd.read_csv(SAMPLE_TABLE)[FEATURES].iloc[start : start + count]
    return [{**row, "series": "web-1"} for row in rows.to_dict("records")]


def strict_json(body):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict parsers do."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(body, parse_constant=refuse)


def floats_are_finite_or_null(rows: list[dict]) -> bool:
    return all(not isinstance(v, float) or math.isfinite(v) for row in rows for v in row.values())


def predict_records(model, rows: list[dict]) -> list[dict]:
    """The pyfunc's answer serialised as the scoring server does it, then parsed strictly."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    body = io.StringIO()
    predictions_to_json(model.predict(pd.DataFrame(rows)), body)
    return strict_json(body.getvalue())["predictions"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The model logged and registered in a fresh sqlite store, and loaded back by MLflow."""
    import mlflow

    folder = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    params = tiny_fit()
    with isolated_store(uri) as service:
        with service.start_run("serving-tests"):
            log_anomaly_model(params, pd.DataFrame(ordinary_rows(5))[FEATURES], MODEL)
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
        yield {"uri": uri, "params": params, "model": model}


@pytest.fixture(scope="module")
def served(logged, tmp_path_factory):
    """`mlflow models serve` of the logged model on 127.0.0.1; yields its /invocations URL."""
    port = free_port()
    server = ManagedProcess(
        [
            PYTHON,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}/1",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        tmp_path_factory.mktemp("serve") / "serve.log",
        MLFLOW_TRACKING_URI=logged["uri"],
    )
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/ping"), 120, "the scoring server")
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        server.stop()


def http_ok(url) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def post(url, body: str):
    """POST a JSON body; returns the status and the response parsed strictly."""
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, strict_json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, strict_json(error.read() or b"{}")


# -- the pyfunc, as MLflow loads it ------------------------------------------------------------
def test_a_huge_finite_value_is_an_invalid_row_with_a_reason(logged):
    # given a finite value whose squares overflow a double
    rows = [{"cpu": 20.5, "disk": 1e308, "network": 8.0e6}]
    # when the loaded model scores it
    (row,) = predict_records(logged["model"], rows)
    # then it is invalid with a reason, and no number in it is Infinity or NaN
    assert row["is_valid"] is False and row["invalid_reason"] == "disk too large to score"
    assert row["distance"] is None and row["anomaly_score"] is None and row["cluster"] == -1
    assert row["is_anomaly"] is False and row["is_alert"] is False and row["warming_up"] is False
    assert floats_are_finite_or_null([row])


def test_a_huge_value_in_a_series_is_left_out_of_the_history_of_the_rows_after_it(logged):
    # given a window of ordinary rows with one huge value in the middle
    window = ordinary_rows(SPAN + 2)
    spoiled = window[:10] + [{**window[10], "disk": 1e308}] + window[10:]
    # when the window is scored with and without it
    with_it = predict_records(logged["model"], spoiled)
    without = predict_records(logged["model"], window)
    # then only that row is invalid, and the others score as if it had not been sent
    assert [r["is_valid"] for r in with_it] == [True] * 10 + [False] + [True] * len(window[10:])
    assert with_it[:10] + with_it[11:] == without
    assert floats_are_finite_or_null(with_it)


@pytest.mark.parametrize(
    "value, reason",
    [
        (float("nan"), "missing value for disk"),
        (float("inf"), "non-finite value for disk"),
        (float("-inf"), "non-finite value for disk"),
    ],
)
def test_nan_and_infinity_are_invalid_rows_with_null_numbers(logged, value, reason):
    # given a row holding NaN or an infinity (a NaN double reads as a missing value)
    # when the loaded model scores it
    (row,) = predict_records(logged["model"], [{"cpu": 20.5, "disk": value, "network": 8.0e6}])
    # then it is invalid with the core's reason, and its numbers are null
    assert row["is_valid"] is False and row["invalid_reason"] == reason
    assert row["distance"] is None and row["anomaly_score"] is None and row["disk_std"] is None


def test_a_lone_ordinary_row_says_it_is_warming_up(logged):
    # given one ordinary row, sent alone
    # when the loaded model scores it
    (row,) = predict_records(logged["model"], ordinary_rows(1, start=100))
    # then it is scored, on a window of itself, and says so
    assert row["is_valid"] is True and row["warming_up"] is True
    assert row["disk_std"] == 0.0


def test_a_window_past_warm_up_judges_its_last_row_on_full_history(logged):
    # given warmup_rows + 1 ordinary rows of one series
    count = logged["params"].warmup_rows + 1
    # when the loaded model scores them
    rows = predict_records(logged["model"], ordinary_rows(count, start=100))
    # then every row but the last is warming up, and the last is judged on a full window: ordinary
    assert [r["warming_up"] for r in rows] == [True] * (count - 1) + [False]
    assert rows[-1]["is_valid"] is True and rows[-1]["is_anomaly"] is False


def test_a_row_the_limits_let_through_still_never_answers_infinity_or_nan(monkeypatch):
    # given a model whose limits would let any finite value through (none of ours does)
    import core.model

    monkeypatch.setattr(core.model, "scorable_limits", lambda params: np.full(len(params.features), np.inf))
    model = AnomalyDetectorModel()
    model.params = tiny_fit()
    # when a huge value reaches the core's arithmetic and overflows
    with np.errstate(over="ignore", invalid="ignore"):
        scored = model.predict(None, pd.DataFrame([{"cpu": 20.5, "disk": 1e308, "network": 8.0e6}]))
    # then the row is invalid with a reason, and its numbers are null, not Infinity or NaN
    (row,) = scored.to_dict("records")
    assert row["is_valid"] is False and row["invalid_reason"] == "values too large to score"
    assert row["distance"] is None and row["anomaly_score"] is None and row["cluster"] == -1
    assert row["is_anomaly"] is False and row["warming_up"] is False


def test_warming_up_is_the_cores_warm_up_per_series_and_skips_invalid_rows():
    # given a model that alerts on every scored row past warm-up, and two interleaved series
    # with invalid rows among them
    params = tiny_fit(alert_threshold=0.0)
    model = AnomalyDetectorModel()
    model.params = params
    a, b = ordinary_rows(SPAN + 3), ordinary_rows(SPAN + 3, start=500)
    a[3]["cpu"], b[5]["disk"], a[7]["network"] = -1.0, "abc", None
    rows = pd.DataFrame([row for pair in zip(a, [{**r, "series": "db-1"} for r in b]) for row in pair])
    # when the pyfunc scores the request
    scored = model.predict(None, rows)
    # then warming_up marks exactly the rows the core keeps from alerting, series by series
    assert scored["warming_up"].tolist() == (scored["is_valid"] & ~scored["is_alert"]).tolist()
    for _, part in rows.groupby("series"):
        core, _ = score_series(params, part)
        valid = core["is_valid"].to_numpy()
        assert (
            scored.loc[part.index, "warming_up"].to_numpy() == valid & (np.cumsum(valid) - valid < params.warmup_rows)
        ).all()
        assert scored.loc[part.index, "warming_up"].sum() == params.warmup_rows


def test_logging_the_model_gives_no_type_hint_warning_and_keeps_the_signature(tmp_path):
    # given a fresh interpreter that records every warning (pytest's filters hide this one)
    script = f"""
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import mlflow, pandas as pd
    from core.model import log_anomaly_model
    from core.scoring import ModelParams
    params = ModelParams.from_json({tiny_fit().to_json()!r})
    mlflow.set_tracking_uri("sqlite:///{tmp_path / "mlflow.db"}")
    with mlflow.start_run():
        info = log_anomaly_model(params, pd.DataFrame({{"cpu": [20.5], "disk": [3e6], "network": [8e6]}}), None)
    model = mlflow.pyfunc.load_model(info.model_uri)
    out = model.predict(pd.DataFrame({{"cpu": [20.5], "disk": [3e6], "network": [8e6], "series": ["a"]}}))
signature = model.metadata.signature
print(json.dumps({{
    "warnings": [str(w.message) for w in caught],
    "inputs": [[c.name, c.required] for c in signature.inputs.inputs],
    "outputs": [c.name for c in signature.outputs.inputs],
    "columns": list(out.columns),
}}))
"""
    # when it logs and loads the model with a real mlflow.pyfunc.log_model
    result = run_command([PYTHON, "-c", script], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # then MLflow asks for no type hints, the optional series input stays optional,
    # and the signature's outputs are exactly predict's columns, warming_up included
    assert not [w for w in seen["warnings"] if "type hint" in w.lower()], seen["warnings"]
    assert seen["inputs"] == [["cpu", True], ["disk", True], ["network", True], ["series", False], ["timestamp", False]]
    assert seen["outputs"] == seen["columns"] and seen["columns"][-1] == "warming_up"


# -- `mlflow models serve` ------------------------------------------------------------------------
def records(rows: list[dict]) -> str:
    # allow_nan: the test sends NaN and Infinity on purpose, as lenient clients do
    return json.dumps({"dataframe_records": rows}, allow_nan=True)


def test_the_scoring_server_answers_strict_json_for_huge_nan_and_infinite_values(served):
    # given rows with a huge finite value, NaN and Infinity (JSON tokens Python clients send)
    rows = [{"cpu": 20.5, "disk": value, "network": 8.0e6} for value in (1e308, math.nan, math.inf, -math.inf)]
    rows.append({"cpu": 20.5, "disk": 3.0e6, "network": 8.0e6})
    # when they are sent to the server
    status, body = post(served, records(rows))
    # then the body parses strictly: each bad row is invalid with a reason and null numbers
    assert status == 200, body
    out = body["predictions"]
    assert [r["invalid_reason"] for r in out] == [
        "disk too large to score",
        "missing value for disk",
        "non-finite value for disk",
        "non-finite value for disk",
        "",
    ]
    assert [r["distance"] is None for r in out] == [True] * 4 + [False]
    assert [r["anomaly_score"] is None for r in out] == [True] * 4 + [False]
    assert floats_are_finite_or_null(out)


def test_the_scoring_server_says_which_rows_are_warming_up(served, logged):
    # given a lone ordinary row, then a window of warmup_rows + 1 ordinary rows of one series
    # (the sample's first 24 rows: the README's example request)
    count = logged["params"].warmup_rows + 1
    status, lone = post(served, records(ordinary_rows(1, start=100)))
    assert status == 200, lone
    # when they are sent to the server
    status, window = post(served, records(ordinary_rows(count)))
    assert status == 200, window
    # then the lone row is warming up; in the window only the last row is not, and it is ordinary
    assert lone["predictions"][0]["warming_up"] is True
    out = window["predictions"]
    assert [r["warming_up"] for r in out] == [True] * (count - 1) + [False]
    assert out[-1]["is_valid"] is True and out[-1]["is_anomaly"] is False
    # and the server's numbers are the pyfunc's
    assert out == predict_records(logged["model"], ordinary_rows(count))


def test_the_scoring_server_explains_each_row_as_the_scoring_core_does(served, logged):
    # given a full window of ordinary rows whose last row's disk jumps far above normal
    rows = ordinary_rows(logged["params"].warmup_rows + 1)
    rows[-1] = {**rows[-1], "disk": rows[-1]["disk"] * 50}
    # when the server scores them
    status, body = post(served, records(rows))
    assert status == 200, body
    out = body["predictions"]
    # then every row carries the core's explanation, number for number
    want, _ = score_series(logged["params"], pd.DataFrame(rows))
    for column in EXPLANATION_COLUMNS:
        assert [r[column] for r in out] == want[column].tolist(), column
    # and the jump is explained by a disk feature, beside the nearest centroid's value
    last = out[-1]
    assert last["is_anomaly"] is True and last["explained_by"].startswith("disk_")
    assert 0.5 < last["explained_share"] <= 1.0
    assert last["explained_value"] > last["explained_centroid_value"]


def test_a_row_on_its_centroid_explains_nothing_and_an_invalid_row_has_null_explanation():
    # given a model whose one centroid is exactly at an ordinary row's features (no history)
    params = ModelParams(
        features=FEATURES,
        mean=[10.0, 20.0, 30.0],
        scale=[1.0, 0.5, 0.25],
        centroids=[[0.0, 0.0, 0.0]],
        expected_label=0,
        rule="distance",
        threshold=1.0,
    )
    frame = pd.DataFrame({"cpu": [10.0, 10.0, math.nan], "disk": [20.0, 20.0, 1.0], "network": [30.0, 38.0, 1.0]})
    # when the pyfunc scores a row on the centroid, a row off it in network only, and an invalid row
    model = AnomalyDetectorModel()
    model.params = params
    out = model.predict(None, frame)
    # then the first explains nothing, the second is all network (in original units), the third is null
    assert out["explained_by"].tolist() == ["", "network", ""]
    assert out["explained_share"].tolist()[:2] == [0.0, 1.0]
    assert out["explained_value"][1] == 38.0 and out["explained_centroid_value"][1] == 30.0
    assert out["explained_share"][2] is None and out["explained_value"][2] is None
