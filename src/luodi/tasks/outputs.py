"""What a task predicts, typed: named outputs per row (a label, a number or named scores), from which the
DataFrame of `luodi predict`, the /v1 and /v2 responses, the prediction log and the OpenAPI schema are derived.

A classifier gives `prediction` (a label) and `probabilities` (one score per class); a regression `prediction` (a
number). A new task declares its own outputs (quantiles, generated text) and every surface follows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

Kind = Literal["label", "number", "scores"]


@dataclass(frozen=True)
class OutputSpec:
    """One output of a task, before any row: its name on every surface, its kind and, for labels and scores, the
    names of its parts."""

    name: str  # key in /v1 rows, /v2 outputs and the prediction log ("prediction", "probabilities")
    column: str  # DataFrame column stem: <target>_<column>, and <target>_<column>_<part> for scores
    kind: Kind
    parts: tuple[str, ...] = ()  # label: each label's name, in index order; scores: the name of each score
    labels: tuple[Any, ...] = ()  # label: the labels themselves (what /v1 and the DataFrame show: 0/1, True, "yes")
    parts_key: str = "classes"  # /v2 metadata: the parameter that lists `parts`
    v2_datatype: str = "FP64"  # /v2 tensor datatype of numbers and scores (labels travel as BYTES)


@dataclass(frozen=True)
class Output:
    """One output's values for a block of rows: label codes (rows,) int, numbers (rows,) or scores (rows, parts)."""

    spec: OutputSpec
    data: np.ndarray

    def values(self) -> list[Any]:
        """Per row: the label itself, the number, or the list of scores."""
        if self.spec.kind == "label":
            labels = self.spec.labels
            return [labels[code] for code in self.data.tolist()]
        result: list[Any] = self.data.tolist()
        return result

    def text(self) -> list[str]:
        """Per row, a label's name (how /v2 and the prediction log spell it)."""
        parts = self.spec.parts
        return [parts[code] for code in self.data.tolist()]

    def json_values(self) -> list[Any]:
        """Per row, what a /v1 response holds: the label, the number, or {part: score}."""
        if self.spec.kind == "scores":
            parts = self.spec.parts
            return [dict(zip(parts, row, strict=True)) for row in self.data.tolist()]
        return self.values()


@dataclass(frozen=True)
class Predictions:
    """A task's outputs for a block of rows, in input order; the first output is the prediction itself."""

    outputs: tuple[Output, ...]
    # What encoding these rows found that training never saw (`Unseen.messages()`, and (column, values) counts):
    # a server answers with the messages and counts them.
    warnings: tuple[str, ...] = ()
    unseen: tuple[tuple[str, int], ...] = ()

    def __len__(self) -> int:
        return len(self.outputs[0].data)

    def __getitem__(self, name: str) -> Output:
        for output in self.outputs:
            if output.spec.name == name:
                return output
        raise KeyError(name)

    def get(self, name: str) -> Output | None:
        return next((output for output in self.outputs if output.spec.name == name), None)

    @property
    def values(self) -> list[Any]:
        """Each row's prediction: a label or a number."""
        return self.outputs[0].values()

    def slice(self, start: int, end: int) -> Predictions:
        return Predictions(tuple(replace(output, data=output.data[start:end]) for output in self.outputs))

    def rows(self) -> list[dict[str, Any]]:
        """The /v1 response rows: {output name: value} per row."""
        names = [output.spec.name for output in self.outputs]
        return [dict(zip(names, row, strict=True))
                for row in zip(*(output.json_values() for output in self.outputs), strict=True)]

    def columns(self, target: str) -> dict[str, Any]:
        """DataFrame columns: `<target>_<column>` per label or number, `<target>_<column>_<part>` per score."""
        columns: dict[str, Any] = {}
        for output in self.outputs:
            spec = output.spec
            if spec.kind == "scores":
                for index, part in enumerate(spec.parts):
                    columns[f"{target}_{spec.column}_{part}"] = output.data[:, index]
            else:
                columns[f"{target}_{spec.column}"] = output.values()
        return columns
