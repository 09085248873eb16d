"""`luodi optimize` on language models (optimize/language.py): a tiny GPT gets the int8 weight-only variant, scored
by held-out perplexity with its relative drop and timed decoding tokens/s; the budget decides (0 with a variant that
changes perplexity registers nothing); the registered version is the in-memory quantized model (the same greedy
text through `luodi generate`'s path and `luodi serve`'s OpenAI routes). A LoRA package gets the merged variants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from test_adapters import adapted  # noqa: F401  (a fixture: a LoRA package of a tiny Llama)
from test_generation_hf import checkpoint  # noqa: F401  (the fixture `adapted` uses)
from test_weight_only import trained  # noqa: F401  (a fixture: the tiny GPT `story`)

import luodi.api as api
from luodi.api import _split_rows
from luodi.models.generation import Sampling, generate_tokens
from luodi.optimize import publish
from luodi.optimize.search import Outcome, search
from luodi.optimize.variants import VARIANTS
from luodi.optimize.weight_only import quantize_weight_only
from luodi.package import load_package
from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config
from luodi.store import ModelVersion, Store

PROMPTS = ["the fish sleeps near", "the dog", "the cat runs to"]


def test_language_variants_state_their_tolerance() -> None:
    """Merged LoRA computes the same function (per-window mean NLL within 1e-3); int8 is judged by the budget."""
    assert {name: (variant.tolerance, variant.language) for name, variant in VARIANTS.items() if variant.language} \
        == {"int8-weight-only": (None, True), "lora-merged": (1e-3, True), "lora-merged-int8": (None, True)}


def test_optimize_a_tiny_gpt_registers_int8_weight_only_within_budget(trained: tuple[Path, Path]  # noqa: F811
                                                                       ) -> None:
    home, _ = trained
    result = subprocess.run([sys.executable, "-m", "luodi.cli", "optimize", "story", "--max-drop", "0.5",
                             "--batch-sizes", "1,4", "--home", str(home), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["metric"] == "perplexity" and out["latency_unit"] == "token"
    rows = {row["name"]: row for row in out["variants"]}
    assert set(rows) == {"eager", "int8-weight-only", "lora-merged", "lora-merged-int8"}
    assert rows["lora-merged"]["status"] == "skipped" and "LoRA" in rows["lora-merged"]["reason"]
    int8, eager = rows["int8-weight-only"], rows["eager"]
    assert int8["status"] == "ok", int8["reason"]
    assert int8["drop"] == pytest.approx(int8["metric"] / eager["metric"] - 1)  # relative perplexity increase
    assert abs(int8["drop"]) < 0.05 and int8["size_bytes"] < eager["size_bytes"] and int8["peak_memory_bytes"]
    assert set(int8["throughput"]) == {"1", "4"} and all(value > 0 for value in int8["throughput"].values())
    # Registered exactly when within budget and faster than eager (timing on a shared machine decides which).
    faster = int8["within_budget"] and int8["speed"] < 1.0
    assert (out["chosen"], out["registered"]) == (("int8-weight-only", "story/2") if faster else (None, None))
    assert "perplexity" in Path(out["report"]).read_text()
    table = subprocess.run([sys.executable, "-m", "luodi.cli", "optimize", "story/1", "--no-register",
                            "--variants", "int8-weight-only", "--batch-sizes", "1", "--home", str(home)],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert all(header in table.stdout for header in ("perplexity", "tok/s @1", "peak MB", "int8-weight-only"))


def register(home: Path, model: str, variant: str, workdir: Path) -> tuple[ModelVersion, Outcome]:
    """`variant` searched alone and registered as `luodi optimize` registers its choice, whatever the timing."""
    store = Store(home)
    parent = store.resolve(model)
    package = load_package(parent.path)
    train, validation = _split_rows(package)
    outcome = search(package, train, validation, workdir=workdir, max_drop=0.5, batch_sizes=[1], variants=[variant],
                     rounds=1)
    assert outcome.row(variant).within_budget, outcome.row(variant)
    outcome.chosen = variant  # this machine's timing aside
    return publish.register_variant(store, parent, outcome), outcome


def test_the_registered_int8_version_generates_and_serves_the_in_memory_quantization(
        trained: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    """The chosen variant registered (publish.register_variant, as `luodi optimize` does when it is faster): a
    version with lineage whose greedy text, generated and served, is the in-memory quantized model's."""
    home, _ = trained
    parent = Store(home).resolve("story/1")
    version, outcome = register(home, "story/1", "int8-weight-only", tmp_path)
    manifest = json.loads((version.path / "package.json").read_text())
    assert manifest["lineage"]["parent_version"] == 1 and manifest["lineage"]["variant"] == "int8-weight-only"
    assert manifest["lineage"]["figures"]["metric"] == outcome.row("int8-weight-only").metric
    assert manifest["weight_only"]["scheme"] == "int8-per-channel"
    assert manifest["variant"]["runtime"] == "torch"
    assert 'id="optimize-variants"' in (version.path / "report.html").read_text()

    in_memory = load_package(parent.path)
    quantize_weight_only(in_memory.model)
    expected = ["".join(in_memory.generate(prompt, Sampling(max_tokens=10))) for prompt in PROMPTS]
    assert all(expected)
    generated = subprocess.run([sys.executable, "-m", "luodi.cli", "generate", version.ref, "--prompt", PROMPTS[0],
                                "--max-tokens", "10", "--temperature", "0", "--home", str(home), "--json"],
                               capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr
    assert json.loads(generated.stdout)["text"] == expected[0]
    with background([Reference(version.ref, home)], make_config(port=0, reload_interval_s=0), home) as running, \
            openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0) as client:
        served = [client.completions.create(model="story", prompt=prompt, max_tokens=10, temperature=0)
                  .choices[0].text for prompt in PROMPTS]
    assert served == expected


