"""Every command and Python snippet in docs/tuning.md runs, in order, on the generated churn table: `init --tune`
writes a search space that `luodi tune` runs, and the Python API continues the same study."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = Path(__file__).parents[2] / "docs" / "tuning.md"
FENCE = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)


def test_tuning_doc_snippets_run(churn: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = FENCE.findall(DOC.read_text(encoding="utf-8"))
    assert [kind for kind, _ in blocks] == ["bash", "python"]
    for kind, body in blocks:
        command = ["bash", "-euo", "pipefail", "-c", body] if kind == "bash" else [sys.executable, "-c", body]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"docs/tuning.md snippet failed:\n{body}\n{done.stderr[-3000:]}"
    printed = json.loads((tmp_path / "tuned.json").read_text())
    assert printed["model"]["name"] == "churn-tuned" and "accuracy" in printed["metrics"]
    assert [trial["number"] for trial in printed["trials"]] == [0, 1, 2, 3]
    assert "{'name': 'churn-tuned', 'version'" in done.stdout  # the API call continued the same study
