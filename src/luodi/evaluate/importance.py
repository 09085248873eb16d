"""Global feature importance by permutation: shuffle one input column's values and measure what changes.

Two numbers per column, both averaged over seeded shuffles:

- **output change** (the ranking): the mean absolute change of the model's output per row: the log-odds of
  the class the model predicted on the unshuffled row, or the predicted value in target units (regression).
  This is how much the model relies on the column, the global counterpart of the per-row attributions of
  `luodi explain` and of a linear model's coefficients. Every row counts, so it is stable on a test split of a
  hundred rows, where a near-perfect classifier's loss moves only on its few borderline rows.
- **loss increase**: how much worse the reported `loss` gets (log loss, or MSE of the standardized target), as
  in the classic definition: what the model needs the column for to be right. A column that moves the output but
  not the loss is one the model leans on without profit on these rows.

The raw column is shuffled and the table goes through the fitted pipeline again, so the importance is of the
column the user knows (not of an encoded block), and every kind of feature is covered the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from luodi.evaluate.families import family_of
from luodi.features.pipeline import Encoded, FeaturePipeline

Outputs = Callable[[Encoded], np.ndarray]  # encoded rows -> activated model outputs
BATCH_ROWS = 20_000  # most rows encoded and scored in one call (shuffles of one column, stacked)
CELL_BUDGET = 20_000_000  # raw cells encoded over all shuffles: each shuffle re-encodes every column, so the
MIN_ROWS = 200  # work grows with columns squared; wide tables use fewer rows, never fewer than MIN_ROWS


def permutation_importance(table: pa.Table, pipeline: FeaturePipeline, outputs: Outputs, *, repeats: int = 5,
                           rows: int = 2000, seed: int = 0, source: str = "data") -> dict[str, Any]:
    """Output change and loss increase per input column (mean and standard deviation over `repeats` shuffles),
    ranked by output change.

    `table` holds coerced raw rows with the target; at most `rows` of them (a seeded sample) are used, fewer for
    wide tables (CELL_BUDGET). The shuffles of one column are stacked into one table (up to BATCH_ROWS rows),
    encoded and scored in one call: with a hundred rows per shuffle, per-call overhead would otherwise be most
    of the cost.
    """
    task, target = pipeline.config.task(), pipeline.target
    family = family_of(task)
    scale = family.output_scale(target)  # standardized values back in target units
    rng = np.random.default_rng(seed)
    columns = len(pipeline.config.input_features)
    rows = min(rows, max(MIN_ROWS, CELL_BUDGET // (max(repeats, 1) * columns * columns)))
    if table.num_rows > rows:
        table = table.take(np.sort(rng.choice(table.num_rows, rows, replace=False)))
    count = table.num_rows
    encoded = pipeline.transform(table, source, with_target=True)
    assert encoded.target is not None
    y = encoded.target
    reference = outputs(encoded)
    base_loss, base_output = task.loss_value(target, reference, y), family.row_outputs(task, reference, reference)
    per_batch = max(1, min(repeats, BATCH_ROWS // max(count, 1)))
    features: list[dict[str, Any]] = []
    for feature in pipeline.config.input_features:
        position = table.column_names.index(feature.name)
        column = table.column(feature.name).combine_chunks()
        changes: list[float] = []
        increases: list[float] = []
        while len(changes) < repeats:
            batch = min(per_batch, repeats - len(changes))
            order = np.concatenate([rng.permutation(count) for _ in range(batch)])
            shuffled = pa.concat_tables([table] * batch).combine_chunks()
            shuffled = shuffled.set_column(position, feature.name, column.take(order))
            scored = outputs(pipeline.transform(shuffled, source, False))
            for index in range(batch):
                part = scored[index * count:(index + 1) * count]
                changes.append(float(np.mean(np.abs(family.row_outputs(task, part, reference) - base_output))) * scale)
                increases.append(task.loss_value(target, part, y) - base_loss)
        features.append({"feature": feature.name, "type": feature.type,
                         "output_change": float(np.mean(changes)), "output_change_std": float(np.std(changes)),
                         "loss_increase": float(np.mean(increases)), "loss_increase_std": float(np.std(increases))})
    features.sort(key=lambda item: (-item["output_change"], item["feature"]))
    return {"output": family.importance_output, "loss": family.importance_loss, "baseline_loss": base_loss,
            "repeats": repeats, "rows": count, "features": features}
