"""How many of the training file's rows a TF-IDF model sees, and what that is worth: logistic regression (C = 1) on
luodi's own TF-IDF columns (weighting tfidf, and supervised_tfidf), fitted on the rows of luodi's training split
(70% of the file, as the config `luodi init` writes splits it), on training + validation (85%) and on the whole
file (what the baselines of quality.py and the defaults tests fit on), scored on the held-out test file.

    .venv/bin/python benchmarks/text_rows.py reviews bbc_news austen

The sets are the text sets of benchmarks/init_variants.py (3,000 training and at most 1,500 test rows). Figures:
docs/performance.md, "Text: an L2 penalty from the rows, terms weighed by class".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import init_variants  # noqa: E402
import quality  # noqa: E402


def main(names: list[str]) -> None:
    from sklearn.linear_model import LogisticRegression

    from luodi.config import SplitConfig, TextFeature
    from luodi.data.split import split_indices
    from luodi.features.encoders import TextEncoder
    from luodi.features.unseen import Unseen

    for name in names:
        split = quality.split_rows(init_variants.REAL_SETS[name], 3_000, 1_500)
        texts = split.train[quality.TEXT_COLUMN].astype(str).to_numpy()
        tests = pa.chunked_array([pa.array(split.test[quality.TEXT_COLUMN].astype(str).tolist())])
        classes, labels = np.unique(split.train[quality.TARGET].astype(str), return_inverse=True)
        truth = np.searchsorted(classes, split.test[quality.TARGET].astype(str))
        train, validation, _ = split_indices(len(texts), SplitConfig(validation=0.15, test=0.15, seed=42), labels)
        for weighting in ("tfidf", "supervised_tfidf"):
            scores = []
            for rows in (train, np.sort(np.concatenate([train, validation])), np.arange(len(texts))):
                encoder = TextEncoder(TextFeature(name="text", ngrams=2, weighting=weighting, max_tokens=20_000))
                column = pa.chunked_array([pa.array(texts[rows].tolist())])
                encoder.fit(column, labels[rows])
                model = LogisticRegression(C=1.0, max_iter=3_000).fit(encoder.transform(column, Unseen()),
                                                                       labels[rows])
                scores.append(float((model.predict(encoder.transform(tests, Unseen())) == truth).mean()))
            print(f"{name} {weighting:17s} logistic regression on 70% / 85% / 100% of the training file's rows: "
                  + " / ".join(f"{score:.4f}" for score in scores), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["reviews"])
