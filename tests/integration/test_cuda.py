"""Training on a CUDA device, for real: mixed precision, data placement, exact resume and every architecture.

These tests run only where torch sees a GPU (CI has none; `pytest -m gpu` on a GPU machine runs them). Each
trains on the GPU and then loads the package on the CPU, where serving runs, so they also prove that what a GPU
run saves is an ordinary CPU package.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from test_image_package import mixed_config
from test_resume import assert_same_weights

import luodi.api as api
from luodi.package import load_package
from luodi.store import Store

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def on_gpu(config: Path, **runtime: Any) -> Path:
    """The config at `config`, switched to the GPU (and `runtime` settings), written beside it."""
    loaded = yaml.safe_load(config.read_text())
    loaded["runtime"] = {"device": "cuda", "threads": 1, **runtime}
    path = config.with_name(f"gpu-{config.name}")
    path.write_text(yaml.safe_dump(loaded))
    return path


def training_record(result: api.TrainResult) -> dict[str, Any]:
    training: dict[str, Any] = load_package(result.package).manifest["training"]
    return training


@pytest.mark.parametrize("requested", ["auto", "bf16"])
def test_precision_on_the_gpu_with_the_data_there(requested: str, table_csv, tiny_config,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    """auto is TF32 math (fp32 tensors) on Ampere and later, bf16 autocast when asked for; the splits sit on the GPU."""
    data = table_csv(tmp_path / "table.csv", rows=600)
    config = on_gpu(tiny_config(tmp_path / "tiny.yaml", data, epochs=6, optimizer={"lr": 0.01}),
                    mixed_precision=requested)
    result = api.train(config, home=tmp_path / "home", progress="silent")
    assert result.environment["device"] == "cuda"
    ampere = torch.cuda.get_device_capability()[0] >= 8
    expected = requested if requested != "auto" else ("tf32" if ampere else "fp16")
    assert training_record(result).items() >= {"mixed_precision": expected, "data_placement": "device"}.items()
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # fp32 math outside autocast uses the tensor cores
    assert result.metrics["accuracy"] >= 0.8
    # The package is a CPU package: loaded with no device named, its weights are on the CPU and it scores the
    # whole table (fp32 on the CPU; the GPU evaluated its test split under autocast) as well as the run measured.
    package = load_package(result.package)
    assert {parameter.device.type for parameter in package.model.parameters()} == {"cpu"}
    assert api.evaluate(result.package, data, report=False)["metrics"]["accuracy"] >= 0.8


def test_fp16_with_loss_scaling_resumes_exactly(table_csv, tiny_config, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                ctrl_c_at) -> None:
    """Ctrl-C mid-epoch, then resume: bit-identical weights to a run never stopped. Needs the GradScaler's state
    and the GPU's random generator (dropout draws from it) in the checkpoint, and deterministic kernels."""
    trainer = {"epochs": 3, "checkpoint_every_steps": 5, "optimizer": {"lr": 0.01}, "early_stopping": {"patience": 50}}
    data = table_csv(tmp_path / "table.csv", rows=600)
    config = on_gpu(tiny_config(tmp_path / "tiny.yaml", data, **trainer), mixed_precision="fp16", deterministic=True)
    straight = api.train(config, home=tmp_path / "straight", progress="silent")
    assert training_record(straight)["mixed_precision"] == "fp16"

    steps = ctrl_c_at(23)
    home = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        api.train(config, home=home, progress="silent")
    (run,) = Store(home).list_runs()
    ctrl_c_at(-1)
    resumed = api.train(resume=run.id, home=home, progress="silent")
    assert steps["count"] == 14 * 3 - 20, "the resume did not continue from its step-20 checkpoint"
    assert_same_weights(resumed.package, straight.package)


