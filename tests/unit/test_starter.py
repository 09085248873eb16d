"""`luodi init`: the rendered starter config loads back and validates, whatever the column and file names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from luodi.config import LuodiConfig, validate_config
from luodi.data.starter import model_name, plan, relative_data_path, render
from luodi.data.starter_core import dense_width as _dense_width
from luodi.data.starter_render import _quote
from luodi.data.starter_text import _text_l2
from luodi.errors import InputError

ODD_NAMES = ["monthly charges", "it's", 'say "hi"', "yes", "No", "null", "2nd_contract", "1", "a: b", "#tag",
             "-lead", "trail ", "back\\slash", "tab\there", "new\nline", "naïve café", "{x}", "[y]", "&anchor",
             "*star", "!bang", "%pct", "@at", "`tick`", "|pipe", ">gt", "x,y", "?q", "ok.name-1/2", ""]


def table(rows: int = 120, seed: int = 0, names: list[str] | None = None, target: str = "churned") -> pa.Table:
    """Numbers, a category, a yes/no column, text, an id and a constant; `names` adds numeric columns."""
    rng = np.random.default_rng(seed)
    columns = {
        "customer_id": [f"C{i:05d}" for i in range(rows)],
        "tenure": rng.integers(0, 72, rows),
        "charges": rng.normal(70, 20, rows).round(2),
        "contract": rng.choice(["monthly", "yearly", "two-year"], rows),
        "paperless": rng.choice(["yes", "no"], rows),
        "note": [" ".join(rng.choice(["late", "payment", "called", "support", "twice"], 6)) for _ in range(rows)],
        "country": ["NO"] * rows,
    }
    for index, name in enumerate(names or []):
        columns[name] = rng.normal(index, 1.0, rows)
    columns[target] = rng.choice(["yes", "no"], rows)
    return pa.table(columns)


def round_trip(data: pa.Table, target: str = "churned", source: str = "churn.csv", **options: str) -> LuodiConfig:
    starter = plan(data, Path(source), target, **options)  # type: ignore[arg-type]
    return validate_config(yaml.safe_load(render(starter, source, Path(source))), "starter")


def test_starter_loads_back() -> None:
    config = round_trip(table())
    assert config.name == "churn"
    assert config.data.train == "churn.csv"
    assert config.target.name == "churned" and config.target.task == "binary"
    types = {feature.name: feature.type for feature in config.input_features}
    assert types == {"tenure": "numeric", "charges": "numeric", "contract": "category", "paperless": "binary",
                     "note": "text"}


def test_dropped_columns_are_commented_out() -> None:
    starter = plan(table(), Path("churn.csv"), "churned")
    text = render(starter, "churn.csv", Path("churn.csv"))
    assert {column.name for column in starter.dropped} == {"customer_id", "country"}
    assert "  # customer_id: id-like" in text
    assert "  # country: constant" in text


@pytest.mark.parametrize(("target", "task"), [("tenure", "regression"), ("contract", "multiclass")])
def test_other_tasks(target: str, task: str) -> None:
    config = round_trip(table(rows=400), target=target)
    assert config.target.task == task
    assert target not in {feature.name for feature in config.input_features}


def test_task_option_and_name_option() -> None:
    config = round_trip(table(), target="churned", task="multiclass", name="my-model")
    assert config.target.task == "multiclass" and config.name == "my-model"
    with pytest.raises(InputError, match="--task 'ranking'"):
        plan(table(), Path("churn.csv"), "churned", task="ranking")


def test_odd_column_names_round_trip() -> None:
    config = round_trip(table(names=ODD_NAMES))
    names = [feature.name for feature in config.input_features]
    assert set(ODD_NAMES) <= set(names)


@pytest.mark.parametrize("target", ["yes", "2nd_contract", 'say "hi"', "a: b", "new\nline"])
def test_odd_target_names_round_trip(target: str) -> None:
    assert round_trip(table(target=target), target=target).target.name == target


@pytest.mark.parametrize("odd", ["dropped: 'quoted'", "new\nline id", "#hash_id"])
def test_odd_dropped_names_stay_comments(odd: str) -> None:
    data = table().append_column(odd, pa.array(["same"] * 120))
    config = round_trip(data)
    assert odd not in [feature.name for feature in config.input_features]


@pytest.mark.parametrize("file_name", ["2024.csv", "1.5.csv", "yes.csv", "null.csv", "Churn data (v2).csv",
                                       "données.csv", "..csv"])
def test_file_names_give_valid_model_names(file_name: str) -> None:
    config = round_trip(table(), source=file_name)
    assert config.name == model_name(Path(file_name))
    assert config.data.train == file_name


def test_odd_data_paths_load_back() -> None:
    for path in ["../data/churn.csv", "my data/churn #1.csv", "C:\\data\\churn.csv", "yes"]:
        starter = plan(table(), Path("churn.csv"), "churned")
        assert yaml.safe_load(render(starter, path, Path("churn.csv")))["data"]["train"] == path


@pytest.mark.parametrize(("rows", "sizes"), [(120, [64, 32]), (2_500, [256, 128])])
def test_sizes_follow_the_row_count(rows: int, sizes: list[int]) -> None:
    config = round_trip(table(rows=rows).drop_columns(["note"]))
    assert config.model.hidden_sizes == sizes


def test_long_tailed_numbers_are_log_scaled() -> None:
    rng = np.random.default_rng(0)
    data = table(rows=2_000).drop_columns(["note"]).append_column("amount", pa.array(rng.lognormal(3, 2.0, 2_000)))
    config = round_trip(data)
    scaling = {feature.name: getattr(feature, "normalization", None) for feature in config.input_features}
    assert scaling["amount"] == "log"  # heavy-tailed: skewness far above 10, about 0 after the log
    assert scaling["charges"] == scaling["tenure"] == "zscore"  # symmetric and flat: z-scored as before


def encodings(config: LuodiConfig) -> dict[str, str | None]:
    return {feature.name: getattr(feature, "encoding", None) for feature in config.input_features}


def test_numbers_of_a_table_get_piecewise_linear_bins() -> None:
    """1,000+ rows of columns in different units: every numeric column as its value and 16 bins, with the why
    above the features; fewer rows, or many columns of one scale (a signal's samples), keep the plain value."""
    data = table(rows=2_000).drop_columns(["note"])
    starter = plan(data, Path("churn.csv"), "churned")
    assert "piecewise-linear bins" in render(starter, "churn.csv", Path("churn.csv"))
    config = round_trip(data)
    assert {name: kind for name, kind in encodings(config).items() if kind} == {
        "tenure": "piecewise_linear", "charges": "piecewise_linear"}
    assert all(feature.bins == 16 for feature in config.input_features if feature.type == "numeric")
    assert set(encodings(round_trip(table(rows=600).drop_columns(["note"]))).values()) <= {"value", None}
    rng = np.random.default_rng(0)
    signal = pa.table({**{f"v{i}": rng.normal(0, 1 + i / 20, 2_000) for i in range(12)},
                       "label": rng.choice(["a", "b"], 2_000)})
    assert set(encodings(round_trip(signal, target="label")).values()) == {"value"}
    mixed = pa.table({**{f"v{i}": rng.normal(0, 1 + i / 20, 2_000) * (100 if i % 2 else 1) for i in range(12)},
                      "label": rng.choice(["a", "b"], 2_000)})  # half the columns in another unit
    assert set(encodings(round_trip(mixed, target="label")).values()) == {"piecewise_linear"}


def test_tables_of_1000_rows_train_a_tabm_ensemble_that_fits_the_budget() -> None:
    """32 members when 100 epochs of them fit --time-budget, else 8, else a plain MLP; the epoch cap counts the
    members' arithmetic. Small tables and text keep one MLP."""
    data = table(rows=3_000).drop_columns(["note"])
    assert round_trip(data).model.mlp.ensemble == 32
    starters = {seconds: plan(data, Path("churn.csv"), "churned", time_budget=seconds) for seconds in (300.0, 1.0)}
    assert "mlp: {ensemble: 32, " in render(starters[300.0], "churn.csv", Path("churn.csv"))
    assert starters[1.0].ensemble == 1 and "ensemble" not in render(starters[1.0], "churn.csv", Path("churn.csv"))
    wide = table(rows=60_000).drop_columns(["note"])
    budgets = (60.0, 300.0, 3_600.0)
    assert [plan(wide, Path("churn.csv"), "churned", time_budget=seconds).ensemble for seconds in budgets] == [1, 8, 32]
    assert round_trip(table(rows=600).drop_columns(["note"])).model.mlp.ensemble == 1
    assert round_trip(table(rows=3_000)).model.mlp.ensemble == 1  # a text column: TF-IDF into one MLP


def test_numbers_of_tables_of_1000_rows_get_periodic_embeddings() -> None:
    """1,000+ rows and at most 128 numeric columns of more than 32 values each (the median column):
    `model.mlp.numeric_embedding: periodic` with sigma 0.1, beside the ensemble or without it when only it fits the
    budget; small tables, few-valued columns and text keep the value alone. The epoch estimate counts them."""
    data = table(rows=3_000).drop_columns(["note"])
    mlp = round_trip(data).model.mlp
    assert (mlp.numeric_embedding, mlp.periodic_sigma, mlp.ensemble) == ("periodic", 0.1, 32)
    alone = plan(data, Path("churn.csv"), "churned", time_budget=10.0)  # no ensemble fits; the embeddings do
    assert alone.ensemble == 1 and alone.periodic_sigma == 0.1
    assert "mlp: {numeric_embedding: periodic, periodic_sigma: 0.1}  # PLR" in render(alone, "churn.csv",
                                                                                      Path("churn.csv"))
    assert plan(data, Path("churn.csv"), "churned", time_budget=5.0).periodic_sigma == 0.0  # nor do they
    plain = replace(alone, periodic_sigma=0.0)
    assert _dense_width(alone) == _dense_width(plain) + 2 * 16  # two numeric columns' vectors
    assert round_trip(table(rows=600).drop_columns(["note"])).model.mlp.numeric_embedding == "none"
    assert round_trip(table(rows=3_000)).model.mlp.numeric_embedding == "none"  # a text column
    rng = np.random.default_rng(0)
    wide = pa.table({**{f"v{i}": rng.normal(0, 1, 1_500) for i in range(130)}, "label": rng.choice(["a", "b"], 1_500)})
    assert round_trip(wide, target="label").model.mlp.numeric_embedding == "none"  # 130 numeric columns
    levels = pa.table({**{f"v{i}": rng.integers(0, 16, 1_500) for i in range(16)}, "label": rng.choice(["a", "b"],
                                                                                                      1_500)})
    assert round_trip(levels, target="label").model.mlp.numeric_embedding == "none"  # 16 values a column


def test_epochs_follow_the_time_budget() -> None:
    """A larger model or a smaller --time-budget gives fewer epochs; the comment says how they were chosen, and
    the plateau schedule (not the cap) is what ends runs."""
    data = table(rows=50_000).drop_columns(["note"])
    roomy, tight = (plan(data, Path("churn.csv"), "churned", time_budget=seconds) for seconds in (3600.0, 5.0))
    assert roomy.epochs == 200 and tight.epochs < roomy.epochs and tight.epochs >= 10
    text = render(tight, "churn.csv", Path("churn.csv"))
    assert "budget (--time-budget)" in text and "scheduler: {type: plateau" in text
    config = validate_config(yaml.safe_load(text), "starter")
    assert config.trainer.early_stopping.patience > 2 * config.trainer.scheduler.patience


def test_time_budget_spellings() -> None:
    from luodi.data.budget import parse_duration

    assert [parse_duration(text) for text in ("90s", "10m", "1.5h", "42")] == [90, 600, 5400, 42]
    with pytest.raises(InputError, match="--time-budget 'soon'"):
        parse_duration("soon")


def test_model_name() -> None:
    assert model_name(Path("data/Churn data.csv")) == "churn-data"
    assert model_name(Path("###.csv")) == "model"


@pytest.mark.parametrize(("path", "name"), [
    ("fmnist/train", "fmnist"), ("churn/data.csv", "churn"), ("/srv/Fashion MNIST/training", "fashion-mnist"),
    ("cats/train/data", "cats"), ("/srv/flowers/Train_Data.parquet", "flowers"), ("sales/train-2024.csv", "train-2024"),
])
def test_model_name_skips_generic_split_names(path: str, name: str) -> None:
    """`--data fmnist/train` registered a model called `train`: the folder names it instead."""
    assert model_name(Path(path)) == name


def test_model_name_asks_for_a_name_when_everything_is_generic() -> None:
    with pytest.raises(InputError, match=r"/data/train: cannot name the model .* give one with --name"):
        model_name(Path("/data/train"))


def test_missing_target_values_name_rows() -> None:
    data = table()
    labels = data.column("churned").to_pylist()
    labels[3] = None
    data = data.set_column(data.column_names.index("churned"), "churned", pa.array(labels))
    with pytest.raises(InputError, match=r"churn\.csv: target column 'churned' is missing in 1 row\(s\) \(rows 4\)"):
        plan(data, Path("churn.csv"), "churned")


def test_nan_target_is_refused() -> None:
    data = pa.table({"x": [1.0, 2.0, 3.0], "y": [1.0, float("nan"), 2.0]})
    with pytest.raises(InputError, match="NaN in 1 row"):
        plan(data, Path("d.csv"), "y")


def test_no_usable_features() -> None:
    data = pa.table({"id": [f"r{i}" for i in range(30)], "y": ["a", "b"] * 15})
    with pytest.raises(InputError, match="no usable feature columns") as caught:
        plan(data, Path("d.csv"), "y")
    assert "id-like" in str(caught.value)


def test_relative_data_path(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert relative_data_path(tmp_path / "data" / "x.csv", tmp_path / "luodi.yaml") == str(Path("data/x.csv"))


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12))
def test_any_name_reads_back_from_flow_mapping_and_comment(name: str) -> None:
    text = f"input_features:\n  - {{name: {_quote(name)}, type: numeric}}\n  # {_quote(name)}: dropped\n"
    assert yaml.safe_load(text) == {"input_features": [{"name": name, "type": "numeric"}]}


