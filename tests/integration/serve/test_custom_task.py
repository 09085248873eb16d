"""A task added from outside luodi's shared layers: quantile regression, registered by this test.

The task (its target, loss, outputs, metrics and their direction) and its model shape (the combiner under a head
that keeps the quantiles in order) are defined here and only added to `luodi.tasks.TASKS` and
`luodi.models.MODEL_SHAPES`. Nothing in luodi names them, yet the one model trains (api.train, with early
stopping on the task's own metric), evaluates with its report, predicts (DataFrame columns), explains, and serves
(/v1, Open Inference Protocol v2 through tritonclient, OpenAPI, the prediction log) through the shared code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import luodi.api as api
from luodi.models import MODEL_SHAPES, build_combiner
from luodi.package import load_package
from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config
from luodi.tasks import TASKS, Output, OutputSpec, Predictions, register_task
from luodi.tasks.regression import REGRESSION, ValueTarget, regression_metrics

QUANTILES = (0.1, 0.5, 0.9)
PARTS = ("q10", "q50", "q90")


def pinball(y: Any, quantiles: Any) -> Any:
    """Mean pinball loss of (rows, 3) quantile predictions against (rows,) values (numpy or torch)."""
    levels = (torch.tensor(QUANTILES, dtype=quantiles.dtype, device=quantiles.device)
              if isinstance(quantiles, torch.Tensor) else np.asarray(QUANTILES))
    error = y[:, None] - quantiles
    if isinstance(error, torch.Tensor):
        return torch.maximum(levels * error, (levels - 1) * error).mean()
    return float(np.maximum(levels * error, (levels - 1) * error).mean())


class PinballLoss(nn.Module):
    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pinball(target.float(), outputs.float())  # type: ignore[no-any-return]


class OrderedQuantiles(nn.Module):
    """The combiner's three outputs as a median and two positive spreads: q10 <= q50 <= q90 always."""

    def __init__(self, combiner: nn.Module):
        super().__init__()
        self.combiner, self.output_size = combiner, len(QUANTILES)

    @property
    def body(self) -> nn.Module:
        """The combined representation's layers, which explanations attribute through."""
        return self.combiner.body  # type: ignore[no-any-return]

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raw = self.combiner(inputs)
        middle, spread = raw[:, 1], nn.functional.softplus(raw[:, [0, 2]])
        return torch.stack([middle - spread[:, 0], middle, middle + spread[:, 1]], dim=1)


def build_ordered_quantiles(config: Any, pipeline: Any, output_size: int) -> nn.Module:
    return OrderedQuantiles(build_combiner(config, pipeline, output_size))


