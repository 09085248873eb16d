"""`luodi export` and `optimize`: an ONNX copy of a package, and the search over a model's faster variants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from luodi import api
from luodi.cli.common import Home, Json, _console, _print_json
from luodi.errors import InputError


def export(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    out: Annotated[Path, typer.Option("--out", help="The package folder to write (new): a copy with model.onnx.")],
    format: Annotated[str, typer.Option("--format", help="The export format.")] = "onnx",
    tolerance: Annotated[float, typer.Option(help="Largest allowed output difference from eager torch.")] = 1e-4,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Export a model to ONNX (dynamic batch and sequence axes), parity-checked on its validation split."""
    entry = api.export(model, out, format=format, home=home, tolerance=tolerance)
    if as_json:
        return _print_json(entry)
    changes = ", ".join(f"{name} {value:+.4f}" for name, value in entry.get("metric_difference", {}).items())
    print(f"wrote {entry['file']} (inputs {', '.join(entry['inputs'])}; opset {entry['opset']})")
    print(f"parity on {entry['parity_rows']} validation rows: max |diff| {entry['parity_max_abs_diff']:.2e}"
          + (f"; metrics {changes}" if changes else ""))
    print(f"serve it with: luodi serve {entry['package']}")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--batch-sizes {text!r}: give positive integers separated by commas (1,32)") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batch-sizes {text!r}: give positive integers separated by commas (1,32)")
    return sizes


def optimize(
    model: Annotated[str, typer.Argument(help="name, name@alias or name/version.")],
    max_drop: Annotated[float, typer.Option(help="How much worse than eager fp32 a variant may score (metric "
                                                 "units: 0.01 is one point of accuracy; a language model: "
                                                 "relative, 0.02 is 2% more perplexity).")] = 0.01,
    metric: Annotated[str | None, typer.Option(help="The metric of the budget (default: the task's).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes to time, comma-separated.")] = "1,32",
    variants: Annotated[str | None, typer.Option(help="Variants to try, comma-separated (default: all).")] = None,
    exclude_nodes: Annotated[list[str] | None, typer.Option("--exclude-node", help="Static int8: an ONNX node "
                                                            "left in fp32 (repeatable).")] = None,
    fine_tune_steps: Annotated[int, typer.Option(help="Steps of the fine-tune after pruning.")] = 100,
    no_register: Annotated[bool, typer.Option("--no-register", help="Measure and report only.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Try variants (ONNX Runtime, int8, pruning, ...), keep the fastest within the accuracy budget as a new version."""
    result = api.optimize(model, max_drop=max_drop, metric=metric, batch_sizes=_sizes(batch_sizes),
                          variants=None if variants is None else [v.strip() for v in variants.split(",") if v.strip()],
                          exclude_nodes=exclude_nodes or [], fine_tune_steps=fine_tune_steps,
                          register=not no_register, home=home)
    if as_json:
        return _print_json(result)
    from rich.table import Table

    sizes = result["batch_sizes"]
    table = Table(title=f"{result['model']}: variants on the validation split", title_justify="left")
    tokens = result["latency_unit"] == "token"  # a language model: decoding tokens/s instead of latency
    for header in ["variant", result["metric"], "drop", *[f"tok/s @{size}" if tokens else f"ms @{size}"
                                                          for size in sizes],
                   *[f"x eager @{size}" for size in sizes], "MB", "peak MB", "budget", "note"]:
        table.add_column(header, justify="left" if header in ("variant", "note", "budget") else "right")

    def number(value: Any, digits: int) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    for row in result["variants"]:
        table.add_row(row["name"], number(row["metric"], 4), number(row["drop"], 4),
                      *[number(row["throughput" if tokens else "latency_ms"].get(str(size)), 1 if tokens else 3)
                        for size in sizes],
                      *[number(row["ratio"].get(str(size)), 2) for size in sizes],
                      number(None if row["size_bytes"] is None else row["size_bytes"] / 1e6, 2),
                      number(None if row["peak_memory_bytes"] is None else row["peak_memory_bytes"] / 1e6, 1),
                      "yes" if row["within_budget"] else "no",
                      row["reason"] if row["status"] != "ok" or not row["within_budget"] else "")
    console = _console()
    console.print(table)
    console.print(result["verdict"])
    if result["registered"]:
        console.print(f"registered {result['registered']} (report: {result['report']})")
    else:
        console.print(f"report: {result['report']}")

