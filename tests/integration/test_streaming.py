"""`data.streaming`: a table streamed through training (never read whole) trains, registers, evaluates and serves
like an in-memory run, fits the same feature state on the same rows, resumes exactly, refuses what it cannot
stream, and keeps memory bounded while the file is several times the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from test_resume import assert_same_weights

import luodi.api as api
from luodi.config import load_config
from luodi.data.stream import split_codes
from luodi.errors import InputError
from luodi.features.pipeline import FeaturePipeline, coerce_table
from luodi.store import Store

TRAINER = {"epochs": 6, "batch_size": 32, "optimizer": {"lr": 0.01}, "early_stopping": {"patience": 50}}


def streamed_config(path: Path, base: Path, **data: Any) -> Path:
    config = yaml.safe_load(base.read_text(encoding="utf-8"))
    config["data"].update({"streaming": True, "buffer_rows": 700, **data})
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def as_parquet(csv: Path) -> Path:
    path = csv.with_suffix(".parquet")
    pq.write_table(pacsv.read_csv(csv), path, row_group_size=500)
    return path


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_streamed_run_trains_registers_evaluates_and_serves_like_one_in_memory(
        table_csv, tiny_config, tmp_path: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    """3000 rows: the streamed run's test accuracy is within 0.05 and ROC AUC within 0.03 of the in-memory run's
    (the splits hold other rows: hashed vs stratified), its encoders hold exactly what `FeaturePipeline.fit` gives
    on its training rows, and the registered version evaluates and predicts as any other."""
    csv = table_csv(tmp_path / "table.csv", rows=3000)
    data = as_parquet(csv) if kind == "parquet" else csv
    base = tiny_config(tmp_path / "memory.yaml", data, **TRAINER)
    memory = api.train(base, home=tmp_path / "memory", progress="silent")
    streamed = api.train(streamed_config(tmp_path / "streamed.yaml", base), home=tmp_path / "home", progress="silent")

    codes = split_codes(0, 3000, 42, 0.15, 0.15)
    assert streamed.rows == {"train": int((codes == 0).sum()), "validation": int((codes == 1).sum()),
                             "test": int((codes == 2).sum())}
    assert streamed.metrics["accuracy"] == pytest.approx(memory.metrics["accuracy"], abs=0.05)
    assert streamed.metrics["roc_auc"] == pytest.approx(memory.metrics["roc_auc"], abs=0.03)
    assert streamed.metrics["accuracy"] > 0.8

    config = load_config(base)
    table = coerce_table(pacsv.read_csv(csv), config, str(csv), with_target=True)
    expected = FeaturePipeline.fit(config, table.filter(pa.array(codes == 0))).state()
    package = api.load_model(streamed.model, home=tmp_path / "home")
    got = package.pipeline.state()
    assert got["target"] == expected["target"]
    for mine, theirs in zip(got["features"], expected["features"], strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert mine[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), (mine, key)

    assert streamed.report and f"streamed: metrics of all {streamed.rows['test']:,} rows" in Path(
        streamed.report).read_text(encoding="utf-8")
    report = api.evaluate(streamed.model, str(csv), home=tmp_path / "home", report=False)
    assert report["metrics"]["accuracy"] > 0.8
    served = api.predict(streamed.model, str(csv), home=tmp_path / "home")
    test_rows = np.flatnonzero(codes == 2)
    labels = pacsv.read_csv(csv).column("label").to_numpy(zero_copy_only=False)
    assert (served["label_prediction"].to_numpy()[test_rows] == labels[test_rows]).mean() == pytest.approx(
        streamed.metrics["accuracy"], abs=1e-9)


def test_a_streamed_run_resumes_to_the_same_weights(table_csv, tiny_config, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    ctrl_c_at) -> None:
    """Ctrl-C mid-epoch, then resume: the epoch goes on from the checkpoint's row of the bounded shuffle
    (skip_rows), and the weights equal a straight streamed run's, bit for bit."""
    base = tiny_config(tmp_path / "memory.yaml", table_csv(tmp_path / "table.csv", rows=600),
                       **{**TRAINER, "epochs": 3, "checkpoint_every_steps": 5})
    config = streamed_config(tmp_path / "streamed.yaml", base, buffer_rows=150)
    straight = api.train(config, home=tmp_path / "straight", progress="silent")
    steps = ctrl_c_at(-1)
    api.train(config, home=tmp_path / "count", progress="silent")
    total = steps["count"]

    ctrl_c_at(total // 2 + 3)
    home = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        api.train(config, home=home, progress="silent")
    (run,) = Store(home).list_runs()
    checkpointed = (total // 2 + 2) // 5 * 5
    steps = ctrl_c_at(-1)
    resumed = api.train(resume=run.id, home=home, progress="silent")
    assert steps["count"] == total - checkpointed, "the resume did not continue from its checkpoint"
    assert_same_weights(resumed.package, straight.package)
    assert resumed.metrics == straight.metrics


def test_streaming_refuses_what_it_cannot_stream(review_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`data.streaming: true` with a text feature: an InputError (exit 2) naming the feature and the way out."""
    data = review_csv(tmp_path / "reviews.csv")
    config = {"name": "reviews", "data": {"train": str(data), "streaming": True},
              "target": {"name": "label", "task": "binary"},
              "input_features": [{"name": "review", "type": "text"}], "runtime": {"device": "cpu", "threads": 1}}
    path = tmp_path / "reviews.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(InputError, match=r"data.streaming: feature 'review' is text.*data.streaming: false"):
        api.train(path, home=tmp_path / "home", progress="silent")


@pytest.mark.parametrize("options", [{"normalization": "quantile"}, {"encoding": "piecewise_linear"}])
def test_training_quantiles_cannot_stream(options: dict[str, str], tmp_path: Path) -> None:
    """Quantile normalization and piecewise-linear bins need the whole training column: streaming refuses them by
    name (and `auto` then reads the file whole)."""
    from luodi.config import validate_config
    from luodi.jobs.streamed import refusal

    config = validate_config({"name": "t", "data": {"train": str(tmp_path / "t.csv")},
                              "target": {"name": "y", "task": "binary"},
                              "input_features": [{"name": "x", "type": "numeric", **options}]})
    assert "feature 'x' needs the training quantiles" in str(refusal(config, None))


def test_auto_streams_large_files_that_can_stream_and_reads_the_others_whole(
        table_csv, tiny_config, review_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`data.streaming: auto` (the default) with the size threshold at 0 bytes: the tabular config streams (hashed
    split sizes), a text feature reads the file whole (stratified split sizes) rather than failing."""
    import luodi.jobs.streamed as streamed

    monkeypatch.setattr(streamed, "AUTO_BYTES", 0)
    base = tiny_config(tmp_path / "memory.yaml", table_csv(tmp_path / "table.csv", rows=600), epochs=1)
    config = load_config(base)
    assert config.data.streaming == "auto" and streamed.streaming(config)
    codes = split_codes(0, 600, 42, 0.15, 0.15)
    assert int((codes == 2).sum()) != 90  # the stratified split's test rows: the sizes tell the two apart
    assert api.train(base, home=tmp_path / "home", progress="silent").rows["test"] == int((codes == 2).sum())
    data = review_csv(tmp_path / "reviews.csv")
    text = {"name": "reviews", "data": {"train": str(data)}, "target": {"name": "label", "task": "binary"},
            "input_features": [{"name": "review", "type": "text"}]}
    path = tmp_path / "reviews.yaml"
    path.write_text(yaml.safe_dump(text), encoding="utf-8")
    assert not streamed.streaming(load_config(path))


PEAK = """
import json, resource, sys
import luodi.api as api
result = api.train(sys.argv[1], home=sys.argv[2], progress="silent")
print(json.dumps({"rows": result.rows, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "accuracy": result.metrics["accuracy"]}))
"""


def write_big(path: Path, rows: int) -> Path:
    """`rows` rows of 4 numbers and a category in row groups of 100k: about 40 bytes a row in memory."""
    writer = None
    for start in range(0, rows, 100_000):
        generator = np.random.default_rng(start)
        count = min(100_000, rows - start)
        x = generator.normal(size=(count, 4))
        color = generator.choice(["red", "green", "blue", "violet"], count)
        label = np.where(x[:, 0] + 0.5 * x[:, 1] + (color == "red") > 0.4, "yes", "no")
        table = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "color": color, "label": label})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path


def peak_of(tmp_path: Path, name: str, rows: int) -> dict[str, Any]:
    data = write_big(tmp_path / f"{name}.parquet", rows)
    # Small validation and test shares: their outputs and targets are held for the metrics (a few numbers a row)
    split = {"validation": 0.02, "test": 0.02}
    config = {"name": name, "data": {"train": str(data), "streaming": True, "buffer_rows": 50_000, "split": split},
              "target": {"name": "label", "task": "binary"},
              "input_features": [*({"name": column, "type": "numeric"} for column in "abcd"),
                                 {"name": "color", "type": "category"}],
              "model": {"hidden_sizes": [8]}, "trainer": {"epochs": 1, "batch_size": 2048, "seed": 1},
              "runtime": {"device": "cpu", "threads": 1}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", PEAK, str(path), str(tmp_path / f"{name}-home")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


@pytest.mark.slow
def test_streamed_training_memory_stays_bounded_while_the_file_is_several_times_the_budget(tmp_path: Path) -> None:
    """A whole `luodi train` (one epoch, report, package, registration) on 3M rows (about 150 MiB as Arrow, more
    as the in-memory path's splits and encoded arrays) peaks within a 32 MiB budget of the same run on 300k rows:
    the file is several times the budget, and memory follows the shuffle buffer, not the file."""
    budget_mib, rows = 32, 3_000_000
    assert rows * 5 * 8 / 2**20 > 3 * budget_mib
    small = peak_of(tmp_path, "small", 300_000)
    big = peak_of(tmp_path, "big", rows)
    assert sum(big["rows"].values()) == rows and big["accuracy"] > 0.8
    assert big["peak_mib"] - small["peak_mib"] < budget_mib, (small, big)
