"""Text as the embedding of a frozen pretrained sentence encoder (`tokenizer: encoder`), columns of the MLP.

The encoder never trains, so each text's vector is computed once: when the features are fitted and transformed
(not every epoch), and kept in the disk cache beside decoded images (keyed by the checkpoint's digest and the
texts), so a second run or a tune trial on the same data embeds nothing. The checkpoint's files travel in the
package (`tokenizer/<n>-<name>/`), which then predicts on a machine without the original folder.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from luodi import checkpoints
from luodi.config import TextFeature
from luodi.errors import InputError
from luodi.features.image import load_cached, save_cached
from luodi.features.text import texts
from luodi.features.unseen import Unseen

BATCH_SIZE = 64
CACHE_MIN_ROWS = 64  # fewer texts (a request) embed faster than a cache file is written


class SentenceEncoder:
    """Text feature -> (rows, hidden) float32: the checkpoint's token states pooled as it says (mean by default),
    normalized when it says so; texts longer than `max_length` tokens are truncated."""

    kind = "dense"

    def __init__(self, config: TextFeature, assets: Path | None = None, digest: str = "", dimension: int = 0,
                 pooling: str = "mean", normalize: bool = False):
        self.name, self.config = config.name, config
        self.folder = assets if assets is not None else _folder(config)
        self.digest, self.dimension, self.pooling, self.normalize = digest, dimension, pooling, normalize
        self._model: Any = None
        self._tokenizer: Any = None

    def fit(self, column: pa.ChunkedArray) -> None:
        checkpoints.check_model_files(self.folder)
        checkpoints.check_tokenizer_files(self.folder)
        settings = checkpoints.sentence_embedding(self.folder) or {}
        self.pooling = settings.get("pooling") or "mean"
        if self.pooling not in ("mean", "cls"):
            raise InputError(f"{self.folder}: pooling {self.pooling!r} is not supported for a text encoder (mean, cls)")
        self.normalize = bool(settings.get("normalize"))
        self.digest = checkpoints.checkpoint_digest(self.folder)[0]
        self.dimension = int(checkpoints.read_model_config(self.folder).get("hidden_size", 0)) or \
            self._embed(["a"]).shape[1]

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> np.ndarray:
        strings = texts(column)
        if len(strings) < CACHE_MIN_ROWS:
            return self._embed(strings)
        text_hash = hashlib.sha256()
        for string in strings:
            text_hash.update(string.encode("utf-8", "surrogatepass") + b"\0")
        key = hashlib.sha256(f"sentence-{self.digest}-{self.pooling}-{self.normalize}-{self.config.max_length}-"
                             f"{text_hash.hexdigest()}".encode()).hexdigest()
        cached = load_cached(key)
        if cached is not None and cached[0].shape == (len(strings), self.dimension):
            return cached[0]
        vectors = self._embed(strings)
        save_cached(key, vectors)
        return vectors

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True,
                                                            trust_remote_code=False)
            self._model = AutoModel.from_pretrained(str(self.folder), local_files_only=True,
                                                    trust_remote_code=False).eval()
        return self._model, self._tokenizer

    def _embed(self, strings: list[str]) -> np.ndarray:
        """(len(strings), hidden) float32, a batch at a time, without gradients."""
        import torch

        model, tokenizer = self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(strings), BATCH_SIZE):
                batch = tokenizer(strings[start:start + BATCH_SIZE], padding=True, truncation=True,
                                  max_length=self.config.max_length, return_tensors="pt")
                states = model(**batch).last_hidden_state  # (batch, tokens, hidden)
                if self.pooling == "cls":
                    pooled = states[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # (batch, tokens, 1)
                    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out.append(pooled.float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)

    def width(self) -> int:
        return self.dimension

    def state(self) -> dict[str, Any]:
        return {"digest": self.digest, "dimension": self.dimension, "pooling": self.pooling,
                "normalize": self.normalize}

    def save_assets(self, directory: Path) -> None:
        """The checkpoint's weights, config and tokenizer files (its identity files), and the sentence modules."""
        names = checkpoints.checkpoint_digest(self.folder)[1]
        for name in [*names, checkpoints.SENTENCE_MODULES]:
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, directory / name)


def _folder(config: TextFeature) -> Path:
    if config.encoder is None:
        raise InputError(f"input_features[{config.name}].tokenizer encoder needs encoder: a local sentence-encoder "
                         "folder")
    return checkpoints.checkpoint_folder(config.encoder, f"input_features[{config.name}].encoder")
