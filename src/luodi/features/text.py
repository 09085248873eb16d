"""Text as tokens: a BPE or WordPiece tokenizer trained on the training split, or a checkpoint's own tokenizer.

The encoder gives the model `{name: int64 (rows, max_length) ids, name + ".mask": bool (rows, max_length)}`,
right-padded; the modules trim each batch to its longest mask (dynamic padding). Encoding is the Rust
tokenizer's `encode_batch` over the whole column. The tokenizer is kept as `tokenizer.json` in the encoder's
tokenizer folder (`tokenizer/<n>-<name>/tokenizer.json` in the run and the package); for `tokenizer: checkpoint` the
checkpoint's `config.json` (and any code it ships) is kept beside it, so a package rebuilds its `hf` model
without the original folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi import checkpoints as hf_checkpoint
from luodi.columns import as_strings
from luodi.config import TextFeature
from luodi.errors import InputError
from luodi.features.unseen import Unseen

TOKENIZER_FILE = "tokenizer.json"
PAD, UNK = "[PAD]", "[UNK]"


def texts(column: pa.ChunkedArray) -> list[str]:
    """The column as Python strings; missing cells are empty texts."""
    return pc.fill_null(as_strings(column), "").to_pylist()


def train_tokenizer(strings: list[str], config: TextFeature) -> Any:
    """A BPE (byte-level, so no text is ever unknown) or WordPiece tokenizer trained on `strings`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if config.tokenizer == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if config.lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer: Any = trainers.BpeTrainer(
            vocab_size=config.vocab_size, min_frequency=2, special_tokens=[PAD, UNK], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size, min_frequency=2,
                                            special_tokens=[PAD, UNK], show_progress=False)
    tokenizer.train_from_iterator(strings, trainer, length=len(strings))
    return tokenizer


def checkpoint_tokenizer(folder: Path) -> tuple[Any, int]:
    """The Rust tokenizer of a Hugging Face checkpoint folder (through AutoTokenizer, which also converts a bare
    vocabulary) and its padding id. Never runs code from the folder."""
    from transformers import AutoTokenizer

    hf_checkpoint.check_tokenizer_files(folder)
    try:
        loaded = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{folder}: cannot load the checkpoint's tokenizer: {str(error).splitlines()[0]}") from None
    backend = getattr(loaded, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"{folder}: the checkpoint's tokenizer has no fast (Rust) version; luodi needs one")
    return backend, int(loaded.pad_token_id or 0)


def coerce_text(column: pa.ChunkedArray, feature: TextFeature, source: str) -> pa.ChunkedArray:
    """`empty: error`: a missing or blank text in the file is an error naming its row."""
    if feature.empty == "error":
        blank = pc.equal(pc.utf8_trim_whitespace(pc.fill_null(as_strings(column), "")), "")
        if pc.any(blank).as_py():
            row = int(np.flatnonzero(blank.to_numpy(zero_copy_only=False))[0]) + 1
            raise InputError(f"{source}: column {feature.name!r} row {row} is an empty text (input_features["
                             f"{feature.name}].empty is error; allow reads it as an empty sequence)")
    return column


class TokenEncoder:
    """Text feature -> token ids and mask (modality "tokens"); `vocab_size`, `max_length`, `pad_id` size the
    model's embedding."""

    kind = "tensor"
    modality = "tokens"

    def __init__(self, config: TextFeature, assets: Path | None = None, vocab_size: int = 0, pad_id: int = 0,
                 sentence_embedding: dict[str, Any] | None = None):
        self.name, self.config = config.name, config
        self.vocab_size, self.pad_id = vocab_size, pad_id
        # A sentence-transformers checkpoint's own pooling and normalization (checkpoints.sentence_embedding),
        # which embeddings of this text follow; None for a tokenizer trained here or a plain checkpoint.
        self.sentence_embedding = sentence_embedding
        self.max_length = config.max_length
        self.tokenizer: Any = None
        # The folder holding the checkpoint's config.json: the original while fitting, the assets once restored.
        self.checkpoint_dir: Path | None = None
        if assets is not None:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(Path(assets) / TOKENIZER_FILE))
            self.checkpoint_dir = Path(assets) if config.tokenizer == "checkpoint" else None
            self._configure()

    def fit(self, column: pa.ChunkedArray) -> None:
        if self.config.tokenizer == "checkpoint":
            assert self.config.checkpoint is not None  # the config validator fills it from model.path
            folder = hf_checkpoint.checkpoint_folder(self.config.checkpoint, f"input_features[{self.name}].checkpoint")
            model_config = hf_checkpoint.read_model_config(folder)
            positions = model_config.get("max_position_embeddings")
            if isinstance(positions, int) and self.max_length > positions:
                raise InputError(f"input_features[{self.name}].max_length {self.max_length} exceeds the "
                                 f"{positions} positions of the checkpoint in {folder}")
            self.tokenizer, self.pad_id = checkpoint_tokenizer(folder)
            self.checkpoint_dir = folder
            self.sentence_embedding = hf_checkpoint.sentence_embedding(folder)
        else:
            strings = texts(column)
            self.tokenizer = train_tokenizer(strings, self.config)
            self.pad_id = self.tokenizer.token_to_id(PAD)
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self._configure()

    def _configure(self) -> None:
        """Truncate to max_length (special tokens included); padding is done here, into one array."""
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts(column))
        ids = np.full((len(encodings), self.max_length), self.pad_id, dtype=np.int64)  # (rows, max_length)
        lengths = np.empty(len(encodings), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            tokens = encoding.ids
            lengths[row] = len(tokens)
            ids[row, :len(tokens)] = tokens
        mask = np.arange(self.max_length) < lengths[:, None]  # (rows, max_length)
        return {self.name: ids, f"{self.name}.mask": mask}

    def width(self) -> int:
        return 0

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"vocab_size": self.vocab_size, "pad_id": self.pad_id}
        if self.sentence_embedding is not None:
            state["sentence_embedding"] = self.sentence_embedding
        return state

    def schema(self) -> dict[str, Any]:
        return {"dtype": "string", "accepts": f"raw text; tokenized ({self.config.tokenizer}) and truncated to "
                f"{self.max_length} tokens", "tokenizer": self.config.tokenizer, "max_length": self.max_length}

    def save_assets(self, directory: Path) -> None:
        """tokenizer.json, plus the checkpoint's config.json (and its code files, if any) for an hf model."""
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        if self.checkpoint_dir is not None and self.checkpoint_dir != directory:
            shutil.copyfile(self.checkpoint_dir / hf_checkpoint.CONFIG, directory / hf_checkpoint.CONFIG)
            for code in sorted(self.checkpoint_dir.glob("*.py")):
                shutil.copyfile(code, directory / code.name)
