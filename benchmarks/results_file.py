"""Where every benchmark writes its JSON result: benchmarks/results/<name>[.quick].json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, report: dict[str, Any], quick: bool) -> Path:
    """Write the report and say where; quick runs go to their own file so they never replace a full one."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}{'.quick' if quick else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out
