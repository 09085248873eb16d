"""The feature pipeline: coercion errors name column, row and value; state JSON round trip; strict mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from luodi.config import LuodiConfig, validate_config
from luodi.data.sources import read_table
from luodi.errors import InputError
from luodi.features.pipeline import FeaturePipeline, coerce_table
from luodi.features.unseen import Unseen


def make_config(task: str = "binary") -> LuodiConfig:
    return validate_config({
        "name": "tiny",
        "data": {"train": "train.csv"},
        "target": {"name": "label", "task": task},
        "input_features": [
            {"name": "age", "type": "numeric"}, {"name": "city", "type": "category"},
            {"name": "member", "type": "binary"}, {"name": "note", "type": "text", "max_tokens": 6},
            {"name": "zone", "type": "category"},
        ],
    })


def make_table(rows: int = 40, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    age[::7] = np.nan
    return pa.table({
        "age": pa.array(age, from_pandas=True),
        "city": rng.choice(["Oslo", "Bergen", "Tromso"], rows).tolist(),
        "member": rng.choice(["yes", "no"], rows).tolist(),
        "note": [" ".join(rng.choice(["late", "paid", "new", "vip", "refund"], 3)) for _ in range(rows)],
        "zone": rng.integers(1, 4, rows),
        "label": rng.choice(["churn", "stay"], rows).tolist(),
    })


def encode(pipeline: FeaturePipeline, table: pa.Table, strict: bool = False) -> Any:
    return pipeline.transform(coerce_table(table, pipeline.config, "data", True), "data", True, strict)


def test_coerce_text_in_numeric_column_names_column_row_and_value() -> None:
    table = pa.table({"age": ["31", " 42 ", "forty", "7"], "city": ["a"] * 4, "member": ["yes"] * 4,
                      "note": ["x"] * 4, "zone": [1] * 4, "label": ["a", "b", "a", "b"]})
    with pytest.raises(InputError) as caught:
        coerce_table(table, make_config(), "new.csv", with_target=True)
    assert str(caught.value) == "new.csv: column 'age' is numeric but row 3 holds 'forty', not a number"


def test_coerce_parses_numeric_text_and_integers() -> None:
    table = make_table().set_column(0, "age", pa.array(["31", " 42 ", None] + ["7"] * 37))
    coerced = coerce_table(table, make_config(), "data", with_target=True)
    assert coerced.column("age").type == pa.float64()
    assert coerced.column("age").to_pylist()[:3] == [31.0, 42.0, None]
    integers = coerce_table(make_table().set_column(0, "age", pa.array(range(40))), make_config(), "d", True)
    assert integers.column("age").type == pa.float64()


def test_coerce_missing_column_names_it() -> None:
    table = make_table().drop_columns(["city"]).append_column("cty", pa.array(["x"] * 40))
    with pytest.raises(InputError) as caught:
        coerce_table(table, make_config(), "new.csv", with_target=False)
    assert "new.csv: column 'city' is missing (did you mean 'cty'?)" in str(caught.value)


def test_coerce_missing_target_only_when_needed() -> None:
    table = make_table().drop_columns(["label"])
    coerce_table(table, make_config(), "data", with_target=False)
    with pytest.raises(InputError, match="column 'label' is missing"):
        coerce_table(table, make_config(), "data", with_target=True)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), "inf"])
def test_coerce_infinite_values(bad: Any) -> None:
    values = [1.0, 2.0, bad] if not isinstance(bad, str) else ["1", "2", bad]
    table = pa.table({"age": values, "city": ["a"] * 3, "member": ["y"] * 3, "note": ["x"] * 3,
                      "zone": [1] * 3, "label": ["a", "b", "a"]})
    with pytest.raises(InputError, match="column 'age' row 3 is infinite"):
        coerce_table(table, make_config(), "data", with_target=True)


def test_encoded_shapes_and_types() -> None:
    table = make_table()
    pipeline = FeaturePipeline.fit(make_config(), coerce_table(table, make_config(), "train", True))
    encoded = encode(pipeline, table)
    assert len(encoded) == 40
    assert encoded.inputs["dense"].shape == (40, pipeline.dense_width())
    assert encoded.inputs["dense"].dtype == np.float32
    assert encoded.inputs["categorical"].shape == (40, 2)
    assert encoded.inputs["categorical"].dtype == np.int64
    assert not np.isnan(encoded.inputs["dense"]).any()
    assert pipeline.categories() == [(4, 2), (4, 2)]
    assert encoded.target is not None and set(encoded.target.tolist()) == {0.0, 1.0}


def test_state_json_round_trip_gives_identical_encodings() -> None:
    config = make_config()
    train = coerce_table(make_table(seed=1), config, "train", True)
    pipeline = FeaturePipeline.fit(config, train)
    state = json.loads(json.dumps(pipeline.state()))
    raw_config = json.loads(json.dumps(config.model_dump(mode="json")))
    again = FeaturePipeline.from_state(raw_config, state)
    probe = make_table(seed=2)
    first, second = encode(pipeline, probe), encode(again, probe)
    for key in ("dense", "categorical"):
        assert np.array_equal(first.inputs[key], second.inputs[key])
    assert np.array_equal(first.target, second.target)
    assert again.input_schema() == pipeline.input_schema()
    assert again.output_schema() == pipeline.output_schema() == {"name": "label", "task": "binary",
                                                                  "classes": ["churn", "stay"]}


def test_unseen_categories_are_reported_or_refused_when_strict() -> None:
    config = make_config()
    table = make_table()
    pipeline = FeaturePipeline.fit(config, coerce_table(table, config, "train", True))
    probe = table.set_column(1, "city", pa.array(["Paris"] + table.column("city").to_pylist()[1:]))
    encoded = encode(pipeline, probe)
    assert encoded.unseen.counts == {"city": 1}
    assert encoded.inputs["categorical"][0, 0] == 0
    with pytest.raises(InputError) as caught:
        encode(pipeline, probe, strict=True)
    assert "column 'city'" in str(caught.value) and "Paris" in str(caught.value)
    assert "encoded as unknown" not in str(caught.value)


def test_only_numeric_features() -> None:
    config = validate_config({"name": "n", "data": {"train": "t.csv"}, "target": {"name": "y", "task": "regression"},
                              "input_features": [{"name": "x", "type": "numeric"}]})
    table = pa.table({"x": [1.0, 2.0, 3.0], "y": [0.5, 1.5, 2.5]})
    pipeline = FeaturePipeline.fit(config, table)
    encoded = pipeline.transform(table, "t", with_target=True)
    assert encoded.inputs["categorical"].shape == (3, 0)
    assert pipeline.categories() == []
    assert "classes" not in pipeline.output_schema()


@pytest.mark.parametrize(("task", "labels"), [("binary", [True, False]), ("multiclass", [1.0, 2.0, 3.0])])
def test_boolean_and_float_labels_encode(tmp_path: Path, task: str, labels: list[Any]) -> None:
    """A CSV target of True/False reads as booleans, of 1.0/2.0 as floats; both must encode on the same file."""
    path = tmp_path / "data.csv"
    path.write_text("x,y\n" + "".join(f"{i},{labels[i % len(labels)]}\n" for i in range(12)), encoding="utf-8")
    config = validate_config({"name": "t", "data": {"train": str(path)}, "target": {"name": "y", "task": task},
                              "input_features": [{"name": "x", "type": "numeric"}]})
    table = coerce_table(read_table(path), config, str(path), with_target=True)
    pipeline = FeaturePipeline.fit(config, table)
    encoded = pipeline.transform(table, str(path), with_target=True)
    assert encoded.target is not None
    assert [pipeline.target.classes[int(index)] for index in encoded.target] == [
        labels[i % len(labels)] for i in range(12)
    ]


def test_coerce_names_the_bad_row_after_nan_text() -> None:
    table = pa.table({"age": ["NaN", " -nan ", "5", "abc"], "city": ["a"] * 4, "member": ["y"] * 4,
                      "note": ["x"] * 4, "zone": [1] * 4, "label": ["a", "b", "a", "b"]})
    with pytest.raises(InputError, match="row 4 holds 'abc'"):
        coerce_table(table, make_config(), "data", with_target=True)


def test_asset_folders_are_inside_and_unique_whatever_the_column_name(tmp_path: Path) -> None:
    from luodi.features.pipeline import asset_folder

    names = ["od280/od315", "../../etc", "a b", "a_b"]
    folders = [asset_folder(tmp_path, index, name) for index, name in enumerate(names)]
    assert len(set(folders)) == len(names)
    for folder in folders:
        assert folder.parent == tmp_path / "tokenizer"


def wide_config(columns: int, extra: list[dict[str, Any]] | None = None) -> LuodiConfig:
    features = [{"name": f"x{i}", "type": "numeric"} for i in range(columns)] + (extra or [])
    return validate_config({"name": "w", "data": {"train": "t.csv"}, "target": {"name": "y", "task": "binary"},
                            "input_features": features})


@pytest.mark.parametrize("block_values", [1 << 22, 7])  # one block, and blocks of a few rows (big tables)
def test_numeric_columns_scaled_together_equal_one_column_at_a_time(monkeypatch: pytest.MonkeyPatch,
                                                                    block_values: int) -> None:
    import luodi.features.encoders as encoders

    monkeypatch.setattr(encoders, "NUMERIC_BLOCK_VALUES", block_values)
    rng = np.random.default_rng(3)
    config = wide_config(5, [{"name": "flag", "type": "binary"}, {"name": "c", "type": "category"}])
    values = {f"x{i}": rng.normal(1e9 if i == 2 else 0, 10 ** i, 30) for i in range(5)}  # x2: epoch-like values
    values["x1"][::4] = np.nan
    table = pa.table({**{k: pa.array(v, from_pandas=True) for k, v in values.items()},
                      "flag": rng.choice(["yes", "no"], 30).tolist(), "c": rng.choice(["a", "b"], 30).tolist(),
                      "y": rng.choice(["p", "q"], 30).tolist()})
    pipeline = FeaturePipeline.fit(config, coerce_table(table, config, "t", True))
    dense = pipeline.transform(coerce_table(table, config, "t", True), "t", True).inputs["dense"]
    unseen = Unseen()
    one_by_one = np.concatenate([encoder.transform(table.column(encoder.name), unseen)
                                 for encoder in pipeline.encoders if encoder.kind == "dense"], axis=1)
    assert dense.shape == (30, 6) and dense.dtype == np.float32  # 5 numbers, then the binary column
    assert np.array_equal(dense, one_by_one)  # bit for bit: the same float64 arithmetic, then one cast
    for index, encoder in enumerate(pipeline.encoders[:5]):  # and what a numeric column means, spelled out
        filled = np.where(np.isnan(values[f"x{index}"]), encoder.fill, values[f"x{index}"])
        assert np.array_equal(dense[:, index], ((filled - encoder.center) / encoder.scale).astype(np.float32))


@pytest.mark.parametrize("block_values", [1 << 22, 7])
def test_wide_tables_name_the_first_infinite_column_and_row(monkeypatch: pytest.MonkeyPatch,
                                                            block_values: int) -> None:
    import luodi.features.encoders as encoders

    monkeypatch.setattr(encoders, "NUMERIC_BLOCK_VALUES", block_values)
    config = wide_config(40)
    columns = {f"x{i}": [0.5] * 12 for i in range(40)}
    columns["x31"][2] = float("inf")  # an earlier row, in a later column
    columns["x7"][9] = float("-inf")  # the first column holding one: reported first, as the config lists it
    table = pa.table({**columns, "y": ["p", "q"] * 6})
    with pytest.raises(InputError, match=r"column 'x7' row 10 is infinite \(-inf\)"):
        coerce_table(table, config, "wide.csv", with_target=True)


def test_wide_tables_name_the_column_and_row_beyond_float32() -> None:
    config = wide_config(30)
    train = pa.table({**{f"x{i}": [0.0, 1.0, 2.0, 3.0] for i in range(30)}, "y": ["p", "q"] * 2})
    pipeline = FeaturePipeline.fit(config, train)
    probe = {f"x{i}": [1.0, 2.0, 3.0] for i in range(30)}
    probe["x17"][1] = 1e300
    with pytest.raises(InputError, match=r"column 'x17' row 2: 1e\+300 is too large for the model"):
        pipeline.transform(pa.table(probe), "rows", with_target=False)


def test_supervised_tfidf_is_fitted_on_the_training_labels_and_refused_for_regression() -> None:
    """The pipeline hands the text encoder the training split's classes; the saved state encodes without them."""
    raw = make_config().model_dump(mode="json")
    raw["input_features"][3].update(weighting="supervised_tfidf", ngrams=2)
    config = validate_config(raw)
    rows = make_table(seed=1).to_pydict()
    rows["label"] = ["churn" if "late" in note else "stay" for note in rows["note"]]  # 'late' tells the class
    train = coerce_table(pa.table(rows), config, "train", True)
    pipeline = FeaturePipeline.fit(config, train)
    text = pipeline.encoders[3]
    weights = dict(zip(text.vocabulary, text.idf, strict=True))
    assert weights["late"] > 2 * max(weights[word] for word in ("paid", "new", "vip", "refund") if word in weights)
    again = FeaturePipeline.from_state(json.loads(json.dumps(config.model_dump(mode="json"))),
                                       json.loads(json.dumps(pipeline.state())))
    assert np.array_equal(encode(pipeline, make_table(seed=2)).inputs["dense"],
                          encode(again, make_table(seed=2)).inputs["dense"])
    raw["target"]["task"] = "regression"
    with pytest.raises(InputError, match=r"input_features\[note\].weighting supervised_tfidf .* classification only"):
        validate_config(raw)
