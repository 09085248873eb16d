"""Integrated gradients per input column: completeness, the baseline row, columns the model ignores, the class
explained, regression units, and errors that name the problem."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from luodi.config import validate_config
from luodi.errors import InputError
from luodi.evaluate.explain import ExplainedOutput, baseline_inputs, explain_encoded, feature_blocks
from luodi.features.pipeline import FeaturePipeline
from luodi.models import build_model


def fitted(task: str = "binary", seed: int = 0) -> tuple[FeaturePipeline, torch.nn.Module, pa.Table]:
    """A pipeline fitted on a small table and an untrained model over it (weights from `seed`)."""
    rng = np.random.default_rng(seed)
    rows = 120
    target = {"binary": rng.choice(["no", "yes"], rows).tolist(),
              "multiclass": rng.choice(["a", "b", "c"], rows).tolist(),
              "regression": rng.normal(100, 20, rows)}[task]
    table = pa.table({
        "age": rng.normal(40, 10, rows), "city": rng.choice(["oslo", "oslo", "bergen", "molde"], rows).tolist(),
        "member": rng.choice(["yes", "no"], rows).tolist(),
        "note": [" ".join(rng.choice(["late", "paid", "vip"], 2)) for _ in range(rows)],
        "income": rng.normal(50, 5, rows), "y": target,
    })
    config = validate_config({
        "name": "t", "data": {"train": "x.csv"}, "target": {"name": "y", "task": task},
        "input_features": [{"name": "age", "type": "numeric"}, {"name": "city", "type": "category"},
                           {"name": "member", "type": "binary"}, {"name": "note", "type": "text"},
                           {"name": "income", "type": "numeric", "normalization": "minmax"}],
        "model": {"hidden_sizes": [16, 8], "dropout": 0.5},
    })
    pipeline = FeaturePipeline.fit(config, table)
    torch.manual_seed(seed)
    return pipeline, build_model(config, pipeline).eval(), table


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_attributions_add_up_to_output_minus_baseline(task: str) -> None:
    pipeline, model, table = fitted(task)
    encoded = pipeline.transform(table, "t", with_target=False)
    attributions, found = explain_encoded(model, pipeline, table, encoded, steps=64)
    assert attributions.shape == (table.num_rows, 5)
    gap = attributions.sum(axis=1) - (found["output"] - found["baseline"])
    assert np.abs(gap).max() < 1e-3 * max(1.0, float(np.abs(found["output"]).max()))
    assert np.allclose(gap, found["delta"], atol=1e-4)
    if task == "regression":  # outputs are in target units, not standardized
        assert found["output"].mean() == pytest.approx(pipeline.target.mean, abs=5 * pipeline.target.std)
        assert (found["class"] == -1).all()
    else:
        assert ((found["output"] > 0) & (found["output"] < 1)).all()


def test_explained_class_is_the_predicted_one_unless_chosen() -> None:
    pipeline, model, table = fitted("binary")
    encoded = pipeline.transform(table, "t", with_target=False)
    _, found = explain_encoded(model, pipeline, table, encoded)
    inputs = tuple(torch.from_numpy(encoded.inputs[key]) for key in encoded.inputs)
    with torch.no_grad():
        probabilities = ExplainedOutput(model, list(encoded.inputs), pipeline)(*inputs).numpy()
    assert (found["class"] == probabilities.argmax(axis=1)).all()
    as_yes, yes = explain_encoded(model, pipeline, table, encoded, target_class="yes")
    as_no, no = explain_encoded(model, pipeline, table, encoded, target_class="no")
    assert np.allclose(as_yes, -as_no, atol=1e-5)  # P(no) = 1 - P(yes)
    assert np.allclose(yes["output"] + no["output"], 1.0, atol=1e-6)
    assert (yes["class"] == pipeline.target.class_names.index("yes")).all()


def test_a_column_the_model_ignores_gets_nothing() -> None:
    pipeline, model, table = fitted("binary")
    blocks = feature_blocks(pipeline, model)
    assert [name for name, _ in blocks][:4] == ["age", "member", "note", "income"]  # dense first, then embeddings
    first = model.body[0]  # (hidden, combined width)
    with torch.no_grad():
        first.weight[:, 0] = 0.0  # `age` is the first dense column
    encoded = pipeline.transform(table, "t", with_target=False)
    attributions, _ = explain_encoded(model, pipeline, table, encoded)
    columns = [encoder.name for encoder in pipeline.encoders]
    assert np.abs(attributions[:, columns.index("age")]).max() == 0.0
    assert np.abs(attributions[:, columns.index("city")]).max() > 0.0


def test_the_baseline_row_is_fill_values_and_the_most_frequent_category() -> None:
    pipeline, _, table = fitted("binary")
    baseline = baseline_inputs(pipeline, table)
    numeric, binary, text, minmax = (pipeline.encoders[i] for i in (0, 2, 3, 4))
    dense = baseline.inputs["dense"][0]
    assert dense[0] == pytest.approx((numeric.fill - numeric.center) / numeric.scale)  # the training mean
    assert numeric.fill == pytest.approx(float(np.mean(table.column("age").to_numpy())))
    assert dense[1] == binary.fill  # the more common value
    assert not dense[2:2 + text.width()].any()  # an empty text
    assert dense[-1] == pytest.approx((minmax.fill - minmax.center) / minmax.scale)
    assert baseline.inputs["categorical"].tolist() == [[1]]  # index 1: the most frequent city
    assert pipeline.encoders[1].vocabulary[0] == "oslo"


def test_bad_requests_name_the_problem() -> None:
    pipeline, model, table = fitted("binary")
    encoded = pipeline.transform(table.slice(0, 3), "t", with_target=False)
    with pytest.raises(InputError, match="'maybe' is not a class.*'no', 'yes'"):
        explain_encoded(model, pipeline, table, encoded, target_class="maybe")
    with pytest.raises(InputError, match="steps must be at least 2"):
        explain_encoded(model, pipeline, table, encoded, steps=1)
    regression, regression_model, regression_table = fitted("regression")
    encoded = regression.transform(regression_table.slice(0, 3), "t", with_target=False)
    with pytest.raises(InputError, match="classifiers only"):
        explain_encoded(regression_model, regression, regression_table, encoded, target_class="a")
