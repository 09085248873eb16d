"""Continuous batching: one scheduler per served text_generation version, decoding every running sequence a step
at a time in a worker thread.

A request (`Sequence`) waits in a bounded queue (`QueueFull` past `max_waiting`, which the endpoints answer 429),
joins the running batch at the next step when a slot is free (its prompt runs once: prefill; from idle, once the
requests sent together have all arrived, so they prefill as one batch), and leaves the batch
the step it ends (end-of-text, max_tokens, the context is full) or is cancelled (a stop sequence, a client that
went away: `cancel` frees a waiting sequence at once and a running one before the next step). Each step's token
goes to the request's asyncio queue through `call_soon_threadsafe`, so the event loop never waits for the model.

How the decode step is batched depends on the model: when the worker starts, `batched_slots` gives a slot cache
(slots.py) for `gpt` models and for Hugging Face causal LMs whose batched step matches their own decoding (the Llama
family stepped by luodi's own decoder, llama_slots.py; other architectures by HF's forward, hf_slots.py), and a
step feeds every running sequence's newest token as one batch, each sequence at its own length. Other models
(`rnn`, an HF architecture that fails the check, with the reason logged) keep their own cache per sequence and are
stepped one after another in the same loop: they still join and leave at any step, without the shared matrix
multiply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from luodi.models.generation import Sampling, choose
from luodi.serve.slots import GPTSlots, Slots

log = logging.getLogger("luodi.serve")
IDLE_EXIT_S = 2.0  # a worker with nothing to do for this long ends; the next request starts a new one
# From idle, the worker waits for a burst of requests to stop arriving (no new one for ADMIT_GAP_S, ADMIT_WINDOW_S
# at most after the first) before it prefills, so that requests sent together join one prefill and decode at one
# length (see `_admit`). A lone request waits ADMIT_GAP_S.
ADMIT_GAP_S = 0.003
ADMIT_WINDOW_S = 0.02
# The decode step a scheduler runs (`Scheduler.decoder`, logged when its worker decides): luodi's Llama step
# (llama_slots.py), HF's forward over the slot cache (hf_slots.py), luodi's GPT step, the model's own per sequence.
LUODI_STEP, HF_STEP, PER_SEQUENCE = "luodi-llama", "hf-forward", "per-sequence"


class QueueFull(Exception):
    """The waiting queue holds `max_waiting` sequences already."""


@dataclass
class Token:
    """One generated token, or the end of a sequence (`token` None, `finish` 'stop' or 'length')."""

    token: int | None
    logprob: float = 0.0
    top: list[tuple[int, float]] = field(default_factory=list)  # (token, logprob) of the most likely tokens
    finish: str | None = None


@dataclass
class Sequence:
    """One generated text: what an endpoint submits and reads tokens from (`events`, which the sequences of one
    request share)."""

    prompt: list[int]
    sampling: Sampling
    logprobs: int = 0  # how many of the most likely tokens to report per step (0: none)
    index: int = 0  # the request's choice this sequence answers
    ignore_eos: bool = False  # go on past the end-of-text token (vLLM's extension; benchmarks use it)
    events: asyncio.Queue[tuple[int, Token]] = field(default_factory=asyncio.Queue)  # (index, token); may be shared
    cancelled: bool = False
    # Kept by the scheduler:
    loop: asyncio.AbstractEventLoop | None = None
    seen: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    slot: int = -1
    cache: Any = None
    logits: torch.Tensor | None = None  # (vocab,) the next token's logits
    generated: int = 0
    submitted: float = 0.0
    last: float = 0.0  # when the previous token was sent


@dataclass
class GenerationMetrics:
    """What vLLM users watch: time to first token, inter-token latency, token counters, running and waiting."""

    first_token: Any
    inter_token: Any
    prompt_tokens: Any
    generation_tokens: Any
    running: Any
    waiting: Any


def check_slots(model: Any, slots: Slots, count: int) -> str | None:
    """Why `slots` cannot stand in for the model's own decoding (None: it can). Two prompts of different lengths
    (one when `count` is 1) are prefilled into their slots as one batch and stepped twice as one batch; every logit
    must match the model's own `decode` of each sequence alone (the tolerance of a batch-size change in float32)."""
    vocab = int(model.backbone.get_input_embeddings().weight.shape[0]) if hasattr(model, "backbone") else 50
    prompts = [[(7 * index + 3) % vocab for index in range(length)] for length in (3, 6)][:count]
    device = next(model.parameters()).device
    alone: list[list[torch.Tensor]] = []
    for prompt in prompts:  # the reference: the model's own cache, one sequence
        logits, cache = model.decode(torch.tensor([prompt], device=device), None)
        steps = [logits[0, -1]]
        for token in (1, 2):
            logits, cache = model.decode(torch.tensor([[token]], device=device), cache)
            steps.append(logits[0, -1])
        alone.append(steps)
    batched = [list(slots.prefill(list(range(len(prompts))), prompts))]
    for token in (1, 2):
        batched.append(list(slots.step(list(range(len(prompts))), [token] * len(prompts))))
    for step, rows in enumerate(batched):
        for slot, row in enumerate(rows):
            expected = alone[slot][step].float()
            scale = float(expected.abs().max()) + 1.0
            difference = float((row.float() - expected).abs().max())
            if difference > 1e-3 * scale:
                return f"the batched step's logits differ from one sequence's by {difference:.3g} (step {step})"
    return None


