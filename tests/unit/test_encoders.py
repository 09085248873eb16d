"""Encoders: properties over random columns, vocabularies, binary ordering, bag of words, state round trips."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from luodi.columns import binary_order
from luodi.config import BinaryFeature, CategoryFeature, NumericFeature, TextFeature
from luodi.errors import InputError
from luodi.features.encoders import build_encoder
from luodi.features.unseen import Unseen

PROPERTY = settings(max_examples=60, deadline=None, database=None)

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_subnormal=False)
numbers_with_gaps = st.lists(st.one_of(finite, st.none()), min_size=1, max_size=40).filter(
    lambda values: any(value is not None for value in values)
)
labels = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)


def column(values: list[Any], kind: pa.DataType | None = None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, kind)])


def fitted(config: Any, values: list[Any], kind: pa.DataType | None = None) -> Any:
    encoder = build_encoder(config)
    encoder.fit(column(values, kind))
    return encoder


def restored(encoder: Any) -> Any:
    """A fresh encoder from the fitted one's state after a JSON round trip, as a package stores it."""
    return build_encoder(encoder.config, json.loads(json.dumps(encoder.state())))


@PROPERTY
@given(train=numbers_with_gaps, other=numbers_with_gaps,
       missing=st.sampled_from(["mean", "median", "zero"]),
       normalization=st.sampled_from(["zscore", "log", "minmax", "quantile", "none"]),
       encoding=st.sampled_from(["value", "piecewise_linear"]))
def test_numeric_never_yields_nan(train: list[float | None], other: list[float | None], missing: str,
                                  normalization: str, encoding: str) -> None:
    config = NumericFeature(name="x", missing=missing, normalization=normalization,  # type: ignore[arg-type]
                            encoding=encoding, bins=4)  # type: ignore[arg-type]
    encoder = fitted(config, train, pa.float64())
    assert 1 <= encoder.width() <= (5 if encoding == "piecewise_linear" else 1)
    for values in (train, other, [None] * 3):
        out = encoder.transform(column(values, pa.float64()), Unseen())
        assert out.shape == (len(values), encoder.width()) and out.dtype == np.float32
        assert np.isfinite(out).all()


@PROPERTY
@given(values=st.lists(st.floats(min_value=-100, max_value=100, allow_nan=False), min_size=2, max_size=40),
       offset=st.sampled_from([0.0, 1e4, -3e6, 1.7e9]), gaps=st.integers(0, 5))
def test_numeric_zscore_train_has_zero_mean_unit_std(values: list[float], offset: float, gaps: int) -> None:
    assume(np.std(values) > 0.1)
    shifted = [value + offset for value in values]
    encoder = fitted(NumericFeature(name="x"), shifted + [None] * gaps, pa.float64())
    out = encoder.transform(column(shifted, pa.float64()), Unseen()).ravel()
    assert abs(float(out.mean())) < 1e-3
    assert abs(float(out.std()) - 1.0) < 1e-3


def test_numeric_keeps_precision_far_from_zero() -> None:
    """Epoch-millisecond timestamps: float32 before centering would collapse them all to one value."""
    stamps = [1.7e12 + 1000.0 * step for step in range(10)]
    encoder = fitted(NumericFeature(name="t"), stamps, pa.float64())
    out = encoder.transform(column(stamps, pa.float64()), Unseen()).ravel()
    assert np.allclose(np.diff(out), np.diff(out)[0], rtol=1e-4)
    assert abs(float(out.mean())) < 1e-4
    assert abs(float(out.std()) - 1.0) < 1e-4


@pytest.mark.parametrize(("missing", "fill"), [("mean", 2.0), ("median", 1.5), ("zero", 0.0)])
def test_numeric_missing_fill(missing: str, fill: float) -> None:
    config = NumericFeature(name="x", missing=missing, normalization="none")  # type: ignore[arg-type]
    encoder = fitted(config, [1.0, 1.5, 3.5, None], pa.float64())
    assert encoder.transform(column([None], pa.float64()), Unseen())[0, 0] == pytest.approx(fill)


