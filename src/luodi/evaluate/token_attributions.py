"""Token-level attributions of text columns: integrated gradients on each text module's token embedding, one
number per token, mapped back to the characters of the text.

The reference of a text (tokens) column is the same text with every token it holds replaced by the pad token,
keeping the tokens the tokenizer adds around it ([CLS], [SEP]) and the real attention mask: the reference has the
text's length and structure, only its words are gone. This is the reference of Captum's BERT tutorial
(Bert_SQUAD_Interpret: `ref_input_ids = [cls] + [ref_token_id] * len(text_ids) + [sep]` with
`ref_token_id = tokenizer.pad_token_id`, the attention mask unchanged), the one its maintainers give for BERT
classifiers ("[CLS][PAD]...[PAD][SEP]", pytorch/captum#150), and for the rnn and transformer models, whose pad
embedding is the zero vector (`padding_idx`), Captum's default zero reference. [UNK] would be no better here:
luodi's byte-level BPE never emits it, so its embedding is untrained. Replacing tokens rather than dropping them
keeps every position in place, so the path from reference to text moves the token embeddings only, never the
lengths, positions or mask.

Per text column a second integrated-gradients pass runs on the output of that column's token embedding (the hf
checkpoint's input word embeddings), from the reference ids to the row's ids, every other input at its real
value: Captum's LayerIntegratedGradients takes a list of layers only when none feeds another, and the embedding
feeds the combiner the per-column pass integrates on. Summed over the embedding width this gives one number per
token; they add up to the explained output minus the output with that column's words replaced by padding
(`delta` is the gap). The column's own number integrates along another path (over the combined representation,
with the other columns moving too), so it need not equal the sum of its tokens. Padding and the tokens the
tokenizer adds (the reference keeps them, so their attribution is exactly zero) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from luodi.features.pipeline import Encoded, FeaturePipeline
from luodi.features.text import texts as column_texts

# Token positions one forward and backward pass of a text model holds (rows x steps x max_length). Measured on
# CPU: 8192 tokens (64 texts of 128) through a MiniLM-L6-shaped BERT (6 layers, 384 wide), forward and backward,
# raised peak memory by 1.4 GiB; all 50 steps of 512 such texts at once would be 400 times that.
TOKENS_PER_PASS = 8192


@dataclass
class TokenizedText:
    """A text column of the rows being explained, tokenized exactly as the model reads it."""

    name: str
    pad_id: int
    texts: list[str]
    encodings: list[Any]  # the tokenizer's Encoding per row: ids, tokens, offsets, special_tokens_mask
    special: np.ndarray  # (rows, max_length) bool: tokens the tokenizer added ([CLS], [SEP]); the reference keeps them

    def reference_ids(self, ids: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """Token ids `ids` of rows `rows` (indices or a slice) with every token of the text replaced by the pad id."""
        return np.where(self.special[rows], ids, self.pad_id)  # (rows, max_length)


@dataclass
class TokenAttributions:
    """One text column's token attributions: per row its tokens, and the output they are measured from."""

    tokens: list[list[dict[str, Any]]]  # per row: {"token", "text", "start", "end", "attribution"} per token
    baseline_outputs: np.ndarray  # (rows,) the explained output with this column's words replaced by padding
    delta: np.ndarray  # (rows,) sum of the token attributions - (output - baseline output)


