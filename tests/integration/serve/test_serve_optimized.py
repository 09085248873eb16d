"""package -> optimize -> serve: a version registered by `luodi optimize` is served with its variant (ONNX Runtime
int8, torch int8), answers what the package predicts within the variant's tolerance, and /metrics names the backend."""

from __future__ import annotations

import json
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


def test_luodi_predict_runs_what_serve_runs(store_home: Path, tmp_path: Path) -> None:
    """`luodi predict` / `api.predict` pick the backend as `luodi serve` does: the package's ONNX graph under `auto`,
    eager torch under `--backend torch`. The graph here comes from other weights, so the two answers differ."""
    import subprocess
    import sys

    from safetensors.torch import load_file, save_file

    from luodi.optimize.export import export_onnx
    from luodi.package import MANIFEST, WEIGHTS

    source = store_home / "models" / "tiny" / "v1"
    changed, folder = tmp_path / "changed", tmp_path / "with-onnx"
    shutil.copytree(source, changed)
    shutil.copytree(source, folder)
    weights = load_file(changed / WEIGHTS)
    save_file({name: tensor * 3 for name, tensor in weights.items()}, changed / WEIGHTS)
    add_file(changed, WEIGHTS)
    entry = export_onnx(changed)
    shutil.copy(changed / "model.onnx", folder / "model.onnx")
    add_file(folder, "model.onnx", ("onnx", entry))

    rows = records(40, seed=6)
    columns = ["label_probability_no", "label_probability_yes"]
    auto = api.predict(str(folder), rows, keep_input=False)
    eager = api.predict(str(folder), rows, keep_input=False, backend="torch")
    other = api.predict(str(changed), rows, keep_input=False, backend="torch")
    np.testing.assert_allclose(auto[columns], other[columns], atol=1e-5)  # the graph ran, not the stored weights
    assert np.abs(auto[columns].to_numpy() - eager[columns].to_numpy()).max() > 1e-3
    np.testing.assert_allclose(eager[columns], load_package(folder).predict(rows).probabilities, atol=1e-6)
    assert json.loads((folder / MANIFEST).read_text())["onnx"]["file"] == "model.onnx"

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cli = [sys.executable, "-m", "luodi.cli", "predict", str(folder), "--data", str(data), "--json"]
    done = subprocess.run([*cli, "--backend", "torch"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [row["label_probability_yes"] for row in json.loads(done.stdout)["predictions"]] == \
        pytest.approx(eager["label_probability_yes"].tolist(), abs=1e-6)
    bad = subprocess.run([*cli, "--backend", "tensorrt"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "backend 'tensorrt': choose auto, torch or onnx" in bad.stderr