def test_numeric_minmax_maps_train_to_unit_range() -> None:
    encoder = fitted(NumericFeature(name="x", normalization="minmax"), [2.0, 4.0, 6.0], pa.float64())
    assert encoder.transform(column([2.0, 4.0, 6.0], pa.float64()), Unseen()).ravel().tolist() == [0.0, 0.5, 1.0]


def test_numeric_log_z_scores_the_signed_log_and_survives_the_package_state() -> None:
    train = [0.0, 1.0, 10.0, 100.0, 10_000.0, -3.0]
    encoder = fitted(NumericFeature(name="amount", normalization="log"), train, pa.float64())
    logged = np.sign(train) * np.log1p(np.abs(train))
    expected = (logged - logged.mean()) / logged.std()
    np.testing.assert_allclose(encoder.transform(column(train, pa.float64()), Unseen()).ravel(), expected, rtol=1e-5)
    later = column([50.0, None], pa.float64())  # the missing cell takes the raw mean, then the log
    np.testing.assert_array_equal(restored(encoder).transform(later, Unseen()), encoder.transform(later, Unseen()))


def test_numeric_quantile_maps_ranks_onto_a_normal() -> None:
    """Like scikit-learn's QuantileTransformer(output_distribution="normal"): monotone, ties at the middle of their
    run; values beyond the training range stay at its ends."""
    train = [1.0, 2.0, 2.0, 2.0, 3.0, 1000.0, 5.0, 4.0, -7.0]
    encoder = fitted(NumericFeature(name="x", normalization="quantile"), train, pa.float64())
    out = encoder.transform(column([-100.0, -7.0, 2.0, 3.0, 4.5, 1000.0, 1e6], pa.float64()), Unseen()).ravel()
    assert np.all(np.diff(out) >= 0) and out[0] == out[1] and out[-1] == out[-2]
    assert out[2] == pytest.approx(-0.282, abs=0.001)  # the run of 2s, 3rd to 5th of 9: its middle, at 3.5 / 9
    assert out[3] == pytest.approx(0.282, abs=0.001)  # the 6th of 9: the normal's quantile at 5.5 / 9
    assert abs(out[-1]) < 3.0  # the largest training value does not become an outlier of its own


def test_numeric_piecewise_linear_bins() -> None:
    """The value, then bins between the training quantiles: 1 wholly below the value, 0 above, its own bin the
    fraction covered; the first and last bins extend linearly; an integer column gets a bin per step."""
    config = NumericFeature(name="x", normalization="none", encoding="piecewise_linear", bins=4)
    encoder = fitted(config, [0.0, 1.0, 2.0, 3.0, 4.0], pa.float64())
    assert encoder.edges.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and encoder.width() == 5
    out = encoder.transform(column([2.5, 0.0, -1.0, 6.0, None], pa.float64()), Unseen())
    np.testing.assert_allclose(out, [[2.5, 1, 1, 0.5, 0], [0, 0, 0, 0, 0], [-1, -1, 0, 0, 0], [6, 1, 1, 1, 3],
                                     [2, 1, 1, 0, 0]])  # the missing cell: the mean, 2
    levels = fitted(NumericFeature(name="x", encoding="piecewise_linear", bins=64), [0.0, 1.0, 2.0] * 5, pa.float64())
    assert levels.width() == 3  # three distinct values: two steps, however many bins were allowed
    constant = fitted(NumericFeature(name="x", encoding="piecewise_linear"), [3.0, 3.0], pa.float64())
    assert constant.width() == 2 and np.isfinite(constant.transform(column([3.0, 9.0]), Unseen())).all()


def test_numeric_constant_column_does_not_divide_by_zero() -> None:
    encoder = fitted(NumericFeature(name="x"), [5.0, 5.0], pa.float64())
    assert encoder.transform(column([5.0, 6.0], pa.float64()), Unseen()).ravel().tolist() == [0.0, 1.0]


def test_numeric_without_values_is_refused() -> None:
    with pytest.raises(InputError, match="'x' has no numeric values"):
        fitted(NumericFeature(name="x"), [None, None], pa.float64())


