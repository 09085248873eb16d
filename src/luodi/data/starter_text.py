"""`luodi init` for free text: TF-IDF words and word pairs (weighed by class for a classifier of texts alone) or a
sentence encoder's frozen embedding, into a one-layer MLP; Adam with an L2 penalty from the rows for texts alone."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from luodi.data.infer import ColumnGuess
from luodi.data.starter_core import Starter, mlp_epochs, mlp_plan, train_rows_of


def text_plan(starter: Starter, outputs: int) -> Starter:
    """A table with text columns: one hidden layer over the encoder's embedding or the TF-IDF terms."""
    rows = starter.rows
    if any(column.options.get("encoder") for column in starter.features):
        # a few hundred dense columns per text, computed once: a plain MLP over them
        chosen = mlp_plan(starter, [256], 0.2, 0.001, {
            "model": "the encoder's frozen embedding (computed once, cached) into one hidden layer",
            "lr": "Adam's usual rate; dropped 3x when validation stalls"})
        return mlp_epochs(chosen, outputs)
    # TF-IDF terms are thousands of sparse columns: one wide layer, dropout, a larger step
    alone = texts_only(starter.columns)  # measured on texts alone, not beside table columns
    l2 = f"; {_text_l2(rows)[1]}" if alone else ""
    chosen = mlp_plan(starter, [128], 0.3, 0.003, {
        "model": "TF-IDF words and word pairs into one hidden layer (beat a 2-layer Transformer on BBC News: "
                 "0.987 against 0.953, docs/text.md)",
        "lr": f"rows of TF-IDF have length 1: small inputs take a larger step{l2}"})
    if alone:
        chosen = replace(chosen, optimizer="adam", weight_decay=_text_l2(rows)[0])
    return mlp_epochs(chosen, outputs)


def texts_only(columns: list[ColumnGuess]) -> bool:
    """Every kept feature is a text column (what the text defaults were measured on)."""
    kept = [column.type for column in columns if column.type is not None]
    return bool(kept) and all(kind == "text" for kind in kept)


def _text_l2(rows: int) -> tuple[float, str]:
    """The L2 penalty of a TF-IDF model, 1 / training rows (logistic regression's C = 1 in scikit-learn's scaling),
    and why: Adam's coupled weight decay on the mean loss is that penalty. Measured against AdamW's decoupled 0.01
    on the generated reviews, Austen and BBC News (docs/performance.md, 'Text: an L2 penalty from the rows, terms
    weighed by class')."""
    penalty = float(f"{1 / train_rows_of(rows):.2g}")
    return penalty, f"weight_decay: L2 of 1/{train_rows_of(rows)} training rows, as logistic regression's C = 1"


TEXT_MEMORY_VALUES = 100_000_000  # rows x TF-IDF terms, as float32: 400 MB at most
# supervised_tfidf's terms keep their TF-IDF weight, times 1 + their class ratio: on a few hundred training rows most
# terms are rare, their ratios near 0, and a floor of 0 drops them (docs/performance.md, "Text: small training sets")
CLASS_WEIGHT_FLOOR = 1
MOST_TERMS = 20_000


def text_options(rows: int, by_class: bool) -> dict[str, Any]:
    """A text column as TF-IDF words and word pairs; the vocabulary is every term of 2+ training texts, capped so
    that rows x terms fit in memory. For a classifier each term is also weighed by how well it tells a class from
    the rest (supervised_tfidf, NBSVM's log-count ratio): generated reviews 0.779 -> 0.787 (three seeds: +0.007 to
    +0.012), Austen 0.846 either way (its own test split's log loss 0.63 -> 0.51), BBC News 0.986 -> 0.987
    (docs/performance.md). The weight is 1 + the ratio (`class_weight_floor: 1`), so that the many rare terms of
    a few hundred training rows, whose ratios are near 0, are not dropped (docs/performance.md, "Text: small
    training sets")."""
    terms = max(1000, min(MOST_TERMS, TEXT_MEMORY_VALUES // max(rows, 1)) // 1000 * 1000)
    if not by_class:
        return {"ngrams": 2, "weighting": "tfidf", "max_tokens": terms}
    return {"ngrams": 2, "weighting": "supervised_tfidf", "class_weight_floor": CLASS_WEIGHT_FLOOR, "max_tokens": terms}
