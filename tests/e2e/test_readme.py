"""Every command and Python snippet in README.md runs, in order, on a generated churn table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = Path(__file__).parents[2] / "README.md"
FENCE = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    blocks = FENCE.findall(README.read_text(encoding="utf-8"))
    return [(kind, body) for kind, body in blocks if not body.lstrip().startswith("make ")]


def test_readme_starts_with_the_two_commands() -> None:
    first = FENCE.search(README.read_text(encoding="utf-8"))
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(2).strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_snippets_run(churn: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for kind, body in snippets():
        if "RUN_ID" in body:
            listed = subprocess.run(["luodi", "runs", "ls", "--json"], cwd=tmp_path, env=env, capture_output=True,
                                    text=True, check=True)
            body = body.replace("RUN_ID", json.loads(listed.stdout)[0]["id"])
        if kind == "bash":
            if "--resume" in body:  # every README run has finished; resuming one is refused by design
                body = "\n".join(line for line in body.splitlines() if "--resume" not in line)
            command = ["bash", "-euo", "pipefail", "-c", body]
        else:
            command = [sys.executable, "-c", body]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"README snippet failed:\n{body}\n{done.stderr[-3000:]}"
        ran += 1
    assert ran >= 8