@PROPERTY
@given(train=st.lists(labels, min_size=1, max_size=30), other=st.lists(labels, max_size=30))
def test_category_maps_train_to_one_based_and_unseen_to_zero(train: list[str], other: list[str]) -> None:
    encoder = fitted(CategoryFeature(name="c"), train, pa.string())
    n = len(set(train))
    assert encoder.cardinality() == n + 1
    seen = encoder.transform(column(train, pa.string()), Unseen())
    assert seen.dtype == np.int64
    assert set(seen.tolist()) == set(range(1, n + 1))
    unseen = Unseen()
    out = encoder.transform(column(other, pa.string()), unseen)
    novel = [value for value in other if value not in set(train)]
    assert out.tolist() == [0 if value in novel else int(seen[train.index(value)]) for value in other]
    assert unseen.counts == ({"c": len(novel)} if novel else {})


@PROPERTY
@given(train=st.lists(st.one_of(labels, st.none()), min_size=1, max_size=30))
def test_category_state_round_trip(train: list[str | None]) -> None:
    encoder = fitted(CategoryFeature(name="c"), train, pa.string())
    probe = column(train + ["never seen", None], pa.string())
    assert np.array_equal(encoder.transform(probe, Unseen()), restored(encoder).transform(probe, Unseen()))


def test_category_missing_is_zero_and_not_unseen() -> None:
    encoder = fitted(CategoryFeature(name="c"), ["a", "b"], pa.string())
    unseen = Unseen()
    assert encoder.transform(column([None, "b"], pa.string()), unseen).tolist() == [0, 2]
    assert unseen.counts == {}


def test_category_vocabulary_by_frequency_with_limits() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    assert fitted(CategoryFeature(name="c"), values).vocabulary == ["a", "b", "c", "d"]
    assert fitted(CategoryFeature(name="c", min_frequency=2), values).vocabulary == ["a", "b", "c"]
    assert fitted(CategoryFeature(name="c", max_categories=2), values).vocabulary == ["a", "b"]


def test_category_integer_codes_and_embedding_dim() -> None:
    encoder = fitted(CategoryFeature(name="c"), [3, 1, 2, 3])
    assert encoder.transform(column([3, 7]), Unseen()).tolist() == [1, 0]
    assert encoder.embedding_dim() == 2  # min(32, (4 + 1) // 2)
    assert fitted(CategoryFeature(name="c", embedding_dim=5), [1, 2]).width() == 5


def test_unseen_messages_keep_three_examples() -> None:
    encoder = fitted(CategoryFeature(name="city"), ["Oslo"])
    unseen = Unseen()
    encoder.transform(column(["Rome", "Lima", "Kyiv", "Pune"]), unseen)
    encoder.transform(column(["Doha"]), unseen)
    assert unseen.counts == {"city": 5}
    assert unseen.examples == {"city": ["Rome", "Lima", "Kyiv"]}
    assert "5 value(s) not seen in training" in unseen.messages()[0]


@pytest.mark.parametrize(("distinct", "positive"), [
    (["yes", "no"], "yes"), (["no", "yes"], "yes"), (["True", "False"], "True"), (["false", "true"], "true"),
    (["0", "1"], "1"), (["1", "0"], "1"), (["Y", "N"], "Y"), (["1", "no"], "1"), (["apple", "pear"], "pear"),
])
def test_binary_order(distinct: list[str], positive: str) -> None:
    assert binary_order(distinct)[1] == positive


@pytest.mark.parametrize(("values", "kind", "expected"), [
    (["yes", "no", "yes"], pa.string(), [1.0, 0.0, 1.0]),
    ([True, False, True], pa.bool_(), [1.0, 0.0, 1.0]),
    ([1, 0, 1], pa.int64(), [1.0, 0.0, 1.0]),
    ([1.0, 0.0, 1.0], pa.float64(), [1.0, 0.0, 1.0]),
    (["pear", "apple", "pear"], pa.string(), [1.0, 0.0, 1.0]),
])
def test_binary_encodes_positive_as_one(values: list[Any], kind: pa.DataType, expected: list[float]) -> None:
    encoder = fitted(BinaryFeature(name="b"), values, kind)
    assert encoder.transform(column(values, kind), Unseen()).ravel().tolist() == expected


