"""Text embeddings: the vector a model's text encoder computes for a text, for `luodi.api.embed`, `luodi embed` and
the server's /v1/embeddings alike.

A model is a text encoder when it reads exactly one text feature as tokens: a combiner model (models/mlp.py) with one
`hf`, `transformer` or `rnn` feature encoder over a text column. The embedding is that module's output, the pooled
vector (batch, output_size) its head reads: for `hf` the checkpoint's token states pooled as `model.hf.pooling` says
(mean over the mask by default, what sentence-transformers checkpoints such as MiniLM are trained with), then scaled
to length 1 when the checkpoint's own sentence-transformers modules end with Normalize (recorded in the text
feature's state when the package was trained, `checkpoints.sentence_embedding`). A bag-of-words text, a table
without text, or a language model has no such module and is refused with the reason.

Texts are tokenized as the package's feature does, refused when longer than its `max_length` (or cut to it when
asked), sorted by length and run in batches, each trimmed to its longest text, so a batch of short texts costs what
short texts cost; the vectors come back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from luodi.errors import InputError

BATCH_SIZE = 64  # texts per forward pass: MiniLM over 64 x 128 tokens holds ~50 MB of activations


class NotATextEncoder(InputError):
    """The model has no module that turns one text into a vector."""


@dataclass(frozen=True)
class TextEncoder:
    """The module that turns the model's one text feature into a vector, and that feature's fitted tokenizer."""

    module: nn.Module  # forward({name: ids, name.mask: mask}) -> (batch, dimensions)
    tokens: Any  # the fitted TokenEncoder (features/text.py): tokenizer, max_length, pad_id, vocab_size
    normalize: bool  # scale each vector to length 1 (the checkpoint's sentence-transformers Normalize module)

    @property
    def dimensions(self) -> int:
        return int(getattr(self.module, "output_size"))  # noqa: B009 - an nn.Module attribute mypy cannot see

    @property
    def max_length(self) -> int:
        return int(self.tokens.max_length)


def text_encoder(model: nn.Module, pipeline: Any) -> TextEncoder:
    """The model's text encoder, or NotATextEncoder saying why it has none."""
    features = [encoder for encoder in pipeline.tensor_encoders() if encoder.modality == "tokens"]
    modules = {getattr(module, "feature", None): module for module in getattr(model, "encoders", [])}
    if len(features) != 1 or features[0].name not in modules:
        texts = [feature.name for feature in pipeline.config.input_features if feature.type == "text"]
        why = ("it reads no text as tokens (a language model or a table)" if not features and not texts else
               f"it reads {texts} as a bag of words (model.type mlp); a text encoder reads tokens (hf, transformer, "
               "rnn)" if not features else f"it reads {len(features)} texts as tokens; embeddings need exactly one")
        raise NotATextEncoder(f"the model does not embed text: {why}")
    sentence = features[0].sentence_embedding or {}
    return TextEncoder(modules[features[0].name], features[0], bool(sentence.get("normalize")))


@dataclass
class Tokens:
    """Texts as the encoder reads them, right-padded to the longest."""

    ids: np.ndarray  # (rows, longest) int64
    mask: np.ndarray  # (rows, longest) bool

    @property
    def counts(self) -> np.ndarray:
        """Tokens per text (rows,)."""
        return np.asarray(self.mask.sum(axis=1), dtype=np.int64)

    @classmethod
    def from_ids(cls, rows: Sequence[Sequence[int]], pad_id: int) -> Tokens:
        longest = max((len(row) for row in rows), default=0)
        ids = np.full((len(rows), max(longest, 1)), pad_id, dtype=np.int64)
        mask = np.zeros(ids.shape, dtype=bool)
        for index, row in enumerate(rows):
            ids[index, :len(row)] = row
            mask[index, :len(row)] = True
        return cls(ids, mask)

    @classmethod
    def concat(cls, parts: Sequence[Tokens], pad_id: int) -> Tokens:
        return cls.from_ids([row[mask] for part in parts for row, mask in zip(part.ids, part.mask, strict=True)],
                            pad_id)


def tokenize(encoder: TextEncoder, texts: Sequence[str], truncate: bool = False,
             name: Callable[[int], str] = lambda index: f"texts[{index}]") -> Tokens:
    """Token ids of `texts` as the package's text feature encodes them; a text longer than the feature's
    `max_length` is refused naming it (`name(index)`), or cut to it with `truncate`."""
    encodings = encoder.tokens.tokenizer.encode_batch(list(texts))  # truncates to max_length, keeping the rest apart
    if not truncate:
        for index, encoding in enumerate(encodings):
            if encoding.overflowing:
                raise InputError(f"{name(index)} is longer than the {encoder.max_length} tokens the model reads "
                                 "(its text feature's max_length)")
    return Tokens.from_ids([encoding.ids for encoding in encodings], encoder.tokens.pad_id)


def embed_tokens(encoder: TextEncoder, tokens: Tokens, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """(rows, dimensions) float32 vectors, in input order; batches of similar lengths, each trimmed to its longest."""
    module, feature = encoder.module, encoder.tokens.name
    rows = len(tokens.ids)
    vectors = np.empty((rows, encoder.dimensions), dtype=np.float32)
    order = np.argsort(-tokens.counts, kind="stable")
    if module.training:
        module.eval()
    with torch.inference_mode():
        for start in range(0, rows, batch_size):
            index = order[start:start + batch_size]
            batch = {feature: torch.from_numpy(tokens.ids[index]),
                     f"{feature}.mask": torch.from_numpy(tokens.mask[index])}
            pooled = module(batch).float()  # (batch, dimensions)
            if encoder.normalize:
                pooled = nn.functional.normalize(pooled, dim=1)
            vectors[index] = pooled.numpy()
    return vectors


def embed_texts(encoder: TextEncoder, texts: Sequence[str], truncate: bool = False,
                name: Callable[[int], str] = lambda index: f"texts[{index}]") -> np.ndarray:
    """(len(texts), dimensions) float32: each text's embedding (see the module docstring)."""
    return embed_tokens(encoder, tokenize(encoder, texts, truncate, name))
