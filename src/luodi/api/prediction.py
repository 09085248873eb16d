"""A model on rows: `predict`, `predict_text`, `evaluate`, `explain`; `compare` of runs; tables and pages written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luodi.api.registry import load_model
from luodi.errors import InputError
from luodi.store import Run, Store, observed, parse_reference

if TYPE_CHECKING:
    from luodi.package import ModelPackage


def predict(model: str | Path | ModelPackage | dict[str, Any], data: Any, *, out: str | Path | None = None,
            home: str | Path | None = None, strict: bool = False, keep_input: bool = True,
            backend: str = "auto") -> Any:
    """Predict raw records (file path, DataFrame, dict or list of dicts) and return a pandas DataFrame.

    `model` is a reference, a package folder, a loaded package or `train(...).model`. The input columns come first
    (as `luodi predict` writes them; `keep_input=False` drops them), then `<target>_prediction` and, for
    classifiers, `<target>_probability_<class>`. With `out`, the result is also written (CSV, Parquet or JSONL by
    suffix). `backend` is `luodi serve`'s: `auto` runs the variant an optimized version carries (its ONNX graph or
    torch recipe), else the package's verified model.onnx, else eager torch; `torch` or `onnx` forces one. A
    package object passed in runs eager torch unless `backend="onnx"`.
    """
    import pandas as pd

    from luodi.data.sources import to_table
    from luodi.serve.backends import choose_backend

    if backend not in ("auto", "torch", "onnx"):
        raise InputError(f"backend {backend!r}: choose auto, torch or onnx")
    package = load_model(model, home=home)
    source = _source(data)
    table = to_table(data, source)
    run = None
    if isinstance(model, str | Path) or backend == "onnx":  # a torch recipe replaces package.model: only our copy
        runner = choose_backend(package, backend, threads=torch_threads())
        run = None if runner.name == "torch" else runner.run
    frame = package.predict_frame(table, source, strict, run)
    if keep_input:
        warnings = frame.attrs["warnings"]
        frame = pd.concat([table.to_pandas(), frame], axis=1)
        frame.attrs["warnings"] = warnings
    if out is not None:
        write_table(frame, Path(out))
    return frame


def predict_text(model: str | Path | ModelPackage, texts: str | list[str], *, out: str | Path | None = None,
                 home: str | Path | None = None, strict: bool = False, backend: str = "auto") -> Any:
    """Predict raw texts with a model whose one input is a text column (`luodi predict --text`).

    Returns the DataFrame `predict` gives, the texts first.
    """
    package = load_model(model, home=home)
    features = package.config.input_features
    if len(features) != 1 or features[0].type != "text":
        raise InputError(f"{package.path}: the model reads {[f.name for f in features]}, not one text column; "
                         "give a table with --data")
    rows = [{features[0].name: text} for text in ([texts] if isinstance(texts, str) else texts)]
    return predict(package, rows, out=out, strict=strict, keep_input=True, backend=backend)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def write_table(frame: Any, path: Path) -> None:
    """Write a DataFrame atomically as CSV, Parquet or JSONL (by suffix)."""
    from luodi.data.sources import table_format
    from luodi.io import atomic_write

    fmt = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        atomic_write(path, lambda handle: frame.to_csv(handle, index=False, sep=sep), mode="w")
    elif fmt == "parquet":
        atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        atomic_write(path, lambda handle: frame.to_json(handle, orient="records", lines=True), mode="w")


def _source(data: Any) -> str:
    return str(data) if isinstance(data, str | Path) else "records"


def evaluate(model: str | Path | dict[str, Any], data: Any, *, home: str | Path | None = None, strict: bool = False,
             report: str | Path | bool = True, base: str | Path | None = None) -> dict[str, Any]:
    """Metrics of a model on labelled data (a file, DataFrame or records holding the target column), and the
    evaluation report.

    Args:
        report: True writes report.html under `LUODI_HOME/reports/`; a path writes it there; False writes none.
        base: a LoRA package's base checkpoint, when it moved (see `load_model`).

    Returns `{"metrics": {...}, "rows": n, "model": ..., "package": ..., "warnings": [...], "report": path or
    None, "details": {...}}`; `details` holds the report's other numbers (per-class or residual tables, slices,
    importance, data summary), the very values in the report's JSON block.
    """
    from luodi.evaluate.scoring import split_metrics
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home, base=base)
    set_inference_threads(package.config.runtime)
    source = _source(data)
    table, encoded = package.encode(data, source, with_target=True, strict=strict)
    # The batch the run scored its test split with: the config says what fits (a language model's logits are
    # windows x context x vocabulary floats).
    outputs = package.outputs(encoded, batch_size=package.config.trainer.eval_batch_size)
    assert encoded.target is not None
    metrics = split_metrics(package.task, package.pipeline.target, outputs, encoded.target)
    warnings = encoded.unseen.messages()
    result: dict[str, Any] = {"metrics": metrics, "rows": len(encoded), "model": package.manifest["name"],
                              "package": str(package.path), "warnings": warnings, "report": None, "details": {}}
    if report is False:
        return result
    from luodi.evaluate.report import DETAILS, build_report_or_warn
    from luodi.evaluate.report_inputs import evaluation_input

    page = build_report_or_warn(lambda: evaluation_input(package, table, encoded, outputs, metrics, source),
                                package.config.report, warnings)
    if page is not None:
        destination = None if isinstance(report, bool) else report
        result["report"] = str(_write_page(page[0], destination, home, f"evaluate-{package.config.name}"))
        result["details"] = {key: page[1][key] for key in DETAILS if key in page[1]}
    return result


def explain(model: str | Path | dict[str, Any], data: Any, *, out: str | Path | None = None,
            home: str | Path | None = None, target_class: str | None = None, steps: int = 50,
            strict: bool = False) -> Any:
    """Per-row attributions of a model's predictions to each input column (integrated gradients, Captum).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`) or a package folder.
        data: a file path, DataFrame, dict or list of dicts (no target needed).
        out: also write the table (CSV, Parquet or JSONL by suffix).
        target_class: explain this class's probability instead of the predicted class's.
        steps: integration steps; more is closer to exact (see the `delta` in the result).

    Returns a `luodi.evaluate.explain.Explanation`: `.to_frame()` (one `<column>_attribution` per input column,
    one `<column>_tokens` JSON list per text column) and `.to_dict()`; a text read as tokens (rnn, transformer,
    hf) also gets one attribution per token in `.tokens[column][row]`.
    """
    from luodi.evaluate.explain import explain as explain_rows
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    set_inference_threads(package.config.runtime)
    explanation = explain_rows(package, data, source=_source(data), target_class=target_class, steps=steps,
                               strict=strict)
    if out is not None:
        write_table(explanation.to_frame(), Path(out))
    return explanation


def compare(runs: list[str] | tuple[str, ...], *, out: str | Path | None = None,
            home: str | Path | None = None) -> dict[str, Any]:
    """Compare training runs: config differences, metrics with the best marked.

    A run is given by id (or unique prefix), or by a model version (`churn/2`, `churn@production`): the run that
    trained it. Writes one HTML page to `out` (default: a new file under `LUODI_HOME/reports/`); returns the
    comparison (`runs`, `metrics`, `best`, `differences`, `same`) with `report`, the page's path.
    """
    from luodi.evaluate.compare import compare_runs, render_comparison

    if len(runs) < 2:
        raise InputError("compare needs at least two runs (see `luodi runs ls`)")
    store = Store(home)

    def run_of(reference: str) -> Run:
        if parse_reference(reference, what="run id").bare:
            return store.get_run(reference)
        version = store.resolve(reference)
        if version.run_id is None:
            raise InputError(f"{reference}: this model version was registered without a run")
        return store.get_run(version.run_id)

    found = [observed(run_of(reference)) for reference in runs]
    duplicates = sorted({run.id for run in found if [r.id for r in found].count(run.id) > 1})
    if duplicates:
        raise InputError(f"run {duplicates[0]} is listed more than once")
    comparison = compare_runs([run.to_dict() for run in found])
    page = render_comparison(comparison, [store.epoch_history(run.id) for run in found])
    return {**comparison, "report": str(_write_page(page, out, home, "compare"))}


def _write_page(html: str, path: str | Path | None, home: str | Path | None, stem: str) -> Path:
    """Write a page to `path`, or by default to a new file under LUODI_HOME/reports/."""
    import secrets

    from luodi.io import atomic_write_text

    if path is None:
        path = Store(home).home / "reports" / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.html"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path
