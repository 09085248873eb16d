"""luodi optimize and export on tiny real models: each variant's parity with eager fp32 within its stated tolerance,
the budget (a variant that breaks it is never registered), the ONNX file in a bare onnxruntime process, and the
registered version's report and lineage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import luodi.api as api
from luodi.errors import InputError
from luodi.optimize.search import search
from luodi.optimize.variants import VARIANTS, Built, Context, Variant, register_variant
from luodi.package import load_package
from luodi.store import Store

# Largest absolute difference of activated outputs (probabilities) from eager fp32 that each variant may show on the
# tiny models. Exact rewrites of the same function: 1e-4. int8 and bf16 round weights or activations: a few hundredths
# of probability. Pruning changes the weights on purpose: judged by the accuracy budget, not by parity. ONNX Runtime's
# dynamic int8 differs by CPU: 0.057 on an AVX2-only AMD EPYC (no VNNI: its u8 x s8 products saturate) where an
# AVX-512 machine stayed under 0.05, so it gets the static variant's bound.
TOLERANCE: dict[str, float | None] = {
    "onnx": 1e-4, "channels-last": 1e-4, "compile": 1e-4,
    "onnx-int8-dynamic": 0.1, "onnx-int8-static": 0.1, "torch-int8-dynamic": 0.05,
    "bf16-cpu": 0.05, "fp16-cuda": 0.01, "bf16-cuda": 0.05,
    "prune-magnitude": None, "prune-structured": None,
}


@pytest.fixture
def home(trained_package: Path, tmp_path: Path) -> Path:
    """A private copy of the store holding the session's tiny model as tiny/1."""
    copy = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], copy)
    return copy


def splits(package_path: Path) -> tuple[object, object]:
    package = load_package(package_path)
    return package, *api._split_rows(package)


def test_every_variant_type_has_a_stated_tolerance() -> None:
    """Row-model variants here; language-model ones in test_optimize_language.py."""
    assert {name for name, variant in VARIANTS.items() if not variant.language} <= set(TOLERANCE)


def test_each_variant_matches_eager_within_its_tolerance(trained_package: Path, tmp_path: Path) -> None:
    package, train, validation = splits(trained_package)
    outcome = search(package, train, validation, workdir=tmp_path / "work", batch_sizes=[1, 4], rounds=1,
                     fine_tune_steps=10, max_drop=1.0)
    built = [row for row in outcome.rows[1:] if row.status == "ok"]
    assert {"onnx", "onnx-int8-dynamic", "onnx-int8-static", "torch-int8-dynamic", "prune-magnitude",
            "prune-structured"} <= {row.name for row in built}, [(row.name, row.reason) for row in outcome.rows]
    for row in built:
        bound = TOLERANCE[row.name]
        if bound is not None:
            assert row.max_abs_diff is not None and row.max_abs_diff <= bound, (row.name, row.max_abs_diff)
        assert set(row.latency_ms) == {1, 4} and row.size_bytes and row.within_budget, row
    pruned = outcome.built["prune-magnitude"].entry["pruned"]
    assert pruned["zero_fraction"] >= 0.45  # half the weights stay zero through the fine-tune
    skipped = {row.name: row.reason for row in outcome.rows if row.status == "skipped"}
    assert skipped["channels-last"] == "no 2-D convolutions"
    if "fp16-cuda" in skipped:
        assert skipped["fp16-cuda"] == "no CUDA GPU"


