"""The MLP as a TabM ensemble (`model.mlp.ensemble`): member shapes, members that differ, the mean prediction, the
loss averaged over members, and the config's checks."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from luodi.config import ModelConfig
from luodi.models.mlp import MLP, BatchEnsembleLinear, MemberLoss, Members, combine_members, training_loss
from luodi.tasks import get_task

COMBINE = {"regression": "mean", "binary": "sigmoid", "multiclass": "softmax"}


def ensemble(members: int = 4, outputs: int = 3, combine: str = "softmax", **model: object) -> MLP:
    torch.manual_seed(0)
    config = ModelConfig(hidden_sizes=[8, 6], mlp={"ensemble": members, **model.pop("mlp", {})},  # type: ignore[arg-type, dict-item]
                         **model)  # type: ignore[arg-type]
    return MLP(config, 3, [(4, 2)], outputs, combine=combine)  # type: ignore[arg-type]


def inputs(batch: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"dense": torch.randn(batch, 3, generator=generator),
            "categorical": torch.randint(0, 4, (batch, 1), generator=generator)}


@pytest.mark.parametrize("adapters", ["layers", "input"])
@pytest.mark.parametrize("normalization", ["none", "batch", "layer"])
def test_members_in_training_one_row_in_eval(adapters: str, normalization: str) -> None:
    model = ensemble(mlp={"adapters": adapters}, normalization=normalization)
    assert model.train()(inputs()).shape == (5, 4, 3)  # (batch, members, outputs)
    assert model.eval()(inputs()).shape == (5, 3)


@pytest.mark.parametrize("adapters", ["layers", "input"])
def test_members_differ_from_the_first_step_and_share_the_hidden_weights(adapters: str) -> None:
    model = ensemble(mlp={"adapters": adapters}, dropout=0.0)
    members = model.train()(inputs())
    for member in range(1, 4):
        assert not torch.allclose(members[:, 0], members[:, member])
    shared = [m for m in model.body if isinstance(m, nn.Linear | BatchEnsembleLinear)]
    assert [tuple(m.weight.shape) for m in shared] == [(8, 5), (6, 8)]  # one matrix per layer for all members
    assert isinstance(model.body[0], Members) and isinstance(model.body[1], BatchEnsembleLinear | nn.Linear)
    adapter = model.body[1].r if adapters == "layers" else model.body[0].weight
    assert set(adapter.detach().unique().tolist()) == {-1.0, 1.0}  # random signs
    plain = MLP(ModelConfig(hidden_sizes=[8, 6]), 3, [(4, 2)], 3)
    assert sum(p.numel() for p in model.parameters()) < 4 * sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_the_prediction_is_the_members_mean(task: str) -> None:
    outputs = 3 if task == "multiclass" else 1
    model = ensemble(outputs=outputs, combine=COMBINE[task], dropout=0.0).eval()
    activate = get_task(task).activate
    with torch.no_grad():
        model.train(False)
        combined = activate(model(inputs()))
        model.training = True  # the members' logits, without dropout (there is none)
        members = model(inputs())
        model.training = False
    mean = torch.stack([activate(members[:, k]) for k in range(members.shape[1])]).mean(0)
    torch.testing.assert_close(combined, mean, atol=1e-6, rtol=1e-5)


def test_combining_extreme_logits_stays_finite() -> None:
    logits = torch.tensor([[[80.0], [-80.0]], [[200.0], [150.0]]])  # (batch 2, members 2, one logit)
    combined = torch.sigmoid(combine_members(logits, "sigmoid"))
    torch.testing.assert_close(combined, torch.tensor([[0.5], [1.0]]))
    assert torch.isfinite(combine_members(logits.expand(-1, -1, 3) * 10, "softmax")).all()


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_loss_is_the_mean_of_the_members_losses(task: str) -> None:
    from luodi.config import TargetConfig

    names = ["a", "b"] if task == "binary" else ["a", "b", "c"]
    config = TargetConfig(name="y", task=task, label_smoothing=0.1 if task != "regression" else 0.0)  # type: ignore[arg-type]
    state = None if task == "regression" else {"classes": names, "counts": [1] * len(names)}
    loss = get_task(task).loss(get_task(task).target(config, state))
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 3 if task == "multiclass" else 1)  # (batch, members, outputs)
    target = {"binary": torch.randint(0, 2, (6,)).float(), "multiclass": torch.randint(0, 3, (6,)),
              "regression": torch.randn(6)}[task]
    expected = torch.stack([loss(logits[:, k], target) for k in range(4)]).mean()
    torch.testing.assert_close(MemberLoss(loss)(logits, target), expected)
    torch.testing.assert_close(MemberLoss(loss)(logits[:, 0], target), loss(logits[:, 0], target))  # eval outputs


def test_training_loss_wraps_only_ensembles() -> None:
    loss = nn.MSELoss()
    assert training_loss(ensemble(), loss).loss is loss  # type: ignore[union-attr]
    assert training_loss(MLP(ModelConfig(hidden_sizes=[4]), 3, [], 1), loss) is loss


def test_no_hidden_layer_the_heads_are_the_members() -> None:
    torch.manual_seed(0)
    model = MLP(ModelConfig(hidden_sizes=[], mlp={"ensemble": 3}), 3, [], 2, combine="softmax")  # type: ignore[arg-type]
    assert model.train()(inputs()).shape == (5, 3, 2) and model.eval()(inputs()).shape == (5, 2)


@pytest.mark.parametrize("value", [0, 65, "many"])
def test_a_bad_ensemble_size_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="ensemble"):
        ModelConfig(mlp={"ensemble": value})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="adapters"):
        ModelConfig(mlp={"adapters": "every"})  # type: ignore[arg-type]


@pytest.mark.parametrize("members", [1, 4])
def test_a_linear_path_beside_the_mlp_adds_its_logits(members: int) -> None:
    """`model.mlp.linear`: wide and deep, the input's linear model's logits added to the hidden layers' (to every
    member's in an ensemble)."""
    torch.manual_seed(0)
    config = ModelConfig(hidden_sizes=[8], dropout=0.0, mlp={"ensemble": members, "linear": True})  # type: ignore[arg-type]
    model = MLP(config, 3, [], 2, combine="softmax").train()
    assert model.linear is not None and tuple(model.linear.weight.shape) == (2, 3)
    batch = inputs()
    both = model(batch)
    deep = model.head(model.body(batch["dense"]))
    wide = model.linear(batch["dense"])
    torch.testing.assert_close(both, deep + (wide if members == 1 else wide.unsqueeze(1)))
    assert MLP(ModelConfig(hidden_sizes=[8]), 3, [], 2).linear is None
