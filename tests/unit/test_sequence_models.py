"""rnn and transformer feature encoders: shapes, no leak from padding, empty texts, numeric sequences, the
exposed embedding, and parameter groups with layer-wise learning rates."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from luodi.config import ModelConfig, OptimizerConfig, RNNConfig, TransformerConfig
from luodi.models import FEATURE_ENCODERS
from luodi.models.rnn import RNNEncoder
from luodi.models.transformer import TransformerEncoder
from luodi.train.loop import build_optimizer

VOCAB, LENGTH, PAD = 50, 12, 0
TOKENS = SimpleNamespace(name="body", modality="tokens", vocab_size=VOCAB, max_length=LENGTH, pad_id=PAD)
SEQUENCE = SimpleNamespace(name="signal", modality="sequence", length=10, channels=3)


def token_batch(lengths: list[int], seed: int = 0, pad: int = PAD) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (len(lengths), LENGTH), generator=generator)
    mask = torch.arange(LENGTH) < torch.tensor(lengths).unsqueeze(1)
    return {"body": ids.masked_fill(~mask, pad), "body.mask": mask}


# Every option appears with each other option's values at least once, in 6 (rnn) and 4 (transformer) models.
RNNS = [RNNConfig(hidden_size=16, embedding_dim=8, layers=2, cell=cell, bidirectional=bi, pooling=pool)  # type: ignore[arg-type]
        for cell, bi, pool in [("gru", False, "last"), ("gru", True, "mean"), ("gru", True, "max"),
                               ("lstm", True, "last"), ("lstm", False, "max"), ("lstm", False, "mean")]]
TRANSFORMERS = [TransformerConfig(width=16, heads=2, layers=2, positions=pos, pooling=pool, norm_first=first,  # type: ignore[arg-type]
                                  attention_dropout=0.1)
                for pos, pool, first in [("learned", "cls", True), ("sinusoidal", "mean", True),
                                         ("learned", "mean", False), ("sinusoidal", "cls", False)]]


def build(config: RNNConfig | TransformerConfig, encoder: Any = TOKENS) -> nn.Module:
    torch.manual_seed(0)
    module = RNNEncoder(config, encoder) if isinstance(config, RNNConfig) else TransformerEncoder(config, encoder)
    return module.eval()


@pytest.mark.parametrize("config", RNNS + TRANSFORMERS, ids=lambda c: type(c).__name__)
def test_padding_never_leaks(config: RNNConfig | TransformerConfig) -> None:
    module = build(config)
    batch = token_batch([3, 12, 7, 1])
    with torch.no_grad():
        together = module(batch)
        assert together.shape == (4, module.output_size)
        # The same text alone (trimmed to its own length), or with other values in its padded slots, gives the
        # same vector: padding reaches neither the recurrence nor attention nor pooling.
        alone = module({key: value[:1] for key, value in batch.items()})
        noisy = dict(batch, body=batch["body"].masked_fill(~batch["body.mask"], 7))
        torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together, module(noisy), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", RNNS + TRANSFORMERS, ids=lambda c: type(c).__name__)
def test_an_empty_text_gives_a_finite_vector(config: RNNConfig | TransformerConfig) -> None:
    module = build(config).train()
    out = module(token_batch([0, 5, 0]))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("config", [RNNS[0], RNNS[3], TRANSFORMERS[0], TRANSFORMERS[1]], ids=lambda c: type(c).__name__)
def test_numeric_sequences_are_projected(config: RNNConfig | TransformerConfig) -> None:
    module = build(config, SEQUENCE)
    assert module.embedding is None and isinstance(module.projection, nn.Linear)
    assert module({"signal": torch.randn(5, 10, 3)}).shape == (5, module.output_size)


def test_token_modules_expose_their_embedding() -> None:
    for config in (RNNS[0], TRANSFORMERS[0]):
        module = build(config)
        assert isinstance(module.embedding, nn.Embedding) and module.embedding.num_embeddings == VOCAB
        assert module.feature == "body"


def test_sinusoidal_positions_are_not_saved() -> None:
    learned, fixed = build(TRANSFORMERS[0]), build(TRANSFORMERS[1])
    assert any(name.startswith("positions") for name in learned.state_dict())
    assert not any("sinusoid" in name for name in fixed.state_dict())


def test_registered_for_tokens_and_sequences() -> None:
    for kind in ("rnn", "transformer"):
        assert set(FEATURE_ENCODERS[kind]) >= {"tokens", "sequence"}
    assert "tokens" in FEATURE_ENCODERS["hf"]
    module = FEATURE_ENCODERS["rnn"]["tokens"](ModelConfig(type="rnn", rnn={"hidden_size": 4}), TOKENS)
    assert module.output_size == 4


class Layered(nn.Module):
    """Two 'layers' below a head, with a hook as a pretrained encoder gives it."""

    def __init__(self) -> None:
        super().__init__()
        self.low, self.high, self.head = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 1)
        self.low.requires_grad_(False)

    def lr_multipliers(self) -> list[tuple[nn.Parameter, float]]:
        return [(p, 0.5) for p in self.high.parameters()]


def test_optimizer_groups_take_lr_multipliers_and_skip_frozen_parameters() -> None:
    model = Layered()
    optimizer = build_optimizer(model, OptimizerConfig(lr=0.1, weight_decay=0.01))
    groups = {(group["lr"], group["weight_decay"]): len(group["params"]) for group in optimizer.param_groups}
    assert groups == {(0.1, 0.01): 1, (0.1, 0.0): 1, (0.05, 0.01): 1, (0.05, 0.0): 1}
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in model.low.parameters()}


def test_attention_dropout_is_its_own_setting() -> None:
    default = TransformerEncoder(TransformerConfig(width=16, heads=2, dropout=0.3), TOKENS)
    assert all(block.self_attn.dropout == 0.0 and block.dropout1.p == 0.3 for block in default.encoder.layers)
    assert all(block.self_attn.dropout == 0.1 for block in build(TRANSFORMERS[0]).encoder.layers)
