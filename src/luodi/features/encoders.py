"""Per-feature encoders: fit on the training split, transform any split, and round-trip their state as JSON.

Every encoder takes an Arrow column and returns NumPy: `dense` encoders give float32 of shape (rows, width),
concatenated into the model's `dense` input; the category encoder (`index`) gives int64 indices of shape (rows,),
index 0 being the unknown bucket. `tensor` encoders (images, numeric sequences, tokenized text) give a dict of
named arrays, rows first, each a model input of its own (e.g. {name: ids, name + ".mask": mask}); their
`modality` picks the feature encoder module (models/__init__.py), and files they need beside their JSON state
(a tokenizer) go into a folder of their own that travels in the package (`tokenizer/<n>-<name>/`). Columns reach
the encoders already coerced (numbers as float64, see `pipeline.coerce_table`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.columns import as_strings, binary_order, signed_log
from luodi.config import BinaryFeature, CategoryFeature, NumericFeature, TextFeature
from luodi.errors import InputError
from luodi.features.image import ImageEncoder
from luodi.features.sentence import SentenceEncoder
from luodi.features.sequence import SequenceEncoder
from luodi.features.text import TokenEncoder
from luodi.features.unseen import Unseen

WORD_PATTERN = r"[^\w']+"


class Encoder(Protocol):
    name: str
    kind: str  # "dense", "index" or "tensor"
    config: Any  # the feature's config model

    def fit(self, column: pa.ChunkedArray) -> None: ...
    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> Any: ...  # ndarray, or dict for "tensor"
    def width(self) -> int: ...
    def state(self) -> dict[str, Any]: ...


class TensorEncoder(Encoder, Protocol):
    """An encoder whose output is model inputs of its own rather than columns of `dense`.

    Optional methods: `save_assets(directory)` writes files beside the JSON state (the pipeline gives each
    encoder its own folder, `tokenizer/<n>-<feature name>/`), and the constructor then receives `assets=<that folder>`
    together with the saved state; `schema()` returns extra keys for the package's input schema.
    """

    modality: str  # "image", "sequence" or "tokens": which feature-encoder module reads it

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> dict[str, np.ndarray]: ...


def _examples(values: pa.ChunkedArray, mask: pa.ChunkedArray) -> list[str]:
    return [str(value) for value in pc.filter(values, mask).slice(0, 3).to_pylist()]


class NumericEncoder:
    """A number: filled, normalized (z-score, log, min-max or quantile), and either kept as one model input or
    spread over piecewise-linear bins (`encoding: piecewise_linear`, width = the bins)."""

    kind = "dense"

    def __init__(self, config: NumericFeature, fill: float = 0.0, center: float = 0.0, scale: float = 1.0,
                 quantiles: list[float] | None = None, edges: list[float] | None = None):
        self.name, self.config = config.name, config
        self.fill, self.center, self.scale = fill, center, scale
        self.quantiles = np.asarray(quantiles or [], np.float64)  # quantile normalization: the training quantiles
        self.edges = np.asarray(edges or [], np.float64)  # piecewise_linear: bin edges of the normalized values

    def fit(self, column: pa.ChunkedArray) -> None:
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise InputError(f"column {self.name!r} has no numeric values in the training split")
        self.fill = {"mean": float(finite.mean()), "median": float(np.median(finite)), "zero": 0.0}[self.config.missing]
        normalization = self.config.normalization
        scaled = signed_log(finite) if normalization == "log" else finite
        if normalization in ("zscore", "log"):
            std = float(scaled.std())
            self.center, self.scale = float(scaled.mean()), std if std > 1e-12 else 1.0
        elif normalization == "minmax":
            low, high = float(scaled.min()), float(scaled.max())
            self.center, self.scale = low, (high - low) if high - low > 1e-12 else 1.0
        elif normalization == "quantile":
            self.quantiles = np.quantile(finite, np.linspace(0, 1, min(QUANTILES, finite.size)))
        if self.config.encoding == "piecewise_linear":
            normalized = scale_numeric([self], [pa.chunked_array([pa.array(finite)])], expand=False)[:, 0]
            # Observed values as edges (inverted_cdf), so a column of a few levels gets a bin per step between them.
            edges = np.unique(np.quantile(normalized.astype(np.float64), np.linspace(0, 1, self.config.bins + 1),
                                          method="inverted_cdf"))
            self.edges = edges if len(edges) >= 2 else np.array([edges[0], edges[0] + 1.0])

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> np.ndarray:
        return scale_numeric([self], [column])

    def width(self) -> int:
        return len(self.edges) if self.config.encoding == "piecewise_linear" else 1  # the value and its bins

    def piecewise(self, values: np.ndarray) -> np.ndarray:
        """(rows,) normalized values -> (rows, 1 + bins) float32: the value itself, then its bins: bins wholly
        below the value 1, above it 0, its own bin the fraction of it the value covers; the first and last bins
        extend linearly beyond the training range. The value column keeps the plain linear view, which the bins
        alone lost on mnist1d's 40 signal columns (docs/performance.md)."""
        low, high = self.edges[:-1], self.edges[1:]
        bins = (values.astype(np.float64)[:, None] - low) / (high - low)  # (rows, bins)
        bins[:, 1:] = np.maximum(bins[:, 1:], 0.0)
        bins[:, :-1] = np.minimum(bins[:, :-1], 1.0)
        return np.concatenate([values.astype(np.float32)[:, None], bins.astype(np.float32)], axis=1)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"fill": self.fill, "center": self.center, "scale": self.scale}
        if self.quantiles.size:
            state["quantiles"] = [float(value) for value in self.quantiles]
        if self.edges.size:
            state["edges"] = [float(value) for value in self.edges]
        return state