def test_long_text_as_the_main_input_gets_tfidf_terms() -> None:
    """TF-IDF words and word pairs into an MLP beat the 2-layer Transformer init used to write (docs/text.md)."""
    rng = np.random.default_rng(0)
    words = ["market", "shares", "match", "goal", "film", "actor", "vote", "minister", "the", "a", "and"]
    articles = pa.table({"article": [" ".join(rng.choice(words, rng.integers(30, 90))) for _ in range(80)],
                         "desk": rng.choice(["a", "b", "c"], 80)})
    text = render(plan(articles, Path("news.csv"), "desk"), "news.csv", Path("news.csv"))
    assert "luodi init --encoder ./minilm" in text  # how to switch to a local sentence encoder, in a comment
    config = validate_config(yaml.safe_load(text), "starter")
    assert config.model.type == "mlp"
    feature = config.input_features[0]
    assert feature.type == "text" and feature.tokenizer == "bag_of_words"
    assert (feature.weighting, feature.ngrams) == ("supervised_tfidf", 2)  # terms weighed by class: a classifier
    assert feature.class_weight_floor == 1  # every term keeps its TF-IDF weight, times 1 + its class ratio
    scores = articles.set_column(1, "desk", pa.array(rng.normal(size=80)))
    config = validate_config(yaml.safe_load(render(plan(scores, Path("news.csv"), "desk"), "news.csv",
                                                   Path("news.csv"))))
    assert (config.target.task, config.input_features[0].weighting) == ("regression", "tfidf")  # type: ignore[union-attr]