def batched_slots(model: nn.Module, slots: int) -> tuple[Slots | None, str]:
    """The model's slot cache for `slots` sequences, or None (logged, with the reason) to step them one by one;
    and the name of the decode step it runs (LUODI_STEP, HF_STEP, "gpt", PER_SEQUENCE)."""
    from luodi.models.gpt import GPT
    from luodi.models.language import CausalLM

    if isinstance(model, GPT):
        return GPTSlots(model, slots), "gpt"
    if not isinstance(model, CausalLM):
        log.info("%s: decode steps run sequence by sequence (no batched cache for this model type)",
                 type(model).__name__)
        return None, PER_SEQUENCE
    from luodi.serve import hf_slots, llama_slots

    backbone = model.backbone
    name = type(backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone).__name__  # LoRA
    reason = llama_slots.unsupported(model)
    if reason is None:
        fast, reason = checked(model, lambda: llama_slots.LlamaSlots(model, slots), slots)
        if fast is not None:
            fast.share_weights()  # after the check: a refused candidate leaves the model as it was
            log.info("%s: decode steps of all running sequences run as one batch (decoder: %s)", name, LUODI_STEP)
            return fast, LUODI_STEP
    log.info("%s: luodi's Llama step does not apply (%s); decode steps run HF's forward", name, reason)
    reason = hf_slots.unsupported(model)
    if reason is None:
        candidate, reason = checked(model, lambda: hf_slots.HFSlots(model, slots), slots)
        if candidate is not None:
            log.info("%s: decode steps of all running sequences run as one batch (decoder: %s)", name, HF_STEP)
            return candidate, HF_STEP
    log.warning("%s: decode steps run sequence by sequence, without batching: %s", name, reason)
    return None, PER_SEQUENCE


def checked(model: nn.Module, build: Callable[[], Any], slots: int) -> tuple[Any, str | None]:
    """A slot cache that `check_slots` accepts, reset (or None), and why not."""
    try:
        candidate = build()
        reason = check_slots(model, candidate, min(slots, 2))
    except Exception as error:  # noqa: BLE001 - any architecture may refuse a foreign cache; we fall back
        reason = f"the batched cache failed: {type(error).__name__}: {(str(error) or '-').splitlines()[0]}"
    if reason is not None:
        return None, reason
    candidate.reset()
    return candidate, None