QUANTILES = 1000  # quantile normalization keeps at most this many training quantiles per column


def rank_normal(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Values -> their rank among the training quantiles (ties: the middle of their run, as scikit-learn's
    QuantileTransformer) -> the standard normal's quantile of that rank; ranks stay half a step inside (0, 1), so
    the training extremes map to about +-3.3 (1,000 quantiles), not to infinity."""
    from scipy.special import ndtri

    count = len(quantiles)
    ranks = np.linspace(0.5 / count, 1 - 0.5 / count, count)
    lower = np.interp(values, quantiles, ranks)
    upper = -np.interp(-values, -quantiles[::-1], -ranks[::-1])
    return np.asarray(ndtri(0.5 * (lower + upper)))


NUMERIC_BLOCK_VALUES = 1 << 22  # float64 values per block of numeric_blocks (32 MiB): bounded memory on big tables


def numeric_blocks(columns: list[pa.ChunkedArray]) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float64 (rows, len(columns))): numeric columns side by side, nulls as NaN, a block of rows at a
    time; a table of a few rows (a request) is one block, made without slicing."""
    rows = len(columns[0]) if columns else 0
    step = max(1, NUMERIC_BLOCK_VALUES // max(len(columns), 1))
    for start in range(0, rows, step):
        block = columns if rows <= step else [column.slice(start, step) for column in columns]
        yield start, np.column_stack([column.to_numpy(zero_copy_only=False) for column in block]).astype(
            np.float64, copy=False)


def scale_numeric(encoders: list[NumericEncoder], columns: list[pa.ChunkedArray], expand: bool = True) -> np.ndarray:
    """(rows, width) float32: every numeric column filled and scaled at once, a few NumPy operations per block of
    rows instead of several per column (a 784-column row went from about 7 ms to under 2); then, with `expand`,
    each piecewise_linear column spread over its bins (width: the encoders' widths; without it one per encoder).

    Centering is done in float64, then cast: float32 first would round away the spread of values far from zero
    (epoch timestamps, large ids) before the shift that makes it visible. The arithmetic is the same, value for
    value, as one column at a time.
    """
    fill = np.array([encoder.fill for encoder in encoders], np.float64)
    center = np.array([encoder.center for encoder in encoders], np.float64)
    scale = np.array([encoder.scale for encoder in encoders], np.float64)
    logged = np.array([encoder.config.normalization == "log" for encoder in encoders], bool)
    ranked = [index for index, encoder in enumerate(encoders) if encoder.quantiles.size]
    out = np.empty((len(columns[0]) if columns else 0, len(encoders)), np.float32)
    for start, values in numeric_blocks(columns):
        missing = np.isnan(values)
        if missing.any():
            values = np.where(missing, fill, values)
        if logged.any():
            values = np.where(logged, signed_log(values), values)
        if ranked:
            values = np.array(values)  # a copy: the block may be a view of the table's memory
            for index in ranked:
                values[:, index] = rank_normal(values[:, index], encoders[index].quantiles)
        with np.errstate(over="ignore"):
            scaled = ((values - center) / scale).astype(np.float32)
        overflow = ~np.isfinite(scaled)  # finite inputs only (coerce_table refuses infinities): too large for float32
        if overflow.any():
            row, index = (int(i) for i in np.argwhere(overflow)[0])
            value = float(values[row, index])
            raise InputError(f"column {encoders[index].name!r} row {start + row + 1}: {value!r} is too large for the "
                             "model (beyond float32 after scaling)")
        out[start:start + len(scaled)] = scaled
    if not expand or not any(encoder.edges.size for encoder in encoders):
        return out
    return np.concatenate([encoder.piecewise(out[:, index]) if encoder.edges.size else out[:, index, None]
                           for index, encoder in enumerate(encoders)], axis=1)


class CategoryEncoder:
    kind = "index"

    def __init__(self, config: CategoryFeature, vocabulary: list[str] | None = None):
        self.name, self.config = config.name, config
        self.vocabulary: list[str] = vocabulary or []

    def fit(self, column: pa.ChunkedArray) -> None:
        counts = pc.value_counts(as_strings(column).drop_null())
        values = counts.field("values").to_pylist()
        frequencies = counts.field("counts").to_pylist()
        kept = [(-count, value) for value, count in zip(values, frequencies, strict=True)
                if count >= self.config.min_frequency]
        self.vocabulary = [value for _, value in sorted(kept)[: self.config.max_categories]]

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> np.ndarray:
        strings = as_strings(column)
        positions = pc.index_in(strings, value_set=pa.array(self.vocabulary, pa.string()))
        missed = pc.and_(pc.is_null(positions), pc.is_valid(strings))
        count = pc.sum(missed).as_py() or 0
        if count:
            unseen.add(self.name, count, _examples(strings, missed))
        indices = pc.fill_null(positions, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return indices + 1  # 0 is the unknown / missing bucket

    def cardinality(self) -> int:
        return len(self.vocabulary) + 1

    def embedding_dim(self) -> int:
        return self.config.embedding_dim or min(32, (self.cardinality() + 1) // 2)

    def width(self) -> int:
        return self.embedding_dim()

    def state(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary}


class BinaryEncoder:
    kind = "dense"

    def __init__(self, config: BinaryFeature, values: list[str] | None = None, fill: float = 0.0):
        self.name, self.config = config.name, config
        self.values: list[str] = values or []
        self.fill = fill

    def fit(self, column: pa.ChunkedArray) -> None:
        counts = pc.value_counts(as_strings(column).drop_null())
        values = counts.field("values").to_pylist()
        if len(values) > 2:
            raise InputError(
                f"column {self.name!r} is declared binary but has {len(values)} distinct values in the training "
                f"split (e.g. {values[:3]}); declare it as category"
            )
        if not values:
            raise InputError(f"column {self.name!r} has no values in the training split")
        self.values = binary_order(values) if len(values) == 2 else [values[0], values[0]]
        frequencies = dict(zip(values, counts.field("counts").to_pylist(), strict=True))
        self.fill = float(frequencies.get(self.values[1], 0) > frequencies.get(self.values[0], 0))

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> np.ndarray:
        strings = as_strings(column)
        positive = pc.equal(strings, self.values[1])
        known = pc.is_in(strings, value_set=pa.array(self.values, pa.string()))
        missed = pc.and_(pc.invert(known), pc.is_valid(strings))
        count = pc.sum(missed).as_py() or 0
        if count:
            unseen.add(self.name, count, _examples(strings, missed))
        out = pc.fill_null(pc.cast(positive, pa.float32()), self.fill).to_numpy(zero_copy_only=False)
        out = np.where(missed.to_numpy(zero_copy_only=False), np.float32(self.fill), out)
        return out.astype(np.float32).reshape(-1, 1)

    def width(self) -> int:
        return 1

    def state(self) -> dict[str, Any]:
        return {"values": self.values, "fill": self.fill}


class TextEncoder:
    """Bag of words: one column per vocabulary term (a word, or with `ngrams: 2` also a word pair), fitted on train.

    `weighting: log_count`: log(1 + count), vocabulary = the most frequent terms. `tfidf`: (1 + log count) x idf,
    idf = ln((1 + texts) / (1 + texts with the term)) + 1, each row scaled to length 1 (scikit-learn's
    TfidfVectorizer with sublinear_tf); vocabulary = the terms in the most training texts, at least 2 of them.
    `supervised_tfidf`: tfidf with each term's weight also multiplied by how well it tells a class from the rest
    (`class_ratios`, plus `class_weight_floor`: 1 keeps every term's TF-IDF weight), fitted on the training split's
    labels and kept in `idf`, so transforming needs no labels.
    """

    kind = "dense"

    def __init__(self, config: TextFeature, vocabulary: list[str] | None = None, idf: list[float] | None = None):
        self.name, self.config = config.name, config
        self.vocabulary: list[str] = vocabulary or []
        self.idf = np.asarray(idf or [], np.float32)
        self.supervised = config.weighting == "supervised_tfidf"  # FeaturePipeline.fit passes it the labels

    def _tokens(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        strings = pc.fill_null(as_strings(column), "")
        if self.config.lowercase:
            strings = pc.utf8_lower(strings)
        return pc.split_pattern_regex(strings, WORD_PATTERN)

    def _terms(self, column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
        """Every term of every text, flat, and the row each comes from: words, then (ngrams 2) adjacent pairs."""
        tokens = self._tokens(column).combine_chunks()
        rows = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False).astype(np.int64)
        words = pc.list_flatten(tokens)
        present = pc.not_equal(words, "")
        words, rows = pc.filter(words, present), rows[present.to_numpy(zero_copy_only=False)]
        if self.config.ngrams == 1 or len(words) < 2:
            return words, rows
        same = rows[1:] == rows[:-1]  # a pair never spans two texts
        pairs = pc.filter(pc.binary_join_element_wise(words[:-1], words[1:], " "), pa.array(same))
        return pa.concat_arrays([words, pairs]), np.concatenate([rows, rows[1:][same]])

    def fit(self, column: pa.ChunkedArray, labels: np.ndarray | None = None) -> None:
        """`labels` (rows,) int class of each training text: required by, and only read for, supervised_tfidf."""
        terms, rows = self._terms(column)
        if self.config.weighting == "log_count":
            counts = pc.value_counts(terms)
            pairs = sorted(zip((-c for c in counts.field("counts").to_pylist()), counts.field("values").to_pylist(),
                               strict=True))
            self.vocabulary = [word for _, word in pairs[: self.config.max_tokens]]
            return
        encoded = pc.dictionary_encode(terms)
        names = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        documents = np.bincount(np.unique(rows * len(names) + codes) % len(names), minlength=len(names))
        kept = sorted((-int(count), names[code]) for code, count in enumerate(documents) if count >= 2)
        kept = kept[: self.config.max_tokens]
        self.vocabulary = [term for _, term in kept]
        self.idf = np.array([math.log((1 + len(column)) / (1 + count)) + 1 for count in (-c for c, _ in kept)],
                            np.float32)
        if self.supervised:
            if labels is None:
                raise InputError(f"input_features[{self.name}].weighting supervised_tfidf needs the training labels")
            self.idf *= self.config.class_weight_floor + class_ratios(self.transform(column, Unseen()), labels)

    def transform(self, column: pa.ChunkedArray, unseen: Unseen) -> np.ndarray:
        terms, rows = self._terms(column)
        positions = pc.fill_null(pc.index_in(terms, value_set=pa.array(self.vocabulary, pa.string())), -1)
        columns = positions.to_numpy(zero_copy_only=False).astype(np.int64)
        keep = columns >= 0
        out = np.zeros((len(column), max(1, len(self.vocabulary))), dtype=np.float32)
        np.add.at(out, (rows[keep], columns[keep]), 1.0)
        if self.config.weighting == "log_count":
            return np.log1p(out, out=out)
        counted = out > 0
        out[counted] = 1.0 + np.log(out[counted])
        out *= self.idf
        lengths = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, lengths, out=out, where=lengths > 0)

    def width(self) -> int:
        return max(1, len(self.vocabulary))

    def state(self) -> dict[str, Any]:
        if self.config.weighting == "log_count":
            return {"vocabulary": self.vocabulary}
        return {"vocabulary": self.vocabulary, "idf": [float(value) for value in self.idf]}


def class_ratios(tfidf: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each term's largest |log ratio| between its share of one class's TF-IDF mass and its share of the other
    classes' (one smoothing count each): NBSVM's log-count ratio (Wang and Manning 2012), one-vs-rest for several
    classes. A term spread evenly over the classes gets about 0, one found in a single class a large weight.
    tfidf (rows, terms), labels (rows,) -> (terms,) float32."""
    classes = np.unique(labels)
    weights = np.zeros(tfidf.shape[1], np.float64)
    total = tfidf.sum(axis=0, dtype=np.float64)  # (terms,)
    for label in classes if len(classes) > 2 else classes[:1]:  # two classes: one ratio, the other is its negative
        inside = tfidf[labels == label].sum(axis=0, dtype=np.float64) + 1.0
        outside = total - inside + 2.0
        ratio = np.log((inside / inside.sum()) / (outside / outside.sum()))
        weights = np.maximum(weights, np.abs(ratio))
    return weights.astype(np.float32)


def text_encoder(config: TextFeature, **state: Any) -> Encoder:
    """bag_of_words (what `auto` means outside a whole config): the dense TextEncoder above; encoder: a frozen
    sentence encoder's embedding (features/sentence.py); bpe, wordpiece or checkpoint: token ids for rnn,
    transformer and hf (features/text.py)."""
    if config.tokenizer in ("auto", "bag_of_words"):
        return TextEncoder(config, **state)
    if config.tokenizer == "encoder":
        return SentenceEncoder(config, **state)
    return TokenEncoder(config, **state)


ENCODERS: dict[str, Callable[..., Encoder]] = {
    "numeric": NumericEncoder, "category": CategoryEncoder, "binary": BinaryEncoder, "text": text_encoder,
    # An image encoder's `width` is the images' width in pixels (the image modality's contract), not a method.
    "image": ImageEncoder, "sequence": SequenceEncoder,  # type: ignore[dict-item]
}


def build_encoder(config: Any, state: dict[str, Any] | None = None, assets: Path | None = None) -> Encoder:
    """A fresh encoder for a feature config, or one restored from its saved state and, when it saved files (the
    pipeline made its assets folder), that folder."""
    factory = ENCODERS[config.type]
    if state is not None and assets is not None and Path(assets).is_dir():
        return factory(config, assets=assets, **state)
    return factory(config, **(state or {}))