def test_encoder_replaces_the_terms() -> None:
    rng = np.random.default_rng(0)
    notes = pa.table({"note": [" ".join(rng.choice(["late", "paid", "called"], 6)) for _ in range(40)],
                      "y": rng.choice(["a", "b"], 40)})
    config = round_trip(notes, target="y", encoder="minilm")
    feature = config.input_features[0]
    assert (feature.tokenizer, feature.encoder) == ("encoder", "minilm")  # type: ignore[union-attr]
    with pytest.raises(InputError, match="no free-text column"):
        plan(table().drop_columns(["note"]), Path("churn.csv"), "churned", encoder="minilm")


def test_short_text_beside_table_columns_stays_a_bag_of_words() -> None:
    config = round_trip(table())
    assert config.model.type == "mlp"
    assert next(f for f in config.input_features if f.name == "note").tokenizer == "bag_of_words"  # type: ignore[union-attr]


def comment_columns(text: str) -> list[list[int]]:
    """The columns where inline comments start, per run of consecutive commented lines."""
    from luodi.data.starter_render import _comment_at

    blocks: list[list[int]] = [[]]
    for line in text.splitlines():
        at = _comment_at(line)
        if at is None:
            blocks.append([])
        else:
            blocks[-1].append(at)
    return [block for block in blocks if block]