def test_pinned_host_memory_trains_as_the_data_on_the_gpu_does(table_csv, tiny_config,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset too big for the GPU stays in page-locked host memory and each batch is copied asynchronously:
    the same batches in the same order, so the same weights as when the whole split sits on the GPU."""
    data = table_csv(tmp_path / "table.csv", rows=600)
    config = on_gpu(tiny_config(tmp_path / "tiny.yaml", data, epochs=2), deterministic=True)
    on_device = api.train(config, home=tmp_path / "device", progress="silent")
    total = torch.cuda.mem_get_info()[1]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, total))  # "no room on the GPU"
    pinned = api.train(config, home=tmp_path / "pinned", progress="silent")
    assert training_record(on_device)["data_placement"] == "device"
    assert training_record(pinned)["data_placement"] == "pinned"
    assert_same_weights(pinned.package, on_device.package)


def test_cnn_on_images_and_a_sequence_with_augmentation(tmp_path: Path) -> None:
    config = mixed_config(tmp_path, device="cuda")
    config["input_features"][0]["augment"]["rotation"] = 5
    result = api.train(config, home=tmp_path / "home", progress="silent")
    assert result.environment["device"] == "cuda" and result.metrics["accuracy"] >= 0.8
    evaluated = api.evaluate(result.package, config["data"]["test"], report=False)
    assert evaluated["metrics"]["accuracy"] >= 0.8
    predicted = api.predict(result.package, [{"photo": str(tmp_path / "images" / "test-0.png"),
                                              "signal": " ".join(["0.1"] * 12), "size": 0.0, "shop": "a"}])
    assert predicted["label_prediction"].isin(["bright", "dark"]).all()


@pytest.mark.parametrize("model", [
    {"type": "rnn", "rnn": {"cell": "lstm", "hidden_size": 16, "embedding_dim": 16, "bidirectional": True}},
    {"type": "rnn", "rnn": {"cell": "gru", "hidden_size": 16, "embedding_dim": 16}},
    {"type": "transformer", "transformer": {"layers": 2, "heads": 2, "width": 16, "positions": "sinusoidal"}},
])
def test_text_models_with_dynamic_padding(model: dict[str, Any], text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = text_csv(tmp_path / "news.csv", rows=300)
    config = {
        "name": "news", "data": {"train": str(data)}, "target": {"name": "topic", "task": "multiclass"},
        "input_features": [{"name": "body", "type": "text", "max_length": 24, "vocab_size": 300},
                           {"name": "length", "type": "numeric"}, {"name": "desk", "type": "category"}],
        "model": {"hidden_sizes": [16], **model},
        "trainer": {"epochs": 8, "batch_size": 32, "seed": 3, "optimizer": {"lr": 0.01}},
        "runtime": {"device": "cuda", "threads": 1},
    }
    result = api.train(config, home=tmp_path / "home", progress="silent")
    assert result.metrics["accuracy"] > 0.6  # three topics: chance is 1/3
    cpu = load_package(result.package).predict(str(data)).probabilities
    assert cpu is not None and np.isfinite(cpu).all()


def test_hf_checkpoint_fine_tuned_on_the_gpu(tiny_checkpoint: Path, text_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "bert"))
    data = text_csv(tmp_path / "news.csv", rows=240)
    config = {
        "name": "news", "data": {"train": str(data)}, "target": {"name": "topic", "task": "multiclass"},
        "input_features": [{"name": "body", "type": "text", "max_length": 24}],
        "model": {"type": "hf", "path": str(folder), "hf": {"freeze": 1, "layer_lr_decay": 0.8}},
        "trainer": {"epochs": 6, "batch_size": 32, "seed": 3, "optimizer": {"lr": 0.003}},
        "runtime": {"device": "cuda", "threads": 1},
    }
    result = api.train(config, home=tmp_path / "home", progress="silent")
    assert result.environment["device"] == "cuda" and result.metrics["accuracy"] > 0.6
    package = load_package(result.package)
    # The frozen embeddings left the GPU run unchanged: the package holds the checkpoint's own values.
    from safetensors.torch import load_file

    original = load_file(str(folder / "model.safetensors"))
    name = next(key for key in original if key.endswith("word_embeddings.weight"))
    weights = {key: value for key, value in package.model.state_dict().items() if key.endswith(name.split(".", 1)[-1])}
    assert len(weights) == 1 and torch.equal(next(iter(weights.values())), original[name])
