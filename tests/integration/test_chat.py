"""`luodi chat` on a tiny GPT trained here on chat data, driven through piped stdin: replies stream as `luodi generate`
writes them for the same conversation, /reset forgets it, /exit and end of input end it, the oldest turns are
dropped (and said so) to stay within the context, and Ctrl-C exits without a traceback."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import luodi.api as api

pytestmark = pytest.mark.slow  # trains a model and starts the CLI in subprocesses

PLACES = {"fish": "the blue pond", "dog": "the old barn", "cat": "the warm mat", "bird": "the tall tree"}
LUODI = str(Path(sys.executable).parent / "luodi")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A GPT (2 layers, width 32, context 64) that learned to answer 'where is the <animal>?' with its place."""
    folder = tmp_path_factory.mktemp("chat")
    rng = np.random.default_rng(0)
    names = list(PLACES)
    with (folder / "chats.jsonl").open("w", encoding="utf-8") as handle:
        for _ in range(500):
            animal = names[rng.integers(len(names))]
            handle.write(json.dumps({"messages": [{"role": "user", "content": f"where is the {animal}?"},
                                                  {"role": "assistant", "content": PLACES[animal]}]}) + "\n")
    config = {"name": "helper", "data": {"train": str(folder / "chats.jsonl")},
              "target": {"name": "messages", "task": "text_generation",
                         "text": {"vocab_size": 300, "context_length": 64}},
              "model": {"type": "gpt", "gpt": {"layers": 2, "width": 32, "heads": 2}},
              "trainer": {"epochs": 6, "batch_size": 16, "optimizer": {"lr": 0.005},
                          "scheduler": {"warmup_steps": 10}},
              "runtime": {"device": "cpu", "threads": 2}, "report": {"enabled": False}}
    result = api.train(config, home=folder / "home", progress="silent")
    assert result.package is not None
    return str(result.package)


def chat(package: str, lines: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LUODI, "chat", package, "--max-tokens", "12", *options], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=120)


def chat_here(package: str, lines: list[str], *options: str, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The same command in this process (cheaper than a subprocess): stdin from `lines`."""
    from luodi.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    with pytest.raises(SystemExit) as exited:
        main(["chat", package, "--max-tokens", "12", *options])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_turns_stream_what_generate_writes_for_the_conversation(package: str, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    first = "".join(api.generate(package, "where is the fish?", max_tokens=12))
    assert first.startswith("the blue")  # the model learned the task: what follows checks the conversation
    history = [{"role": "user", "content": "where is the fish?"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "where is the dog?"}]
    second = "".join(api.generate(package, history, max_tokens=12))
    alone = "".join(api.generate(package, "where is the cat?", max_tokens=12))
    done = chat(package, ["where is the fish?", "", "where is the dog?", "/reset", "where is the cat?", "/exit",
                          "where is the bird?"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [first, second, alone]  # after /exit nothing more is read
    assert "conversation forgotten" in done.stderr and "Traceback" not in done.stderr

    system = "".join(api.generate(package, [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "where is the bird?"}], max_tokens=12))
    code, out, _ = chat_here(package, ["where is the bird?"], "--system", "be brief", "--json",
                             monkeypatch=monkeypatch, capsys=capsys)  # ends at the end of input
    assert code == 0 and json.loads(out) == {"user": "where is the bird?", "reply": system, "dropped": 0}
    code, _, err = chat_here(package, [], "--top-p", "0", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "top_p" in err


def test_old_turns_are_dropped_and_a_message_too_long_is_refused(package: str) -> None:
    questions = [f"where is the {animal}?" for animal in ["fish", "dog", "cat", "bird", "fish", "dog"]]
    done = chat(package, ["fish " * 80, *questions])
    assert done.returncode == 0 and len(done.stdout.splitlines()) == len(questions), done.stderr
    assert "error: the message is" in done.stderr and "keep 12 for the reply" in done.stderr
    assert "dropped the oldest 1 turn to stay within the model's context of 64 tokens" in done.stderr

    conversation = api.chat(package, max_tokens=12)
    for question, line in zip(questions, done.stdout.splitlines(), strict=True):
        turn = conversation.send(question)
        kept = list(conversation.history)
        reply = "".join(turn)
        assert reply == line == "".join(api.generate(package, kept, max_tokens=12))  # the kept turns, as generate
        assert turn.prompt_tokens + 12 <= 64
    assert len(conversation.history) < 2 * len(questions)


def test_ctrl_c_exits_without_a_traceback(package: str) -> None:
    # A shell's background job starts with SIGINT ignored, and Python keeps an ignored SIGINT ignored: give the
    # child the default disposition, as a terminal would.
    process = subprocess.Popen([LUODI, "chat", package, "--max-tokens", "12"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("where is the dog?\n")
    process.stdin.flush()
    assert process.stdout.readline() == "".join(api.generate(package, "where is the dog?", max_tokens=12)) + "\n"
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in errors
