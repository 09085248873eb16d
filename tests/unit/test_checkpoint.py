"""A local Hugging Face checkpoint folder: refused when it is not a folder, lacks a file or ships code; the hf
encoder's freezing, layer-wise learning rates, pooling and exposed embedding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from luodi import checkpoints as hf_checkpoint
from luodi.config import ModelConfig, OptimizerConfig, TextFeature
from luodi.errors import InputError
from luodi.features.text import TokenEncoder
from luodi.models.hf import HFEncoder, depths, layer_list
from luodi.train.loop import build_optimizer


@pytest.fixture
def folder(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "bert"))


def token_encoder(folder: Path, max_length: int = 16) -> TokenEncoder:
    import pyarrow as pa

    encoder = TokenEncoder(TextFeature(name="body", tokenizer="checkpoint", checkpoint=str(folder),
                                       max_length=max_length))
    encoder.fit(pa.chunked_array([pa.array(["unused"])]))
    return encoder


def hf_module(folder: Path, **settings: object) -> HFEncoder:
    encoder = token_encoder(folder)
    module = HFEncoder(ModelConfig(type="hf", path=str(folder), hf=settings), encoder)
    module.load_pretrained()
    return module


def test_a_hub_name_or_a_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="never a hub name"):
        hf_checkpoint.checkpoint_folder("sentence-transformers/all-MiniLM-L6-v2")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        hf_checkpoint.checkpoint_folder(tmp_path / "file")


@pytest.mark.parametrize(("removed", "message"), [
    ("config.json", "has no config.json"), ("model.safetensors", "has no model.safetensors"),
])
def test_missing_model_files_are_named(folder: Path, removed: str, message: str) -> None:
    (folder / removed).unlink()
    with pytest.raises(InputError, match=message) as error:
        hf_checkpoint.check_model_files(folder)
    assert str(folder) in str(error.value)


def test_missing_tokenizer_files_are_named(folder: Path) -> None:
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="has no tokenizer.json"):
        token_encoder(folder)


def test_pickled_weights_are_refused(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(InputError, match="pytorch_model.bin \\(pickle\\), which luodi never loads"):
        hf_checkpoint.check_model_files(folder)


def test_remote_code_needs_the_config_key(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    encoder = token_encoder(folder)  # the tokenizer is data (tokenizer.json), never code
    with pytest.raises(InputError, match="trust_remote_code: true"):
        HFEncoder(ModelConfig(type="hf", path=str(folder)), encoder)


def test_max_length_beyond_the_checkpoint_positions(folder: Path) -> None:
    with pytest.raises(InputError, match="exceeds the 64 positions"):
        token_encoder(folder, max_length=100)


def test_checkpoint_tokens_carry_its_special_tokens(folder: Path) -> None:
    import pyarrow as pa

    encoder = token_encoder(folder)
    out = encoder.transform(pa.chunked_array([pa.array(["the goal", ""])]), None)  # type: ignore[arg-type]
    ids = encoder.tokenizer.decode(out["body"][0][out["body.mask"][0]].tolist(), skip_special_tokens=False)
    assert ids.startswith("[CLS]") and ids.endswith("[SEP]")
    assert out["body.mask"][1].sum() == 2  # an empty text is [CLS] [SEP]


def test_weights_come_from_the_checkpoint(folder: Path) -> None:
    from transformers import AutoModel

    module = hf_module(folder)
    reference = AutoModel.from_pretrained(str(folder), local_files_only=True).state_dict()
    for name, tensor in module.backbone.state_dict().items():
        torch.testing.assert_close(tensor, reference[name])
    assert module.embedding is module.backbone.get_input_embeddings()


def test_freezing_lower_layers(folder: Path) -> None:
    module = hf_module(folder, freeze=1)
    levels = depths(module.backbone)
    for parameter in module.backbone.parameters():
        assert parameter.requires_grad == (levels[id(parameter)] > 1)
    assert not any(p.requires_grad for p in hf_module(folder, freeze="all").parameters())
    with pytest.raises(InputError, match="has 2 layers"):
        hf_module(folder, freeze=3)


def test_layer_wise_learning_rates(folder: Path) -> None:
    module = hf_module(folder, layer_lr_decay=0.5)
    layers = layer_list(module.backbone)
    assert len(layers) == 2
    optimizer = build_optimizer(module, OptimizerConfig(lr=1.0))
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {lr_of[id(p)] for p in layers[1].parameters()} == {0.5}
    assert {lr_of[id(p)] for p in layers[0].parameters()} == {0.25}
    assert lr_of[id(module.embedding.weight)] == 0.125


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooling_reads_the_mask(folder: Path, pooling: str) -> None:
    module = hf_module(folder, pooling=pooling).eval()
    encoder = token_encoder(folder)
    import pyarrow as pa

    inputs = encoder.transform(pa.chunked_array([pa.array(["the goal said", "team"])]), None)  # type: ignore[arg-type]
    batch = {key: torch.from_numpy(value) for key, value in inputs.items()}
    with torch.no_grad():
        both = module(batch)
        alone = module({key: value[1:] for key, value in batch.items()})
    assert both.shape == (2, 32)
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-5)


def test_the_builder_needs_a_checkpoint_tokenizer() -> None:
    encoder = SimpleNamespace(name="body", checkpoint_dir=None, vocab_size=10)
    with pytest.raises(InputError, match="needs tokenizer: checkpoint"):
        HFEncoder(ModelConfig(type="hf", path="x"), encoder)
