"""GGUF import: a llama.cpp GGUF file becomes a normal Hugging Face safetensors checkpoint folder.

transformers reads a GGUF file (with the `gguf` package) into a model whose weights are dequantized to fp32,
and builds the tokenizer (and its chat template) from the file's metadata. The model still carries the GGUF
quantizer, and `save_pretrained` refuses a model with a quantizer that cannot serialize; the weights are already
plain tensors, so the quantizer is detached (`remove_quantization_config`, what transformers itself does after a
`dequantize`) and the model saves as config.json, generation_config.json and model.safetensors, beside the
tokenizer's files. `model: {type: hf, path: OUT}` then loads the folder like any local checkpoint.

The folder is written to a hidden staging folder beside OUT and renamed into place, so OUT is either absent or
complete. SmolLM2-135M-Instruct (Q4_1, 98 MB) becomes a 538 MB folder in about a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luodi import checkpoints
from luodi.errors import InputError
from luodi.io import current_umask, fsync_dir

MAGIC = b"GGUF"  # the first four bytes of every GGUF file


@dataclass
class ImportedCheckpoint:
    """What `import_gguf` wrote: the folder, the architecture (config.json's model_type) and sizes."""

    folder: str
    architecture: str
    parameters: int
    bytes: int
    vocab_size: int
    chat_template: bool


def check_gguf_file(path: Path) -> None:
    """The file exists and starts with the GGUF magic bytes."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file (give the .gguf file itself)")
    with open(path, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise InputError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")


def check_output_folder(out: Path) -> None:
    """OUT may be absent or an empty folder: an import never writes over anything."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out}: exists and is not empty (give a new folder)")


def read_architecture(path: Path) -> str:
    """The model_type transformers makes of the file's metadata (`general.architecture`), refused unless
    transformers reads it and builds it as a causal language model."""
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, load_gguf_checkpoint
    except ImportError:
        raise InputError("import-gguf needs the `gguf` package: pip install gguf") from None
    try:
        parsed = load_gguf_checkpoint(str(path), return_tensors=False)  # metadata only: config and tokenizer
    except ImportError:
        raise InputError("import-gguf needs the `gguf` package: pip install gguf") from None
    except (ValueError, KeyError, IndexError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "not supported" in message:
            readable = ", ".join(sorted(GGUF_SUPPORTED_ARCHITECTURES))
            raise InputError(f"{path}: cannot read the GGUF file: {message} (transformers reads these GGUF "
                             f"architectures: {readable})") from None
        raise InputError(f"{path}: cannot read the GGUF file (truncated or damaged?): {message}") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    architecture = str(parsed["config"].get("model_type", "?"))
    if architecture not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InputError(f"{path}: architecture {architecture!r} is not a causal language model transformers "
                         "can build; import-gguf converts decoder-only language models (llama, mistral, qwen2, ...)")
    return architecture


def import_gguf(path: str | Path, out: str | Path) -> ImportedCheckpoint:
    """Convert the GGUF file `path` into a safetensors checkpoint folder `out` (fp32 weights, tokenizer, config).

    Raises InputError (naming the file) for a missing or non-GGUF file, an architecture transformers cannot
    build as a causal LM, and an `out` that exists and is not an empty folder.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path, out = Path(path), Path(out)
    check_gguf_file(path)
    check_output_folder(out)
    read_architecture(path)
    hf_logging.disable_progress_bar()  # a bar per tensor is noise in a CLI command and in logs
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        folder, name = str(path.resolve().parent), path.name
        try:
            with quiet_tqdm():
                model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                             local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        except (ValueError, OSError, KeyError) as error:
            raise InputError(f"{path}: cannot convert the GGUF file: {str(error).splitlines()[0]}") from None
        detach_quantizer(model)
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        checkpoints.check_model_files(staging)  # what `model: {type: hf}` will ask of the folder
        checkpoints.check_tokenizer_files(staging)
        mask = current_umask()  # mkdtemp makes the folder 0700: give it, and its files, what a new folder gets
        for file in staging.iterdir():
            os.chmod(file, 0o666 & ~mask)
        os.chmod(staging, 0o777 & ~mask)
        if out.is_dir():
            out.rmdir()  # checked empty above
        os.replace(staging, out)
        fsync_dir(out.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return ImportedCheckpoint(
        folder=str(out), architecture=str(model.config.model_type),
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        bytes=sum(file.stat().st_size for file in out.iterdir()), vocab_size=int(model.config.vocab_size),
        chat_template=bool(getattr(tokenizer, "chat_template", None)))


@contextlib.contextmanager
def quiet_tqdm() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar per file (not behind its progress-bar switch)."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def detach_quantizer(model: Any) -> None:
    """Make a dequantized GGUF model an ordinary one: without its quantizer and quantization_config, which
    `save_pretrained` refuses to serialize for GGUF."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
