"""Tasks: what a model predicts and everything that follows from it, one object per task in one table.

A task owns its target encoding (labels or scaled values), the model's output size and shape, the training
loss, the output activation, decoding of outputs to typed predictions (`tasks/outputs.py`), its metrics with the
direction in which each is better, how the data is stratified, and which report family (`evaluate/families.py`)
shows it. Code outside this package asks the task and never compares task names.

    regression    tasks/regression.py       a number per row
    binary        tasks/classification.py   one of two classes
    multiclass    tasks/classification.py   one of several classes
    text_generation  tasks/generation.py    text that continues a prompt (a causal language model)

Adding a task is a module with an object that has the `Task` attributes and methods, and its entry here (or
`register_task(task)` from user code). Tasks import nothing of luodi's layers (only `errors` and `columns`), so
every layer may ask them: reading a config checks the task and its early-stopping metric against this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from luodi.errors import InputError, did_you_mean
from luodi.tasks.classification import BINARY, MULTICLASS
from luodi.tasks.generation import TEXT_GENERATION
from luodi.tasks.outputs import Output, OutputSpec, Predictions
from luodi.tasks.regression import REGRESSION
from luodi.tasks.targets import TargetEncoder

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from luodi.config import TargetConfig

Direction = Literal["min", "max"]


class Task(Protocol):
    """What every task provides. Attributes are facts other layers read; methods take the task's fitted target."""

    name: str
    directions: Mapping[str, Direction]  # the metrics a run may early-stop on ('loss' included), which way is better
    stratify: Literal["class", "quantile", "none"]  # how data.split keeps splits alike
    model: str  # the model shape models/ builds for it (models.MODEL_SHAPES): "combiner"
    family: str  # the report family that shows it (evaluate.families.FAMILIES): "classes", "values"
    classes: bool  # it predicts one of a set of labels (target.class_weights applies)

    def target(self, config: TargetConfig, state: dict[str, Any] | None = None) -> TargetEncoder: ...
    def output_size(self, target: Any) -> int: ...
    def loss(self, target: Any) -> nn.Module: ...
    def activate(self, logits: torch.Tensor) -> torch.Tensor: ...
    def score(self, target: Any, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]: ...
    def loss_value(self, target: Any, outputs: np.ndarray, y: np.ndarray) -> float: ...
    def output_specs(self, target: Any) -> tuple[OutputSpec, ...]: ...
    def decode(self, target: Any, outputs: np.ndarray) -> Predictions: ...

    # Optional (asked with getattr): `check_config(config)` applies the task's own config rules (and fills its
    # defaults) when a config is validated; `reduce_outputs(logits, target) -> (batch, k)` is what inference keeps
    # of each batch when a target is given and the activated outputs are too large to keep (a language model's
    # distribution per token): `score` and `loss_value` then read those rows.


class ClassifierTask(Task, Protocol):
    """A task of the `classes` report family: activated outputs turn into class probabilities."""

    binary: bool  # one logit for two classes (P(positive)); else one per class

    def probabilities(self, outputs: np.ndarray) -> np.ndarray: ...  # (rows, classes)


class ValueTask(Task, Protocol):
    """A task of the `values` report family: each row has a point prediction, standardized by its target."""

    def point(self, outputs: Any) -> Any: ...  # (rows,) from activated outputs, arrays or tensors


TASKS: dict[str, Task] = {task.name: task for task in (REGRESSION, BINARY, MULTICLASS, TEXT_GENERATION)}


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name is an InputError listing the known ones."""
    task = TASKS.get(name)
    if task is None:
        raise InputError(f"unknown task {name!r}{did_you_mean(str(name), list(TASKS))}; choose one of {sorted(TASKS)}")
    return task


def register_task(task: Task) -> None:
    """Add a task to the table (user code, tests); its name may not shadow another's."""
    if task.name in TASKS and TASKS[task.name] is not task:
        raise ValueError(f"a task named {task.name!r} is already registered")
    TASKS[task.name] = task


def direction(metric: str) -> Direction:
    """Which way a metric is better, from the tasks' tables; metrics no table lists (precision_macro, ...) are
    higher-better."""
    for task in TASKS.values():
        if metric in task.directions:
            return task.directions[metric]
    return "max"


__all__ = ["TASKS", "ClassifierTask", "Direction", "Output", "OutputSpec", "Predictions", "TargetEncoder", "Task",
           "ValueTask", "direction", "get_task", "register_task"]