def test_inline_comments_line_up() -> None:
    from luodi.data.starter_render import COMMENT_COLUMN

    data = table(names=["a", "a much longer column name", "#tag"]).drop_columns(["note"])  # TF-IDF options: long
    text = render(plan(data, Path("churn.csv"), "churned"), "churn.csv", Path("churn.csv"), "luodi.yaml")
    blocks = comment_columns(text)
    assert len(blocks) > 5
    for block in blocks:
        assert len(set(block)) == 1, block  # one column in each block
    assert blocks[3][0] > COMMENT_COLUMN  # the features' long names push their block right
    assert min(block[0] for block in blocks) == COMMENT_COLUMN
    assert '{name: "#tag", type: numeric}' in text  # its '#' is inside quotes: not a comment (blocks above)
    assert validate_config(yaml.safe_load(text)).input_features


def test_a_very_long_line_keeps_its_comment_close() -> None:
    data = table(names=["x" * 120]).drop_columns(["note"])
    text = render(plan(data, Path("churn.csv"), "churned"), "churn.csv", Path("churn.csv"))
    long_line = next(line for line in text.splitlines() if "x" * 120 in line)
    assert long_line.split("}", 1)[1].startswith("  # ")
    assert all(len(set(block)) == 1 for block in comment_columns(text.replace(long_line + "\n", "")))


