"""Recording a variant search: the table as HTML (into the report of the version it registers, or a page of its own),
and the chosen variant registered as the model's next version with its lineage.

The new version is a copy of the parent's package (or of the package folder the variant built: a language model's
int8 or merged weights) with the variant's files (an ONNX graph, pruned weights) listed
through `package.add_file`, the manifest's `variant` entry (what the server runs, recipes.py), `lineage` (parent
version, variant, its measured figures) and `optimize` (the whole table), staged and registered in one transaction.
"""

from __future__ import annotations

import shutil

from luodi.evaluate import render
from luodi.optimize.search import Outcome
from luodi.package import add_file, verify_package
from luodi.store import ModelVersion, Store

REPORT = "report.html"
SECTION_ID = "optimization"


def table_html(outcome: Outcome) -> str:
    """The variants table: metric, drop, parity, latency (a language model: tokens/s) and ratio per batch size,
    size, peak memory, budget."""
    sizes = outcome.batch_sizes
    tokens = outcome.unit == "token"
    headers = ["variant", "status", outcome.metric, "drop", "max |diff|",
               *[f"tokens/s @ {size}" if tokens else f"ms @ {size}" for size in sizes],
               *[f"x eager @ {size}" for size in sizes], "MB", "peak MB", "within budget", "note"]
    rows = []
    for row in outcome.rows:
        name = f"{row.name} (registered)" if row.name == outcome.chosen else row.name
        rows.append([render.cell(name), render.cell(row.status), render.cell(row.metric),
                     render.cell(row.drop), render.cell(row.max_abs_diff, digits=2),
                     *[render.cell((row.throughput if tokens else row.latency_ms).get(size), digits=3)
                       for size in sizes],
                     *[render.cell(row.ratio.get(size), digits=2) for size in sizes],
                     render.cell(None if row.size_bytes is None else row.size_bytes / 1e6, digits=3),
                     render.cell(None if row.peak_memory_bytes is None else row.peak_memory_bytes / 1e6, digits=1),
                     render.cell("yes" if row.within_budget else "no"), render.cell(row.reason or row.description)])
    numeric = list(range(2, 6 + 2 * len(sizes) + 1))
    return (f"<p>{render.escape(outcome.verdict)}</p>"
            + render.table(headers, rows, numeric=numeric, table_id="optimize-variants"))


def with_section(page: str, outcome: Outcome) -> str:
    """A report page with the optimization table added as its last section (replacing an earlier one)."""
    section = f'<section id="{SECTION_ID}"><h2>Optimization</h2>{table_html(outcome)}</section>'
    start = page.find(f'<section id="{SECTION_ID}">')
    if start >= 0:
        end = page.index("</section>", start) + len("</section>")
        return page[:start] + section + page[end:]
    link = f'<a href="#{SECTION_ID}">Optimization</a>'
    if link not in page and "</nav>" in page:
        page = page.replace("</nav>", link + "</nav>", 1)
    anchor = page.rfind("</main>")
    if anchor < 0:
        anchor = page.rfind("</body>")
    return page[:anchor] + section + page[anchor:] if anchor >= 0 else page + section


def standalone_page(outcome: Outcome, title: str) -> str:
    return render.page(title, outcome.verdict, [(SECTION_ID, "Optimization", table_html(outcome))],
                       outcome.to_dict(), "luodi optimize")


def register_variant(store: Store, parent: ModelVersion, outcome: Outcome) -> ModelVersion:
    """Register the chosen variant as `parent.name`'s next version (lineage: parent version, variant, figures)."""
    from luodi.io import atomic_write_text

    assert outcome.chosen is not None
    built = outcome.built[outcome.chosen]
    row = outcome.row(outcome.chosen)
    staging = store.staging_dir()
    try:
        shutil.copytree(built.package or parent.path, staging, dirs_exist_ok=True)
        manifest = verify_package(staging)
        for name, file in built.files.items():
            shutil.copyfile(file, staging / name)
            add_file(staging, name)
        figures = {key: value for key, value in row.to_dict().items()
                   if key in ("metric", "drop", "max_abs_diff", "latency_ms", "ratio", "speed", "size_bytes",
                              "throughput", "peak_memory_bytes")}
        add_file(staging, None, ("variant", built.entry))
        add_file(staging, None, ("optimize", outcome.to_dict()))
        lineage = {**manifest.get("lineage", {}), "parent_version": parent.version, "variant": outcome.chosen,
                   "metric": outcome.metric, "figures": figures}
        add_file(staging, None, ("lineage", lineage))
        report = staging / REPORT
        page = report.read_text(encoding="utf-8") if report.is_file() else standalone_page(
            outcome, f"{parent.name}: optimization")
        atomic_write_text(report, with_section(page, outcome))
        add_file(staging, REPORT)
        return store.register_model(parent.name, staging, run_id=None, task=manifest["task"],
                                    metrics=manifest.get("metrics", {}), data_sha256=parent.data_sha256,
                                    description=f"{outcome.chosen} of version {parent.version}",
                                    parent_version=parent.version)
    finally:
        store.remove_staging(staging)
