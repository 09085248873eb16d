"""`luodi import-gguf`: a GGUF file written here from a tiny random Llama (as llama.cpp's converter writes one:
q/k rows permuted, byte-level BPE tokenizer in the metadata) becomes a checkpoint folder whose logits equal the
original's, which luodi then fine-tunes and generates from; bad input is refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import luodi.api as api
from luodi.cli import main
from luodi.errors import InputError

gguf = pytest.importorskip("gguf")

WORDS = ("the", "cat", "dog", "sat", "on", "mat", "ran", "to", "barn")


def byte_tokens() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout of q and k rows (its converter's `permute`), which transformers undoes."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_tiny_gguf(path: Path) -> torch.nn.Module:
    """A 2-layer Llama with random weights, written as an fp32 GGUF; returns the model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = byte_tokens()
    merges = ["Ġ t", "h e", "Ġt he", "Ġ c", "a t"]
    tokens += [merge.replace(" ", "") for merge in merges] + ["<|endoftext|>"]
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(128)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(8)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    state = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for layer in range(2):
        for theirs, ours in names.items():
            weights = state[f"model.layers.{layer}.{theirs}.weight"]
            if ours in ("attn_q", "attn_k"):
                weights = permute(weights, 4 if ours == "attn_q" else 2)
            writer.add_tensor(f"blk.{layer}.{ours}.weight", np.ascontiguousarray(weights))
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("gguf")
    model = write_tiny_gguf(folder / "tiny.gguf")
    return folder / "tiny.gguf", model


def test_import_matches_the_original_model(tiny: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, original = tiny
    (tmp_path / "out").mkdir()  # an empty folder is fine
    imported = api.import_gguf(path, tmp_path / "out")
    assert imported.architecture == "llama" and imported.parameters == sum(p.numel() for p in original.parameters())
    files = {file.name for file in (tmp_path / "out").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert "quantization_config" not in json.loads((tmp_path / "out" / "config.json").read_text())
    assert not [name for name in (tmp_path).iterdir() if name.name.startswith(".")]  # no staging left behind
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "out"), local_files_only=True)
    ids = torch.tensor([tokenizer.encode(" the cat sat on the mat")])
    assert ids.shape[1] > 3
    with torch.inference_mode():
        torch.testing.assert_close(loaded(ids).logits, original(ids).logits, atol=1e-5, rtol=1e-5)


def test_imported_folder_trains_and_generates_in_luodi(tiny: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    """`model: {type: hf, path: OUT}` loads the imported folder like any local checkpoint (LoRA, a few steps)."""
    api.import_gguf(tiny[0], tmp_path / "checkpoint")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, 6)) for _ in range(40)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    api.init(tmp_path / "corpus.txt", task="text_generation", base=tmp_path / "checkpoint",
             output=tmp_path / "luodi.yaml")
    result = api.train(tmp_path / "luodi.yaml", ["trainer.epochs=1", "trainer.batch_size=8", "runtime.threads=1",
                                                 "target.text.context_length=32", "runtime.device=cpu",
                                                 "report.enabled=false"],
                       home=tmp_path / "home", progress="silent")
    assert np.isfinite(result.metrics["perplexity"])
    text = "".join(api.generate(result.model, " the cat", max_tokens=4, home=tmp_path / "home"))
    assert isinstance(text, str)


def test_cli_refuses_bad_input_naming_it(tiny: tuple[Path, torch.nn.Module], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.gguf").write_text("not a model")
    (tmp_path / "cut.gguf").write_bytes(tiny[0].read_bytes()[:3000])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    cases = {("missing.gguf", "new"): "missing.gguf: no such file",
             ("notes.gguf", "new"): "notes.gguf: not a GGUF file",
             ("cut.gguf", "new"): "cut.gguf: cannot read the GGUF file (truncated or damaged?)",
             (str(tiny[0]), "full"): "full: exists and is not empty",
             (str(tiny[0]), "file"): "file: exists and is not a folder"}
    for (source, out), message in cases.items():
        with pytest.raises(SystemExit) as exited:
            main(["import-gguf", str(tmp_path / source) if "/" not in source else source,
                  "--out", str(tmp_path / out)])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(str(tmp_path / "rwkv.gguf"), "rwkv6")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(InputError, match=r"rwkv\.gguf: cannot read the GGUF file: .*rwkv6.*transformers reads"):
        api.import_gguf(tmp_path / "rwkv.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