def test_the_text_generation_starter_names_its_file_and_lines_up(tmp_path: Path) -> None:
    import luodi.api as api

    (tmp_path / "corpus.txt").write_text("".join(f"line {index} of a small corpus\n" for index in range(50)))
    api.init(tmp_path / "corpus.txt", task="text_generation", output=tmp_path / "lm.yaml")
    text = (tmp_path / "lm.yaml").read_text()
    assert f"# Train with: luodi train {tmp_path / 'lm.yaml'} " in text and "{this file}" not in text
    assert all(len(set(block)) == 1 for block in comment_columns(text)), comment_columns(text)


@pytest.mark.parametrize(("labels", "positive"), [(["yes", "no"], "yes"), (["benign", "malignant"], "malignant"),
                                                   ([True, False], "true"), ([0, 1], "1")])
def test_a_binary_starter_names_its_positive_class(labels: list[object], positive: str) -> None:
    data = table(rows=100).drop_columns(["churned"]).append_column("churned", pa.array(labels * 50))
    config = round_trip(data)
    assert config.target.positive_class == positive  # the label the metrics are of, written out to be changed
    assert round_trip(table(rows=400), target="contract").target.positive_class is None  # multiclass


def test_the_average_covers_about_three_epochs_of_steps() -> None:
    from luodi.data.starter import Starter
    from luodi.data.starter_images import ema_decay

    def decay(rows: int, batch: int) -> float:
        return ema_decay(Starter("x", "y", None, [], rows, [], batch, 0, 0))  # type: ignore[arg-type]

    assert decay(3_000, 64) == 0.99  # 2,100 training rows: 33 steps an epoch, the sets it was measured on
    assert decay(1_347, 32) == 0.989  # digits: 943 training rows, 30 steps an epoch
    assert decay(20_000, 64) == 0.9985 and decay(10, 32) == 0.9 and decay(10**8, 64) == 0.9999


