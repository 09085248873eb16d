"""The shipped mnist1d GRU config (examples/mnist1d/gru.yaml), end to end through the real CLI: test accuracy
>= 0.89 on the standard 1,000 test signals (the mnist1d paper reports 91% for its GRU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_examples import prepare

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_mnist1d_gru_accuracy(luodi, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prepare("mnist1d", tmp_path, "--out", ".")
    result = luodi("train", "gru.yaml", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["metrics"]["accuracy"] >= 0.89, result.json()["metrics"]
