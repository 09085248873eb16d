"""A multi-turn conversation with a text_generation model: the history, kept within the model's context, and each
reply streamed through the one generation path (models/generation.py) that `luodi generate` uses.

Each turn renders the whole conversation (an optional system message, the earlier turns, the new user message) as
the package was trained to read it (`TokenTarget.conversation_ids`: the tokenizer's chat template, or the
documented SIMPLE_CHAT format) and generates the assistant's reply. When the rendered conversation would leave less
than `min(max_tokens, context / 2)` tokens for the reply, the oldest turns (a user message and its reply) are
dropped, never the system message, and the turn says how many went; a message that does not fit even alone is
refused and the history stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from luodi.errors import InputError
from luodi.models.generation import Sampling, stream_ids


@dataclass
class Turn:
    """One reply being generated: iterate for its text pieces; `dropped` earlier turns made room for it."""

    pieces: Iterator[str]
    dropped: int
    prompt_tokens: int

    def __iter__(self) -> Iterator[str]:
        return self.pieces


class Chat:
    """A conversation: `send(text)` streams the reply and keeps it; `reset()` forgets every turn but the system."""

    def __init__(self, model: nn.Module, target: Any, sampling: Sampling, system: str | None = None):
        sampling.check()
        self.model, self.target, self.sampling = model, target, sampling
        self.system = [{"role": "system", "content": system}] if system else []
        self.history: list[dict[str, str]] = []  # user and assistant messages, oldest first
        self.context: int = getattr(model, "context_length", target.context_length)
        self.reserve = max(1, min(sampling.max_tokens, self.context // 2))  # room kept for the reply

    def reset(self) -> None:
        self.history = []

    def send(self, text: str) -> Turn:
        """Add a user message and start the reply (InputError when the message alone leaves no room for one)."""
        history = [*self.history, {"role": "user", "content": text}]
        dropped = 0
        ids = self.target.conversation_ids(self.system + history)
        while len(ids) + self.reserve > self.context and len(history) > 1:
            history = history[2:] if history[0]["role"] == "user" and history[1]["role"] == "assistant" \
                else history[1:]
            dropped += 1
            ids = self.target.conversation_ids(self.system + history)
        if len(ids) + self.reserve > self.context:
            raise InputError(f"the message is {len(ids)} tokens as the model reads it (with the system message); the "
                             f"model's context of {self.context} tokens must keep {self.reserve} for the reply")
        self.history = history
        return Turn(self._reply(ids), dropped, len(ids))

    def _reply(self, ids: list[int]) -> Iterator[str]:
        pieces: list[str] = []
        try:
            for piece in stream_ids(self.model, self.target, ids, self.sampling):
                pieces.append(piece)
                yield piece
        finally:  # an interrupted reply is kept as far as it got, as the user saw it
            self.history.append({"role": "assistant", "content": "".join(pieces)})