def test_a_variant_over_budget_is_never_registered(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant that answers instantly P(yes) = 0 for every row is the fastest and still rejected (on log loss,
    whose direction is down: the task's table says which way is worse)."""

    def build(context: Context) -> Built:
        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            rows = len(next(iter(inputs.values())))
            return np.full(rows, 0.0, np.float32)  # P(yes) = 0 for every row: as fast as can be, and wrong

        return Built(run, {"name": "always-no", "runtime": "torch", "recipe": None}, {})

    monkeypatch.setitem(VARIANTS, "always-no", Variant("always-no", "constant answer", build))
    result = api.optimize("tiny", variants=["always-no"], batch_sizes=[1], max_drop=0.01, metric="log_loss",
                          home=home)
    (row,) = [row for row in result["variants"] if row["name"] == "always-no"]
    assert row["ratio"]["1"] < 1 and row["drop"] > 0.01
    assert not row["within_budget"] and "budget" in row["reason"]
    assert result["registered"] is None and "nothing registered" in result["verdict"]
    assert [version.version for version in Store(home).list_versions("tiny")] == [1]
    assert Path(result["report"]).is_file()


def test_register_variant_refuses_a_name_twice() -> None:
    with pytest.raises(ValueError, match="exists"):
        register_variant(Variant("onnx", "again", VARIANTS["onnx"].build))


def test_optimize_registers_the_fastest_within_budget_with_lineage_and_report(home: Path) -> None:
    result = api.optimize("tiny", variants=["onnx", "prune-structured"], batch_sizes=[1, 8], fine_tune_steps=5,
                          home=home)
    assert result["registered"] == "tiny/2", result["verdict"]
    version = Store(home).get_version("tiny", 2)
    manifest = load_package(version.path).manifest
    assert version.parent_version == 1
    assert manifest["lineage"]["parent_version"] == 1 and manifest["lineage"]["variant"] == result["chosen"]
    assert set(manifest["lineage"]["figures"]["latency_ms"]) == {"1", "8"}
    assert manifest["variant"]["name"] == result["chosen"]
    report = (version.path / "report.html").read_text(encoding="utf-8")
    assert 'id="optimization"' in report and 'id="optimize-variants"' in report and "(registered)" in report
    assert report.count('href="#optimization"') == 1  # in the page's navigation


def test_bad_arguments_are_input_errors(home: Path) -> None:
    with pytest.raises(InputError, match="unknown variant 'nope'"):
        api.optimize("tiny", variants=["nope"], home=home)
    with pytest.raises(InputError, match="--metric 'perplexity'"):
        api.optimize("tiny", variants=["onnx"], metric="perplexity", home=home)
    with pytest.raises(InputError, match="--batch-sizes"):
        api.optimize("tiny", variants=["onnx"], batch_sizes=[0], home=home)


BARE = """
import json, sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
arrays = np.load(sys.argv[2])
feeds = {arg.name: arrays[arg.name] for arg in session.get_inputs()}
out = {"rows": {}, "luodi": [m for m in sys.modules if m.startswith("luodi")]}
for rows in (1, 7, len(arrays["expected"])):
    out["rows"][rows] = session.run(None, {k: v[:rows] for k, v in feeds.items()})[0].tolist()
print(json.dumps(out))
"""


@pytest.fixture
def exported(home: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    yield api.export("tiny", tmp_path / "tiny-onnx", home=home)


def test_export_writes_a_checked_parity_tested_onnx_package(exported: dict[str, object], tmp_path: Path) -> None:
    assert exported["parity_split"] == "validation" and int(str(exported["parity_rows"])) > 0
    assert float(str(exported["parity_max_abs_diff"])) <= 1e-4
    assert set(exported["metric_difference"]) >= {"accuracy"}  # type: ignore[call-overload]
    manifest = load_package(tmp_path / "tiny-onnx").manifest
    assert manifest["onnx"]["checker"].startswith("onnx.checker") and "model.onnx" in manifest["files"]
    with pytest.raises(InputError, match="already exists"):
        api.export(str(tmp_path / "tiny-onnx"), tmp_path / "tiny-onnx")


def test_the_onnx_file_runs_in_a_bare_onnxruntime_process(exported: dict[str, object], tmp_path: Path,
                                                          trained_package: Path) -> None:
    package, _, validation = splits(trained_package)
    expected = package.outputs(validation)
    np.savez(tmp_path / "inputs.npz", expected=expected, **validation.inputs)
    script = tmp_path / "bare.py"
    script.write_text(BARE)
    # -I: isolated mode, no site-packages of the user, no PYTHONPATH, no current folder: luodi cannot sneak in
    done = subprocess.run([sys.executable, "-I", str(script), str(exported["file"]), str(tmp_path / "inputs.npz")],
                          capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["luodi"] == []
    for rows, outputs in result["rows"].items():
        np.testing.assert_allclose(np.asarray(outputs), expected[:int(rows)], atol=1e-5)


def export_text_model(tmp_path: Path, data: Path, name: str, feature: dict[str, object],
                      model: dict[str, object]) -> dict[str, object]:
    """Train a one-epoch topic classifier on one text column and export it (parity checked within 1e-4)."""
    import yaml

    config = {"name": name, "data": {"train": str(data)}, "target": {"name": "topic", "task": "multiclass"},
              "input_features": [feature], "model": model,
              "trainer": {"epochs": 1, "batch_size": 16, "seed": 1}, "runtime": {"device": "cpu", "threads": 1}}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    api.train(tmp_path / f"{name}.yaml", home=tmp_path / "home", progress="silent")
    entry = api.export(name, tmp_path / f"{name}-onnx", home=tmp_path / "home")
    assert float(str(entry["parity_max_abs_diff"])) <= 1e-4
    return entry


def test_a_table_with_piecewise_linear_bins_exports_and_explains(tmp_path: Path) -> None:
    """The config `init` writes for a 1,200-row table (numeric columns as value + bins, fitted on the training
    split and saved in the package) trains, exports to ONNX within parity, and explains one number per column."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = 1_200
    frame = pd.DataFrame({"carat": rng.gamma(2.0, 0.4, rows), "depth": rng.normal(61, 1.5, rows),
                          "color": rng.choice(["D", "E", "F"], rows)})
    frame["cut"] = np.where((frame["depth"] > 60) & (frame["depth"] < 62.5), "ideal", "fair")
    frame.to_csv(tmp_path / "gems.csv", index=False)
    api.init(tmp_path / "gems.csv", "cut", output=tmp_path / "gems.yaml", time_budget="20s")
    assert "encoding: piecewise_linear" in (tmp_path / "gems.yaml").read_text()
    trained = api.train(tmp_path / "gems.yaml", ["trainer.epochs=3", "report.enabled=false"],
                        home=tmp_path / "home", progress="silent")
    package = load_package(Path(str(trained.package)))
    assert package.pipeline.dense_width() == 2 * 17  # carat and depth: value + 16 bins each; color: embedded
    entry = api.export(str(trained.package), tmp_path / "gems-onnx")
    assert float(str(entry["parity_max_abs_diff"])) <= 1e-4
    explained = api.explain(str(trained.package), frame.drop(columns="cut").head(5)).to_frame()
    assert [c for c in explained.columns if c.endswith("_attribution")] == [
        "carat_attribution", "depth_attribution", "color_attribution"]


def test_a_text_model_exports_and_runs_at_any_text_length(text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    feature = {"name": "body", "type": "text", "tokenizer": "bpe", "vocab_size": 120, "max_length": 64}
    model = {"type": "transformer", "transformer": {"layers": 1, "heads": 2, "width": 16}, "hidden_sizes": []}
    entry = export_text_model(tmp_path, text_csv(tmp_path / "text.csv"), "words", feature, model)
    import onnxruntime as ort

    session = ort.InferenceSession(entry["file"], providers=["CPUExecutionProvider"])
    shapes = {arg.name: arg.shape for arg in session.get_inputs()}
    # nn.MultiheadAttention's reshapes bake the traced length in: the export notices and keeps max_length fixed
    assert shapes["body"] == ["rows", 64] and shapes["body.mask"] == ["rows", 64]
    package = load_package(tmp_path / "words-onnx")
    _, encoded = package.encode([{"body": "a goal"}, {"body": "the team won a goal"}])
    from luodi.optimize.recipes import OnnxRunner, trim_tokens

    runner = OnnxRunner(Path(entry["file"]), 1)
    assert not runner.trim and trim_tokens(encoded.inputs)["body"].shape[1] < 64
    np.testing.assert_allclose(runner(encoded.inputs), package.outputs(encoded), atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's inductor uses torch.jit.script_method
def test_cnn_variants_match_eager(tmp_path: Path) -> None:
    """channels_last, torch.compile and the ONNX variants of a small CNN on images, each within its tolerance."""
    import yaml
    from test_image_package import mixed_config

    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(mixed_config(tmp_path)))
    trained = api.train(tmp_path / "mixed.yaml", home=tmp_path / "home", progress="silent")
    package, train, validation = splits(Path(trained.package))
    outcome = search(package, train, validation, workdir=tmp_path / "work", batch_sizes=[2], rounds=1,
                     variants=["onnx", "onnx-int8-static", "channels-last", "compile"], max_drop=1.0)
    for row in outcome.rows[1:]:
        assert row.status == "ok", (row.name, row.reason)
        bound = TOLERANCE[row.name]
        assert bound is not None and row.max_abs_diff is not None and row.max_abs_diff <= bound, row


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from luodi.cli import main

    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_cli_optimize_json_lists_variants_and_the_registered_version(home: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "optimize", "tiny", "--home", str(home), "--variants", "onnx",
                           "--batch-sizes", "1,4", "--json")
    assert code == 0
    result = json.loads(out)
    (row,) = [row for row in result["variants"] if row["name"] == "onnx"]
    assert set(row) >= {"name", "metric", "drop", "latency_ms", "size_bytes", "within_budget"}
    assert set(row["latency_ms"]) == {"1", "4"}
    assert result["registered"] in ("tiny/2", None)
    code, _, err = run_cli(capsys, "optimize", "tiny", "--home", str(home), "--batch-sizes", "1,x")
    assert code == 2 and "--batch-sizes" in err
    code, out, _ = run_cli(capsys, "optimize", "--help")
    assert code == 0 and "--max-drop" in out
    code, out, _ = run_cli(capsys, "export", "tiny", "--home", str(home), "--out", str(home.parent / "x"))
    assert code == 0 and "parity on" in out


def test_a_hugging_face_encoder_exports_with_a_dynamic_sequence_axis(tiny_checkpoint: Path, text_csv,  # type: ignore[no-untyped-def]
                                                                     tmp_path: Path) -> None:
    """A BERT-style checkpoint traces with a real `tokens` axis: batches run at their longest text, as eager does."""
    import onnxruntime as ort

    from luodi.optimize.recipes import OnnxRunner

    entry = export_text_model(tmp_path, text_csv(tmp_path / "news.csv", rows=90), "bert",
                              {"name": "body", "type": "text", "max_length": 24},
                              {"type": "hf", "path": str(tiny_checkpoint), "hidden_sizes": []})
    session = ort.InferenceSession(entry["file"], providers=["CPUExecutionProvider"])
    assert {arg.name: arg.shape for arg in session.get_inputs()}["body"] == ["rows", "tokens"]
    package = load_package(tmp_path / "bert-onnx")
    _, encoded = package.encode([{"body": "goal"}, {"body": "the team won the match"}])
    runner = OnnxRunner(Path(entry["file"]), 1)
    assert runner.trim
    np.testing.assert_allclose(runner(encoded.inputs), package.outputs(encoded), atol=1e-5)
