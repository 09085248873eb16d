"""Config: unknown keys with hints, typed errors, `--set` overrides, per-task metrics, safe YAML, the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from luodi.config import (
    LuodiConfig,
    apply_overrides,
    load_config,
    read_yaml,
    reference_markdown,
    validate_config,
)
from luodi.errors import InputError
from luodi.tasks import get_task

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def raw_config(task: str = "binary") -> dict[str, Any]:
    return {
        "name": "tiny",
        "data": {"train": "train.csv"},
        "target": {"name": "label", "task": task},
        "input_features": [{"name": "city", "type": "category"}, {"name": "age", "type": "numeric"}],
    }


def config_error(raw: dict[str, Any]) -> str:
    with pytest.raises(InputError) as caught:
        validate_config(raw, "job.yaml")
    return str(caught.value)


def test_minimal_config_gets_defaults() -> None:
    config = validate_config(raw_config())
    assert isinstance(config, LuodiConfig)
    assert config.trainer.optimizer.type == "adamw"
    assert config.model.hidden_sizes == [128, 64]
    assert config.monitor_mode() == "min"


def test_unknown_nested_key_names_path_and_suggests() -> None:
    raw = raw_config()
    raw["trainer"] = {"optimzer": {"lr": 0.1}}
    message = config_error(raw)
    assert message.startswith("job.yaml: ")
    assert "trainer.optimzer: unknown key" in message
    assert "did you mean 'optimizer'" in message


def test_unknown_feature_key_names_list_index() -> None:
    raw = raw_config()
    raw["input_features"][1]["normalisation"] = "zscore"
    message = config_error(raw)
    assert "input_features.1.normalisation: unknown key" in message
    assert "did you mean 'normalization'" in message


@pytest.mark.parametrize(("section", "key", "hint"), [
    ("tranier", None, "trainer"), ("runtime", "threds", "threads"), ("model", "hiden_sizes", "hidden_sizes"),
])
def test_unknown_key_hints(section: str, key: str | None, hint: str) -> None:
    raw = raw_config()
    raw[section] = {key: 1} if key else {}
    assert f"did you mean '{hint}'" in config_error(raw)


def test_unknown_key_without_close_match_has_no_hint() -> None:
    raw = raw_config()
    raw["trainer"] = {"zzzz": 1}
    message = config_error(raw)
    assert "trainer.zzzz: unknown key" in message
    assert "did you mean" not in message


def test_wrong_value_type_names_key_and_value() -> None:
    raw = raw_config()
    raw["trainer"] = {"epochs": "many"}
    message = config_error(raw)
    assert "trainer.epochs" in message
    assert "'many'" in message


def test_bad_literal_names_key_and_value() -> None:
    raw = raw_config()
    raw["input_features"][1]["missing"] = "mode"
    message = config_error(raw)
    assert "input_features.1.missing" in message
    assert "'mode'" in message


def test_several_problems_are_listed_one_per_line() -> None:
    raw = raw_config()
    raw["trainer"] = {"epochs": 0, "batch_size": "x"}
    lines = config_error(raw).splitlines()
    assert lines[0] == "job.yaml: invalid config"
    assert any(line.strip().startswith("trainer.epochs:") for line in lines[1:])
    assert any(line.strip().startswith("trainer.batch_size:") for line in lines[1:])


def test_missing_required_key() -> None:
    raw = raw_config()
    del raw["target"]
    assert "target: required key is missing" in config_error(raw)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_every_task_metric_is_accepted(task: str) -> None:
    for metric in get_task(task).directions:
        raw = raw_config(task)
        raw["trainer"] = {"early_stopping": {"metric": metric}}
        assert validate_config(raw).trainer.early_stopping.metric == metric


@pytest.mark.parametrize(("task", "metric"), [("binary", "r2"), ("regression", "accuracy"),
                                              ("multiclass", "roc_auc"), ("binary", "f1_weighted")])
def test_early_stopping_metric_must_fit_the_task(task: str, metric: str) -> None:
    raw = raw_config(task)
    raw["trainer"] = {"early_stopping": {"metric": metric}}
    message = config_error(raw)
    assert f"trainer.early_stopping.metric {metric!r} is not a {task} metric" in message
    assert "'name': 'tiny'" not in message  # names the key, does not dump the whole config


@pytest.mark.parametrize(("metric", "mode"), [("loss", "min"), ("accuracy", "max"), ("roc_auc", "max")])
def test_monitor_mode_follows_the_metric(metric: str, mode: str) -> None:
    raw = raw_config()
    raw["trainer"] = {"early_stopping": {"metric": metric}}
    assert validate_config(raw).monitor_mode() == mode


def test_duplicate_feature_and_target_as_feature_are_refused() -> None:
    raw = raw_config()
    raw["input_features"].append({"name": "age", "type": "numeric"})
    assert "'age' more than once" in config_error(raw)
    raw = raw_config()
    raw["input_features"].append({"name": "label", "type": "category"})
    assert "also listed in input_features" in config_error(raw)


def test_overrides_nested_list_index_and_feature_name() -> None:
    raw = apply_overrides(raw_config(), [
        "trainer.epochs=20",
        "model.hidden_sizes=[16, 8]",
        "input_features.0.min_frequency=3",
        "input_features.age.type=category",
        "trainer.early_stopping.enabled=false",
    ])
    config = validate_config(raw)
    assert config.trainer.epochs == 20
    assert config.model.hidden_sizes == [16, 8]
    assert config.input_features[0].min_frequency == 3  # type: ignore[union-attr]
    assert config.input_features[1].type == "category"
    assert config.trainer.early_stopping.enabled is False


def test_override_values_are_yaml_typed() -> None:
    raw = apply_overrides(raw_config(), ["trainer.gradient_clip=null", "runtime.threads=4",
                                         "trainer.optimizer.lr=3e-4", "description=yes it works"])
    assert raw["trainer"]["gradient_clip"] is None
    assert raw["runtime"]["threads"] == 4
    assert raw["description"] == "yes it works"
    config = validate_config(raw)
    assert config.trainer.optimizer.lr == pytest.approx(3e-4)
    assert config.trainer.gradient_clip is None


def test_override_with_empty_value_is_empty_string() -> None:
    assert apply_overrides(raw_config(), ["description="])["description"] == ""


@pytest.mark.parametrize(("override", "fragment"), [
    ("trainer.epochs", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("input_features.7.type=text", "out of range"),
    ("input_features.salary.type=text", "no list item named 'salary'"),
    ("name.first=x", "name is a value, not a section"),
    ("input_features.age.type.x=1", "input_features.age.type is a value"),
    ("trainer.epochs=[1,", "not valid YAML"),
])
def test_bad_overrides_raise(override: str, fragment: str) -> None:
    with pytest.raises(InputError, match="--set") as caught:
        apply_overrides(raw_config(), [override])
    assert fragment in str(caught.value)


def test_override_addresses_a_column_whose_name_has_dots() -> None:
    """`input_features.x.box.type` cannot tell the name from the keys: the name is quoted (or given by index)."""
    raw = raw_config()
    raw["input_features"].append({"name": "x.box", "type": "numeric"})
    raw["input_features"].append({"name": "a=b", "type": "numeric"})
    overridden = apply_overrides(raw, ['input_features."x.box".type=category', "input_features.'a=b'.type=binary",
                                       'trainer."epochs"=4'])
    assert overridden["input_features"][2] == {"name": "x.box", "type": "category"}
    assert overridden["input_features"][3] == {"name": "a=b", "type": "binary"}
    assert overridden["trainer"]["epochs"] == 4
    with pytest.raises(InputError) as caught:
        apply_overrides(raw, ["input_features.x.box.type=text"])
    assert str(caught.value) == ("--set input_features.x: no list item named 'x'; quote a name that "
                                 'contains dots, input_features."x.box", or give its index, input_features.2')
    with pytest.raises(InputError, match="unclosed"):
        apply_overrides(raw, ['input_features."x.box.type=text'])
    with pytest.raises(InputError, match="empty key part; quote a name that contains dots"):
        apply_overrides(raw, ["trainer..epochs=3"])


def test_override_value_with_python_tag_is_refused() -> None:
    with pytest.raises(InputError, match="not valid YAML"):
        apply_overrides(raw_config(), ["description=!!python/object/apply:os.getcwd []"])


def test_read_yaml_refuses_python_tags(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid YAML") as caught:
        read_yaml(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("text", "fragment"), [("", "empty"), ("- a\n- b\n", "mapping"), ("a: [\n", "not valid YAML")])
def test_read_yaml_bad_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=fragment):
        read_yaml(path)


def test_read_yaml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        read_yaml(tmp_path / "nope.yaml")


def test_load_config_applies_overrides_and_resolves_data_paths(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "jobs" / "job.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw_config()), encoding="utf-8")
    config = load_config(path, ["trainer.epochs=2"])
    assert config.trainer.epochs == 2
    assert config.data.train == str((tmp_path / "jobs" / "train.csv").resolve())
    assert config.data.validation is None


def test_load_config_resolves_a_checkpoint_tokenizer_beside_the_config(tmp_path: Path) -> None:
    """`luodi train examples/x/luodi.yaml` from elsewhere: model.path and the tokenizer folder it fills both resolve
    against the config's folder, not the working directory."""
    import yaml

    path = tmp_path / "example" / "luodi.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"name": "chat", "data": {"train": "chats.jsonl"},
                                    "target": {"name": "messages", "task": "text_generation"},
                                    "model": {"type": "hf", "path": "checkpoint"}}), encoding="utf-8")
    config = load_config(path)
    folder = str((tmp_path / "example" / "checkpoint").resolve())
    assert config.model.path == folder and config.target.text.checkpoint == folder


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    import yaml

    raw = raw_config()
    raw["trainer"] = {"optimzer": {}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(InputError, match=r"job\.yaml: invalid config"):
        load_config(path)


def test_reference_lists_every_section() -> None:
    text = reference_markdown()
    for section in ("`data.split`", "`trainer.optimizer`", "`runtime`", "`input_features[] (type: text)`"):
        assert section in text


def test_reference_finds_every_config_class_in_the_tree() -> None:
    """The reference walks LuodiConfig's tree instead of keeping its own list: every schema model is a section."""
    from pydantic import BaseModel

    from luodi.config import schema
    from luodi.config.reference import sections

    found = [model for _, model in sections(schema.LuodiConfig)]
    models = [getattr(schema, name) for name in schema.__all__]
    expected = {model for model in models if isinstance(model, type) and issubclass(model, BaseModel)} - {schema.Strict}
    assert set(found) == expected
    assert len(found) == len(set(found))


@pytest.mark.skipif(not REFERENCE.exists(), reason="docs/config.md is not generated yet")
def test_reference_matches_committed_docs() -> None:
    committed = REFERENCE.read_text(encoding="utf-8")
    assert committed.rstrip("\n") == reference_markdown().rstrip("\n"), "run `make docs/config.md`"


@pytest.mark.parametrize("name", ["name\n", ".", "..", "two words", "", "x" * 129, "../up", "naïve"])
def test_bad_model_names_are_refused(name: str) -> None:
    raw = raw_config()
    raw["name"] = name
    assert "name: must match" in config_error(raw)


@pytest.mark.parametrize("name", ["churn", "Churn_v2.1", "a-b", "x" * 128])
def test_good_model_names(name: str) -> None:
    raw = raw_config()
    raw["name"] = name
    assert validate_config(raw).name == name


def test_positive_class_is_for_binary_tasks_only() -> None:
    raw = {"name": "m", "data": {"train": "x.csv"}, "input_features": [{"name": "a", "type": "numeric"}]}
    config = validate_config({**raw, "target": {"name": "y", "task": "binary", "positive_class": 1.0}})
    assert config.target.positive_class == "1"  # as the column spells its labels
    with pytest.raises(InputError, match="target.positive_class applies to binary tasks only"):
        validate_config({**raw, "target": {"name": "y", "task": "multiclass", "positive_class": "a"}})


def test_label_smoothing_is_for_classification_only() -> None:
    raw = {"name": "m", "data": {"train": "x.csv"}, "input_features": [{"name": "a", "type": "numeric"}]}
    config = validate_config({**raw, "target": {"name": "y", "task": "multiclass", "label_smoothing": 0.1}})
    assert config.target.label_smoothing == 0.1
    with pytest.raises(InputError, match="target.label_smoothing applies to classification only"):
        validate_config({**raw, "target": {"name": "y", "task": "regression", "label_smoothing": 0.1}})
    assert "target.label_smoothing" in config_error({**raw, "target": {"name": "y", "task": "binary",
                                                                         "label_smoothing": 0.5}})


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "examples").glob("*/*.yaml")),
                         ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_example_config_validates(path: Path) -> None:
    """The configs users copy load as they are (their data and checkpoints are written by the examples' scripts)."""
    config = load_config(path)
    assert config.data.train is not None and Path(config.data.train).parent == path.parent
