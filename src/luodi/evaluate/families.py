"""How evaluation shows a family of task outputs: class probabilities (`classes`), values (`values`) or generated
text (`generation`).

A task names its family (`task.family`); the report, the slices, permutation importance and explanations ask the
family what differs between them: the target summary per split, the detailed analysis and its section, the slice
scores, the per-row output that importance measures, and the output explanations attribute. A task whose outputs
fit none of these adds a family here.

What a family needs of its tasks beyond `Task`: `classes` tasks have `probabilities(outputs)` ((rows, classes)
from activated outputs) and `binary`; `values` tasks have `point(outputs)` (each row's point prediction,
standardized, from activated outputs: arrays or tensors) and a target with `restore`, `mean` and `std`;
`generation` tasks reduce outputs per row to (NLL sum, correct tokens, labelled tokens) and have a target with
`sample_prompts`, `completion_pairs`, `prompt_ids`, `decode` and `eos_id` (tasks/generation.py). `samples` is what a
family shows of the model's own output, added to its details (a language model's generations and their scores).
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from luodi.columns import as_strings
from luodi.evaluate import analysis, completions, plots, render
from luodi.tasks import ClassifierTask, Task, ValueTask, get_task

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking log-odds (float32 outputs)


class Family(Protocol):
    key: str  # where the report data keeps the family's details ("classification", "regression")
    curve_metrics: tuple[str, ...]  # validation metrics drawn per epoch, when every epoch has them
    slice_columns: tuple[str, ...]  # what each slice reports
    importance_output: str  # the per-row output whose change importance measures, for people
    importance_loss: str  # the loss whose increase it measures
    explained_output: str  # what explanations attribute, for people
    explains_classes: bool  # explanations pick a class per row (the predicted one, or --class)
    target_settings: tuple[str, ...]  # the keys of `target` (besides name and task) its tasks read

    def natural(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]: ...
    def describe(self, target: Any, column: pa.ChunkedArray | None) -> dict[str, Any]: ...
    def details(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]: ...
    def split_columns(self, splits: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]: ...
    def beside_splits(self, data: dict[str, Any]) -> str: ...
    def performance(self, data: dict[str, Any]) -> str: ...
    def row_scores(self, task: Task, y: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]: ...
    def summarize(self, scores: dict[str, np.ndarray], mask: np.ndarray | slice) -> dict[str, float]: ...
    def worst_first(self, item: dict[str, Any]) -> tuple[float, ...]: ...
    def worse(self, item: dict[str, Any], overall: dict[str, float]) -> bool: ...
    def row_outputs(self, task: Task, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray: ...
    def output_scale(self, target: Any) -> float: ...
    def explained(self, task: Task, target: Any, logits: torch.Tensor) -> torch.Tensor: ...
    def samples(self, model: Any, target: Any, table: pa.Table | None) -> dict[str, Any]: ...


class Classes:
    """Classifiers: outputs are class probabilities; targets class indices."""

    key = "classification"
    curve_metrics: tuple[str, ...] = ("val_accuracy", "val_roc_auc", "val_roc_auc_ovr", "val_f1_macro")
    slice_columns: tuple[str, ...] = ("accuracy", "log_loss")
    importance_output = "log-odds of the predicted class"
    importance_loss = "log loss"
    explained_output = "probability of the explained class"
    explains_classes = True
    target_settings: tuple[str, ...] = ("class_weights", "positive_class")

    def natural(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Class indices and the activated outputs, as they are."""
        return y, outputs

    def describe(self, target: Any, column: pa.ChunkedArray | None) -> dict[str, Any]:
        """Rows per class: of the split's column, or (no column: the training split seen from a package) the
        counts the target encoder kept."""
        if column is None:
            return {"classes": dict(zip(target.class_names, target.counts, strict=True)) if target.counts else None}
        counts = pc.value_counts(as_strings(column))
        found = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
        return {"classes": {name: int(found.get(name, 0)) for name in target.class_names}}

    def details(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
        return analysis.classification_details(cast(ClassifierTask, task), y, outputs, target.class_names)

    def split_columns(self, splits: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
        return [], [[] for _ in splits]

    def beside_splits(self, data: dict[str, Any]) -> str:
        """One row per class, one column per split: count and share (a class per row scales to many classes)."""
        splits = data["data"]["splits"]
        rows = []
        for name in data["classification"]["classes"]:
            row = [render.cell(name)]
            for split in splits:
                counts = split.get("classes")
                if not counts:
                    row.append(render.cell(None))
                    continue
                count, total = counts.get(name, 0), sum(counts.values()) or 1
                row.append(f'<td class="num" data-value="{count}">{count:,} ({count / total:.1%})</td>')
            rows.append(row)
        table = render.table(["class"] + [split["name"] for split in splits], rows,
                             numeric=list(range(1, len(splits) + 1)), table_id="class-balance")
        return f"<div><h3>Class balance</h3>{table}</div>"

    def performance(self, data: dict[str, Any]) -> str:
        details = data["classification"]
        per_class = [[render.cell(row["class"]), render.cell(row["precision"], name="precision"),
                      render.cell(row["recall"], name="recall"), render.cell(row["f1"], name="f1"),
                      render.cell(row["support"], name="support")] for row in details["per_class"]]
        auc = {item["class"]: item["auc"] for item in details["roc"]}
        average_precision = {item["class"]: item["average_precision"] for item in details["pr"]}
        for row, item in zip(per_class, details["per_class"], strict=True):
            row += [render.cell(auc.get(item["class"]), name="roc_auc"),
                    render.cell(average_precision.get(item["class"]), name="average_precision")]
        calibration = details["calibration"]
        bins = [[render.cell(f"{low:.1f}–{high:.1f}"), render.cell(item["confidence"], name="confidence"),
                 render.cell(item["observed"], name="observed"), render.cell(item["rows"], name="rows")]
                for item in calibration["bins"] for low, high in [item["bin"]]]
        return "".join([
            render.image(plots.confusion_matrices(details["confusion"], details["classes"]),
                         "confusion matrix, counts and normalized"),
            "<h3>Per class</h3>",
            f'<p class="note">{positive_class_note(details)}ROC AUC and average precision are one-vs-rest.</p>',
            render.table(["class", "precision", "recall", "F1", "support", "ROC AUC", "avg precision"], per_class,
                         numeric=[1, 2, 3, 4, 5, 6], table_id="per-class"),
            render.image(plots.classifier_curves(details), "ROC, precision-recall and calibration curves"),
            f'<p class="note">Calibration of {render.escape(calibration["of"])} over {len(calibration["bins"])} '
            f'non-empty bins (the bars: rows per bin); expected calibration error '
            f'<span data-value="{render.exact(calibration["ece"])}">{render.number(calibration["ece"])}</span>.</p>',
            "<details><summary>rows per calibration bin</summary>",
            render.table([f"predicted {calibration['of']}", "mean predicted", "observed", "rows"], bins,
                         numeric=[1, 2, 3], table_id="calibration"), "</details>",
        ])

    def row_scores(self, task: Task, y: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
        from luodi.tasks.classification import row_log_loss

        probabilities = cast(ClassifierTask, task).probabilities(outputs)
        labels = np.asarray(y).astype(np.int64)
        return {"correct": (probabilities.argmax(axis=1) == labels).astype(np.float64),
                "log_loss": row_log_loss(labels, probabilities)}

    def summarize(self, scores: dict[str, np.ndarray], mask: np.ndarray | slice) -> dict[str, float]:
        return {"accuracy": float(np.mean(scores["correct"][mask])),
                "log_loss": float(np.mean(scores["log_loss"][mask]))}

    def worst_first(self, item: dict[str, Any]) -> tuple[float, ...]:
        return item["accuracy"], -item["log_loss"]

    def worse(self, item: dict[str, Any], overall: dict[str, float]) -> bool:
        return bool(item["accuracy"] < overall["accuracy"])

    def row_outputs(self, task: Task, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Per row, the log-odds of the class the model predicted on the `reference` outputs."""
        classifier = cast(ClassifierTask, task)
        probabilities = classifier.probabilities(outputs)
        predicted = classifier.probabilities(reference).argmax(axis=1)
        chosen = np.clip(probabilities[np.arange(len(predicted)), predicted], EPSILON, 1 - EPSILON)
        log_odds: np.ndarray = np.log(chosen / (1 - chosen))
        return log_odds

    def output_scale(self, target: Any) -> float:
        return 1.0

    def explained(self, task: Task, target: Any, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (batch, classes): P(positive) becomes [1 - p, p]."""
        activated = task.activate(logits)
        return activated if activated.ndim == 2 else torch.stack([1 - activated, activated], dim=1)

    def samples(self, model: Any, target: Any, table: pa.Table | None) -> dict[str, Any]:
        return {}  # the performance tables show a classifier


def positive_class_note(details: dict[str, Any]) -> str:
    """For a binary classifier, the sentence that names the class its precision, recall, F1 and ROC AUC are of
    (HTML, escaped); empty otherwise."""
    positive = details.get("positive_class")
    if positive is None:
        return ""
    return (f'Positive class: <b>{render.escape(positive)}</b>. precision, recall, f1 and roc_auc, '
            "the ROC and precision-recall curves and the calibration are of it (choose it with "
            "<code>target.positive_class</code>). ")


class Values:
    """Regression-like tasks: one value per row, standardized by the target encoder (`restore` undoes it)."""

    key = "regression"
    curve_metrics: tuple[str, ...] = ("val_r2",)
    slice_columns: tuple[str, ...] = ("rmse", "mae", "bias")
    importance_output = "predicted value"
    importance_loss = "MSE of the standardized target"
    explained_output = "value"
    explains_classes = False
    target_settings: tuple[str, ...] = ()

    def natural(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Targets and point predictions in the target's units."""
        points = cast(ValueTask, task).point(np.asarray(outputs, np.float64))
        return target.restore(y.astype(np.float64)), target.restore(points)

    def describe(self, target: Any, column: pa.ChunkedArray | None) -> dict[str, Any]:
        if column is None:
            return {"target": {"mean": target.mean, "std": target.std}}
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        return {"target": {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                           "max": float(values.max())} if len(values) else {}}

    def details(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
        return analysis.regression_details(y, outputs)

    def split_columns(self, splits: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
        cells = []
        for split in splits:
            target = split.get("target") or {}
            cells.append([render.cell(target.get(key), name=f"target_{key}") for key in ("mean", "std", "min", "max")])
        return ["target mean", "target std", "target min", "target max"], cells

    def beside_splits(self, data: dict[str, Any]) -> str:
        return ""

    def performance(self, data: dict[str, Any]) -> str:
        details = data["regression"]
        rows = [[render.cell(name), render.cell(value, name=name)] for name, value in details["residuals"].items()]
        return (render.image(plots.regression_plots(details), "predicted vs actual, residuals, residual histogram")
                + "<h3>Residuals (predicted - actual)</h3>"
                + render.table(["statistic", "value"], rows, numeric=[1], table_id="residuals"))

    def row_scores(self, task: Task, y: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {"residual": np.asarray(outputs, np.float64) - np.asarray(y, np.float64)}

    def summarize(self, scores: dict[str, np.ndarray], mask: np.ndarray | slice) -> dict[str, float]:
        residual = scores["residual"][mask]
        return {"rmse": float(np.sqrt(np.mean(residual**2))), "mae": float(np.mean(np.abs(residual))),
                "bias": float(np.mean(residual))}

    def worst_first(self, item: dict[str, Any]) -> tuple[float, ...]:
        return (-item["rmse"],)

    def worse(self, item: dict[str, Any], overall: dict[str, float]) -> bool:
        return bool(item["rmse"] > overall["rmse"])

    def row_outputs(self, task: Task, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Per row, the standardized point prediction (`output_scale` turns changes into target units)."""
        points: np.ndarray = cast(ValueTask, task).point(np.asarray(outputs, np.float64))
        return points

    def output_scale(self, target: Any) -> float:
        return float(target.std)

    def explained(self, task: Task, target: Any, logits: torch.Tensor) -> torch.Tensor:
        """The point prediction in the target's units (batch,)."""
        restored: torch.Tensor = target.restore(cast(ValueTask, task).point(task.activate(logits)))
        return restored

    def samples(self, model: Any, target: Any, table: pa.Table | None) -> dict[str, Any]:
        return {}


class Generation:
    """Language models: per row, the NLL sum of its labelled tokens, the argmax's correct tokens and their count
    (`reduce_outputs`); the report adds greedy generations for fixed prompts, before and after fine-tuning, and
    generated completions scored against their references (evaluate/completions.py)."""

    key = "generation"
    curve_metrics: tuple[str, ...] = ("val_perplexity", "val_token_accuracy")
    slice_columns: tuple[str, ...] = ("perplexity", "token_accuracy")
    importance_output = "mean negative log-likelihood per token"
    importance_loss = "mean negative log-likelihood per token"
    explained_output = "next-token log-probability"
    explains_classes = False
    target_settings: tuple[str, ...] = ("text",)

    def natural(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        return y, outputs

    def describe(self, target: Any, column: pa.ChunkedArray | None) -> dict[str, Any]:
        return {}

    def details(self, task: Task, target: Any, y: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
        nll, correct, count = np.asarray(outputs, np.float64).sum(axis=0)
        count = max(float(count), 1.0)
        return {"tokens": int(count), "windows": len(outputs), "format": target.format,
                "context_length": target.context_length, "mean_nll": float(nll / count),
                "perplexity": float(np.exp(min(nll / count, 700.0))), "token_accuracy": float(correct / count)}

    def split_columns(self, splits: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
        return [], [[] for _ in splits]

    def beside_splits(self, data: dict[str, Any]) -> str:
        return ""

    def performance(self, data: dict[str, Any]) -> str:
        details = data["generation"]
        rows = [[render.cell(name), render.cell(details[name], name=name)]
                for name in ("perplexity", "token_accuracy", "mean_nll", "tokens", "windows", "context_length")]
        page = [render.table(["statistic", "value"], rows, numeric=[1], table_id="likelihood")]
        if details.get("completions"):
            page.append(completions_section(details["completions"]))
        samples = details.get("samples") or []
        if samples:
            before = "before" in samples[0]
            note = ("Before: the pretrained model; after: the fine-tuned one." if before else
                    f"No \u201cbefore\u201d column: {details.get('before_omitted', '')}.")
            page += ['<h3>Sample generations</h3><p class="note">Greedy, at most '
                     f'{completions.SAMPLE_TOKENS} new tokens, from fixed prompts. {render.escape(note)}</p>',
                     render.table(["prompt", *(["before fine-tuning"] if before else []), "after fine-tuning"],
                                  [[render.cell(item["prompt"]), *([render.cell(item["before"])] if before else []),
                                    render.cell(item["text"])] for item in samples], numeric=[], table_id="samples")]
        return "".join(page)

    def row_scores(self, task: Task, y: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
        outputs = np.asarray(outputs, np.float64)
        return {"nll": outputs[:, 0], "correct": outputs[:, 1], "count": outputs[:, 2]}

    def summarize(self, scores: dict[str, np.ndarray], mask: np.ndarray | slice) -> dict[str, float]:
        count = max(float(scores["count"][mask].sum()), 1.0)
        return {"perplexity": float(np.exp(min(scores["nll"][mask].sum() / count, 700.0))),
                "token_accuracy": float(scores["correct"][mask].sum() / count)}

    def worst_first(self, item: dict[str, Any]) -> tuple[float, ...]:
        return (-item["perplexity"],)

    def worse(self, item: dict[str, Any], overall: dict[str, float]) -> bool:
        return bool(item["perplexity"] > overall["perplexity"])

    def row_outputs(self, task: Task, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        outputs = np.asarray(outputs, np.float64)
        per_token: np.ndarray = outputs[:, 0] / np.maximum(outputs[:, 2], 1.0)
        return per_token

    def output_scale(self, target: Any) -> float:
        return 1.0

    def explained(self, task: Task, target: Any, logits: torch.Tensor) -> torch.Tensor:
        return task.activate(logits)

    def samples(self, model: Any, target: Any, table: pa.Table | None) -> dict[str, Any]:
        """Greedy continuations of the target's sample prompts (target.text.samples, or the first rows'), before and
        after fine-tuning, and the scored completions of the first rows (evaluate/completions.py)."""
        return completions.samples(model, target, table)


def completions_section(scored: dict[str, Any]) -> str:
    """Exact match and chrF of the generated completions (and the pretrained model's), and a few examples."""
    before = scored.get("before")
    rows = [[render.cell(label), *([render.cell(before[name], name=f"before_{name}")] if before else []),
             render.cell(scored[name], name=name)]
            for name, label in (("exact_match", "exact match"), ("chrf", "chrF (0-100)"))]
    examples = [[render.cell(item["prompt"]), render.cell(item["reference"]), render.cell(item["generated"])]
                for item in scored["examples"]]
    skipped = f"; {scored['skipped']} left out (prompt longer than the context)" if scored["skipped"] else ""
    return "".join([
        f'<h3>Generated completions</h3><p class="note">The first {scored["rows"]} scored rows{skipped}: greedy, '
        "at most the reference's length plus a margin in tokens; exact match after whitespace normalization, chrF2 "
        "over character 1- to 6-grams.</p>",
        render.table(["score", *(["before fine-tuning"] if before else []), "after fine-tuning"], rows,
                     numeric=[1, 2] if before else [1], table_id="completions"),
        render.table(["prompt", "reference", "generated"], examples, numeric=[], table_id="completion-examples"),
    ])


FAMILIES: dict[str, Family] = {"classes": Classes(), "values": Values(), "generation": Generation()}


def family_of(task: Task | str) -> Family:
    """The family that shows a task's outputs (a task object, or a task name as a report's data holds it)."""
    return FAMILIES[(get_task(task) if isinstance(task, str) else task).family]
