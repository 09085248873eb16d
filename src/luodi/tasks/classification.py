"""Classification: binary and multiclass. The target's labels, the losses, class probabilities, the metrics (with
the direction in which each is better) and the outputs: the predicted label and one probability per class.

The model's activated outputs are P(positive) (rows,) for binary and class probabilities (rows, classes) for
multiclass; `probabilities` turns either into (rows, classes).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import TRUE_WORDS, as_strings, binary_order, row_list
from luodi.errors import InputError
from luodi.tasks.outputs import Output, OutputSpec, Predictions
from luodi.tasks.targets import check_present

if TYPE_CHECKING:
    import torch
    from torch import nn

    from luodi.config import TargetConfig

Direction = Literal["min", "max"]


class ClassTarget:
    """Fitted state: the class labels in index order (binary: [negative, positive]) and their training counts."""

    def __init__(self, config: TargetConfig, classes: list[Any] | None = None, counts: list[int] | None = None, *,
                 binary: bool, **legacy: Any):
        # Packages written before the task table also kept a mean and std (0 and 1) for classifiers: ignored.
        self.config = config
        self.binary = binary
        self.classes: list[Any] = classes or []
        self.counts: list[int] = counts or []

    @functools.cached_property
    def class_names(self) -> list[str]:
        """Labels spelled as `as_strings` spells a column (True -> 'true', 1.0 -> '1'), so `transform` finds them.
        Kept once made (every served batch decodes with them); `fit` makes them anew."""
        if not self.classes:
            return []
        return [str(name) for name in as_strings(pa.chunked_array([pa.array(self.classes)])).to_pylist()]

    def check(self, column: pa.ChunkedArray, source: str) -> None:
        check_present(column, self.config.name, source)

    def fit(self, column: pa.ChunkedArray) -> None:
        counts = pc.value_counts(column)
        labels = counts.field("values").to_pylist()
        frequencies = dict(zip(labels, counts.field("counts").to_pylist(), strict=True))
        if len(labels) < 2:
            raise InputError(
                f"target {self.config.name!r} has a single class ({labels[0]!r}) in the training data: "
                "a classifier needs at least two"
            )
        if self.binary:
            if len(labels) != 2:
                raise InputError(f"target {self.config.name!r} has {len(labels)} classes; use task: multiclass")
            names = as_strings(pa.chunked_array([pa.array(labels)])).to_pylist()
            by_name = dict(zip(names, labels, strict=True))
            self.classes = [by_name[name] for name in self._binary_order(names)]
        else:
            self.classes = sorted(labels, key=lambda label: (str(type(label)), label))
        self.counts = [int(frequencies[label]) for label in self.classes]
        self.__dict__.pop("class_names", None)  # the cached names of the classes before

    def _binary_order(self, names: list[str]) -> list[str]:
        """[negative, positive]: target.positive_class when given (it must be one of the labels), else the
        default order of two values (`binary_order`)."""
        positive = self.config.positive_class
        if positive is None:
            return binary_order(names)
        true_like = [name for name in names if name.strip().lower() in TRUE_WORDS]
        if positive in ("true", "false") and positive not in names and len(true_like) == 1:
            # YAML (and --set) read an unquoted yes / no as a boolean: it names the yes-like label or the other one
            positive = true_like[0] if positive == "true" else next(name for name in names if name != true_like[0])
            self.config.positive_class = positive  # the run's config (package, report) then names the label
        if positive not in names:
            hint = (" (YAML reads yes/no/on/off as true/false: quote the label, e.g. positive_class: \"yes\")"
                    if positive in ("true", "false") else "")
            raise InputError(f"target.positive_class {positive!r} is not a label of target {self.config.name!r} "
                             f"in the training data; its labels: {sorted(names)}{hint}")
        return [next(name for name in names if name != positive), positive]

    def transform(self, column: pa.ChunkedArray, source: str) -> np.ndarray:
        """Training targets: 0/1 float32 (binary), int64 class index (multiclass)."""
        self.check(column, source)
        strings = as_strings(column)
        positions = pc.index_in(strings, value_set=pa.array(self.class_names, pa.string()))
        unknown = pc.is_null(positions).to_numpy(zero_copy_only=False)
        if unknown.any():
            examples = sorted({str(v) for v in pc.filter(strings, pa.array(unknown)).to_pylist()})[:3]
            raise InputError(
                f"{source}: target {self.config.name!r} has label(s) {examples} that training never saw "
                f"(rows {row_list(unknown)}); known labels: {self.class_names}"
            )
        indices = positions.to_numpy(zero_copy_only=False)
        return indices.astype(np.float32) if self.binary else indices.astype(np.int64)

    def class_weights(self) -> np.ndarray | None:
        weights = self.config.class_weights
        if weights == "none":
            return None
        counts = np.asarray(self.counts, dtype=np.float64)
        if weights == "balanced":
            return counts.sum() / (len(counts) * np.maximum(counts, 1))
        assert isinstance(weights, dict)
        unknown = sorted(set(weights) - set(self.class_names))
        if unknown:
            raise InputError(f"target.class_weights names unknown class(es) {unknown}; classes: {self.class_names}")
        return np.asarray([weights.get(name, 1.0) for name in self.class_names])

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "counts": self.counts}

    def schema(self) -> dict[str, Any]:
        return {"name": self.config.name, "task": self.config.task, "classes": self.classes}


# ---------------------------------------------------------------------------------------------- metrics
def row_log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """-log P(true class) per row, with probabilities clipped to [1e-15, 1] and renormalized."""
    clipped = np.clip(np.asarray(probabilities, np.float64), 1e-15, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    losses: np.ndarray = -np.log(clipped[np.arange(len(y_true)), np.asarray(y_true).astype(np.int64)])
    return losses


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean log loss: the reported `log_loss`, and what permutation importance and slices measure."""
    return float(np.mean(row_log_loss(y_true, probabilities)))


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, precision / recall / F1 (macro, weighted; plain for binary), ROC-AUC and log loss.

    `y_true` holds class indices; `probabilities` is (rows, classes). For two classes ROC-AUC is the usual
    binary one; for more it is one-vs-rest, macro-averaged, and omitted when a class is absent from `y_true`.
    """
    from sklearn import metrics

    y_true = np.asarray(y_true).astype(np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    n_classes = probabilities.shape[1]
    labels = list(range(n_classes))
    y_pred = probabilities.argmax(axis=1)
    out: dict[str, float] = {"accuracy": float(np.mean(y_pred == y_true))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        out[f"precision_{average}"], out[f"recall_{average}"], out[f"f1_{average}"] = (
            float(precision), float(recall), float(f1)
        )
    out["log_loss"] = log_loss(y_true, probabilities)
    present = np.unique(y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_classes == 2:
            precision, recall, f1, _ = metrics.precision_recall_fscore_support(
                y_true, y_pred, labels=[1], average="binary", zero_division=0
            )
            out.update(precision=float(precision), recall=float(recall), f1=float(f1))
            if len(present) == 2:
                out["roc_auc"] = float(metrics.roc_auc_score(y_true, probabilities[:, 1]))
        elif len(present) == n_classes:
            out["roc_auc_ovr"] = float(metrics.roc_auc_score(y_true, probabilities, multi_class="ovr",
                                                             labels=labels))
    return out


SHARED: dict[str, Direction] = {"loss": "min", "log_loss": "min", "accuracy": "max", "f1_macro": "max"}


# ------------------------------------------------------------------------------------------------ tasks
class Classification:
    """binary: the target has two classes, the model one logit (P(positive)); multiclass: one logit per class."""

    stratify: Literal["class", "quantile", "none"] = "class"
    model = "combiner"
    family = "classes"
    classes = True

    def __init__(self, name: str, *, binary: bool, directions: Mapping[str, Direction]):
        self.name, self.binary, self.directions = name, binary, directions

    def target(self, config: TargetConfig, state: dict[str, Any] | None = None) -> ClassTarget:
        return ClassTarget(config, binary=self.binary, **(state or {}))

    def output_size(self, target: ClassTarget) -> int:
        return 1 if self.binary else len(target.classes)

    def loss(self, target: ClassTarget) -> nn.Module:
        """BCE with logits for binary (positives weighed against negatives by the class weights), cross entropy
        with class weights for multiclass; both with the target's label smoothing."""
        import torch
        from torch import nn

        from luodi.tasks.losses import BinaryLoss

        weights = target.class_weights()
        smoothing = target.config.label_smoothing
        if self.binary:
            return BinaryLoss(None if weights is None else torch.tensor(weights[1] / weights[0], dtype=torch.float32),
                              smoothing)
        return nn.CrossEntropyLoss(weight=None if weights is None else torch.tensor(weights, dtype=torch.float32),
                                   label_smoothing=smoothing)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits to P(positive) (batch,) for binary, class probabilities (batch, classes) for multiclass."""
        import torch

        if self.binary:
            return torch.sigmoid(logits.squeeze(-1))
        return torch.softmax(logits, dim=-1)

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """(rows, classes) probabilities from activated outputs (P(positive) for binary)."""
        outputs = np.asarray(outputs, np.float64)
        if self.binary:
            positive = outputs.reshape(-1)
            return np.stack([1 - positive, positive], axis=1)
        return outputs

    def score(self, target: ClassTarget, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Metrics of activated outputs against encoded targets (class indices)."""
        return classification_metrics(y, self.probabilities(outputs))

    def loss_value(self, target: ClassTarget, outputs: np.ndarray, y: np.ndarray) -> float:
        """The reported `loss`: log loss (unweighted, whatever the training loss weighs)."""
        return log_loss(y, self.probabilities(outputs))

    def output_specs(self, target: ClassTarget) -> tuple[OutputSpec, ...]:
        names = tuple(target.class_names)
        return (OutputSpec("prediction", "prediction", "label", parts=names, labels=tuple(target.classes)),
                OutputSpec("probabilities", "probability", "scores", parts=names, v2_datatype="FP32"))

    def decode(self, target: ClassTarget, outputs: np.ndarray) -> Predictions:
        """The most probable class per row and every class's probability."""
        label, scores = self.output_specs(target)
        probabilities = outputs if not self.binary else np.stack([1 - outputs.reshape(-1), outputs.reshape(-1)],
                                                                 axis=1)
        return Predictions((Output(label, probabilities.argmax(axis=1)), Output(scores, probabilities)))


# The metrics a run may early-stop on, with the direction that is better (every other metric reported is higher-better).
BINARY = Classification("binary", binary=True, directions={
    **SHARED, "roc_auc": "max", "f1": "max", "precision": "max", "recall": "max"})
MULTICLASS = Classification("multiclass", binary=False, directions={
    **SHARED, "f1_weighted": "max", "roc_auc_ovr": "max"})