def test_a_budget_of_zero_registers_no_variant_that_raises_perplexity(trained: tuple[Path, Path]  # noqa: F811
                                                                      ) -> None:
    home, _ = trained
    before = Store(home).resolve("story").version
    out = api.optimize("story/1", max_drop=0.0, batch_sizes=[1], variants=["int8-weight-only"], home=home)
    (int8,) = [row for row in out["variants"] if row["name"] == "int8-weight-only"]
    assert int8["status"] == "ok" and int8["drop"] != 0.0  # the quantization moves perplexity
    assert int8["within_budget"] == (int8["drop"] < 0)
    if int8["drop"] > 0:
        assert out["registered"] is None and "nothing registered" in out["verdict"]
        assert Store(home).resolve("story").version == before


def test_a_lora_package_gets_the_merged_variants(adapted: tuple[Path, Path, Path], tmp_path: Path  # noqa: F811
                                                  ) -> None:
    """An adapter package: int8 alone is skipped (the adapters must be merged first); merged computes the same
    function (per-window NLL within its tolerance, perplexity unchanged) and merged + int8 is scored like int8."""
    package_dir, _, home = adapted
    name = json.loads((package_dir / "package.json").read_text())["config"]["name"]
    out = api.optimize(f"{name}/1", max_drop=0.05, batch_sizes=[1], home=home)
    rows = {row["name"]: row for row in out["variants"]}
    assert rows["int8-weight-only"]["status"] == "skipped" and "LoRA" in rows["int8-weight-only"]["reason"]
    merged, eager, both = rows["lora-merged"], rows["eager"], rows["lora-merged-int8"]
    assert merged["status"] == "ok", merged["reason"]
    assert merged["max_abs_diff"] <= merged["tolerance"] and abs(merged["drop"]) < 1e-3
    assert merged["metric"] == pytest.approx(eager["metric"], rel=1e-3)
    assert both["status"] == "ok", both["reason"]
    assert both["drop"] == pytest.approx(both["metric"] / eager["metric"] - 1)
    assert out["registered"] is None or out["chosen"] in ("lora-merged", "lora-merged-int8")

    # The merged version registered: a standalone package (no base checkpoint) generating the adapters' tokens.
    version, _ = register(home, f"{name}/1", "lora-merged", tmp_path)
    manifest = json.loads((version.path / "package.json").read_text())
    assert "base" not in manifest and manifest["lineage"]["variant"] == "lora-merged"
    assert manifest["config"]["model"]["hf"]["lora"]["enabled"] is False
    adapters, merged_package = load_package(package_dir), api.load_model(version.ref, home=home)
    eos = adapters.pipeline.target.eos_id
    for prompt in ("what is 2+2?", "say hi"):
        ids = adapters.pipeline.target.prompt_ids(prompt)
        assert (list(generate_tokens(merged_package.model, ids, Sampling(max_tokens=8), eos))
                == list(generate_tokens(adapters.model, ids, Sampling(max_tokens=8), eos)))
