"""Generating text with a language model, one token at a time, with a key/value cache.

`generate_tokens` is a generator: the prompt runs once (prefill), then each step feeds only the newest token with
the model's cache (`model.decode(ids, cache)`, models/language.py) and yields the token chosen by `Sampling`: greedy
(temperature 0), or temperature, top-k and top-p sampling from a seeded generator; the repetition penalty divides
the logits of tokens already seen. It ends at the end-of-text token, at `max_tokens`, or when the model's context
is full. `stream_text` turns those tokens into text pieces, holding back bytes of an unfinished character and any
tail that may be the start of a stop sequence, and ends before the first stop sequence. Being generators, both
let a caller (the terminal, later a server batching requests) stream each piece and stop at any step.
`greedy_batch` is greedy decoding of many prompts at once, for evaluation (evaluate/completions.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from luodi.errors import InputError


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen, and when generation ends."""

    max_tokens: int = 64  # new tokens at most
    temperature: float = 0.0  # 0: greedy (the most likely token); else logits / temperature are sampled
    top_k: int = 0  # sample among the k most likely tokens (0: all)
    top_p: float = 1.0  # sample among the most likely tokens whose probabilities add up to top_p
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the prompt or the output less likely
    stop: tuple[str, ...] = ()  # the text ends before the first of these
    seed: int | None = None  # the same seed gives the same sampled text

    def check(self) -> None:
        if self.max_tokens < 1:
            raise InputError("max_tokens must be >= 1")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise InputError("temperature >= 0, top_k >= 0, 0 < top_p <= 1 and repetition_penalty > 0, please")


def choose(logits: torch.Tensor, seen: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """The next token from the last position's logits (vocab,), given the ids seen so far."""
    logits = logits.float().clone()
    if sampling.repetition_penalty != 1.0 and len(seen):
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / sampling.repetition_penalty,
                                   picked * sampling.repetition_penalty)
    if sampling.temperature == 0:
        return int(logits.argmax())
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < len(logits):
        kth = torch.topk(logits, sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(descending=True)
        probabilities = ordered.softmax(-1)
        # Drop the tokens after the smallest prefix whose mass reaches top_p (the first token always stays).
        drop = probabilities.cumsum(-1) - probabilities >= sampling.top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


def generate_tokens(model: nn.Module, prompt: Sequence[int], sampling: Sampling, eos_id: int | None) -> Iterator[int]:
    """New token ids after `prompt`, one per step (the end-of-text token ends it and is not yielded)."""
    sampling.check()
    context: int = getattr(model, "context_length", 1 << 30)
    if not prompt:
        raise InputError("the prompt has no tokens")
    if len(prompt) >= context:
        raise InputError(f"the prompt has {len(prompt)} tokens; the model reads at most {context}")
    generator = None
    if sampling.temperature > 0:
        generator = torch.Generator()
        if sampling.seed is not None:
            generator.manual_seed(sampling.seed)
        else:
            generator.seed()
    device = next(model.parameters()).device
    model.eval()
    seen = torch.tensor(list(prompt), dtype=torch.long, device=device)
    with torch.inference_mode():
        logits, cache = model.decode(seen[None, :], None)  # type: ignore[operator]  # prefill
        for _ in range(sampling.max_tokens):
            token = choose(logits[0, -1], seen, sampling, generator)
            if token == eos_id:
                return
            yield token
            seen = torch.cat([seen, seen.new_tensor([token])])
            if len(seen) >= context:
                return
            logits, cache = model.decode(seen[None, -1:], cache)  # type: ignore[operator]


def greedy_batch(model: nn.Module, prompts: Sequence[Sequence[int]], limits: Sequence[int], eos_id: int | None,
                 batch_size: int = 16) -> list[list[int]]:
    """Greedy new token ids for many prompts, `batch_size` at a time: prompts of one length run together, so no row
    is padded and each gets the tokens `generate_tokens` gives it alone. Row i ends at the end-of-text token (not
    kept), after `limits[i]` tokens, or when the context is full."""
    context: int = getattr(model, "context_length", 1 << 30)
    results: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        if not prompt or len(prompt) >= context:
            raise InputError(f"prompt {index + 1} has {len(prompt)} tokens; the model reads 1 to {context - 1}")
        by_length.setdefault(len(prompt), []).append(index)
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for length, indices in sorted(by_length.items()):
            for start in range(0, len(indices), batch_size):
                rows = indices[start:start + batch_size]
                caps = [min(limits[index], context - length) for index in rows]
                open_rows = {row for row, cap in enumerate(caps) if cap > 0}
                if not open_rows:
                    continue
                ids = torch.tensor([list(prompts[index]) for index in rows], dtype=torch.long, device=device)
                logits, cache = model.decode(ids, None)  # type: ignore[operator]  # (rows, length, vocab)
                while open_rows:
                    tokens = logits[:, -1].float().argmax(-1)  # (rows,)
                    for row in sorted(open_rows):
                        token = int(tokens[row])
                        out = results[rows[row]]
                        if token == eos_id:
                            open_rows.discard(row)
                            continue
                        out.append(token)
                        if len(out) >= caps[row]:
                            open_rows.discard(row)
                    if open_rows:  # rows already finished keep stepping (their tokens are ignored): no re-batching
                        logits, cache = model.decode(tokens[:, None], cache)  # type: ignore[operator]
    return results


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of `text` could be the start of a stop sequence."""
    return max((size for stop in stops for size in range(min(len(stop) - 1, len(text)), 0, -1)
                if text.endswith(stop[:size])), default=0)


def stream_text(model: nn.Module, target: Any, prompt: str | list[dict[str, str]], sampling: Sampling
                ) -> Iterator[str]:
    """Pieces of the generated text as they are decided (`target`: the fitted text_generation target, which
    formats the prompt as the model was trained and decodes ids)."""
    return stream_ids(model, target, target.prompt_ids(prompt), sampling)


def stream_ids(model: nn.Module, target: Any, prompt: Sequence[int], sampling: Sampling) -> Iterator[str]:
    """Pieces of the text generated after the token ids `prompt` (`stream_text` once the prompt is tokenized)."""
    generated: list[int] = []
    emitted = 0  # characters of the text already yielded
    text = ""
    for token in generate_tokens(model, prompt, sampling, target.eos_id):
        generated.append(token)
        text = target.decode(generated)
        if text.endswith("\ufffd"):
            continue  # the bytes of a character are still arriving
        found = [index for index in (text.find(stop) for stop in sampling.stop if stop) if index >= 0]
        if found:
            end = min(found)
            if end > emitted:
                yield text[emitted:end]
            return
        safe = len(text) - _held_back(text, sampling.stop)
        if safe > emitted:
            yield text[emitted:safe]
            emitted = safe
    if len(text) > emitted:
        yield text[emitted:]
