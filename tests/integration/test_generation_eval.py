"""The text_generation report scores generated completions of held-out prompt/completion and chat rows (exact match,
chrF) and shows sample generations before and after fine-tuning: the pretrained model's beside the fine-tuned one's
for a checkpoint, and no "before" (with the reason) for a model trained from scratch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from test_generation_hf import PAIRS, checkpoint, config, hf_greedy, write_chat  # noqa: F401  (checkpoint: a fixture)

import luodi.api as api
from luodi.evaluate.completions import chrf, exact_match
from luodi.models.generation import Sampling
from luodi.package import load_package


def write_completions(path: Path) -> Path:
    rows = [{"prompt": f"what is {q}? it is", "completion": f" {a}."} for q, a in PAIRS * 8]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def check_scores(completions: dict[str, Any], package: Any, margin: int) -> None:
    """The reported scores are those of the shown examples (every scored row is shown), and each generated text is
    the package's own greedy completion capped at the reference's length plus the margin."""
    examples = completions["examples"]
    assert completions["rows"] == len(examples) > 0
    assert completions["exact_match"] == sum(exact_match(e["generated"], e["reference"]) for e in examples) / len(
        examples)
    assert abs(completions["chrf"] - sum(chrf(e["generated"], e["reference"]) for e in examples) / len(examples)) < 1e-9
    target = package.pipeline.target
    for example in examples[:2]:
        cap = len(target.tokenizer(example["reference"], add_special_tokens=False)["input_ids"]) + margin
        assert example["generated"] == "".join(package.generate(example["prompt"], Sampling(max_tokens=cap)))


def test_a_lora_report_scores_completions_and_shows_the_base_model_beside_the_fine_tuned(
        checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM

    settings = config(write_completions(tmp_path / "qa.jsonl"), checkpoint, True)
    settings["target"] = {"name": "completion", "task": "text_generation",
                          "text": {"context_length": 32, "evaluate_rows": 4, "evaluate_margin": 3,
                                   "samples": ["what is 2+2? it is", "what is 5+5? it is"]}}
    trained = api.train(settings, home=tmp_path / "home", progress="silent")
    evaluated = api.evaluate(trained.package, tmp_path / "qa.jsonl", home=tmp_path / "home")
    generation = evaluated["details"]["generation"]
    package = load_package(trained.package)
    check_scores(generation["completions"], package, margin=3)
    assert set(generation["completions"]["before"]) == {"exact_match", "chrf"}
    assert "before_omitted" not in generation

    base = AutoModelForCausalLM.from_pretrained(str(checkpoint)).eval()
    target = package.pipeline.target
    for sample in generation["samples"]:
        assert sample["text"] == "".join(package.generate(sample["prompt"], Sampling(max_tokens=40)))
        prompt = target.prompt_ids(sample["prompt"])
        before = hf_greedy(base, prompt, min(40, package.model.context_length - len(prompt)), target.eos_id)
        assert sample["before"] == target.decode(before)  # the pretrained checkpoint's own greedy text
    page = Path(evaluated["report"]).read_text()
    assert ">before fine-tuning<" in page and 'id="completions"' in page


def test_chat_rows_are_completed_from_the_conversation_up_to_the_last_reply(
        checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    settings = config(write_chat(tmp_path / "chat.jsonl"), checkpoint, False)
    settings["target"]["text"].update(evaluate_rows=3, evaluate_margin=2)
    trained = api.train(settings, home=tmp_path / "home", progress="silent")
    evaluated = api.evaluate(trained.package, tmp_path / "chat.jsonl", home=tmp_path / "home", report=True)
    generation = evaluated["details"]["generation"]
    completions = generation["completions"]
    assert [e["prompt"] for e in completions["examples"]] == [f"what is {q}?" for q, _ in PAIRS[:3]]
    assert [e["reference"] for e in completions["examples"]] == [a for _, a in PAIRS[:3]]
    check_scores(completions, load_package(trained.package), margin=2)
    # A full fine-tune's "before" reads the checkpoint's weights again.
    assert "before" in completions and all("before" in sample for sample in generation["samples"])


def test_a_model_from_scratch_has_no_before_column_and_says_why(tmp_path: Path) -> None:
    settings = {"name": "tiny-qa", "data": {"train": str(write_completions(tmp_path / "qa.jsonl")),
                                            "split": {"validation": 0.2, "test": 0.2}},
                "target": {"name": "completion", "task": "text_generation",
                           "text": {"context_length": 32, "vocab_size": 300, "evaluate_rows": 3}},
                "model": {"type": "gpt", "gpt": {"layers": 1, "width": 16, "heads": 2}},
                "trainer": {"epochs": 1, "batch_size": 8}, "runtime": {"device": "cpu", "threads": 1}}
    torch.manual_seed(0)
    trained = api.train(settings, home=tmp_path / "home", progress="silent")
    evaluated = api.evaluate(trained.package, tmp_path / "qa.jsonl", home=tmp_path / "home")
    generation = evaluated["details"]["generation"]
    assert generation["before_omitted"].startswith("trained from scratch")
    assert generation["samples"] and not any("before" in sample for sample in generation["samples"])
    assert "before" not in generation["completions"]
    check_scores(generation["completions"], load_package(trained.package), margin=8)
    page = Path(evaluated["report"]).read_text()
    assert "trained from scratch" in page and ">before fine-tuning<" not in page
