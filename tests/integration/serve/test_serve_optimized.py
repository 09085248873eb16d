"""package -> optimize -> serve: a version registered by `luodi optimize` is served with its variant (ONNX Runtime
int8, torch int8), answers what the package predicts within the variant's tolerance, and /metrics names the backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_serve_protocols import records

import luodi.api as api
from luodi.package import add_file, load_package


def check_served(serve, reference: str, backend: str, tolerance: float, expected: np.ndarray,  # type: ignore[no-untyped-def]
                 rows: list[dict]) -> None:  # type: ignore[type-arg]
    with serve(reference) as server:
        assert server.client.get("/v2/models/tiny").json()["platform"] == backend
        answer = server.client.post("/v1/models/tiny/predict", json={"records": rows})
        metrics = server.client.get("/metrics").text
    assert answer.status_code == 200
    served = [[row["probabilities"]["no"], row["probabilities"]["yes"]] for row in answer.json()["predictions"]]
    np.testing.assert_allclose(served, expected, atol=tolerance)
    assert f'luodi_model_info{{backend="{backend}",model="tiny",' in metrics


@pytest.mark.parametrize(("variant", "tolerance"), [("onnx", 1e-5), ("onnx-int8-static", 0.1)])
def test_an_optimized_version_serves_its_variant(serve, store_home: Path, variant: str,  # type: ignore[no-untyped-def]
                                                 tolerance: float) -> None:
    result = api.optimize("tiny", variants=[variant], batch_sizes=[1], max_drop=1.0, home=store_home)
    if result["registered"] is None:  # not faster than eager here: nothing to serve, as the search says
        assert "nothing registered" in result["verdict"]
        pytest.skip(f"{variant} was not faster than eager fp32 on this machine: {result['verdict']}")
    assert result["registered"] == "tiny/2"
    rows = records(30, seed=4)
    expected = load_package(store_home / "models" / "tiny" / "v1").predict(rows).probabilities
    check_served(serve, "tiny/2", "onnxruntime", tolerance, expected, rows)


def test_a_torch_recipe_variant_is_served_as_the_package_says(serve, store_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A package whose variant is torch's int8 linear layers (what optimize writes when that variant wins)."""
    folder = tmp_path / "tiny-int8"
    shutil.copytree(store_home / "models" / "tiny" / "v1", folder)
    add_file(folder, None, ("variant", {"name": "torch-int8-dynamic", "runtime": "torch", "recipe": "int8-dynamic"}))
    rows = records(30, seed=5)
    expected = load_package(folder).predict(rows).probabilities
    check_served(serve, str(folder), "torch+int8-dynamic", 0.05, expected, rows)
