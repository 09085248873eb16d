"""The `search:` section of `luodi tune`: ranges and choices checked by the schema, suggestions of the right kind,
durations, and the search space `luodi init --tune` writes for each inferred architecture."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from luodi.config import SearchRange, find_key, validate_config
from luodi.data.starter import plan, render, search_section
from luodi.errors import InputError
from luodi.jobs.tune import parse_duration, search_space, suggest


def base_config(**search: Any) -> dict[str, Any]:
    return {"name": "m", "data": {"train": "t.csv"}, "target": {"name": "y", "task": "binary"},
            "input_features": [{"name": "x", "type": "numeric"}, {"name": "color.box", "type": "category"}],
            "search": search}


def test_ranges_and_choices() -> None:
    assert SearchRange(low=1, high=4).integer and not SearchRange(low=1, high=4.0).integer
    assert not SearchRange(low=1e-4, high=1e-2, log=True).integer
    assert SearchRange(low=1, high=9, step=2).integer and not SearchRange(low=0, high=1, step=0.25).integer
    assert SearchRange(choices=[[64], [128, 64]]).choices == [[64], [128, 64]]
    for bad, message in [({"low": 1}, "needs low and high"), ({"low": 2, "high": 1}, "must be below high"),
                         ({"low": 0, "high": 1, "log": True}, "log range needs low > 0"),
                         ({"choices": [1], "low": 0}, "either choices or a range"),
                         ({"low": True, "high": 3}, "must be a number"),
                         ({"low": 1e-3, "high": 1e-1, "log": True, "step": 0.01}, "log and step exclude")]:
        with pytest.raises(ValueError, match=message):
            SearchRange(**bad)


def test_search_keys_name_config_keys() -> None:
    config = validate_config(base_config(**{"trainer.optimizer.lr": {"low": 1e-4, "high": 1e-2},
                                            'input_features."color.box".embedding_dim': {"choices": [4, 8]},
                                            "input_features.0.type": {"choices": ["numeric"]}}))
    assert list(config.search) == ["trainer.optimizer.lr", 'input_features."color.box".embedding_dim',
                                   "input_features.0.type"]
    with pytest.raises(InputError, match=r"search\.trainer\.optimiser\.lr: no key 'optimiser' in trainer "
                                         r"\(did you mean 'optimizer'\?\)"):
        validate_config(base_config(**{"trainer.optimiser.lr": {"low": 1e-4, "high": 1e-2}}), "c.yaml")
    with pytest.raises(InputError, match=r"search\.model\.dropout\.x: model\.dropout is a value"):
        validate_config(base_config(**{"model.dropout.x": {"low": 0, "high": 1}}))
    with pytest.raises(InputError, match=r"search\.name: a trial may not change 'name'"):
        validate_config(base_config(name={"choices": ["a", "b"]}))
    assert find_key(validate_config(base_config()).model_dump(mode="json"), "input_features.x.type") == "numeric"


class FixedTrial:
    """Optuna's suggest calls answered with each range's low end or the last choice (what `suggest` passes on)."""

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        assert isinstance(low, float) and isinstance(high, float)
        return low

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        assert isinstance(low, int) and isinstance(high, int)
        return low

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        assert all(isinstance(choice, str | int | float | bool | type(None)) for choice in choices)
        return choices[-1]


def test_suggestions_keep_their_kinds() -> None:
    ranges = {"lr": SearchRange(low=1e-4, high=1e-2, log=True), "layers": SearchRange(low=1, high=4),
              "sizes": SearchRange(choices=[[64], [128, 64]]), "type": SearchRange(choices=["mlp", "cnn"])}
    assert suggest(FixedTrial(), ranges) == {"lr": 1e-4, "layers": 1, "sizes": [128, 64], "type": "cnn"}


def test_durations() -> None:
    assert [parse_duration(text) for text in ("90s", "10m", "1.5h", "45", None)] == [90, 600, 5400, 45, None]
    for bad in ("soon", "-1m", "0", "10 days"):
        with pytest.raises(InputError, match="--time-budget"):
            parse_duration(bad)


def test_init_and_tune_read_time_budgets_alike() -> None:
    """One parser of `--time-budget` (data/budget.py): `luodi init` and `luodi tune` take the same spellings."""
    from luodi.data import budget

    spellings = ("90s", "30sec", "10m", "10min", "1.5h", "2H", " 45 ")
    assert [parse_duration(text) for text in spellings] == [budget.parse_duration(text) for text in spellings] == [
        90, 30, 600, 600, 5400, 7200, 45]


def small_table(rows: int = 40) -> pa.Table:
    return pa.table({"x": np.random.default_rng(0).normal(0, 1, rows), "y": ["a", "b"] * (rows // 2)})


@pytest.mark.parametrize("architecture", ["mlp", "cnn", "transformer"])
def test_init_tune_writes_a_search_space_that_validates(architecture: str, tmp_path: Path) -> None:
    """Every end of every range `init --tune` writes makes a valid config (what `luodi tune` checks first)."""
    starter = dataclasses.replace(plan(small_table(), Path("t.csv"), "y"), architecture=architecture)
    text = render(starter, "t.csv", Path("t.csv")) + search_section(starter)
    raw = yaml.safe_load(text)
    assert "trainer.optimizer.lr" in raw["search"] and "trainer.batch_size" in raw["search"]
    assert "# " in search_section(starter).split("search:")[1]  # each range says why
    space = search_space(raw)  # validates the ends of every range against the config
    assert space.ranges["trainer.optimizer.lr"].log
