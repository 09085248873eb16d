"""The web UI's studies data, read back from the storage `luodi tune` wrote: the list and one study's summary hold
the numbers `api.tune` returned (trials, best, importances with the same seed, the registered version), and reading
a store with no studies creates nothing, on either engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import luodi.api as api
from luodi.errors import InputError
from luodi.store import Store
from luodi.ui.studies import list_studies, study_page_data


def test_studies_read_back_what_tune_wrote(store_backend: str, tmp_path: Path, table_csv: Callable[..., Path],
                                           tiny_config: Callable[..., Path]) -> None:
    """On SQLite (studies.db beside luodi.db) and on PostgreSQL (Optuna's tables in the store's database)."""
    home = tmp_path / "home"
    assert list_studies(Store(home)) == []
    assert not (home / "studies.db").exists()  # a GET creates no study storage
    with pytest.raises(InputError, match="study 'tiny' not found; studies: none yet"):
        study_page_data(Store(home), "tiny")

    config = tiny_config(tmp_path / "tune.yaml", table_csv(tmp_path / "data.csv", rows=240), epochs=3)
    raw = yaml.safe_load(config.read_text())
    ranges = {"trainer.optimizer.lr": {"low": 1e-4, "high": 3e-2, "log": True},
              "model.hidden_sizes": {"choices": [[4], [8]]}}
    raw["search"] = ranges
    config.write_text(yaml.safe_dump(raw))
    result = api.tune(config, 3, home=home, progress="silent")
    store = Store(home)

    (row,) = list_studies(store)
    assert row["study"] == "tiny" and row["model"] == "tiny" and row["metric"] == result.metric
    assert row["trials"] == 3 and row["counts"] == {state: count for state, count in result.counts.items() if count}
    assert (row["best_trial"], row["best_value"]) == (result.best["number"], result.best["value"])
    assert row["started"] <= row["updated"]

    data = study_page_data(store, "tiny")
    assert data["direction"] == result.direction and data["counts"] == result.counts
    assert [trial["value"] for trial in data["trials"]] == [trial["value"] for trial in result.trials]
    assert [trial["params"] for trial in data["trials"]] == [trial["params"] for trial in result.trials]
    assert data["importances"] == result.importances  # the seed `luodi tune` used
    best = data["best"]
    assert (best["number"], best["value"], best["values"]) == (result.best["number"], result.best["value"],
                                                               result.best["params"])
    assert best["run_id"] == result.run_id and best["test_metrics"] == result.metrics
    assert best["model"] == result.model
    assert set(data["search"]) == set(ranges) and data["search"]["model.hidden_sizes"]["choices"] == [[4], [8]]
    with pytest.raises(InputError, match="study 'other' not found; studies: tiny"):
        study_page_data(store, "other")
