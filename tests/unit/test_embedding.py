"""Text embeddings' parts: a sentence-transformers checkpoint's pooling and normalization read from its files, and
batches sorted by length that come back in input order, each row independent of its batch-mates."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from luodi.checkpoints import sentence_embedding
from luodi.errors import InputError
from luodi.models.embedding import TextEncoder, Tokens, embed_tokens


def write_modules(folder: Path, *kinds: str, pooling: dict[str, bool] | None = None) -> Path:
    modules = [{"idx": index, "name": str(index), "path": "1_Pooling" if kind == "Pooling" else "",
                "type": f"sentence_transformers.models.{kind}"} for index, kind in enumerate(kinds)]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    if pooling is not None:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    return folder


def test_a_checkpoints_own_pooling_and_normalization(tmp_path: Path) -> None:
    assert sentence_embedding(tmp_path) is None  # a plain checkpoint
    write_modules(tmp_path, "Transformer", "Pooling", "Normalize",
                  pooling={"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False})
    assert sentence_embedding(tmp_path) == {"pooling": "mean", "normalize": True}
    write_modules(tmp_path, "Transformer", "Pooling")
    assert sentence_embedding(tmp_path) == {"pooling": "mean", "normalize": False}
    (tmp_path / "modules.json").write_text("[{", encoding="utf-8")
    with pytest.raises(InputError, match="modules.json: not valid JSON"):
        sentence_embedding(tmp_path)
    (tmp_path / "modules.json").write_text('{"type": 1}', encoding="utf-8")
    with pytest.raises(InputError, match="not a sentence-transformers module list"):
        sentence_embedding(tmp_path)


class MeanOfTokens(nn.Module):
    """A text module as the combiner holds one: the batch dict in, (batch, 3) out, each row from its own tokens."""

    output_size = 3
    feature = "body"

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(50, 3)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["body"], batch["body.mask"]
        weights = mask.unsqueeze(-1).float()
        return (self.table(ids) * weights).sum(1) / weights.sum(1).clamp(min=1)


def test_vectors_come_back_in_input_order_whatever_the_batches() -> None:
    torch.manual_seed(0)
    module = MeanOfTokens()
    tokens = SimpleNamespace(name="body", pad_id=0, max_length=8)
    rows = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [2], [3, 3]]
    encoder = TextEncoder(module, tokens, normalize=False)
    together = embed_tokens(encoder, Tokens.from_ids(rows, 0), batch_size=2)
    for index, row in enumerate(rows):
        alone = embed_tokens(encoder, Tokens.from_ids([row], 0))
        assert np.allclose(together[index], alone[0], atol=1e-6)
    normalized = embed_tokens(TextEncoder(module, tokens, normalize=True), Tokens.from_ids(rows, 0))
    assert np.allclose(np.linalg.norm(normalized, axis=1), 1.0)
    parts = Tokens.concat([Tokens.from_ids(rows[:2], 0), Tokens.from_ids(rows[2:], 0)], 0)
    assert parts.counts.tolist() == [3, 1, 5, 1, 2] and parts.ids.shape == (5, 5)
