"""The MLP and the per-task losses and activations: output shapes, category embeddings, normalization layers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from luodi.config import ModelConfig, TargetConfig
from luodi.models import build_combiner, build_model
from luodi.models.mlp import MLP
from luodi.tasks import get_task


def build_loss(task: str, class_weights: np.ndarray | None = None) -> nn.Module:
    """The task's training loss, its target fitted on classes a, b, c, ... with these class weights."""
    count = 2 if task == "binary" else 3
    names = [chr(ord("a") + index) for index in range(count)]
    weights = dict(zip(names, class_weights.tolist(), strict=True)) if class_weights is not None else "none"
    config = TargetConfig(name="y", task=task, class_weights=weights)  # type: ignore[arg-type]
    state = {"classes": names, "counts": [1] * count} if task != "regression" else None
    return get_task(task).loss(get_task(task).target(config, state))


def inputs(batch: int = 5, dense: int = 3, categories: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    columns = [torch.randint(0, cardinality, (batch,), generator=generator) for cardinality in categories]
    return {
        "dense": torch.randn(batch, dense, generator=generator),
        "categorical": torch.stack(columns, dim=1) if columns else torch.zeros(batch, 0, dtype=torch.int64),
    }


@pytest.mark.parametrize(("task", "output_size"), [("regression", 1), ("binary", 1), ("multiclass", 4)])
def test_output_shapes_per_task(task: str, output_size: int) -> None:
    model = MLP(ModelConfig(hidden_sizes=[8, 4]), 3, [], output_size)
    logits = model(inputs())
    assert logits.shape == (5, output_size)
    activated = get_task(task).activate(logits)
    assert activated.shape == ((5,) if task != "multiclass" else (5, 4))
    if task == "multiclass":
        assert torch.allclose(activated.sum(dim=1), torch.ones(5))
    if task == "binary":
        assert ((activated > 0) & (activated < 1)).all()


def test_categories_and_dense() -> None:
    model = MLP(ModelConfig(hidden_sizes=[6]), 2, [(4, 3), (7, 2)], 1)
    assert [embedding.embedding_dim for embedding in model.embeddings] == [3, 2]
    assert model.body[0].in_features == 2 + 3 + 2
    assert model(inputs(dense=2, categories=(4, 7))).shape == (5, 1)


def test_categories_only_and_no_inputs() -> None:
    model = MLP(ModelConfig(hidden_sizes=[4]), 0, [(3, 2)], 2)
    assert model(inputs(dense=0, categories=(3,))).shape == (5, 2)
    with pytest.raises(ValueError, match="no inputs"):
        MLP(ModelConfig(), 0, [], 1)


@pytest.mark.parametrize(("normalization", "layer"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm),
                                                      ("none", None)])
def test_normalization_variants(normalization: str, layer: type[nn.Module] | None) -> None:
    config = ModelConfig(hidden_sizes=[8, 4], normalization=normalization, dropout=0.0)  # type: ignore[arg-type]
    model = MLP(config, 3, [], 1)
    norms = [type(module) for module in model.body if isinstance(module, nn.BatchNorm1d | nn.LayerNorm)]
    assert norms == ([] if layer is None else [layer, layer])
    assert not any(isinstance(module, nn.Dropout) for module in model.body)
    assert model(inputs()).shape == (5, 1)


@pytest.mark.parametrize(("activation", "kind"), [("gelu", nn.GELU), ("tanh", nn.Tanh), ("leaky_relu", nn.LeakyReLU)])
def test_activation_choice(activation: str, kind: type[nn.Module]) -> None:
    model = MLP(ModelConfig(hidden_sizes=[4], activation=activation), 3, [], 1)  # type: ignore[arg-type]
    assert any(isinstance(module, kind) for module in model.body)


def test_build_model_from_pipeline_sizes() -> None:
    """The task sizes the output (three classes: three logits), the pipeline the inputs."""
    pipeline = SimpleNamespace(dense_width=lambda: 3, categories=lambda: [(5, 2)], tensor_encoders=lambda: [],
                               numeric_columns=lambda: [], target=SimpleNamespace(classes=["a", "b", "c"]))
    config = SimpleNamespace(model=ModelConfig(hidden_sizes=[4]), task=lambda: get_task("multiclass"))
    model = build_model(config, pipeline)
    assert model(inputs(categories=(5,))).shape == (5, 3)


class MeanPool(nn.Module):
    """A feature encoder as the combiner sees one: reads its own keys from the batch, has `output_size`."""

    output_size = 2

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([batch["seq"].mean(dim=1), batch["seq"].amax(dim=1)], dim=1)


