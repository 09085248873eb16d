"""Local Hugging Face checkpoint folders, checked before anything reads them: the tokenizer (features) and the
weights (models) both come from one.

luodi never fetches a model: `model.path` must be an existing folder on this machine. A checkpoint is refused,
with the folder and the missing file named, when it lacks config.json, safetensors weights or tokenizer files;
pickle-based weights (`pytorch_model.bin`) are refused (nothing luodi loads is unpickled); and a checkpoint that
ships Python code (`auto_map` in config.json) runs only when the config says `model.hf.trust_remote_code: true`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from luodi.errors import InputError

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
# tokenizer.json is the Rust tokenizer itself; the others are vocabularies AutoTokenizer converts to one.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def checkpoint_folder(path: str | Path, what: str = "model.path") -> Path:
    """The folder itself: a hub name or a missing path is an error (luodi never downloads a model)."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"{what} {str(path)!r} is not an existing folder: luodi reads a local Hugging Face "
                         "checkpoint only, never a hub name (copy or export the checkpoint into a folder first)")
    if not folder.is_dir():
        raise InputError(f"{what} {str(path)!r} is a file; give the checkpoint's folder")
    return folder


def read_model_config(folder: Path) -> dict[str, Any]:
    """config.json of a checkpoint folder, as a dict."""
    path = folder / CONFIG
    if not path.is_file():
        raise InputError(f"{folder}: checkpoint folder has no {CONFIG}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise InputError(f"{path}: not a Hugging Face model config (no model_type)")
    return config


def needs_remote_code(config: dict[str, Any], folder: Path) -> bool:
    """Whether the checkpoint's architecture is Python code shipped in the folder rather than in transformers."""
    return "auto_map" in config or any(folder.glob("*.py"))


def check_remote_code(config: dict[str, Any], folder: Path, trusted: bool) -> None:
    if needs_remote_code(config, folder) and not trusted:
        raise InputError(f"{folder}: the checkpoint ships its own Python code (auto_map in {CONFIG}); luodi runs it "
                         "only when you set model.hf.trust_remote_code: true after reading that code")


def check_model_files(folder: Path) -> None:
    """config.json and safetensors weights are present; pickle-only weights are refused by name."""
    read_model_config(folder)
    if any((folder / name).is_file() for name in WEIGHTS):
        return
    pickled = [name for name in ("pytorch_model.bin", "pytorch_model.bin.index.json") if (folder / name).is_file()]
    if pickled:
        raise InputError(f"{folder}: weights are in {pickled[0]} (pickle), which luodi never loads; convert them to "
                         f"{WEIGHTS[0]} (safetensors)")
    raise InputError(f"{folder}: checkpoint folder has no {WEIGHTS[0]} (safetensors weights)")


def check_tokenizer_files(folder: Path) -> None:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(f"{folder}: checkpoint folder has no tokenizer.json (nor a vocabulary AutoTokenizer "
                         f"can convert: {', '.join(TOKENIZER_FILES[1:])})")


# What a checkpoint's identity is made of: its weights, its config and its tokenizer (a README or a stray file in
# the folder does not change the model, so it does not change the digest).
IDENTITY_FILES = (CONFIG, "generation_config.json", "model.safetensors.index.json", "tokenizer_config.json",
                  "special_tokens_map.json", "added_tokens.json", "merges.txt", "chat_template.jinja",
                  *TOKENIZER_FILES)


def checkpoint_digest(folder: Path) -> tuple[str, dict[str, str]]:
    """The sha256 of a checkpoint (over its weights, config and tokenizer files: each file's name and sha256, in
    name order) and the per-file sha256s it is made of."""
    import hashlib

    from luodi.io import sha256_file

    names = sorted({name for name in IDENTITY_FILES if (folder / name).is_file()}
                   | {path.name for path in folder.glob("*.safetensors") if path.is_file()})
    files = {name: sha256_file(folder / name) for name in names}
    digest = hashlib.sha256("".join(f"{name}\0{sha}\n" for name, sha in files.items()).encode()).hexdigest()
    return digest, files


SENTENCE_MODULES = "modules.json"  # sentence-transformers: the modules after the encoder (pooling, normalize)
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                 "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}


def sentence_embedding(folder: Path) -> dict[str, Any] | None:
    """How a sentence-transformers checkpoint turns token states into its embedding: `{"pooling": "mean",
    "normalize": True}` from its modules.json (Pooling and Normalize modules) and its pooling config; None for a
    plain checkpoint. Read as data; a file that is not what sentence-transformers writes is an error naming it."""
    path = folder / SENTENCE_MODULES
    if not path.is_file():
        return None
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str)
                                                for m in modules):
        raise InputError(f"{path}: not a sentence-transformers module list (objects with a 'type')")
    kinds = {str(m["type"]).rpartition(".")[2]: m for m in modules}
    pooling = None
    if "Pooling" in kinds:
        pooling_config = folder / str(kinds["Pooling"].get("path", "")) / CONFIG
        try:
            settings = json.loads(pooling_config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{pooling_config}: the pooling module's config is missing or not valid JSON") from None
        modes = [mode for key, mode in POOLING_MODES.items() if isinstance(settings, dict) and settings.get(key)]
        pooling = modes[0] if len(modes) == 1 else None
    return {"pooling": pooling, "normalize": "Normalize" in kinds}