class Scheduler:
    """Continuous batching for one loaded text_generation version (see the module docstring)."""

    def __init__(self, model: nn.Module, eos_id: int | None, *, max_running: int, max_waiting: int,
                 metrics: GenerationMetrics):
        self.model, self.eos_id = model, eos_id
        self.context: int = getattr(model, "context_length", 1 << 30)
        self.max_running, self.max_waiting, self.metrics = max_running, max_waiting, metrics
        self.slots: Slots | None = None  # decided by the worker's first run (a check costs a few forwards)
        self.slots_decided = False
        self.decoder = ""  # which decode step (LUODI_STEP, HF_STEP, "gpt", PER_SEQUENCE), decided with the slots
        self.free = list(range(max_running))
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.lock = threading.Condition()
        self.worker: threading.Thread | None = None
        self.outbox: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[tuple[int, Token]], tuple[int, Token]]]
                          ] = {}  # the tokens of this step, per event loop (touched by the worker only)

    # ------------------------------------------------------------------ called from the event loop
    def submit(self, sequence: Sequence) -> None:
        """Queue a sequence (raises QueueFull); its tokens arrive on `sequence.events`."""
        sequence.sampling.check()
        sequence.loop = asyncio.get_running_loop()
        sequence.submitted = time.perf_counter()
        with self.lock:
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} sequences are waiting already; retry later")
            self.waiting.append(sequence)
            self.metrics.waiting.set(len(self.waiting))
            if self.worker is None:
                self.worker = threading.Thread(target=self._work, name="luodi-generate", daemon=True)
                self.worker.start()
            self.lock.notify()

    def cancel(self, sequence: Sequence) -> None:
        """Stop a sequence: a waiting one leaves the queue now, a running one frees its slot before the next step."""
        with self.lock:
            sequence.cancelled = True
            if sequence in self.waiting:
                self.waiting.remove(sequence)
                self.metrics.waiting.set(len(self.waiting))
            self.lock.notify()

    # ------------------------------------------------------------------ the worker thread
    def _work(self) -> None:
        try:
            with torch.inference_mode():
                if not self.slots_decided:
                    self.slots, self.decoder = batched_slots(self.model, self.max_running)
                    self.slots_decided = True
                while self._admit():
                    self._step()
                    self._flush()
        except Exception:  # noqa: BLE001 - every sequence gets an end; the next request starts a new worker
            log.exception("the generation worker failed")
            with self.lock:
                for sequence in [*self.running, *self.waiting]:
                    self._send(sequence, Token(None, finish="error"))
                self._flush()
                self._release(self.running)
                self.waiting.clear()
                self.worker = None

    def _admit(self) -> bool:
        """Drop cancelled sequences, move waiting ones into free slots; False when the worker should end."""
        with self.lock:
            while True:
                self._release([sequence for sequence in self.running if sequence.cancelled])
                if not self.running:
                    self._await_burst()
                admitted = []
                while self.waiting and self.free:
                    sequence = self.waiting.popleft()
                    sequence.slot = self.free.pop(0)
                    admitted.append(sequence)
                self.metrics.waiting.set(len(self.waiting))
                if admitted or self.running:
                    break
                if not self.lock.wait(IDLE_EXIT_S) and not self.waiting:
                    self.worker = None
                    return False
        if admitted:  # prefill outside the lock, so requests can still queue
            self._prefill(admitted)
        with self.lock:
            self.running.extend(admitted)
            self.metrics.running.set(len(self.running))
        return True

    def _await_burst(self) -> None:
        """With nothing running, wait (the lock held, released while waiting) until the waiting requests stop
        arriving: requests sent together (a client's concurrent streams) then join one prefill instead of the first
        prefilling alone while the others queue behind it, one step later, so their steps run at one length (no
        mask, the step's keys written by a slice: serve/hf_slots.py) and their prompts in one batch. The first
        token waits ADMIT_GAP_S (a few ms, against a prefill of tens of ms), ADMIT_WINDOW_S at most."""
        while self.waiting and len(self.waiting) < len(self.free):
            now, first, last = time.perf_counter(), self.waiting[0].submitted, self.waiting[-1].submitted
            until = min(last + ADMIT_GAP_S, first + ADMIT_WINDOW_S)
            if now >= until:
                return
            self.lock.wait(until - now)

    def _prefill(self, sequences: list[Sequence]) -> None:
        """Run the prompts of the sequences joining at this step (with slots: as one batch)."""
        for sequence in sequences:
            self.metrics.prompt_tokens.inc(len(sequence.prompt))
            sequence.seen = list(sequence.prompt)
            if sequence.sampling.temperature > 0:
                sequence.generator = torch.Generator()
                if sequence.sampling.seed is not None:
                    sequence.generator.manual_seed(sequence.sampling.seed)
                else:
                    sequence.generator.seed()
        if self.slots is not None:
            logits = self.slots.prefill([s.slot for s in sequences], [s.prompt for s in sequences])
            for row, sequence in enumerate(sequences):
                sequence.logits = logits[row]
            return
        device = next(self.model.parameters()).device
        for sequence in sequences:
            last, sequence.cache = self.model.decode(  # type: ignore[operator]
                torch.tensor(sequence.prompt, device=device)[None, :], None)
            sequence.logits = last[0, -1]

    def _step(self) -> None:
        """Choose each running sequence's next token from its logits, then run the model one step for those that
        go on."""
        going = []
        active = [sequence for sequence in self.running if not sequence.cancelled]
        for sequence, token in zip(active, self._choose(active), strict=True):
            assert sequence.logits is not None
            if token == self.eos_id and not sequence.ignore_eos:
                self._finish(sequence, "stop")
                continue
            logprob, top = 0.0, []
            if sequence.logprobs:
                distribution = sequence.logits.float().log_softmax(-1)
                logprob = float(distribution[token])
                best = distribution.topk(sequence.logprobs)
                top = list(zip(best.indices.tolist(), best.values.tolist(), strict=True))
            self._token(sequence, Token(token, logprob, top))
            sequence.seen.append(token)
            sequence.generated += 1
            if sequence.generated >= sequence.sampling.max_tokens or len(sequence.seen) >= self.context:
                self._finish(sequence, "length")
                continue
            going.append(sequence)
        if self.slots is not None and going:
            logits = self.slots.step([s.slot for s in going], [s.seen[-1] for s in going])
            for row, sequence in enumerate(going):
                sequence.logits = logits[row]
        else:
            device = next(self.model.parameters()).device
            for sequence in going:
                logits, sequence.cache = self.model.decode(  # type: ignore[operator]
                    torch.tensor([[sequence.seen[-1]]], device=device), sequence.cache)
                sequence.logits = logits[0, -1]

    def _choose(self, sequences: list[Sequence]) -> list[int]:
        """Each sequence's next token: the greedy ones in one argmax over their stacked logits."""
        plain = [s.sampling.temperature == 0 and s.sampling.repetition_penalty == 1.0 for s in sequences]
        greedy = [s.logits for s, simple in zip(sequences, plain, strict=True) if simple]
        best = iter(torch.stack(greedy).argmax(-1).tolist() if greedy else [])  # type: ignore[arg-type]
        tokens = []
        for sequence, simple in zip(sequences, plain, strict=True):
            if simple:
                tokens.append(next(best))
            else:
                assert sequence.logits is not None
                seen = torch.tensor(sequence.seen, device=sequence.logits.device)
                tokens.append(choose(sequence.logits, seen, sequence.sampling, sequence.generator))
        return tokens

    def _token(self, sequence: Sequence, token: Token) -> None:
        now = time.perf_counter()
        if sequence.generated == 0:
            self.metrics.first_token.observe(now - sequence.submitted)
        else:
            self.metrics.inter_token.observe(now - sequence.last)
        sequence.last = now
        self.metrics.generation_tokens.inc()
        self._send(sequence, token)

    def _finish(self, sequence: Sequence, reason: str) -> None:
        self._send(sequence, Token(None, finish=reason))
        sequence.cancelled = True  # released at the next admission, before the next step

    def _send(self, sequence: Sequence, token: Token) -> None:
        """Queue a token for its request; `_flush` hands the step's tokens to the event loop in one wake-up."""
        if sequence.loop is not None:
            self.outbox.setdefault(sequence.loop, []).append((sequence.events, (sequence.index, token)))

    def _flush(self) -> None:
        outbox, self.outbox = self.outbox, {}
        for loop, items in outbox.items():
            with contextlib.suppress(RuntimeError):  # the event loop closed: the server is gone
                loop.call_soon_threadsafe(_deliver, items)

    def _release(self, sequences: list[Sequence]) -> None:
        """Free the slots of `sequences` (the lock is held)."""
        if not sequences:
            return
        for sequence in sequences:
            self.running.remove(sequence)
            self.free.append(sequence.slot)
            sequence.cache = sequence.logits = None
        self.free.sort()  # the lowest slots first, so the running ones stay contiguous more often
        self.metrics.running.set(len(self.running))


def _deliver(items: list[tuple[asyncio.Queue[tuple[int, Token]], tuple[int, Token]]]) -> None:
    """In the event loop: put each token on its request's queue."""
    for events, item in items:
        events.put_nowait(item)


def scheduler_factory(metrics: GenerationMetrics, max_running: int, max_waiting: int
                      ) -> Callable[[nn.Module, int | None], Scheduler]:
    """Builds schedulers that share the server's metrics and limits."""

    def build(model: nn.Module, eos_id: int | None) -> Scheduler:
        return Scheduler(model, eos_id, max_running=max_running, max_waiting=max_waiting, metrics=metrics)

    return build