def test_combiner_concatenates_feature_encoder_outputs() -> None:
    model = MLP(ModelConfig(hidden_sizes=[4], dropout=0.0), 0, [], 1, encoders=[MeanPool()])
    assert model.body[0].in_features == 2  # no dense columns: only the encoder's two values
    batch = {"dense": torch.zeros(3, 0), "categorical": torch.zeros(3, 0, dtype=torch.int64),
             "seq": torch.randn(3, 7)}
    assert model(batch).shape == (3, 1)
    assert any(name.startswith("encoders.0") for name, _ in model.named_modules())


def test_architecture_without_a_feature_it_reads_is_refused() -> None:
    from luodi.errors import InputError

    pipeline = SimpleNamespace(dense_width=lambda: 3, categories=lambda: [], tensor_encoders=lambda: [],
                               target=SimpleNamespace(output_size=lambda: 1))
    with pytest.raises(InputError, match="model.type 'rnn' needs an input feature"):
        build_combiner(SimpleNamespace(model=ModelConfig(type="rnn")), pipeline, 1)
    unreadable = SimpleNamespace(name="photo", modality="image")
    pipeline.tensor_encoders = lambda: [unreadable]
    with pytest.raises(InputError, match="'photo'"):
        build_combiner(SimpleNamespace(model=ModelConfig(type="mlp")), pipeline, 1)


def test_regression_loss_is_mse() -> None:
    logits, target = torch.randn(6, 1), torch.randn(6)
    assert torch.allclose(build_loss("regression")(logits, target), F.mse_loss(logits.squeeze(-1), target))


def test_binary_loss_with_and_without_weights() -> None:
    logits, target = torch.randn(6, 1), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    plain = build_loss("binary")(logits, target)
    assert torch.allclose(plain, F.binary_cross_entropy_with_logits(logits.squeeze(-1), target))
    weighted = build_loss("binary", np.array([0.5, 2.0]))(logits, target)
    expected = F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, pos_weight=torch.tensor(4.0))
    assert torch.allclose(weighted, expected)


def test_multiclass_loss_with_and_without_weights() -> None:
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.allclose(build_loss("multiclass")(logits, target), F.cross_entropy(logits, target))
    weights = np.array([1.0, 2.0, 0.5])
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights, dtype=torch.float32))
    assert torch.allclose(build_loss("multiclass", weights)(logits, target), expected)


def test_losses_backpropagate() -> None:
    model = MLP(ModelConfig(hidden_sizes=[4]), 3, [(3, 2)], 1)
    loss = build_loss("binary")(model(inputs(categories=(3,))), torch.ones(5))
    loss.backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


@pytest.mark.parametrize("output", ["flatten", "max", "avg"])
def test_channels_last_cnn_gives_the_same_values_and_gradients_as_nchw(output: str) -> None:
    """The channels-last body (its gradient handed back in channels-last layout, its pooled outputs reduced over
    the spatial dimensions) computes what the plain layout does, and its input gradient keeps channels-last."""
    from luodi.config import CNNConfig
    from luodi.models.cnn import ConvNet

    torch.manual_seed(0)
    net = ConvNet(CNNConfig(channels=[4, 8], output=output), "relu", 3, (8, 8))  # type: ignore[arg-type]
    images = torch.randn(5, 3, 8, 8)
    plain = images.clone().requires_grad_()
    fast = images.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    values = {}
    for name, x, body in (("plain", plain, net), ("fast", fast, net.to(memory_format=torch.channels_last))):
        out = body(x)
        (out * torch.arange(out.shape[1])).sum().backward()
        values[name] = out.detach()
    torch.testing.assert_close(values["fast"], values["plain"])
    assert fast.grad is not None and plain.grad is not None
    torch.testing.assert_close(fast.grad, plain.grad)
    assert fast.grad.is_contiguous(memory_format=torch.channels_last)


def test_flattening_hands_back_a_channels_last_gradient() -> None:
    """Without ChannelsLastGrad the gradient of a flattened channels-last activation comes back in (channels,
    height, width) order, and max-pool's backward below converts it first (2.2 ms a step on the CIFAR CNN)."""
    from luodi.models.cnn import ChannelsLastGrad

    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    seen: list[torch.Tensor] = []
    for wrap in (lambda y: y, ChannelsLastGrad.apply):
        activation = x * 2  # an activation in the graph (a leaf's .grad always takes the leaf's layout)
        activation.register_hook(seen.append)
        wrap(activation).flatten(1).sum().backward()
    plain, handed = seen
    assert not plain.is_contiguous(memory_format=torch.channels_last)
    assert handed.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(handed, plain)