def span_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer, or for byte-level BPE without a post-processor of its own (luodi's bpe) a copy with the
    library's ByteLevel(trim_offsets=True): the same ids, but spans without the space a token carries, and an
    empty span for a space token (else the prefix space it adds points at the text's first character)."""
    from tokenizers import Tokenizer, pre_tokenizers, processors

    if not isinstance(tokenizer.pre_tokenizer, pre_tokenizers.ByteLevel) or not (
            tokenizer.post_processor is None or isinstance(tokenizer.post_processor, processors.ByteLevel)):
        return tokenizer
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.post_processor = processors.ByteLevel(trim_offsets=True)
    return copy


def tokenize_texts(pipeline: FeaturePipeline, table: pa.Table, encoded: Encoded) -> dict[str, TokenizedText]:
    """The text (tokens) columns of coerced rows `table`, tokenized again for their strings, offsets and special
    tokens; the ids must be those in `encoded`."""
    found = {}
    for encoder in pipeline.tensor_encoders():
        if encoder.modality != "tokens":
            continue
        strings = column_texts(table.column(encoder.name))
        encodings = span_tokenizer(encoder.tokenizer).encode_batch(strings)  # type: ignore[attr-defined]
        ids = encoded.inputs[encoder.name]  # (rows, max_length)
        special = np.zeros(ids.shape, dtype=bool)
        for row, encoding in enumerate(encodings):
            if not np.array_equal(ids[row, :len(encoding.ids)], encoding.ids):
                raise ValueError(f"column {encoder.name!r} row {row + 1}: the tokens differ from the encoded ids")
            special[row, :len(encoding.ids)] = np.asarray(encoding.special_tokens_mask, dtype=bool)
        found[encoder.name] = TokenizedText(encoder.name, int(encoder.pad_id), strings,  # type: ignore[attr-defined]
                                            encodings, special)
    return found


def batching(pipeline: FeaturePipeline, chunk_rows: int) -> tuple[int, int | None]:
    """(rows per attribute call, Captum's internal_batch_size): a text model runs a few steps per pass so that
    rows x steps x tokens stays within TOKENS_PER_PASS; other models run all steps of a chunk at once (None)."""
    length = sum(encoder.max_length for encoder in pipeline.tensor_encoders()  # type: ignore[attr-defined]
                 if encoder.modality == "tokens")
    if not length:
        return chunk_rows, None
    per_pass = max(1, TOKENS_PER_PASS // length)
    return min(chunk_rows, per_pass), per_pass


def token_embeddings(pipeline: FeaturePipeline, model: nn.Module) -> dict[str, nn.Module]:
    """The token embedding of each text column's module (`embedding` of the rnn, transformer and hf encoders)."""
    modules = list(getattr(model, "encoders", []))
    found = {}
    for encoder, module in zip(pipeline.tensor_encoders(), modules, strict=True):
        if encoder.modality == "tokens":
            embedding = getattr(module, "embedding", None)
            if not isinstance(embedding, nn.Module):
                raise ValueError(f"column {encoder.name!r}: {type(module).__name__} has no token `embedding`")
            found[encoder.name] = embedding
    return found


def span(text: str, start: int, end: int) -> tuple[int, int]:
    """A token's character span without the spaces around it (a checkpoint's tokenizer may count the space before
    a word into its token's offsets)."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return start, end
    start += len(piece) - len(piece.lstrip())
    return start, start + len(stripped)


def token_records(text: TokenizedText, row: int, values: np.ndarray) -> list[dict[str, Any]]:
    """Row `row`'s tokens, without padding and added special tokens, with their attributions `values` (time,)."""
    encoding = text.encodings[row]
    records = []
    for position, (token, (start, end), added) in enumerate(
            zip(encoding.tokens, encoding.offsets, encoding.special_tokens_mask, strict=True)):
        if added:
            continue
        start, end = span(text.texts[row], start, end)
        records.append({"token": token, "text": text.texts[row][start:end], "start": start, "end": end,
                        "attribution": float(values[position])})
    return records


def attribute_tokens(integrated: Any, explained: nn.Module, keys: list[str], encoded: Encoded,
                     text: TokenizedText, rows: np.ndarray, classes: np.ndarray, steps: int,
                     internal: int | None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Integrated gradients (`integrated`: Captum's LayerIntegratedGradients on `text`'s token embedding) of rows
    `rows` (indices), from their reference ids: per row one number per token position (time,), then the rows'
    baseline outputs and gaps (len(rows),). `classes`: the explained class per row (-1 for regression)."""
    inputs = tuple(torch.from_numpy(encoded.inputs[key][rows]) for key in keys)
    reference = torch.from_numpy(text.reference_ids(encoded.inputs[text.name][rows], rows))
    baselines = tuple(reference if key == text.name else tensor for key, tensor in zip(keys, inputs, strict=True))
    target = torch.from_numpy(classes[rows]) if classes[rows[0]] >= 0 else None
    with torch.no_grad():
        base_output = explained(*baselines)
    if target is not None:
        base_output = base_output.gather(1, target[:, None]).squeeze(1)
    attributions, delta = integrated.attribute(
        inputs, baselines=baselines, target=target, n_steps=steps, internal_batch_size=internal,
        return_convergence_delta=True)
    values = attributions.detach().sum(dim=-1).double().numpy()  # (rows, time): summed over the embedding width
    return list(values), base_output.double().numpy(), delta.detach().double().numpy()
