"""`luodi evaluate`, `explain`, `compare` and `predict`: a model on rows, and runs side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from luodi import api
from luodi.cli.common import Base, Home, Json, Strict, _console, _file_or_texts, _metrics_table, _print_json, _warn
from luodi.errors import InputError


def evaluate(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled table with the target column.")],
    report: Annotated[Path | None, typer.Option(help="Where to write report.html (default: under the store's "
                                                     "reports/ folder).")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Metrics only, no report.")] = False,
    strict: Strict = False,
    base: Base = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Metrics of a model on labelled data, and the evaluation report (one self-contained HTML file)."""
    if report is not None and no_report:
        raise InputError("--report and --no-report exclude each other")
    result = api.evaluate(model, data, home=home, strict=strict, base=base,
                          report=False if no_report else report if report is not None else True)
    if as_json:
        return _print_json(result)
    _warn(result["warnings"])
    console = _console()
    console.print(_metrics_table(result["metrics"], f"{model} on {data} ({result['rows']} rows)"))
    if result["report"]:
        console.print(f"report: {result['report']}")


def explain(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path, typer.Option("--data", help="Rows to explain: CSV, Parquet or JSONL (no target needed).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write every row's attributions (.csv, .parquet, "
                                                           ".jsonl).")] = None,
    target_class: Annotated[str | None, typer.Option("--class", help="Explain this class's probability (default: "
                                                                      "the predicted class).")] = None,
    steps: Annotated[int, typer.Option(min=2, max=1000, help="Integration steps (more: closer to exact).")] = 50,
    show: Annotated[int, typer.Option(min=0, help="Rows printed (the top columns of each).")] = 5,
    strict: Strict = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Why the model predicts what it does: per-row attributions to each input column (integrated gradients)."""
    explanation = api.explain(model, data, out=out, home=home, target_class=target_class, steps=steps, strict=strict)
    if as_json:
        payload = explanation.to_dict()
        payload["out"] = str(out) if out else None
        return _print_json(payload)
    _warn(explanation.warnings)
    console = _console()
    console.print(f"{len(explanation.predictions)} rows; attributions add up to the {explanation.output} minus its "
                  "value at the baseline row (training means, most frequent categories)")
    if explanation.tokens:
        console.print("each text's token attributions add up to the same output minus its value with that text's "
                      "words replaced by padding")
    for row in range(min(show, len(explanation.predictions))):
        explained = explanation.explained[row]
        label = f" P({_escape(str(explained))})" if explained is not None else ""
        console.print(f"[bold]row {row + 1}[/]: predicted {_escape(str(explanation.predictions[row]))};{label} "
                      f"{explanation.outputs[row]:.4f} (baseline {explanation.baseline_outputs[row]:.4f})")
        order = sorted(range(len(explanation.features)), key=lambda i: -abs(explanation.attributions[row, i]))
        console.print("  " + ", ".join(f"{explanation.features[i]} {explanation.attributions[row, i]:+.4f}"
                                        for i in order[:5]), markup=False)
        for column, tokens in explanation.top_tokens(row).items():
            padded = explanation.token_baseline_outputs[column][row]
            console.print(f"  {column} tokens (words padded: {padded:.4f}): " + ", ".join(
                f"{json.dumps(token['text'] or token['token'], ensure_ascii=False)} {token['attribution']:+.4f}"
                for token in tokens), markup=False)
    if out is not None:
        print(f"wrote {len(explanation.predictions)} rows to {out}", file=sys.stderr)


def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more runs: ids (or unique prefixes), or model versions "
                                                   "(churn/2, churn@production) for the runs that trained them.")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML page to write (default: under the store's "
                                                           "reports/ folder).")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Compare runs: config keys that differ, test metrics with the best of each marked; also as an HTML page."""
    result = api.compare(runs, out=out, home=home)
    if as_json:
        return _print_json(result)
    from rich.table import Table

    from luodi.tasks import direction

    ids = [run["id"] for run in result["runs"]]
    table = Table("", *ids, title=f"{len(ids)} runs", title_justify="left")
    for name, values in result["metrics"].items():
        best = result["best"].get(name, [])
        cells = [f"[bold green]{value:.4f} ★[/]" if run_id in best and isinstance(value, float)
                 else "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
                 for run_id, value in zip(ids, values, strict=True)]
        table.add_row(f"{name} ({'↓' if direction(name) == 'min' else '↑'})", *cells)
    if result["differences"]:
        table.add_section()
        for key, values in result["differences"].items():
            table.add_row(f"[yellow]{_escape(key)}[/]", *[_escape(str(value)) for value in values])
    _console().print(table)
    differ = len(result["differences"])
    _console().print(f"{differ} config key{' differs' if differ == 1 else 's differ'}, {result['same']} are the "
                     f"same; page: {result['report']}", markup=False)


def _escape(text: str) -> str:
    """User text (config values, column names) shown literally by rich, never read as [markup]."""
    from rich.markup import escape

    return escape(text)


def predict(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="Table to score: CSV, Parquet or JSONL.")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A raw text to score (repeatable), for a model "
                                                   "whose one input is a text column.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output file (.csv, .parquet, .jsonl); default stdout CSV.")]
    = None,
    keep_input: Annotated[bool, typer.Option(help="Put the input columns before the predictions.")] = True,
    backend: Annotated[str, typer.Option(help="auto: what `luodi serve` runs (an optimized version's variant, else "
                                              "a verified model.onnx, else torch); torch or onnx forces one.")]
    = "auto",
    strict: Strict = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Predict a table (or raw texts): `<target>_prediction` plus `<target>_probability_<class>` for classifiers."""
    source = _file_or_texts(data, text)
    if isinstance(source, list):
        frame = api.predict_text(model, source, out=out, home=home, strict=strict, backend=backend)
    else:
        frame = api.predict(model, source, out=out, home=home, strict=strict, keep_input=keep_input, backend=backend)
    warnings = frame.attrs.get("warnings", [])
    if as_json:
        payload: dict[str, Any] = {"rows": len(frame), "out": str(out) if out else None, "warnings": warnings}
        if out is None:
            payload["predictions"] = json.loads(frame.to_json(orient="records"))
        return _print_json(payload)
    _warn(warnings)
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        print(f"wrote {len(frame)} rows to {out}", file=sys.stderr)

