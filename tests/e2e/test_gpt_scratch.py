"""The shipped from-scratch example (examples/gpt-scratch): a small GPT trained through the real CLI on BBC News
articles reaches a test perplexity below an interpolated Kneser-Ney bigram model fitted here on the same training
tokens (the package's own BPE, the same windows and labels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from luodi.package import load_package

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "gpt-scratch"
IGNORE = -100


def token_pairs(package: object, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(previous token, next token) of every labelled position, as the package encodes the file."""
    _, encoded = package.encode(path, str(path), with_target=True)  # type: ignore[attr-defined]
    tokens, labels = encoded.inputs["tokens"], encoded.target
    assert labels is not None
    labelled = labels != IGNORE
    return tokens[labelled], labels[labelled]


def kneser_ney_perplexity(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], vocab: int,
                          discount: float = 0.75) -> float:
    """Interpolated Kneser-Ney bigram: discounted counts, the rest to continuation counts (add-one smoothed, so an
    unseen token has a probability too)."""
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, train, 1)
    seen = counts > 0
    continuation = (seen.sum(axis=0) + 1) / (seen.sum() + vocab)  # (vocab,) how many contexts precede each token
    totals = counts.sum(axis=1)  # (vocab,)
    previous, following = test
    total = totals[previous]
    known = total > 0
    rest = np.where(known, discount * seen[previous].sum(axis=1) / np.maximum(total, 1), 1.0)
    probability = (np.where(known, np.maximum(counts[previous, following] - discount, 0) / np.maximum(total, 1), 0)
                   + rest * continuation[following])
    return float(np.exp(-np.log(probability).mean()))


@pytest.mark.timeout(1800)  # about 2-3 minutes on 2 idle cores; a machine shared with other work takes longer
def test_gpt_beats_a_bigram_model(luodi, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    subprocess.run([sys.executable, str(EXAMPLE / "make_corpus.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    shutil.copy(EXAMPLE / "luodi.yaml", tmp_path)
    # threads "auto", as shipped: `make test` runs two pytest workers, and a fixed 2 would oversubscribe 2 cores
    result = luodi("train", "luodi.yaml", "--json", timeout=1700)
    assert result.code == 0, result.stderr
    trained = result.json()
    package = load_package(Path(trained["package"]))
    vocab = package.pipeline.target.vocab_size
    bigram = kneser_ney_perplexity(token_pairs(package, tmp_path / "train.txt"),
                                   token_pairs(package, tmp_path / "test.txt"), vocab)
    gpt = trained["metrics"]["perplexity"]
    print(f"test perplexity: GPT {gpt:.1f}, Kneser-Ney bigram {bigram:.1f}")
    # Measured with examples/gpt-scratch/luodi.yaml: GPT 83.1, bigram 112.1 (0.74x); clearly below is the goal
    assert gpt < 0.8 * bigram
    generated = luodi("generate", "bbc-gpt", "--prompt", "The government said", "--max-tokens", "20", "--json")
    assert generated.code == 0 and len(generated.json()["text"]) > 20, generated.stderr
