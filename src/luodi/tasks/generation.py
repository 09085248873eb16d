"""Text generation: a causal language model learns to continue text, with the loss on the tokens it should write.

The data is a table (data/texts.py turns a .txt file or folder into a `text` column) in one of three formats:

    text               target column `text`: every token is trained on
    prompt_completion  target `completion` and a `prompt` column: `prompt + completion + <eos>`, loss on the
                       completion and the end-of-text token only
    chat               target `messages` (lists of {"role", "content"}): the tokenizer's chat template when it has
                       one, else SIMPLE_CHAT below; loss on the assistant turns only

The target encoder (`TokenTarget`) owns the tokenizer (a byte-level BPE trained on the training split, or the
checkpoint's for model.type hf) and turns rows into training windows itself (`encode_table`): token ids
(rows, context) as the model's input `tokens`, and next-token labels (rows, context) as the target, -100 where no
loss applies (prompts, user turns, padding). With `packing` the examples, each ended by the end-of-text token, are
joined into one stream cut into full windows; otherwise each example is padded (or truncated) to its own window.

Validation and scoring keep three numbers per row (`reduce_outputs`): the summed negative log-likelihood of its
labelled tokens, how many the argmax got right, and how many there are; perplexity and token accuracy follow.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from luodi import checkpoints
from luodi.errors import InputError
from luodi.tasks.outputs import Output, OutputSpec, Predictions
from luodi.tasks.targets import check_present

if TYPE_CHECKING:
    import torch
    from torch import nn

    from luodi.config import LuodiConfig, TargetConfig

Direction = Literal["min", "max"]
IGNORE = -100  # the label of a position without loss (torch's cross_entropy ignore_index)
EOS, PAD = "<|endoftext|>", "<|pad|>"
ROLES = ("system", "user", "assistant")
# The documented template of chat data when the tokenizer has none: each message is its role marker, a newline,
# its content and the end-of-text token. A reply is generated after "<|assistant|>\n" and ends at end-of-text.
SIMPLE_CHAT = "<|{role}|>\n{content}{eos}"
LANGUAGE_MODELS = ("gpt", "rnn", "hf")  # the model.type values models/language.py builds


def render_simple(messages: list[dict[str, str]], eos: str, generation_prompt: bool) -> str:
    text = "".join(SIMPLE_CHAT.format(role=m["role"], content=m["content"], eos=eos) for m in messages)
    return text + ("<|assistant|>\n" if generation_prompt else "")


def train_bpe(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE (no text is ever unknown) trained on `texts`, wrapped as a transformers tokenizer with the
    end-of-text, padding and chat-role tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = [EOS, PAD, *(f"<|{role}|>" for role in ROLES)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD)


def load_tokenizer(folder: Path, what: str) -> Any:
    """A transformers tokenizer from a local folder (a checkpoint's, or the one a package keeps); no code runs."""
    from transformers import AutoTokenizer

    checkpoints.check_tokenizer_files(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{what} {folder}: cannot load the tokenizer: {str(error).splitlines()[0]}") from None


class TokenTarget:
    """Fitted state: the data format, the tokenizer (kept as files: `save_assets` / `load_assets`) and its ids."""

    reads_table = True  # fit_table / encode_table: the examples come from whole rows, inputs included

    def __init__(self, config: TargetConfig, format: str = "", vocab_size: int = 0, pad_id: int = 0,
                 eos_id: int = 0):
        self.config, self.settings = config, config.text
        self.format, self.vocab_size, self.pad_id, self.eos_id = format, vocab_size, pad_id, eos_id
        self.context_length = self.settings.context_length
        self.tokenizer: Any = None
        self.checkpoint_dir: Path | None = None  # holds the checkpoint's config.json (model.type hf)

    # ------------------------------------------------------------------------------------- fitting
    def check(self, column: pa.ChunkedArray, source: str) -> None:
        check_present(column, self.config.name, source)

    def fit(self, column: pa.ChunkedArray) -> None:
        self.fit_table(pa.table({self.config.name: column}))

    def transform(self, column: pa.ChunkedArray, source: str) -> np.ndarray:
        """The labels of a table holding only the target column (text and chat data)."""
        return self.encode_table(pa.table({self.config.name: column}), source, True)[1]

    def fit_table(self, table: pa.Table) -> None:
        """Decide the format, then train the BPE on the training split's texts or load the checkpoint's."""
        self.format = self._format(table)
        settings = self.settings
        if settings.tokenizer == "checkpoint":
            assert settings.checkpoint is not None  # check_config fills it from model.path
            folder = checkpoints.checkpoint_folder(settings.checkpoint, "target.text.checkpoint")
            self.tokenizer, self.checkpoint_dir = load_tokenizer(folder, "target.text.checkpoint"), folder
        else:
            texts = [text for segments in self.documents(table) for text, _ in segments]
            self.tokenizer = train_bpe(texts, settings.vocab_size)
        self._ids()

    def _ids(self) -> None:
        tokenizer = self.tokenizer
        if tokenizer.eos_token_id is None:
            raise InputError("the tokenizer has no end-of-text (eos) token; a language model needs one")
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)
        self.vocab_size = len(tokenizer)

    def _format(self, table: pa.Table) -> str:
        column = table.column(self.config.name)
        chosen = self.settings.format
        if chosen == "auto":
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                chosen = "chat"
            else:
                chosen = "prompt_completion" if self.settings.prompt in table.column_names else "text"
        if chosen == "chat" and not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            raise InputError(f"target {self.config.name!r}: chat data holds a list of messages per row, got "
                             f"{column.type}")
        if chosen == "prompt_completion" and self.settings.prompt not in table.column_names:
            raise InputError(f"target.text.prompt: column {self.settings.prompt!r} is missing (prompt_completion "
                             f"data has a prompt and a {self.config.name!r} column)")
        return chosen

    # ------------------------------------------------------------------------------------- examples
    def documents(self, table: pa.Table) -> list[list[tuple[str, bool]]]:
        """Each row as (text, trained) segments, in order."""
        name = self.config.name
        if self.format == "chat":
            return [self._chat(messages, row) for row, messages in
                    enumerate(table.column(name).to_pylist(), start=1)]
        completions = [text or "" for text in table.column(name).to_pylist()]
        if self.format == "text":
            return [[(str(text), True)] for text in completions]
        prompts = [text or "" for text in table.column(self.settings.prompt).to_pylist()]
        return [[(str(prompt), False), (str(completion), True)]
                for prompt, completion in zip(prompts, completions, strict=True)]

    def _chat(self, messages: Any, row: int) -> list[tuple[str, bool]]:
        """A conversation's segments: the template's text around each assistant reply untrained, the reply (with
        what the template closes it with) trained. The reply's span is where rendering up to it with a generation
        prompt stops and rendering it whole ends."""
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                      and m.get("role") in ROLES for m in messages):
            raise InputError(f"target {self.config.name!r} row {row}: a conversation is a list of "
                             f"{{\"role\": one of {list(ROLES)}, \"content\": text}}")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        segments, done = [], ""
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:index], generation_prompt=True)
            after = self.render(messages[:index + 1], generation_prompt=False)
            if not before.startswith(done) or not after.startswith(before):
                raise InputError(f"target {self.config.name!r} row {row}: the chat template does not render "
                                 "conversations as prefixes of each other; use format: prompt_completion")
            segments += [(before[len(done):], False), (after[len(before):], True)]
            done = after
        whole = self.render(messages, generation_prompt=False)
        segments.append((whole[len(done):] if whole.startswith(done) else "", False))
        return [segment for segment in segments if segment[0]]

    def render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        """A conversation as text: the tokenizer's chat template, or SIMPLE_CHAT."""
        if self.tokenizer is None:  # texts for training the BPE, which will hold EOS and the role markers
            return render_simple(messages, EOS, generation_prompt)
        if getattr(self.tokenizer, "chat_template", None):
            if not messages and not generation_prompt:
                return ""
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=generation_prompt))
        return render_simple(messages, str(self.tokenizer.eos_token), generation_prompt)

    def encode_documents(self, documents: list[list[tuple[str, bool]]]) -> list[tuple[list[int], list[bool]]]:
        """Token ids and whether each is trained on, per document; text and prompt/completion documents end with
        the end-of-text token (trained), chat documents as their template ends them (`_starts` begins them)."""
        texts = [text for segments in documents for text, _ in segments]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        encoded, position = [], 0
        starts = self._starts()
        for segments in documents:
            tokens: list[int] = list(starts)
            trained: list[bool] = [False] * len(starts)
            for _, train in segments:
                tokens += ids[position]
                trained += [train] * len(ids[position])
                position += 1
            if self.format != "chat":
                tokens.append(self.eos_id)
                trained.append(True)
            encoded.append((tokens, trained))
        return encoded

    def _starts(self) -> list[int]:
        """What each document starts with: a trained-here BPE puts the end-of-text token before it too (packed
        documents then all follow one, and so does a prompt when generating); a checkpoint's text as it is."""
        return [self.eos_id] if self.settings.tokenizer == "bpe" else []

    def windows(self, encoded: list[tuple[list[int], list[bool]]]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, context) input ids and next-token labels (IGNORE where no loss applies)."""
        length = self.context_length
        if self.settings.packing:
            stream = np.fromiter((t for tokens, _ in encoded for t in tokens), np.int64)
            trained = np.fromiter((t for _, flags in encoded for t in flags), bool)
            rows = max(1, math.ceil((len(stream) - 1) / length))
            ids = np.full(rows * length + 1, self.pad_id, np.int64)
            mask = np.zeros(rows * length + 1, bool)
            ids[:len(stream)], mask[:len(stream)] = stream, trained
            inputs = ids[:-1].reshape(rows, length)
            labels = np.where(mask[1:], ids[1:], IGNORE).reshape(rows, length)
            return inputs, labels
        inputs = np.full((len(encoded), length), self.pad_id, np.int64)
        labels = np.full((len(encoded), length), IGNORE, np.int64)
        for row, (tokens, flags) in enumerate(encoded):
            kept = tokens[:length + 1]
            inputs[row, :min(len(kept), length)] = kept[:length]
            following = np.asarray(kept[1:], np.int64)
            labels[row, :len(following)] = np.where(np.asarray(flags[1:length + 1], bool), following, IGNORE)
        return inputs, labels

    def encode_table(self, table: pa.Table, source: str, with_target: bool) -> tuple[dict[str, np.ndarray],
                                                                                      np.ndarray]:
        """Training windows of a table: `{"tokens": ids}` and the labels."""
        if not with_target:
            raise InputError(f"{source}: a text_generation model writes text: use `luodi generate` (or "
                             "luodi.api.generate) with a prompt")
        inputs, labels = self.windows(self.encode_documents(self.documents(table)))
        if not (labels != IGNORE).any():
            raise InputError(f"{source}: no token to train or score on (empty completions, or every text is cut "
                             f"off at context_length {self.context_length})")
        return {"tokens": inputs}, labels

    # ----------------------------------------------------------------------------------- generation
    def prompt_ids(self, prompt: str | list[dict[str, str]]) -> list[int]:
        """The ids a model continues from: the prompt as trained on (chat: the conversation and the assistant's
        generation prompt; a plain string is one user message)."""
        if self.format == "chat":
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            text = self.render(messages, generation_prompt=True)
        elif isinstance(prompt, str):
            text = prompt
        else:
            raise InputError("a list of messages needs a model trained on chat data")
        ids: list[int] = self._starts() + self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:  # an empty prompt to a checkpoint's model: start from its beginning-of-text token
            ids = [int(self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eos_id)]
        return ids

    def conversation_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The ids a reply to `messages` continues from: a chat model's own format, and for a model trained on text
        the conversation rendered as its tokenizer's chat template (else SIMPLE_CHAT) with the assistant's turn
        opened."""
        return self.prompt_ids(messages if self.format == "chat" else self.render(messages, generation_prompt=True))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def sample_prompts(self, table: pa.Table | None, count: int = 3) -> list[str]:
        """The report's prompts: target.text.samples, else the beginnings of the first rows (a text's first words,
        a prompt, a conversation's first user message)."""
        if self.settings.samples or table is None:
            return list(self.settings.samples)
        rows = table.slice(0, count)
        if self.format == "chat":  # the first user message of each conversation
            return [next((m["content"] for m in messages or [] if m.get("role") == "user"), "")
                    for messages in rows.column(self.config.name).to_pylist()]
        prompts = []
        for segments in self.documents(rows):
            if self.format == "text":
                words = segments[0][0].split()
                prompts.append(" ".join(words[:max(1, min(8, len(words) // 2))]))
            else:
                prompts.append(segments[0][0])
        return prompts

    def completion_pairs(self, table: pa.Table, rows: int) -> list[tuple[str | list[dict[str, str]], str]]:
        """(prompt, reference) of the first `rows` rows that have one: a prompt and its completion, or a conversation
        up to its last assistant reply and that reply; text data has none."""
        if self.format == "text" or rows <= 0:
            return []
        head = table.slice(0, rows)
        if self.format == "prompt_completion":
            return [(str(prompt or ""), str(completion or "")) for prompt, completion in
                    zip(head.column(self.settings.prompt).to_pylist(), head.column(self.config.name).to_pylist(),
                        strict=True)]
        pairs: list[tuple[str | list[dict[str, str]], str]] = []
        for messages in head.column(self.config.name).to_pylist():
            replies = [index for index, m in enumerate(messages or []) if m.get("role") == "assistant"]
            if replies and replies[-1] > 0:
                conversation = [{"role": m["role"], "content": m["content"]} for m in messages[:replies[-1]]]
                pairs.append((conversation, str(messages[replies[-1]]["content"])))
        return pairs

    # ------------------------------------------------------------------------------------- files, state
    def state(self) -> dict[str, Any]:
        return {"format": self.format, "vocab_size": self.vocab_size, "pad_id": self.pad_id, "eos_id": self.eos_id}

    def schema(self) -> dict[str, Any]:
        return {"name": self.config.name, "task": self.config.task, "format": self.format,
                "context_length": self.context_length}

    def save_assets(self, directory: Path) -> None:
        """The tokenizer (transformers files: tokenizer.json, its config with any chat template), and an hf
        checkpoint's config.json, from which the model is rebuilt without the original folder."""
        self.tokenizer.save_pretrained(str(directory))
        if self.checkpoint_dir is not None and self.checkpoint_dir != directory:
            shutil.copyfile(self.checkpoint_dir / checkpoints.CONFIG, directory / checkpoints.CONFIG)

    def load_assets(self, directory: Path) -> None:
        self.tokenizer = load_tokenizer(directory, "package tokenizer")
        if (directory / checkpoints.CONFIG).is_file():
            self.checkpoint_dir = directory


class TextGeneration:
    """Continue text; trained with next-token cross-entropy on the labelled tokens (the `generation` family)."""

    name = "text_generation"
    stratify: Literal["class", "quantile", "none"] = "none"
    model = "language_model"
    family = "generation"
    classes = False
    directions: Mapping[str, Direction] = {"loss": "min", "perplexity": "min", "token_accuracy": "max"}

    def target(self, config: TargetConfig, state: dict[str, Any] | None = None) -> TokenTarget:
        return TokenTarget(config, **(state or {}))

    def check_config(self, config: LuodiConfig) -> None:
        """No input features (the text is the input); a language model; the tokenizer it reads."""
        if config.input_features:
            raise ValueError("text_generation reads only its target column: remove input_features")
        model, text = config.model, config.target.text
        if model.type not in LANGUAGE_MODELS:
            raise ValueError(f"model.type {model.type!r} is not a language model; text_generation uses one of "
                             f"{list(LANGUAGE_MODELS)}")
        if text.tokenizer == "auto":
            text.tokenizer = "checkpoint" if model.type == "hf" else "bpe"
        if model.type == "hf":
            if text.tokenizer != "checkpoint":
                raise ValueError("target.text.tokenizer: model.type hf reads its checkpoint's own tokenizer")
            if text.checkpoint is None:
                text.checkpoint = model.path
        elif text.tokenizer == "checkpoint" and text.checkpoint is None:
            raise ValueError("target.text.tokenizer checkpoint needs target.text.checkpoint: a tokenizer folder")

    def output_size(self, target: TokenTarget) -> int:
        return target.vocab_size

    def starter(self, table: pa.Table, data_path: str, name: str, base: str | None) -> tuple[str, str]:
        """`luodi init --task text_generation`: the commented starter config and the target column it chose
        (messages, completion or text); with `base`, a LoRA fine-tune of that local checkpoint."""
        columns = table.column_names
        target = next((column for column in ("messages", "completion", "text") if column in columns), None)
        if target is None:
            raise InputError(f"{data_path}: text_generation reads a text column `text`, `prompt` and `completion`, "
                             f"or chat `messages`; the data has {columns}")
        if base is not None:
            model = (f"model:\n  type: hf\n  path: {base}                 # local Hugging Face checkpoint folder\n"
                     "  hf: {lora: {enabled: true, rank: 8, alpha: 16}}   # adapters; false fine-tunes every weight")
            tokenizer, lr, epochs = "checkpoint", "0.0002", 3
        else:
            model = ("model:\n  type: gpt                             # or rnn (a GRU language model)\n"
                     "  gpt: {layers: 4, width: 256, heads: 4, dropout: 0.0}")
            tokenizer, lr, epochs = "bpe", "0.001", 20
        text = f"""\
# luodi config written by `luodi init` for text generation ({table.num_rows} rows of {target!r}).
# Every key is documented in docs/config.md; the data formats and models in docs/generation.md.
# Train with: luodi train {{this file}}    Then: luodi generate {name} --prompt "..."

name: {name}

data:
  train: {data_path}
  split: {{validation: 0.1, test: 0.1, stratify: false, seed: 42}}

target:
  name: {target}
  task: text_generation
  text:
    format: auto                        # text, prompt_completion or chat (auto: from the columns)
    tokenizer: {tokenizer}                    # bpe: trained on this data; checkpoint: the base model's
    vocab_size: 4000
    context_length: 256                 # tokens per training window and the most a model reads
    packing: true                       # join examples into full windows

{model}

trainer:
  epochs: {epochs}
  batch_size: 16
  eval_batch_size: 16                   # windows per scoring pass: logits are windows x context x vocabulary
  optimizer: {{type: adamw, lr: {lr}, weight_decay: 0.01}}
  scheduler: {{type: cosine, warmup_steps: 20, min_lr_ratio: 0.1}}
  gradient_clip: 1.0
  early_stopping: {{metric: perplexity, patience: 3}}
  seed: 42

runtime:
  device: auto
  threads: auto
"""
        return text, target

    def loss(self, target: TokenTarget) -> nn.Module:
        from luodi.tasks.losses import TokenLoss

        return TokenLoss()

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, seq, vocab) logits -> log-probabilities of the next token."""
        return logits.log_softmax(-1)

    def reduce_outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per row (batch, 3): summed NLL of the labelled tokens, tokens the argmax gets right, labelled tokens."""
        import torch.nn.functional as F

        labels = labels.to(logits.device)
        labelled = labels != IGNORE
        safe = labels.clamp(min=0)
        nll = F.cross_entropy(logits.float().transpose(1, 2), safe, reduction="none") * labelled  # (batch, seq)
        correct = (logits.argmax(-1) == labels) & labelled
        return torch_stack([nll.sum(1), correct.sum(1), labelled.sum(1)])

    def score(self, target: TokenTarget, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
        nll, correct, count = np.asarray(outputs, np.float64).sum(axis=0)
        count = max(count, 1.0)
        return {"perplexity": float(math.exp(min(nll / count, 700.0))), "token_accuracy": float(correct / count)}

    def loss_value(self, target: TokenTarget, outputs: np.ndarray, y: np.ndarray) -> float:
        """The reported `loss`: mean NLL per labelled token (log perplexity)."""
        nll, _, count = np.asarray(outputs, np.float64).sum(axis=0)
        return float(nll / max(count, 1.0))

    def output_specs(self, target: TokenTarget) -> tuple[OutputSpec, ...]:
        return (OutputSpec("perplexity", "perplexity", "number"),)

    def decode(self, target: TokenTarget, outputs: np.ndarray) -> Predictions:
        """Per row (of `reduce_outputs`), its perplexity."""
        nll, _, count = np.asarray(outputs, np.float64).T
        (spec,) = self.output_specs(target)
        return Predictions((Output(spec, np.exp(np.minimum(nll / np.maximum(count, 1), 700.0))),))


def torch_stack(columns: list[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.stack([column.double() for column in columns], dim=1)


TEXT_GENERATION = TextGeneration()