def test_binary_third_value_is_unseen_and_missing_takes_the_mode() -> None:
    encoder = fitted(BinaryFeature(name="b"), ["yes", "yes", "no"])
    unseen = Unseen()
    out = encoder.transform(column(["maybe", None, "no"], pa.string()), unseen).ravel()
    assert out.tolist() == [1.0, 1.0, 0.0]  # the training mode is "yes"
    assert unseen.counts == {"b": 1} and unseen.examples == {"b": ["maybe"]}


def test_binary_state_round_trip() -> None:
    encoder = fitted(BinaryFeature(name="b"), ["no", "no", "yes", None])
    probe = column(["yes", "no", None, "other"], pa.string())
    assert np.array_equal(encoder.transform(probe, Unseen()), restored(encoder).transform(probe, Unseen()))


def test_binary_with_three_values_is_refused() -> None:
    with pytest.raises(InputError, match="declare it as category"):
        fitted(BinaryFeature(name="b"), ["a", "b", "c"])


def test_text_counts_words() -> None:
    encoder = fitted(TextFeature(name="t"), ["The cat and the hat", "a cat"])
    assert encoder.vocabulary[:2] == ["cat", "the"]
    out = encoder.transform(column(["the THE cat, dog", None]), Unseen())
    assert out.shape == (2, encoder.width())
    counts = dict(zip(encoder.vocabulary, np.expm1(out[0]).round(4).tolist(), strict=True))
    assert counts["the"] == 2.0 and counts["cat"] == 1.0 and sum(counts.values()) == 3.0
    assert not out[1].any()


def test_text_vocabulary_limit_and_case() -> None:
    encoder = fitted(TextFeature(name="t", max_tokens=1, lowercase=False), ["b b B a"])
    assert encoder.vocabulary == ["b"]


@PROPERTY
@given(train=st.lists(st.text(max_size=20), min_size=1, max_size=10), probe=st.lists(st.text(max_size=20), max_size=5))
def test_text_state_round_trip(train: list[str], probe: list[str]) -> None:
    encoder = fitted(TextFeature(name="t", max_tokens=8), train, pa.string())
    values = column(train + probe, pa.string())
    out = encoder.transform(values, Unseen())
    assert np.isfinite(out).all() and (out >= 0).all()
    assert np.array_equal(out, restored(encoder).transform(values, Unseen()))


@PROPERTY
@given(train=numbers_with_gaps, normalization=st.sampled_from(["zscore", "log", "minmax", "quantile", "none"]),
       encoding=st.sampled_from(["value", "piecewise_linear"]))
def test_numeric_state_round_trip(train: list[float | None], normalization: str, encoding: str) -> None:
    config = NumericFeature(name="x", normalization=normalization, encoding=encoding)  # type: ignore[arg-type]
    encoder = fitted(config, train, pa.float64())
    probe = column(train + [None, 12.5], pa.float64())
    assert np.array_equal(encoder.transform(probe, Unseen()), restored(encoder).transform(probe, Unseen()))


