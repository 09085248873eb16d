"""LoRA packages keep only their adapters (PEFT's format) and name their base checkpoint by path and sha256; a moved
base is found with --base / LUODI_BASE, another base is refused, and `luodi models merge` folds the adapters into a
standalone package that generates the same tokens. The tiny Llama checkpoint comes from test_generation_hf."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from test_generation_hf import checkpoint, config, hf_greedy, write_chat  # noqa: F401  (checkpoint: a fixture)

import luodi.api as api
from luodi import cli
from luodi.checkpoints import checkpoint_digest
from luodi.errors import InputError
from luodi.models.generation import Sampling, generate_tokens
from luodi.package import ADAPTER_WEIGHTS, BASE_REFERENCE, MANIFEST, WEIGHTS, load_package


@pytest.fixture(scope="module")
def adapted(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:  # noqa: F811
    """A LoRA package trained on its own copy of the tiny checkpoint: (package, base folder, store)."""
    folder = tmp_path_factory.mktemp("adapted")
    base = folder / "base"
    shutil.copytree(checkpoint, base)
    trained = api.train(config(write_chat(folder / "chat.jsonl"), base, True), home=folder / "home",
                        progress="silent")
    assert trained.package is not None
    return Path(trained.package), base, folder / "home"


@contextmanager
def moved(folder: Path) -> Iterator[Path]:
    """The folder renamed for the block (a base checkpoint that moved), put back afterwards."""
    elsewhere = folder.with_name(folder.name + "-moved")
    folder.rename(elsewhere)
    try:
        yield elsewhere
    finally:
        elsewhere.rename(folder)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def logits(package: Any, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return package.model({"tokens": torch.tensor([ids])})  # type: ignore[no-any-return]


def test_a_lora_package_holds_peft_adapters_and_its_base_by_path_and_sha256(adapted: tuple[Path, Path, Path]
                                                                             ) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    package_dir, base, _ = adapted
    manifest = json.loads((package_dir / MANIFEST).read_text())
    assert WEIGHTS not in manifest["files"] and ADAPTER_WEIGHTS in manifest["files"]
    assert manifest["base"]["path"] == str(base.resolve())
    assert manifest["base"]["sha256"] == checkpoint_digest(base)[0]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["base"]["files"])
    adapter_bytes = (package_dir / ADAPTER_WEIGHTS).stat().st_size
    assert adapter_bytes * 10 < (base / "model.safetensors").stat().st_size  # rank 4 of a 32-wide model

    package = load_package(package_dir)
    prompt = package.pipeline.target.prompt_ids("what is 2+2?")
    # PEFT itself reads the adapter folder onto the base checkpoint and computes the same logits.
    with warnings.catch_warnings():  # PEFT asks transformers 5 for a renamed attribute
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)),
                                              str(package_dir / "adapter")).eval()
    with torch.inference_mode():
        expected = reference(input_ids=torch.tensor([prompt])).logits
    torch.testing.assert_close(logits(package, prompt), expected, atol=1e-5, rtol=1e-5)
    ours = list(generate_tokens(package.model, prompt, Sampling(max_tokens=10), package.pipeline.target.eos_id))
    assert ours == hf_greedy(reference, prompt, 10, package.pipeline.target.eos_id)


def test_a_moved_base_is_named_and_found_through_base_or_luodi_base(
        adapted: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    package_dir, base, _ = adapted
    expected = "".join(load_package(package_dir).generate("what is 3+3?", Sampling(max_tokens=8)))
    with moved(base) as elsewhere:
        with pytest.raises(InputError, match=rf"base checkpoint {base.resolve()}, which is not there.*--base PATH"):
            load_package(package_dir)
        code, _, err = run_cli(capsys, "generate", str(package_dir), "--prompt", "what is 3+3?", "--max-tokens", "8")
        assert code == 2 and str(base.resolve()) in err and "LUODI_BASE" in err
        code, out, _ = run_cli(capsys, "generate", str(package_dir), "--prompt", "what is 3+3?", "--max-tokens", "8",
                               "--base", str(elsewhere), "--json")
        assert code == 0 and json.loads(out)["text"] == expected
        monkeypatch.setenv("LUODI_BASE", str(elsewhere))
        assert "".join(load_package(package_dir).generate("what is 3+3?", Sampling(max_tokens=8))) == expected


def test_a_different_base_is_refused_naming_both_hashes(adapted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    package_dir, base, _ = adapted
    other = tmp_path / "other"
    shutil.copytree(base, other)
    settings = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**settings, "rms_norm_eps": 1e-5}))
    recorded = json.loads((package_dir / MANIFEST).read_text())["base"]["sha256"]
    with pytest.raises(InputError, match=rf"{checkpoint_digest(other)[0]}.*trained on {recorded} \(files that "
                                         r"differ: config.json\)"):
        load_package(package_dir, base=other)


def test_a_base_reference_changed_in_the_manifest_is_refused(adapted: tuple[Path, Path, Path], tmp_path: Path
                                                            ) -> None:
    copy = tmp_path / "package"
    shutil.copytree(adapted[0], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["base"]["sha256"] = "0" * 64
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=f"not the one in {BASE_REFERENCE}"):
        load_package(copy)


def test_merge_writes_a_standalone_package_with_the_same_generations_and_logits(
        adapted: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    package_dir, base, home = adapted
    adapter_package = load_package(package_dir)
    prompts = [adapter_package.pipeline.target.prompt_ids(f"what is {q}?") for q in ("2+2", "5+5")]
    code, out, _ = run_cli(capsys, "models", "merge", str(package_dir), "--out", "tiny-merged", "--home", str(home),
                           "--json")
    assert code == 0
    merged_dir = Path(json.loads(out)["package"])
    manifest = json.loads((merged_dir / MANIFEST).read_text())
    assert "base" not in manifest and WEIGHTS in manifest["files"] and ADAPTER_WEIGHTS not in manifest["files"]
    assert manifest["lineage"]["merged_from"] == str(package_dir)
    assert manifest["config"]["model"]["hf"]["lora"]["enabled"] is False
    with moved(base):  # standalone: the base is no longer read
        merged = api.load_model("tiny-merged", home=home)
        eos = merged.pipeline.target.eos_id
        for prompt in prompts:
            torch.testing.assert_close(logits(merged, prompt), logits(adapter_package, prompt), atol=1e-5, rtol=1e-4)
            assert (list(generate_tokens(merged.model, prompt, Sampling(max_tokens=12), eos))
                    == list(generate_tokens(adapter_package.model, prompt, Sampling(max_tokens=12), eos)))
    with pytest.raises(InputError, match="not an adapter"):  # a merged (full) package has nothing to merge
        api.merge(merged_dir, "again", home=home)


def test_a_lora_package_of_the_earlier_layout_loads_without_its_base(adapted: tuple[Path, Path, Path],
                                                                   tmp_path: Path) -> None:
    """Before adapters were kept apart, weights.safetensors held the base's weights and the adapters together."""
    from luodi.io import sha256_file
    from luodi.package import write_tensors

    package_dir, base, _ = adapted
    adapter_package = load_package(package_dir)
    earlier = tmp_path / "earlier"
    shutil.copytree(package_dir, earlier)
    shutil.rmtree(earlier / "adapter")
    write_tensors(earlier / WEIGHTS, adapter_package.model.state_dict())
    manifest = json.loads((earlier / MANIFEST).read_text())
    del manifest["base"]
    manifest["files"] = {name: entry for name, entry in manifest["files"].items() if not name.startswith("adapter/")}
    manifest["files"][WEIGHTS] = {"sha256": sha256_file(earlier / WEIGHTS), "bytes": (earlier / WEIGHTS).stat().st_size}
    (earlier / MANIFEST).write_text(json.dumps(manifest))
    prompt = adapter_package.pipeline.target.prompt_ids("what is 4+4?")
    with moved(base):
        torch.testing.assert_close(logits(load_package(earlier), prompt), logits(adapter_package, prompt))


def test_an_adapter_package_is_served_with_a_moved_base_from_luodi_base(
        adapted: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    from luodi.serve.model import Reference
    from luodi.serve.server import background
    from luodi.serve.settings import make_config

    package_dir, base, home = adapted
    expected = "".join(load_package(package_dir).generate("what is 2+2?", Sampling(max_tokens=6)))
    with moved(base) as elsewhere:
        monkeypatch.setenv("LUODI_BASE", str(elsewhere))
        with background([Reference("tiny-chat", home)], make_config(port=0, reload_interval_s=0), home) as running, \
                openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0) as client:
            reply = client.chat.completions.create(model="tiny-chat", max_tokens=6, temperature=0,
                                                   messages=[{"role": "user", "content": "what is 2+2?"}])
    assert reply.choices[0].message.content == expected
