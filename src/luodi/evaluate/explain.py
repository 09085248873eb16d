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
binary columns their more common value, a bag-of-words text an empty string. Image and sequence columns take
their training mean, set on the encoded input: each channel's mean pixel, or zero for inputs the encoder
normalizes. The explained output is the probability of the predicted class (or of `target_class`), or the
predicted value in the target's units for regression.

A text read as tokens (model.type rnn, transformer, hf) is not a cell of the baseline row: each row's reference
is its own text with every token replaced by the pad token, beside its real attention mask, so lengths match
(the reference Captum's BERT tutorials use; see evaluate/token_attributions.py). Its column's number is what
the words add over padding. Such columns also get one number per token (`Explanation.tokens`): integrated
gradients on the column's token embedding, from the same reference, the other inputs at their real values.

Rows whose gap exceeds GAP_TOLERANCE (0.01 in probability, or 0.01 target std) are integrated again with twice
the steps, up to REFINE_LIMIT times `steps`; rows still above are counted in the warnings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from luodi.errors import InputError
from luodi.evaluate.families import family_of
from luodi.evaluate.token_attributions import (
    TokenAttributions,
    TokenizedText,
    attribute_tokens,
    batching,
    token_embeddings,
    token_records,
    tokenize_texts,
)
from luodi.features.encoders import CategoryEncoder
from luodi.features.pipeline import Encoded, FeaturePipeline

CHUNK_ROWS = 512  # rows per integrated-gradients call: steps x rows activations stay small
GAP_TOLERANCE = 0.01  # largest completeness gap of a row left unrefined (probability, or target std units)
REFINE_LIMIT = 16  # rows above the tolerance are integrated again with doubled steps, up to this many times --steps


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
    output: str  # what the attributions explain, for people: "value", "probability of the explained class"
    warnings: list[str]
    # Text (tokens) columns: per row, each token's {"token", "text", "start", "end", "attribution"}.
    tokens: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    token_baseline_outputs: dict[str, np.ndarray] = field(default_factory=dict)  # (rows,) the column's words padded
    token_delta: dict[str, np.ndarray] = field(default_factory=dict)  # (rows,) tokens' sum - (output - that output)

    def top_tokens(self, row: int, count: int = 5) -> dict[str, list[dict[str, Any]]]:
        """Each text column's `count` tokens with the largest |attribution| in row `row`, largest first."""
        return {column: sorted(rows[row], key=lambda token: -abs(token["attribution"]))[:count]
                for column, rows in self.tokens.items()}

    def to_frame(self) -> Any:
        """One row per input row: prediction, explained class and output, baseline output, `<column>_attribution`,
        and for each text column `<column>_tokens`, its tokens as a JSON list."""
        import pandas as pd

        columns: dict[str, Any] = {f"{self.target}_prediction": self.predictions}
        if family_of(self.task).explains_classes:
            columns["explained_class"] = self.explained
        columns["explained_output"] = self.outputs
        columns["baseline_output"] = self.baseline_outputs
        for index, feature in enumerate(self.features):
            columns[f"{feature}_attribution"] = self.attributions[:, index]
        for feature, rows in self.tokens.items():
            columns[f"{feature}_tokens"] = [json.dumps(tokens, ensure_ascii=False) for tokens in rows]
        return pd.DataFrame(columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what was explained, the largest completeness gap, and per row the attributions by column
        (and, for text columns, by token)."""
        rows = []
        for index in range(len(self.predictions)):
            row = {
                "prediction": self.predictions[index],
                "explained_class": self.explained[index],
                "output": float(self.outputs[index]),
                "baseline_output": float(self.baseline_outputs[index]),
                "attributions": {feature: float(value)
                                 for feature, value in zip(self.features, self.attributions[index], strict=True)},
            }
            if self.tokens:
                row["tokens"] = {feature: tokens[index] for feature, tokens in self.tokens.items()}
                row["token_baseline_outputs"] = {feature: float(outputs[index])
                                                 for feature, outputs in self.token_baseline_outputs.items()}
            rows.append(row)
        result = {"method": "integrated gradients", "explained_output": self.output, "features": self.features,
                  "max_delta": largest(self.delta), "rows": rows, "warnings": self.warnings}
        if self.tokens:
            result["token_max_delta"] = {feature: largest(delta) for feature, delta in self.token_delta.items()}
        return result


def largest(delta: np.ndarray) -> float:
    """The largest completeness gap (0 for no rows)."""
    return float(np.abs(delta).max()) if len(delta) else 0.0


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
    the data being explained, fills the columns of tensor features, whose baseline is then set on their inputs;
    a text read as tokens keeps the example's ids here: its reference is made per row (`chunk_baselines`)."""
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
        if encoder.modality == "tokens":
            continue
        for key, array in baseline.inputs.items():
            if key == encoder.name or key.startswith(f"{encoder.name}."):
                baseline.inputs[key] = tensor_baseline(encoder, array)
    return baseline


class ExplainedOutput(nn.Module):
    """The model as Captum calls it: positional input tensors in, the output to explain out (the task's family
    says which): class probabilities (batch, classes) for classifiers, the value in target units (batch,)."""

    def __init__(self, model: nn.Module, keys: list[str], pipeline: FeaturePipeline):
        super().__init__()
        self.model, self.keys = model, keys
        self.task, self.target = pipeline.config.task(), pipeline.target
        self.family = family_of(self.task)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        logits = self.model(dict(zip(self.keys, tensors, strict=True)))  # (batch, outputs)
        return self.family.explained(self.task, self.target, logits)


def chunk_baselines(keys: list[str], baseline: Encoded, encoded: Encoded, texts: dict[str, TokenizedText],
                    rows: np.ndarray) -> tuple[torch.Tensor, ...]:
    """The baselines of rows `rows` (indices): the baseline row repeated, except text (tokens) columns, whose ids
    become each row's reference ids (every token of the text padded) beside its real mask, so lengths match."""
    per_row: dict[str, np.ndarray] = {}
    for name, text in texts.items():
        per_row[name] = text.reference_ids(encoded.inputs[name][rows], rows)
        per_row[f"{name}.mask"] = encoded.inputs[f"{name}.mask"][rows]
    return tuple(torch.from_numpy(per_row[key] if key in per_row else
                                  np.repeat(baseline.inputs[key], len(rows), axis=0)) for key in keys)


def combined_layer(model: nn.Module) -> nn.Module:
    """The module whose input is the combined representation (the MLP's hidden layers)."""
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise ValueError(f"explanations need a model whose hidden layers are `body`; {type(model).__name__} has none")
    return body


def gap_tolerance(pipeline: FeaturePipeline) -> float:
    """The largest completeness gap left unrefined: GAP_TOLERANCE in probability, or in target std for values."""
    return GAP_TOLERANCE * family_of(pipeline.config.task()).output_scale(pipeline.target)


def refine(attribute: Callable[[np.ndarray, int], np.ndarray], rows: int, steps: int, tolerance: float) -> None:
    """Run `attribute(row indices, steps)` (it stores its results and returns the rows' completeness gaps) on every
    row, then again with doubled steps on the rows whose gap exceeds `tolerance`, up to REFINE_LIMIT x steps.

    A trained model can switch from one class to the other over a few thousandths of the path (measured: a GRU's
    logit went from -9.5 to +7 between 0.43 and 0.44 of the way from padding to its text), which 50 points miss;
    the rows that need it pay for more, the others keep `steps`."""
    todo, current = np.arange(rows), steps
    while len(todo):
        gaps = attribute(todo, current)
        todo = todo[np.abs(gaps) > tolerance]
        if current * 2 > steps * REFINE_LIMIT:
            return
        current *= 2


def explain_encoded(model: nn.Module, pipeline: FeaturePipeline, table: pa.Table, encoded: Encoded, *,
                    target_class: str | None = None, steps: int = 50,
                    texts: dict[str, TokenizedText] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Integrated-gradients attributions (rows, input columns in config order) of coerced rows `table` (encoded
    as `encoded`), and the outputs they explain; rows whose gap exceeds the tolerance are refined (`refine`).
    `texts`: the text (tokens) columns as `tokenize_texts` gives them (made here when not given).

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
    texts = tokenize_texts(pipeline, table, encoded) if texts is None else texts
    classes = family_of(pipeline.config.task()).explains_classes
    fixed_class = None
    if target_class is not None:
        if not classes:
            raise InputError("--class applies to classifiers only")
        names = pipeline.target.class_names
        if target_class not in names:
            raise InputError(f"--class {target_class!r} is not a class of this model; classes: {names}")
        fixed_class = names.index(target_class)
    integrated = LayerIntegratedGradients(explained, combined_layer(model))
    rows = len(encoded)
    chunk, internal = batching(pipeline, CHUNK_ROWS)
    offsets = np.cumsum([0] + [width for _, width in blocks])
    attributions = np.zeros((rows, len(columns)), np.float64)
    found = {name: np.zeros(rows, np.float64) for name in ("output", "baseline", "delta")}
    found["class"] = np.full(rows, -1, np.int64)

    def attribute(todo: np.ndarray, steps: int) -> np.ndarray:
        for start in range(0, len(todo), chunk):
            indices = todo[start:start + chunk]
            inputs = tuple(torch.from_numpy(encoded.inputs[key][indices]) for key in keys)
            baselines = chunk_baselines(keys, baseline, encoded, texts, indices)
            with torch.no_grad():
                output, base_output = explained(*inputs), explained(*baselines)
            target = None
            if classes:
                target = output.argmax(dim=1) if fixed_class is None else torch.full((len(indices),), fixed_class)
                found["class"][indices] = target.numpy()
                output = output.gather(1, target[:, None]).squeeze(1)
                base_output = base_output.gather(1, target[:, None]).squeeze(1)
            layer_attributions, delta = integrated.attribute(
                inputs, baselines=baselines, target=target, n_steps=steps, attribute_to_layer_input=True,
                internal_batch_size=internal, return_convergence_delta=True)
            combined = layer_attributions.detach().double().numpy()  # (rows, combined width)
            if combined.shape[1] != offsets[-1]:
                raise ValueError(f"the model combines {combined.shape[1]} values per row, the pipeline's columns "
                                 f"{offsets[-1]}: this architecture is not supported yet")
            for block, (name, _) in enumerate(blocks):
                attributions[indices, columns.index(name)] = combined[:, offsets[block]:offsets[block + 1]].sum(axis=1)
            found["output"][indices] = output.double().numpy()
            found["baseline"][indices] = base_output.double().numpy()
            found["delta"][indices] = delta.detach().double().numpy()
        return found["delta"][todo]

    refine(attribute, rows, steps, gap_tolerance(pipeline))
    return attributions, found


def explain_tokens(model: nn.Module, pipeline: FeaturePipeline, encoded: Encoded, texts: dict[str, TokenizedText],
                   classes: np.ndarray, steps: int) -> dict[str, TokenAttributions]:
    """Token attributions of every text (tokens) column (see evaluate/token_attributions.py) for the explained
    class of each row (`classes`, -1 for regression)."""
    explained = ExplainedOutput(model, list(encoded.inputs), pipeline).eval()
    return {name: column_tokens(explained, embedding, pipeline, encoded, texts[name], classes, steps)
            for name, embedding in token_embeddings(pipeline, model).items()}


def column_tokens(explained: ExplainedOutput, embedding: nn.Module, pipeline: FeaturePipeline, encoded: Encoded,
                  text: TokenizedText, classes: np.ndarray, steps: int) -> TokenAttributions:
    """One text column's token attributions, integrated on its token `embedding`; rows whose gap exceeds the
    tolerance are refined."""
    from captum.attr import LayerIntegratedGradients

    integrated = LayerIntegratedGradients(explained, embedding)
    rows = len(encoded)
    chunk, internal = batching(pipeline, CHUNK_ROWS)
    values: list[np.ndarray] = [np.zeros(0)] * rows  # per row: one number per token position
    baseline_outputs, deltas = np.zeros(rows, np.float64), np.zeros(rows, np.float64)

    def attribute(todo: np.ndarray, steps: int) -> np.ndarray:
        for start in range(0, len(todo), chunk):
            indices = todo[start:start + chunk]
            found, baseline_outputs[indices], deltas[indices] = attribute_tokens(
                integrated, explained, explained.keys, encoded, text, indices, classes, steps, internal)
            for row, row_values in zip(indices, found, strict=True):
                values[row] = row_values
        return deltas[todo]

    refine(attribute, rows, steps, gap_tolerance(pipeline))
    return TokenAttributions([token_records(text, row, values[row]) for row in range(rows)], baseline_outputs, deltas)


def gap_warnings(explanation: Explanation, steps: int, tolerance: float) -> list[str]:
    """A warning per set of attributions (the columns', each text's tokens) with rows still above the tolerance."""
    gaps = {"the column attributions": explanation.delta} | {
        f"the token attributions of column {name!r}": delta for name, delta in explanation.token_delta.items()}
    warnings = []
    for what, delta in gaps.items():
        above = int((np.abs(delta) > tolerance).sum())
        if above:
            warnings.append(f"{above} rows leave a completeness gap above {tolerance:.3g} in {what} even at "
                            f"{steps * REFINE_LIMIT} steps (largest {np.abs(delta).max():.3g}); more --steps "
                            "narrow it")
    return warnings


def explain(package: Any, data: Any, *, source: str = "records", target_class: str | None = None,
            steps: int = 50, strict: bool = False) -> Explanation:
    """Explain a loaded package's predictions on raw records (file path, DataFrame, dict or list of dicts)."""
    table, encoded = package.encode(data, source, strict=strict)
    if not len(encoded):
        raise InputError(f"{source}: no rows to explain")
    pipeline, model = package.pipeline, package.model
    texts = tokenize_texts(pipeline, table, encoded)
    attributions, found = explain_encoded(model, pipeline, table, encoded, target_class=target_class, steps=steps,
                                          texts=texts)
    tokens = explain_tokens(model, pipeline, encoded, texts, found["class"], steps)
    predictions = package.decode(package.outputs(encoded)).values
    family = family_of(package.task)
    names = pipeline.target.classes if family.explains_classes else []
    explained = [names[index] if index >= 0 else None for index in found["class"]]
    explanation = Explanation(
        features=[encoder.name for encoder in pipeline.encoders], attributions=attributions, predictions=predictions,
        explained=explained, outputs=found["output"], baseline_outputs=found["baseline"], delta=found["delta"],
        target=package.target, task=package.task.name, output=family.explained_output,
        warnings=encoded.unseen.messages(),
        tokens={name: text.tokens for name, text in tokens.items()},
        token_baseline_outputs={name: text.baseline_outputs for name, text in tokens.items()},
        token_delta={name: text.delta for name, text in tokens.items()},
    )
    explanation.warnings += gap_warnings(explanation, steps, gap_tolerance(pipeline))
    return explanation
