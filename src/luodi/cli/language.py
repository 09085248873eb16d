"""`luodi embed`, `generate`, `import-gguf` and `chat`: language models, text in and text out."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from luodi import api
from luodi.cli.common import (
    Base,
    Home,
    Json,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    _count,
    _file_or_texts,
    _print_json,
)
from luodi.errors import InputError


def embed(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    data: Annotated[Path | None, typer.Option("--data", help="Texts: a table with the model's text column (CSV, "
                                                             "Parquet, JSONL) or a .txt file.")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to embed (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write .npy (float32 matrix), .parquet or .jsonl (texts "
                                                           "and embeddings); default: JSON lines on stdout.")] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut texts longer than the model's max_length "
                                                              "instead of refusing them.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Embed texts with a text encoder model (one text feature read as tokens): one vector per text."""
    vectors = api.embed(model, _file_or_texts(data, text), truncate=truncate, out=out, home=home)
    if as_json:
        payload: dict[str, Any] = {"rows": len(vectors), "dimensions": int(vectors.shape[1]),
                                   "out": str(out) if out else None}
        if out is None:
            payload["embeddings"] = vectors.tolist()
        return _print_json(payload)
    if out is None:
        for vector in vectors:
            sys.stdout.write(json.dumps(vector.tolist()) + "\n")
    else:
        print(f"wrote {len(vectors)} embeddings of {vectors.shape[1]} dimensions to {out}", file=sys.stderr)


def generate(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue (a chat model: the user message).")],
    max_tokens: Annotated[int, typer.Option(help="New tokens at most.")] = 64,
    temperature: Temperature = 0.0,
    top_k: TopK = 0,
    top_p: TopP = 1.0,
    repetition_penalty: RepetitionPenalty = 1.0,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="End the text before this string (repeatable).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling: the same seed gives the same text.")] = None,
    base: Base = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Generate text with a text_generation model, streamed to the terminal as it is written."""
    pieces = api.generate(model, prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                          repetition_penalty=repetition_penalty, stop=stop or (), seed=seed, home=home, base=base)
    if as_json:
        return _print_json({"prompt": prompt, "text": "".join(pieces)})
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def import_gguf(
    file: Annotated[Path, typer.Argument(help="The .gguf file (llama.cpp's format, any quantization).")],
    out: Annotated[Path, typer.Option("--out", help="The checkpoint folder to write (new, or empty).")],
    as_json: Json = False,
) -> None:
    """Turn a GGUF file into a Hugging Face safetensors checkpoint folder (model: {type: hf, path: OUT})."""
    imported = api.import_gguf(file, out)
    if as_json:
        return _print_json(dataclasses.asdict(imported))
    print(f"wrote {imported.folder}: {imported.architecture}, {imported.parameters:,} parameters (fp32, "
          f"{imported.bytes / 1e6:.0f} MB), {imported.vocab_size:,} tokens"
          f"{', chat template' if imported.chat_template else ''}")
    print(f"use it with: model: {{type: hf, path: {imported.folder}}}")


def chat(
    model: Annotated[str, typer.Argument(help="name, name@alias, name/version or a package folder.")],
    system: Annotated[str | None, typer.Option("--system", help="A system message kept before every turn.")] = None,
    max_tokens: Annotated[int, typer.Option(help="New tokens per reply at most.")] = 256,
    temperature: Temperature = 0.0,
    top_k: TopK = 0,
    top_p: TopP = 1.0,
    repetition_penalty: RepetitionPenalty = 1.0,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="End a reply before this string (repeatable).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampling: the same seed gives the same replies.")] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Chat with a text_generation model: one user message per line, replies streamed; /reset, /exit, Ctrl-D."""
    conversation = api.chat(model, system=system, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, repetition_penalty=repetition_penalty, stop=stop or (), seed=seed,
                            home=home)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
        print(f"chatting with {model} (context {conversation.context} tokens); /reset forgets the conversation, "
              "/exit or Ctrl-D ends it", file=sys.stderr)
    try:
        while True:
            line = _read_line(interactive)
            if line is None or line.strip() == "/exit":
                break
            text = line.strip()
            if not text:
                continue
            if text == "/reset":
                conversation.reset()
                print("(conversation forgotten)", file=sys.stderr)
                continue
            try:
                turn = conversation.send(line.rstrip("\n"))
            except InputError as error:
                print(f"error: {error}", file=sys.stderr)
                continue
            if turn.dropped:
                print(f"(dropped the oldest {_count(turn.dropped, 'turn')} to stay within the model's context of "
                      f"{conversation.context} tokens)", file=sys.stderr)
            if as_json:
                _print_json({"user": text, "reply": "".join(turn), "dropped": turn.dropped})
                continue
            for piece in turn:
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        raise typer.Exit(130) from None


def _read_line(interactive: bool) -> str | None:
    """The next line the user typed (None at end of input); a prompt only on a terminal."""
    if interactive:
        try:
            return input("> ")
        except EOFError:  # Ctrl-D: end the prompt's line, so the shell's starts on its own
            sys.stdout.write("\n")
            return None
    line = sys.stdin.readline()
    return line if line else None