def test_tfidf_words_and_pairs_match_scikit_learn() -> None:
    """weighting tfidf, ngrams 2: scikit-learn's TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    on the same tokens, column for column."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["the film was not good", "a good film", "not a good match, not at all", "the match was good",
             "Good good GOOD film", "", None, "the vote was not close"]
    column = pa.chunked_array([pa.array(texts, pa.string())])
    encoder = build_encoder(TextFeature(name="t", ngrams=2, weighting="tfidf", max_tokens=1000))
    encoder.fit(column)
    ours = encoder.transform(column, Unseen())
    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, token_pattern=r"[\w']+")
    theirs = reference.fit_transform([text or "" for text in texts]).toarray()
    order = [reference.vocabulary_[term] for term in encoder.vocabulary]  # type: ignore[attr-defined]
    assert sorted(encoder.vocabulary) == sorted(reference.vocabulary_)  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours, theirs[:, order], atol=1e-6)
    restored = build_encoder(encoder.config, json.loads(json.dumps(encoder.state())))
    np.testing.assert_array_equal(restored.transform(column, Unseen()), ours)


def test_class_ratios_weigh_terms_that_tell_the_classes_apart() -> None:
    """NBSVM's log-count ratio: a term of one class only weighs most, a term spread evenly about 0; two classes
    give one ratio (the other class's is its negative), several the largest one-vs-rest ratio."""
    from luodi.features.encoders import class_ratios

    tfidf = np.array([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])  # (rows, terms)
    weights = class_ratios(tfidf, np.array([0, 0, 1, 1]))
    expected = np.log((3 / 6) / (1 / 6))  # term 0: 2 + 1 of class 0's 6 (smoothed) against 0 + 1 of the rest's 6
    np.testing.assert_allclose(weights, [expected, 0.0, expected], atol=1e-6)
    three = class_ratios(np.eye(3), np.array([0, 1, 2]))
    assert three.shape == (3,) and np.allclose(three, three[0]) and three[0] > 0


def test_supervised_tfidf_keeps_its_class_weights_in_the_state() -> None:
    """supervised_tfidf: the tfidf columns times the class ratios, rows of length 1; the weights are folded into
    `idf`, so a restored encoder (a package, the server) transforms without labels; fitting without labels fails."""
    from luodi.features.encoders import class_ratios

    texts = ["not good at all", "good food", "very good food", "not bad", "bad food", "not good food", "bad bad"]
    labels = np.array([0, 1, 1, 1, 0, 0, 0])
    values = column(texts)
    plain = build_encoder(TextFeature(name="t", ngrams=2, weighting="tfidf"))
    plain.fit(values)
    encoder = build_encoder(TextFeature(name="t", ngrams=2, weighting="supervised_tfidf"))
    encoder.fit(values, labels)
    tfidf = plain.transform(values, Unseen())
    weighted = tfidf * class_ratios(tfidf, labels)
    expected = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(encoder.transform(values, Unseen()), expected, atol=1e-6)
    np.testing.assert_array_equal(restored(encoder).transform(values, Unseen()), encoder.transform(values, Unseen()))
    with pytest.raises(InputError, match=r"input_features\[t\].weighting supervised_tfidf needs the training labels"):
        build_encoder(encoder.config).fit(values)


def test_a_class_weight_floor_keeps_the_terms_spread_over_the_classes() -> None:
    """`class_weight_floor: 1`: each term's TF-IDF weight times 1 + its class ratio, so a term spread evenly over the
    classes keeps its TF-IDF weight instead of falling to 0; saved in `idf` like the ratios alone."""
    from luodi.features.encoders import class_ratios

    texts = ["good food", "good film", "bad food", "bad film", "good day", "bad day"]
    labels = np.array([1, 1, 0, 0, 1, 0])
    values = column(texts)
    plain = build_encoder(TextFeature(name="t", weighting="tfidf"))
    plain.fit(values)
    floored = build_encoder(TextFeature(name="t", weighting="supervised_tfidf", class_weight_floor=1.0))
    floored.fit(values, labels)
    tfidf = plain.transform(values, Unseen())
    weighted = tfidf * (1.0 + class_ratios(tfidf, labels))
    expected = weighted / np.linalg.norm(weighted, axis=1, keepdims=True)
    out = floored.transform(values, Unseen())
    np.testing.assert_allclose(out, expected, atol=1e-6)
    food = floored.vocabulary.index("food")  # once in each class: ratio 0
    assert out[0, food] > 0
    zero = build_encoder(TextFeature(name="t", weighting="supervised_tfidf"))
    zero.fit(values, labels)
    assert zero.transform(values, Unseen())[0, food] == 0
    np.testing.assert_array_equal(restored(floored).transform(values, Unseen()), out)