class QuantileRegression:
    """Three quantiles of a number per row; the median is the point prediction (the `values` report family)."""

    name = "quantile"
    stratify = "quantile"
    model = "ordered_quantiles"
    family = "values"
    classes = False
    directions = {"loss": "min", "pinball": "min", "coverage_error": "min", "mse": "min", "rmse": "min",
                  "mae": "min", "r2": "max"}

    def target(self, config: Any, state: dict[str, Any] | None = None) -> ValueTarget:
        return REGRESSION.target(config, state)  # standardized values, as regression's

    def output_size(self, target: ValueTarget) -> int:
        return len(QUANTILES)

    def loss(self, target: ValueTarget) -> nn.Module:
        return PinballLoss()

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def point(self, outputs: Any) -> Any:
        return outputs[..., 1]

    def score(self, target: ValueTarget, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
        values, quantiles = target.restore(y), target.restore(outputs)
        inside = (quantiles[:, 0] <= values) & (values <= quantiles[:, 2])
        return {**regression_metrics(values, quantiles[:, 1]), "pinball": pinball(values, quantiles),
                "coverage": float(inside.mean()), "coverage_error": abs(float(inside.mean()) - 0.8)}

    def loss_value(self, target: ValueTarget, outputs: np.ndarray, y: np.ndarray) -> float:
        return pinball(y, outputs)  # type: ignore[no-any-return]

    def output_specs(self, target: ValueTarget) -> tuple[OutputSpec, ...]:
        return (OutputSpec("prediction", "prediction", "number"),
                OutputSpec("quantiles", "quantile", "scores", parts=PARTS, parts_key="quantiles", v2_datatype="FP32"))

    def decode(self, target: ValueTarget, outputs: np.ndarray) -> Predictions:
        value, quantiles = self.output_specs(target)
        restored = target.restore(np.asarray(outputs, np.float64))
        return Predictions((Output(value, restored[:, 1]), Output(quantiles, restored)))


@pytest.fixture
def quantile_task() -> Iterator[QuantileRegression]:
    task = QuantileRegression()
    register_task(task)
    MODEL_SHAPES[task.model] = build_ordered_quantiles
    yield task
    del TASKS[task.name], MODEL_SHAPES[task.model]


def write_rows(path: Path, rows: int, seed: int) -> Path:
    """y grows with size and age; its noise grows with age, so the quantile band should widen with it."""
    rng = np.random.default_rng(seed)
    size, age = rng.normal(0, 1, rows).round(4), rng.integers(18, 80, rows)
    color = rng.choice(["red", "green", "blue"], rows)
    y = 3 * size + 0.05 * age + 1.5 * (color == "red") + rng.normal(0, 1, rows) * (0.2 + (age - 18) / 40)
    pd.DataFrame({"size": size, "age": age, "color": color, "y": y.round(4)}).to_csv(path, index=False)
    return path


def test_a_task_registered_from_outside_trains_evaluates_predicts_and_serves(
        quantile_task: QuantileRegression, tmp_path: Path, read_report: Any) -> None:
    import tritonclient.http as triton

    home, train, holdout = tmp_path / "home", write_rows(tmp_path / "train.csv", 900, 0), write_rows(
        tmp_path / "holdout.csv", 300, 1)
    config = {"name": "spread", "data": {"train": str(train)}, "target": {"name": "y", "task": "quantile"},
              "input_features": [{"name": "size", "type": "numeric"}, {"name": "age", "type": "numeric"},
                                 {"name": "color", "type": "category"}],
              "model": {"hidden_sizes": [32, 16], "dropout": 0.0},
              "trainer": {"epochs": 40, "batch_size": 32, "seed": 3, "optimizer": {"lr": 0.01},
                          "early_stopping": {"metric": "pinball", "patience": 5}},
              "runtime": {"device": "cpu", "threads": 1}}

    trained = api.train(config, home=home, progress="silent")
    assert trained.package is not None and trained.model == {"name": "spread", "version": 1}
    assert {"loss", "pinball", "coverage", "r2"} <= set(trained.metrics)
    assert api.show_model("spread/1", home=home)[0].task == "quantile"

    # It learned: better than the training quantiles of y for every row, the median explains most of y, and the
    # band holds about 80% of the rows.
    frame = pd.read_csv(holdout)
    constant = np.quantile(pd.read_csv(train)["y"], QUANTILES)[None, :].repeat(len(frame), 0)
    evaluated = api.evaluate(trained.package, holdout, home=home)
    metrics = evaluated["metrics"]
    assert metrics["pinball"] < 0.6 * pinball(frame["y"].to_numpy(), constant)
    assert metrics["r2"] > 0.8 and 0.65 < metrics["coverage"] < 0.95

    # The report shows it as the `values` family (residual table, slices) with the task's metrics.
    page = read_report(Path(evaluated["report"]))
    assert page.data["task"] == "quantile" and page.data["metrics"]["pinball"] == pytest.approx(metrics["pinball"])
    assert {cell["table"] for cell in page.cells} >= {"residuals"} and "regression" in page.data

    # Predictions: a column per output and per quantile; the median is the prediction; the band is ordered.
    predicted = api.predict(trained.package, holdout)
    q10, q50, q90 = (predicted[f"y_quantile_{part}"].to_numpy() for part in PARTS)
    np.testing.assert_allclose(predicted["y_prediction"].to_numpy(), q50)
    assert (q10 <= q50).all() and (q50 <= q90).all()
    width = q90 - q10  # the noise grows with age: so does the band
    assert width[frame["age"] > 60].mean() > 1.5 * width[frame["age"] < 30].mean()

    explained = api.explain(trained.package, frame.head(3), home=home)
    assert explained.output == "value" and explained.task == "quantile"
    np.testing.assert_allclose(explained.outputs, q50[:3], rtol=1e-4)  # the median is what is explained
    assert np.abs(explained.delta).max() < 0.05 * np.abs(explained.outputs - explained.baseline_outputs).max() + 1e-3

    package = load_package(trained.package)
    rows = frame.drop(columns="y").head(5).to_dict("records")
    expected = package.predict(rows).outputs
    settings = make_config(port=0, reload_interval_s=0, log_flush_s=0.2)
    with background([Reference(trained.package, None)], settings, home) as running:
        import httpx

        with httpx.Client(base_url=running.url, timeout=30) as client:
            body = client.post("/v1/models/spread/predict", json={"records": rows}).json()
            assert [row["prediction"] for row in body["predictions"]] == pytest.approx(
                expected["prediction"].data.tolist(), abs=1e-5)
            served = np.array([[row["quantiles"][part] for part in PARTS] for row in body["predictions"]])
            np.testing.assert_allclose(served, expected["quantiles"].data, atol=1e-5)
            schema = json.dumps(client.get("/openapi.json").json())
            assert all(f'"{part}"' in schema for part in PARTS)

        client = triton.InferenceServerClient(url=running.url.removeprefix("http://"))
        metadata = client.get_model_metadata("spread")
        outputs = {item["name"]: item for item in metadata["outputs"]}
        assert outputs["quantiles"]["datatype"] == "FP32" and outputs["quantiles"]["shape"] == [-1, 3]
        assert outputs["quantiles"]["parameters"]["quantiles"] == list(PARTS)
        numeric = np.array([[row["size"], row["age"]] for row in rows], dtype=np.float32)
        inputs = [triton.InferInput("numeric", list(numeric.shape), "FP32"),
                  triton.InferInput("color", [len(rows)], "BYTES")]
        inputs[0].set_data_from_numpy(numeric)
        inputs[1].set_data_from_numpy(np.array([row["color"].encode() for row in rows], dtype=np.object_))
        result = client.infer("spread", inputs)
        np.testing.assert_allclose(result.as_numpy("quantiles"), expected["quantiles"].data, atol=1e-4)
        client.close()

    # the log flushes every 0.2 s, so the /v1 and /v2 rows may be in separate part files
    parts = sorted((home / "predictions" / "spread").glob("part-*.parquet"))
    logged = [row for part in parts for row in pq.read_table(part).to_pylist()]
    assert len(logged) == 2 * len(rows)  # /v1 and /v2, each row once
    assert logged[0]["quantiles"] == pytest.approx(dict(zip(PARTS, expected["quantiles"].data[0], strict=True)),
                                                   abs=1e-5)
