"""The numeric-sequence feature: text or list cells to (rows, length, channels), errors naming the row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import SequenceFeature
from luodi.errors import InputError
from luodi.features.encoders import build_encoder
from luodi.features.sequence import SequenceEncoder, coerce_sequence
from luodi.features.unseen import Unseen


def column(values: list) -> pa.ChunkedArray:  # type: ignore[type-arg]
    return pa.chunked_array([pa.array(values)])


def fitted(values: list, **config: object) -> tuple[SequenceEncoder, pa.ChunkedArray]:  # type: ignore[type-arg]
    feature = SequenceFeature(name="signal", **config)  # type: ignore[arg-type]
    coerced = coerce_sequence(column(values), feature, "data.csv")
    encoder = SequenceEncoder(feature)
    encoder.fit(coerced)
    return encoder, coerced


def test_text_cells_with_spaces_commas_and_brackets_read_alike() -> None:
    feature = SequenceFeature(name="signal")
    coerced = coerce_sequence(column(["1 2 3", "4,5,6", "[7, 8, 9]", " 1e-1  2 3 "]), feature, "data.csv")
    assert coerced.to_pylist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [0.1, 2.0, 3.0]]


def test_output_is_rows_length_channels_normalized_with_train_statistics() -> None:
    encoder, coerced = fitted([[0.0, 2.0], [4.0, 6.0]])
    assert (encoder.length, encoder.channels) == (2, 1)
    assert encoder.mean == [3.0] and encoder.std == pytest.approx([np.std([0, 2, 4, 6])])
    out = encoder.transform(coerced, Unseen())["signal"]
    assert out.shape == (2, 2, 1) and out.dtype == np.float32
    assert out.reshape(-1) == pytest.approx((np.array([0, 2, 4, 6]) - 3) / np.std([0, 2, 4, 6]))


def test_nested_lists_are_channels() -> None:
    encoder, coerced = fitted([[[1, 10], [2, 20], [3, 30]], [[4, 40], [5, 50], [6, 60]]])
    assert (encoder.length, encoder.channels) == (3, 2)
    assert encoder.mean == pytest.approx([3.5, 35.0])
    assert encoder.transform(coerced, Unseen())["signal"].shape == (2, 3, 2)


def test_a_row_of_another_length_is_an_error_naming_the_file_row() -> None:
    with pytest.raises(InputError, match=r"data.csv: column 'signal' row 3 has 2 values where the others have 3"):
        coerce_sequence(column(["1 2 3", "1 2 3", "1 2"]), SequenceFeature(name="signal"), "data.csv")
    with pytest.raises(InputError, match="row 1 has 3 values where the others have 4"):
        coerce_sequence(column(["1 2 3"]), SequenceFeature(name="signal", length=4), "data.csv")


def test_pad_and_truncate_when_configured() -> None:
    encoder, _ = fitted([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], length=3, on_length_mismatch="pad", normalization="none")
    new = coerce_sequence(column([[5.0], [1.0, 2.0, 3.0, 4.0]]), encoder.config, "new.csv")
    out = encoder.transform(new, Unseen())["signal"][..., 0]
    assert out.tolist() == [[5.0, 0.0, 0.0], [1.0, 2.0, 3.0]]


def test_new_data_of_another_length_than_trained_names_the_row() -> None:
    encoder, _ = fitted([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    new = coerce_sequence(column([[1.0, 2.0]]), encoder.config, "new.csv")
    with pytest.raises(InputError, match="row 1 has 2 values; the model was trained on sequences of 3"):
        encoder.transform(new, Unseen())


@pytest.mark.parametrize(("values", "message"), [
    (["1 2 3", "1 x 3"], r"row 2 holds 'x', not a number"),
    (["1 2 3", None], "row 2 is missing"),
    ([[1.0, 2.0], [1.0, float("nan")]], "row 2 holds nan"),
    ([[1.0, 2.0], [float("inf"), 1.0]], "row 2 holds inf"),
    ([1.5, 2.5], "holds double values"),
])
def test_bad_cells_name_the_row(values: list, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError, match=message):
        coerce_sequence(column(values), SequenceFeature(name="signal"), "data.csv")


def test_state_round_trips_through_json() -> None:
    import json

    encoder, coerced = fitted([[0.0, 1.0, 5.0], [2.0, 3.0, 4.0]])
    restored = build_encoder(encoder.config, json.loads(json.dumps(encoder.state())))
    again = restored.transform(coerced, Unseen())["signal"]
    assert np.array_equal(again, encoder.transform(coerced, Unseen())["signal"])
    assert restored.schema()["length"] == 3  # type: ignore[attr-defined]
