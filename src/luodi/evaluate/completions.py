"""What a language model writes, scored: greedy completions of held-out prompts against their references, and sample
generations for fixed prompts before and after fine-tuning, side by side (the report's `generation` family).

Completions (prompt/completion and chat data; text data has no reference): the first `target.text.evaluate_rows`
scored rows, each prompt (chat: the conversation up to its last assistant reply) continued greedily, in batches, for
at most the reference's length in tokens plus `target.text.evaluate_margin`. Two scores per row, averaged:

    exact_match  the generated text equals the reference once whitespace is normalized (runs of whitespace become
                 one space, both ends stripped): 1 or 0
    chrf         chrF (Popović 2015), as sacreBLEU computes a sentence's chrF2: character n-grams of orders 1 to 6,
                 whitespace removed, precision and recall averaged over the orders both texts have, combined with
                 beta 2 (recall counts twice as much), on a 0 to 100 scale. Chosen over word-level scores (token F1,
                 ROUGE-L) because it needs no word segmentation, so it reads Chinese or Japanese as well as English,
                 and it credits near misses in morphology; it needs no download

"Before" is the pretrained model when there is one (`model.pretrained()`: LoRA with its adapters off, or the
checkpoint's weights again after a full fine-tune); a model trained from scratch has none, and the report says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pyarrow as pa
from torch import nn

from luodi.errors import InputError
from luodi.models.generation import Sampling, greedy_batch, stream_text

SAMPLE_TOKENS = 40  # new tokens per sample generation in the report
BATCH = 16  # prompts generated together
CHRF_ORDER, CHRF_BETA = 6, 2.0
EXAMPLES = 5  # completions shown in the report beside their references


def normalize(text: str) -> str:
    return " ".join(text.split())


def exact_match(generated: str, reference: str) -> bool:
    return normalize(generated) == normalize(reference)


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF2 (0 to 100) of `hypothesis` against `reference`, as sacreBLEU's CHRF() scores one sentence."""
    hypothesis, reference = "".join(hypothesis.split()), "".join(reference.split())
    factor = CHRF_BETA**2
    precision = recall = 0.0
    orders = 0
    for n in range(1, CHRF_ORDER + 1):
        hyp = Counter(hypothesis[i:i + n] for i in range(len(hypothesis) - n + 1))
        ref = Counter(reference[i:i + n] for i in range(len(reference) - n + 1))
        matches = sum((hyp & ref).values())
        hyp_total, ref_total = sum(hyp.values()), sum(ref.values())
        precision += matches / hyp_total if hyp_total else 1e-16
        recall += matches / ref_total if ref_total else 1e-16
        orders += bool(hyp_total and ref_total)
    if not orders:
        return 0.0
    precision, recall = precision / orders, recall / orders
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


@contextmanager
def model_before(model: nn.Module) -> Iterator[tuple[nn.Module | None, str]]:
    """The model before fine-tuning, or None and why there is none."""
    pretrained = getattr(model, "pretrained", None)
    if not callable(pretrained):
        yield None, "trained from scratch: there is no model before fine-tuning"
        return
    with ExitStack() as stack:
        try:
            base = stack.enter_context(pretrained())
        except InputError as error:
            yield None, f"the pretrained checkpoint cannot be read: {error}"
            return
        yield base, ""


def complete(model: nn.Module, target: Any, pairs: list[tuple[Any, str]], margin: int) -> dict[str, Any]:
    """Greedy completions of `pairs` (prompt, reference) scored: exact match and chrF, and the first few."""
    context: int = getattr(model, "context_length", 1 << 30)
    prompts, limits, kept = [], [], []
    for prompt, reference in pairs:
        ids = target.prompt_ids(prompt)
        if len(ids) < context:
            prompts.append(ids)
            limits.append(len(target.tokenizer(reference, add_special_tokens=False)["input_ids"]) + margin)
            kept.append((prompt, reference))
    texts = [target.decode(ids) for ids in greedy_batch(model, prompts, limits, target.eos_id, BATCH)]
    matches = [exact_match(text, reference) for text, (_, reference) in zip(texts, kept, strict=True)]
    scores = [chrf(text, reference) for text, (_, reference) in zip(texts, kept, strict=True)]
    return {"rows": len(kept), "skipped": len(pairs) - len(kept),
            "exact_match": sum(matches) / len(kept) if kept else None,
            "chrf": sum(scores) / len(kept) if kept else None,
            "examples": [{"prompt": shown(prompt), "reference": reference, "generated": text}
                         for (prompt, reference), text in list(zip(kept, texts, strict=True))[:EXAMPLES]]}


def shown(prompt: str | list[dict[str, str]]) -> str:
    """A prompt for people: a conversation's last message."""
    return prompt if isinstance(prompt, str) else (prompt[-1]["content"] if prompt else "")


def samples(model: nn.Module, target: Any, table: pa.Table | None) -> dict[str, Any]:
    """The report's generations: `samples` (each fixed prompt's greedy text after, and before, fine-tuning),
    `before_omitted` (why there is no before), and `completions` (scores of the held-out completions, with the
    model before fine-tuning's as `before`)."""
    def generate(network: nn.Module, prompt: str) -> str:
        return "".join(stream_text(network, target, prompt, Sampling(max_tokens=SAMPLE_TOKENS)))

    settings = target.settings
    prompts = target.sample_prompts(table)
    pairs = target.completion_pairs(table, settings.evaluate_rows) if table is not None else []
    after = [generate(model, prompt) for prompt in prompts]
    result: dict[str, Any] = {}
    if pairs:
        result["completions"] = complete(model, target, pairs, settings.evaluate_margin)
    with model_before(model) as (base, reason):
        before = [generate(base, prompt) for prompt in prompts] if base is not None else None
        if base is not None and pairs:
            result["completions"]["before"] = {key: value for key, value in complete(
                base, target, pairs, settings.evaluate_margin).items() if key in ("exact_match", "chrf")}
    result["samples"] = [{"prompt": prompt, "text": text, **({"before": before[i]} if before is not None else {})}
                         for i, (prompt, text) in enumerate(zip(prompts, after, strict=True))]
    if before is None:
        result["before_omitted"] = reason
    if not prompts:
        del result["samples"]
    return result
