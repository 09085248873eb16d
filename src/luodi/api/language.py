"""Language models: `generate`, `chat`, `embed`, `import_gguf`, and new packages by `merge` and `quantize_int8`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luodi.api.prediction import write_table
from luodi.api.registry import load_model
from luodi.errors import InputError
from luodi.store import ModelVersion, Store

if TYPE_CHECKING:
    from luodi.package import ModelPackage


def generate(model: str | Path | ModelPackage, prompt: str | list[dict[str, str]], *, max_tokens: int = 64,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
             stop: Sequence[str] = (), seed: int | None = None, home: str | Path | None = None,
             base: str | Path | None = None) -> Iterator[str]:
    """Text continuing `prompt`, streamed: pieces as a text_generation model writes them (KV cache, one token a step).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`), a package folder or a loaded package.
        prompt: the text to continue; for a model trained on chat data, a user message or a list of
            {"role", "content"} messages.
        max_tokens: new tokens at most; generation also ends at the end-of-text token or a full context.
        temperature: 0 is greedy; above 0 samples (with top_k, top_p), reproducibly with `seed`.
        repetition_penalty: > 1 makes tokens already seen less likely.
        stop: the text ends before the first of these strings.
        base: a LoRA package's base checkpoint, when it moved (see `load_model`).

    Example: `print("".join(luodi.api.generate("story@latest", "Once upon a time")))`.
    """
    from luodi.models.generation import Sampling
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home, base=base)
    set_inference_threads(package.config.runtime)
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty, stop=tuple(stop), seed=seed)
    sampling.check()  # now, not at the first piece the caller asks for
    return package.generate(prompt, sampling)


def chat(model: str | Path | ModelPackage, *, system: str | None = None, max_tokens: int = 256,
         temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
         stop: Sequence[str] = (), seed: int | None = None, home: str | Path | None = None) -> Any:
    """A multi-turn conversation with a text_generation model (`luodi chat`).

    Returns a `luodi.models.chat.Chat`: `turn = chat.send("hello")` starts a reply, `for piece in turn` streams
    it (the same generation as `generate`, with the same sampling options), `turn.dropped` says how many of the
    oldest turns were dropped to keep the conversation within the model's context; `chat.reset()` forgets the
    turns. `system` is a system message kept in front of every turn.
    """
    from luodi.models.chat import Chat
    from luodi.models.generation import Sampling
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    if not hasattr(package.pipeline.target, "conversation_ids"):
        raise InputError(f"{package.path}: a {package.task.name} model predicts rows; it does not chat")
    set_inference_threads(package.config.runtime)
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty, stop=tuple(stop), seed=seed)
    return Chat(package.model, package.pipeline.target, sampling, system)


def embed(model: str | Path | ModelPackage, texts: str | Sequence[str] | Path, *, truncate: bool = False,
          out: str | Path | None = None, home: str | Path | None = None) -> Any:
    """Embeddings of texts: the vectors a text encoder model computes for them (what /v1/embeddings answers).

    Args:
        model: a reference (`name`, `name@alias`, `name/version`), a package folder or a loaded package whose model
            reads one text feature as tokens (model.type hf, transformer or rnn; see docs/serving.md#embeddings).
        texts: a text, a list of texts, or a `Path` to a table (CSV, Parquet, JSONL) holding the model's text
            column (or only one column), or a .txt file (a text per paragraph, or per line).
        truncate: cut a text longer than the feature's max_length to it, instead of refusing it.
        out: also write the vectors: `.npy` (the float32 matrix), `.parquet` or `.jsonl` (each text and its
            `embedding`).

    Returns a float32 NumPy array (texts, dimensions); vectors have length 1 when the checkpoint's
    sentence-transformers modules normalize (MiniLM's do), so a dot product is the cosine similarity.
    """
    from luodi.models.embedding import embed_texts, text_encoder
    from luodi.train.runtime import set_inference_threads

    package = load_model(model, home=home)
    encoder = text_encoder(package.model, package.pipeline)
    if isinstance(texts, Path):
        strings, name = _texts_of_file(texts, encoder.tokens.name)
    else:
        strings, name = [texts] if isinstance(texts, str) else list(texts), lambda index: f"texts[{index}]"
    set_inference_threads(package.config.runtime)
    vectors = embed_texts(encoder, strings, truncate, name)
    if out is not None:
        _write_embeddings(Path(out), encoder.tokens.name, strings, vectors)
    return vectors


def _texts_of_file(path: Path, column: str) -> tuple[list[str], Any]:
    """The texts of a table's `column` (or its only column) and how to name a row in errors."""
    from luodi.data.sources import read_table

    table = read_table(path)
    found = column if column in table.column_names else table.column_names[0] if table.num_columns == 1 else None
    if found is None:
        raise InputError(f"{path}: no column {column!r} (the model's text feature) among {table.column_names}")
    values = table.column(found).to_pylist()
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(f"{path}: column {found!r} row {row + 1} is {'empty' if value is None else 'not a text'}")
    return values, lambda index: f"{path}: column {found!r} row {index + 1}"


def _write_embeddings(path: Path, column: str, texts: list[str], vectors: Any) -> None:
    import numpy as np
    import pandas as pd

    from luodi.io import atomic_write

    if path.suffix.lower() == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.save(handle, vectors))
    elif path.suffix.lower() in (".parquet", ".jsonl"):
        write_table(pd.DataFrame({column: texts, "embedding": list(vectors)}), path)
    else:
        raise InputError(f"{path}: embeddings are written as .npy, .parquet or .jsonl")


def import_gguf(path: str | Path, out: str | Path) -> Any:
    """Turn a GGUF file (llama.cpp's format) into a Hugging Face safetensors checkpoint folder `out`: config.json,
    fp32 model.safetensors (the quantized weights dequantized) and the tokenizer with its chat template. Train or
    fine-tune from it with `model: {type: hf, path: out}`.

    Returns an `ImportedCheckpoint` (folder, architecture, parameters, bytes, vocab_size, chat_template). Raises
    InputError for a missing or non-GGUF file, an architecture that is not a causal language model transformers
    can read, and an `out` that exists and is not an empty folder.

    Example: `luodi.api.import_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")`.
    """
    from luodi.models.gguf import import_gguf as convert

    return convert(path, out)


def _register_written(package: ModelPackage, out: str, home: str | Path | None,
                      write: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], ModelVersion]:
    """Register as a new version of `out` the package `write` puts into a staging folder (made from `package`);
    the new manifest and version. The staging folder is removed if anything fails."""
    store = Store(home)
    staging = store.staging_dir()
    try:
        manifest = write(staging)
        version = store.register_model(out, staging, run_id=None, task=manifest["task"],
                                       metrics=manifest["metrics"], description=package.config.description)
    except BaseException:
        store.remove_staging(staging)
        raise
    return manifest, version


def merge(model: str | Path | dict[str, Any], out: str, *, base: str | Path | None = None,
          home: str | Path | None = None) -> dict[str, Any]:
    """Fold a LoRA package's adapters into its base checkpoint and register the result as a new version of `out`:
    a standalone package (every weight, no base needed) that generates what the adapter package generates.

    Args:
        model: an adapter package (a reference or a folder).
        out: the model name to register the merged package under.
        base: where the base checkpoint is, when it moved (default $LUODI_BASE, else where it was).

    Returns `{"model", "version", "package", "merged_from", "bytes"}` (`bytes`: the new package's weights).
    """
    from luodi.package import WEIGHTS, merge_adapters
    from luodi.store import validate_name

    validate_name(out, "--out model name")
    package = load_model(model, home=home, base=base)
    manifest, version = _register_written(package, out, home, lambda staging: merge_adapters(package, staging, out))
    return {"model": out, "version": version.version, "package": str(version.path),
            "merged_from": str(package.path), "bytes": manifest["files"][WEIGHTS]["bytes"]}


def quantize_int8(model: str | Path | dict[str, Any], out: str, *, home: str | Path | None = None
                  ) -> dict[str, Any]:
    """Quantize a text_generation package's linear layers to int8 weights (optimize/weight_only.py) and register
    the result as a new version of `out`: `luodi generate`, `luodi serve` and `luodi evaluate` load it like any
    package. Evaluate it before trusting it (perplexity moves by the quantization).

    Returns `{"model", "version", "package", "quantized_from", "layers", "bytes"}` (`bytes`: the new weights)."""
    from luodi.optimize.weight_only import quantize_package
    from luodi.package import WEIGHTS
    from luodi.store import validate_name

    validate_name(out, "--out model name")
    package = load_model(model, home=home)
    manifest, version = _register_written(package, out, home,
                                          lambda staging: quantize_package(package, staging, out))
    return {"model": out, "version": version.version, "package": str(version.path),
            "quantized_from": str(package.path), "layers": len(manifest["weight_only"]["layers"]),
            "bytes": manifest["files"][WEIGHTS]["bytes"]}
