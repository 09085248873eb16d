"""Per-example explanations: integrated gradients (Captum) from a baseline row to each row, one number per column.

Integrated gradients runs over the representation the model combines: the dense inputs, the category
embeddings and the vector each feature encoder (CNN, sequence encoder) makes of its column, side by side as the
model's hidden layers read them (Captum's LayerIntegratedGradients on the input of `model.body`). The
attributions of a column's block (one value for a number, an embedding's width for a category, a vocabulary's
width for a bag of words, an encoder's output for an image) are summed, so each row gets one number per column
the user knows; they add up to the explained output minus the baseline's output (completeness; `delta` is the gap
left by the numerical integral).

The baseline row is what the fitted pipeline makes of a row whose cells are all missing, except categories,
which take their most frequent training value: numbers become their fill value (the training mean by default),
binary columns their more common value, text an empty string. Image and sequence columns take their training
mean, set on the encoded input: each channel's mean pixel, or zero for inputs the encoder normalizes. The
explained output is the probability of the predicted class (or of `target_class`), or the predicted value in
the target's units for regression.

Text models add token-level attributions here later (integrated gradients on their token embeddings); the
per-column numbers stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from luodi.errors import InputError
from luodi.features.encoders import CategoryEncoder
from luodi.features.pipeline import Encoded, FeaturePipeline

CHUNK_ROWS = 512  # rows per integrated-gradients call: steps x rows activations stay small


@dataclass
class Explanation:
    """Attributions of each row's explained output to each input column, plus what was explained."""

    features: list[str]
    attributions: np.ndarray  # (rows, features)
    predictions: list[Any]
    explained: list[Any]  # the class whose probability is explained, per row (None for regression)
    outputs: np.ndarray  # (rows,) the explained output
    baseline_outputs: np.ndarray  # (rows,) the same output at the baseline row
    delta: np.ndarray  # (rows,) sum of attributions - (output - baseline output)
    target: str
    task: str
    warnings: list[str]

    def to_frame(self) -> Any:
        """One row per input row: prediction, explained class and output, baseline output, `<column>_attribution`."""
        import pandas as pd

        columns: dict[str, Any] = {f"{self.target}_prediction": self.predictions}
        if self.task != "regression":
            columns["explained_class"] = self.explained
        columns["explained_output"] = self.outputs
        columns["baseline_output"] = self.baseline_outputs
        for index, feature in enumerate(self.features):
            columns[f"{feature}_attribution"] = self.attributions[:, index]
        return pd.DataFrame(columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what was explained, the largest completeness gap, and per row the attributions by column."""
        output = "value" if self.task == "regression" else "probability of the explained class"
        rows = []
        for index in range(len(self.predictions)):
            rows.append({
                "prediction": self.predictions[index],
                "explained_class": self.explained[index],
                "output": float(self.outputs[index]),
                "baseline_output": float(self.baseline_outputs[index]),
                "attributions": {feature: float(value)
                                 for feature, value in zip(self.features, self.attributions[index], strict=True)},
            })
        return {"method": "integrated gradients", "explained_output": output, "features": self.features,
                "max_delta": float(np.abs(self.delta).max()) if len(self.delta) else 0.0, "rows": rows,
                "warnings": self.warnings}


def feature_blocks(pipeline: FeaturePipeline, model: nn.Module) -> list[tuple[str, int]]:
    """(column, width) of each block of the representation the model combines, in the model's order: dense
    encoders in input order (their `dense` columns), one embedding per category column, then one output vector
    per feature encoder (`model.encoders`, in the order of the pipeline's tensor encoders)."""
    dense = [(encoder.name, encoder.width()) for encoder in pipeline.encoders if encoder.kind == "dense"]
    embedded = [(encoder.name, encoder.embedding_dim()) for encoder in pipeline.encoders
                if isinstance(encoder, CategoryEncoder)]
    modules = list(getattr(model, "encoders", []))
    tensors = pipeline.tensor_encoders()
    if len(modules) != len(tensors):
        raise ValueError(f"the model has {len(modules)} feature encoders, the pipeline {len(tensors)} tensor features")
    encoded = [(encoder.name, int(module.output_size)) for encoder, module in zip(tensors, modules, strict=True)]
    return dense + embedded + encoded


def tensor_baseline(encoder: Any, array: np.ndarray) -> np.ndarray:
    """A tensor feature's encoded input at its training mean: image pixels (uint8, normalized inside the model)
    take each channel's mean; inputs the encoder normalized (float) are zero."""
    if array.dtype == np.uint8:  # (rows, channels, height, width)
        means = np.round(np.asarray(encoder.mean, np.float64) * 255).reshape(1, -1, *[1] * (array.ndim - 2))
        return np.broadcast_to(means, array.shape).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return np.zeros_like(array)
    raise ValueError(f"column {encoder.name!r}: no baseline for {array.dtype} inputs yet")


def baseline_inputs(pipeline: FeaturePipeline, example: pa.Table) -> Encoded:
    """The baseline row through the fitted pipeline (see the module docstring). `example`, one coerced row of
    the data being explained, fills the columns of tensor features, whose baseline is then set on their inputs."""
    columns: dict[str, Any] = {}
    for encoder in pipeline.encoders:
        if encoder.kind == "tensor":
            columns[encoder.name] = example.column(encoder.name).slice(0, 1)
        elif isinstance(encoder, CategoryEncoder) and encoder.vocabulary:
            columns[encoder.name] = pa.array([encoder.vocabulary[0]], pa.string())
        elif encoder.config.type == "numeric":
            columns[encoder.name] = pa.array([None], pa.float64())
        else:
            columns[encoder.name] = pa.array([None], pa.string())
    baseline = pipeline.transform(pa.table(columns), "baseline row", with_target=False)
    for encoder in pipeline.tensor_encoders():
        for key, array in baseline.inputs.items():
            if key == encoder.name or key.startswith(f"{encoder.name}."):
                baseline.inputs[key] = tensor_baseline(encoder, array)
    return baseline


class ExplainedOutput(nn.Module):
    """The model as Captum calls it: positional input tensors in, the output to explain out.

    Classifiers give class probabilities (batch, classes), regression the value in target units (batch,).
    """

    def __init__(self, model: nn.Module, keys: list[str], pipeline: FeaturePipeline):
        super().__init__()
        self.model, self.keys = model, keys
        self.task = pipeline.target.task
        self.mean, self.std = pipeline.target.mean, pipeline.target.std

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        logits = self.model(dict(zip(self.keys, tensors, strict=True)))  # (batch, outputs)
        if self.task == "regression":
            return logits.squeeze(-1) * self.std + self.mean  # (batch,)
        if self.task == "binary":
            positive = torch.sigmoid(logits.squeeze(-1))
            return torch.stack([1 - positive, positive], dim=1)  # (batch, 2)
        return torch.softmax(logits, dim=-1)  # (batch, classes)


def combined_layer(model: nn.Module) -> nn.Module:
    """The module whose input is the combined representation (the MLP's hidden layers)."""
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise ValueError(f"explanations need a model whose hidden layers are `body`; {type(model).__name__} has none")
    return body


def explain_encoded(model: nn.Module, pipeline: FeaturePipeline, table: pa.Table, encoded: Encoded, *,
                    target_class: str | None = None, steps: int = 50) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Integrated-gradients attributions (rows, input columns in config order) of coerced rows `table` (encoded
    as `encoded`), and the outputs they explain.

    Returns (attributions, {"class": explained class index per row (-1 for regression), "output", "baseline",
    "delta"}).
    """
    from captum.attr import LayerIntegratedGradients

    if steps < 2:
        raise InputError(f"steps must be at least 2 (got {steps})")
    blocks = feature_blocks(pipeline, model)
    columns = [encoder.name for encoder in pipeline.encoders]  # the config's order, as users listed them
    keys = list(encoded.inputs)
    explained = ExplainedOutput(model, keys, pipeline).eval()
    baseline = baseline_inputs(pipeline, table)
    task = pipeline.target.task
    fixed_class = None
    if target_class is not None:
        if task == "regression":
            raise InputError("--class applies to classifiers only")
        names = pipeline.target.class_names
        if target_class not in names:
            raise InputError(f"--class {target_class!r} is not a class of this model; classes: {names}")
        fixed_class = names.index(target_class)
    integrated = LayerIntegratedGradients(explained, combined_layer(model))
    rows = len(encoded)
    attributions = np.zeros((rows, len(columns)), np.float64)
    found = {name: np.zeros(rows, np.float64) for name in ("output", "baseline", "delta")}
    found["class"] = np.full(rows, -1, np.int64)
    for start in range(0, rows, CHUNK_ROWS):
        stop = min(rows, start + CHUNK_ROWS)
        inputs = tuple(torch.from_numpy(encoded.inputs[key][start:stop]) for key in keys)
        baselines = tuple(torch.from_numpy(np.repeat(baseline.inputs[key], stop - start, axis=0)) for key in keys)
        with torch.no_grad():
            output, base_output = explained(*inputs), explained(*baselines)
        target = None
        if task != "regression":
            chosen = output.argmax(dim=1) if fixed_class is None else torch.full((stop - start,), fixed_class)
            target = chosen
            found["class"][start:stop] = chosen.numpy()
            output = output.gather(1, chosen[:, None]).squeeze(1)
            base_output = base_output.gather(1, chosen[:, None]).squeeze(1)
        layer_attributions, delta = integrated.attribute(
            inputs, baselines=baselines, target=target, n_steps=steps, attribute_to_layer_input=True,
            return_convergence_delta=True)
        combined = layer_attributions.detach().double().numpy()  # (rows, combined width)
        if combined.shape[1] != sum(width for _, width in blocks):
            raise ValueError(f"the model combines {combined.shape[1]} values per row, the pipeline's columns "
                             f"{sum(width for _, width in blocks)}: this architecture is not supported yet")
        offsets = np.cumsum([0] + [width for _, width in blocks])
        for block, (name, _) in enumerate(blocks):
            column = columns.index(name)
            attributions[start:stop, column] = combined[:, offsets[block]:offsets[block + 1]].sum(axis=1)
        found["output"][start:stop] = output.double().numpy()
        found["baseline"][start:stop] = base_output.double().numpy()
        found["delta"][start:stop] = delta.detach().double().numpy()
    return attributions, found


def explain(package: Any, data: Any, *, source: str = "records", target_class: str | None = None,
            steps: int = 50, strict: bool = False) -> Explanation:
    """Explain a loaded package's predictions on raw records (file path, DataFrame, dict or list of dicts)."""
    table, encoded = package.encode(data, source, strict=strict)
    if not len(encoded):
        raise InputError(f"{source}: no rows to explain")
    pipeline = package.pipeline
    attributions, found = explain_encoded(package.model, pipeline, table, encoded, target_class=target_class,
                                          steps=steps)
    predictions, _ = pipeline.target.decode(package.outputs(encoded))
    names = pipeline.target.classes
    explained = [names[index] if index >= 0 else None for index in found["class"]]
    return Explanation(
        features=[encoder.name for encoder in pipeline.encoders], attributions=attributions, predictions=predictions,
        explained=explained, outputs=found["output"], baseline_outputs=found["baseline"], delta=found["delta"],
        target=package.target, task=pipeline.target.task, warnings=encoded.unseen.messages(),
    )