@pytest.mark.parametrize(("side", "task", "padding", "smoothing"), [
    (28, None, 2, 0.1), (8, None, 1, 0.1), (64, None, 6, 0.1), (28, "regression", 2, 0.0),
])
def test_image_classifiers_get_label_smoothing_and_shifts_of_a_tenth(tmp_path: Path, side: int, task: str | None,
                                                                     padding: int, smoothing: float) -> None:
    """Measured on four image sets (docs/performance.md, "The image default"); no flips: not safe for any image. The
    moving average of the weights too (docs/performance.md, "Closing the gap to the small CNN")."""
    from PIL import Image

    paths = []
    for index in range(12):
        Image.fromarray(np.full((side, side), index * 20, np.uint8)).save(tmp_path / f"{index}.png")
        paths.append(f"{index}.png")
    data = pa.table({"image": paths, "label": [str(index % 3) for index in range(12)]})
    starter = plan(data, tmp_path / "images.csv", "label", task=task)
    text = render(starter, "images.csv", tmp_path / "images.csv")
    config = validate_config(yaml.safe_load(text), "starter")
    assert config.target.label_smoothing == smoothing
    assert config.trainer.ema_decay == (0.9 if smoothing else 0.0)  # 12 rows: 1 step an epoch, the floor
    assert ("ema_decay" in text) == bool(smoothing)
    image = config.input_features[0]
    assert image.augment.crop_padding == padding and not image.augment.horizontal_flip  # type: ignore[union-attr]
    assert "horizontal_flip: true" in text  # the comment says when to add a flip
    assert ("label_smoothing" in text) == bool(smoothing)


def test_tfidf_text_gets_an_l2_penalty_from_its_training_rows() -> None:
    """Adam's coupled weight decay of 1 / training rows (logistic regression's C = 1), written so that YAML reads a
    number back even when it is tiny; other models keep AdamW's decoupled 0.01."""
    rng = np.random.default_rng(0)
    reviews = pa.table({"review": [" ".join(rng.choice(["not", "good", "bad", "the", "food"], 6)) for _ in range(300)],
                        "y": rng.choice(["a", "b"], 300)})
    config = validate_config(yaml.safe_load(render(plan(reviews, Path("r.csv"), "y"), "r.csv", Path("r.csv"))))
    assert (config.trainer.optimizer.type, config.trainer.optimizer.weight_decay) == ("adam", 0.0048)  # 1 / 210
    assert _text_l2(30_000) == (4.8e-05, "weight_decay: L2 of 1/21000 training rows, as logistic regression's C = 1")
    many = pa.table({"review": [" ".join(rng.choice(["not", "good", "bad", "the", "food"], 6)) for _ in range(40_000)],
                     "y": ["a", "b"] * 20_000})
    assert "weight_decay: 0.000036}" in render(plan(many, Path("r.csv"), "y"), "r.csv", Path("r.csv"))
    mixed = round_trip(table())  # a text column beside table columns: as before (measured on texts alone)
    assert mixed.trainer.optimizer.type == "adamw"
    assert next(f for f in mixed.input_features if f.name == "note").weighting == "tfidf"  # type: ignore[union-attr]
    numbers = pa.table({"x": rng.normal(size=300), "y": rng.choice(["a", "b"], 300)})
    assert validate_config(yaml.safe_load(render(plan(numbers, Path("n.csv"), "y"), "n.csv", Path("n.csv")))
                           ).trainer.optimizer.model_dump(include={"type", "weight_decay"}) == {
        "type": "adamw", "weight_decay": 0.01}
