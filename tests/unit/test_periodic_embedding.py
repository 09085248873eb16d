"""Periodic numeric embeddings (`model.mlp.numeric_embedding: periodic`, PLR): shapes, which dense columns they
read (the value of each numeric column, not its bins), the frequencies' start, the weights' round trip, the
ONNX export's parity, and the config's checks."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pyarrow as pa
import pytest
import torch
from pydantic import ValidationError

from luodi.config import ModelConfig, validate_config
from luodi.features.pipeline import FeaturePipeline
from luodi.models.mlp import MLP, Members, PeriodicEmbedding
from luodi.optimize.export import OPSET


def periodic_model(members: int = 1, columns: list[int] | None = None, **mlp: object) -> MLP:
    torch.manual_seed(0)
    config = ModelConfig(hidden_sizes=[8], mlp={"ensemble": members, "numeric_embedding": "periodic",  # type: ignore[arg-type]
                                                "periodic_frequencies": 3, "periodic_width": 5, **mlp})
    return MLP(config, 4, [(4, 2)], 3, combine="softmax", numeric=[0, 2] if columns is None else columns)


def inputs(batch: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"dense": torch.randn(batch, 4, generator=generator),
            "categorical": torch.randint(0, 4, (batch, 1), generator=generator)}


def test_each_numeric_column_adds_its_vector_beside_the_inputs() -> None:
    embedding = PeriodicEmbedding([0, 2], frequencies=3, sigma=0.1, out_width=5)
    hidden = torch.randn(7, 6)
    out = embedding(hidden)
    assert out.shape == (7, 6 + 2 * 5)
    assert torch.equal(out[:, :6], hidden)  # the inputs pass as they are (explanations attribute to them)
    assert (out[:, 6:] >= 0).all()  # ReLU
    changed = hidden.clone()
    changed[:, 1] += 5.0  # a column that is not embedded changes only itself
    assert torch.equal(embedding(changed)[:, 6:], out[:, 6:])
    changed = hidden.clone()
    changed[:, 2] += 0.5  # the second embedded column changes only its own vector
    again = embedding(changed)
    assert torch.equal(again[:, 6:11], out[:, 6:11]) and not torch.equal(again[:, 11:], out[:, 11:])


def test_the_frequencies_start_from_the_configured_sigma() -> None:
    torch.manual_seed(0)
    for sigma in (0.01, 1.0):
        frequencies = PeriodicEmbedding(list(range(50)), frequencies=40, sigma=sigma, out_width=2).frequencies
        assert frequencies.requires_grad
        assert abs(float(frequencies.detach().std()) / sigma - 1.0) < 0.05


@pytest.mark.parametrize("members", [1, 4])
def test_the_mlp_embeds_first_and_keeps_its_input_and_output_shapes(members: int) -> None:
    model = periodic_model(members)
    assert isinstance(model.body[0], PeriodicEmbedding)
    if members > 1:
        assert isinstance(model.body[1], Members)
    first = next(m for m in model.body if hasattr(m, "weight") and not isinstance(m, PeriodicEmbedding | Members))
    assert first.weight.shape[-1] == 4 + 2 + 2 * 5  # dense, the category's embedding, two numeric vectors
    trained = model.train()(inputs())
    assert trained.shape == ((6, members, 3) if members > 1 else (6, 3))
    assert model.eval()(inputs()).shape == (6, 3)
    trained.sum().backward()
    assert model.body[0].frequencies.grad is not None and model.body[0].frequencies.grad.abs().sum() > 0


def test_no_numeric_column_or_the_default_adds_nothing() -> None:
    assert not any(isinstance(m, PeriodicEmbedding) for m in periodic_model(columns=[]).modules())
    plain = MLP(ModelConfig(hidden_sizes=[8]), 4, [], 3, numeric=[0, 1])
    assert not any(isinstance(m, PeriodicEmbedding) for m in plain.modules())


def test_the_weights_round_trip_through_a_state_dict() -> None:
    model = periodic_model(4).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert not any(key.endswith("columns") for key in model.state_dict())  # from the pipeline, not saved
    torch.manual_seed(5)
    again = MLP(model_config := ModelConfig(hidden_sizes=[8], mlp={  # type: ignore[arg-type]
        "ensemble": 4, "numeric_embedding": "periodic", "periodic_frequencies": 3, "periodic_width": 5}),
        4, [(4, 2)], 3, combine="softmax", numeric=[0, 2])
    assert model_config.mlp.periodic_sigma == 0.1
    assert not torch.allclose(again.eval()(inputs()), model(inputs()))
    buffer.seek(0)
    again.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(again.eval()(inputs()), model(inputs()), rtol=0, atol=0)


class Positional(torch.nn.Module):
    """The model with its inputs as arguments, as the exporter traces it."""

    def __init__(self, model: MLP):
        super().__init__()
        self.model = model

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.model({"dense": dense, "categorical": categorical})


def test_the_onnx_export_matches_eager() -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model = periodic_model(4, periodic_sigma=1.0).eval()
    sample = inputs(9)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation, as luodi's export (optimize/export.py)
        warnings.simplefilter("ignore")
        torch.onnx.export(Positional(model).eval(), (sample["dense"], sample["categorical"]), buffer, dynamo=False,
                          input_names=["dense", "categorical"], output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"dense": {0: "rows"}, "categorical": {0: "rows"}, "logits": {0: "rows"}})
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (sample, inputs(3)):  # the traced batch size and another
        (logits,) = session.run(None, {name: tensor.numpy() for name, tensor in batch.items()})
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(batch).numpy(), atol=1e-5)


def test_the_pipeline_names_the_value_column_of_each_numeric_feature() -> None:
    config = validate_config({
        "name": "t", "data": {"train": "unused.csv"},
        "input_features": [{"name": "a", "type": "numeric", "encoding": "piecewise_linear", "bins": 4},
                           {"name": "c", "type": "category"}, {"name": "flag", "type": "binary"},
                           {"name": "b", "type": "numeric"}],
        "target": {"name": "y", "task": "multiclass"}})
    table = pa.table({"a": np.arange(40, dtype=np.float64), "c": ["x", "y"] * 20, "flag": [True, False] * 20,
                      "b": np.linspace(0, 1, 40), "y": ["p", "q"] * 20})
    pipeline = FeaturePipeline.fit(config, table)
    assert pipeline.dense_width() == 5 + 1 + 1  # a: value + 4 bins, flag, b
    assert pipeline.numeric_columns() == [0, 6]
    dense = pipeline.transform(table, "table", with_target=False).inputs["dense"]
    np.testing.assert_allclose(dense[:, 0], (table["a"].to_numpy() - 19.5) / np.arange(40).std(), rtol=1e-5)


@pytest.mark.parametrize("key, value", [("numeric_embedding", "fourier"), ("periodic_sigma", 0.0),
                                        ("periodic_frequencies", 0), ("periodic_width", 1000)])
def test_bad_periodic_settings_are_refused(key: str, value: object) -> None:
    with pytest.raises(ValidationError, match=key):
        ModelConfig(mlp={key: value})  # type: ignore[arg-type]
