"""Fixtures for end-to-end tests: a generated churn table and a runner for the real `luodi` executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

LUODI = [sys.executable, "-m", "luodi.cli"]


def make_churn(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A churn-like table: an id, numbers, categories, a yes/no column and a yes/no target that depends on them."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    charges = np.round(rng.normal(70, 20, rows), 2)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    internet = rng.choice(["dsl", "fiber", "none"], rows)
    paperless = rng.choice(["yes", "no"], rows)
    score = -0.04 * tenure + 0.03 * (charges - 70) + 1.5 * (contract == "month-to-month") + 0.5 * (internet == "fiber")
    churned = np.where(score + rng.normal(0, 0.7, rows) > 0.3, "yes", "no")
    return pd.DataFrame({
        "customer_id": [f"C{100000 + i}" for i in range(rows)], "tenure": tenure, "monthly_charges": charges,
        "contract": contract, "internet": internet, "paperless": paperless, "churned": churned,
    })


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def luodi(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the real CLI in tmp_path with its own store; returns (code, stdout, stderr)."""
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "ignore"}
    env.pop("LUODI_DEBUG", None)

    def run(*args: str, timeout: float = 300) -> Result:
        done = subprocess.run([*LUODI, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout)
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def churn(tmp_path: Path) -> dict[str, Path]:
    """churn.csv (training), holdout.csv (labelled) and new.csv (no target) in tmp_path."""
    frame = make_churn(700)
    paths = {"train": tmp_path / "churn.csv", "holdout": tmp_path / "holdout.csv", "new": tmp_path / "new.csv"}
    frame.iloc[:600].to_csv(paths["train"], index=False)
    frame.iloc[600:].to_csv(paths["holdout"], index=False)
    frame.iloc[600:].drop(columns=["churned"]).to_csv(paths["new"], index=False)
    return paths
