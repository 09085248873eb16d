"""Image and sequence models survive the package round trip: the loaded package predicts exactly what the trained
model did, from image paths or bytes, and a mixed table (image + sequence + numbers + categories) works too. The
model is trained with a moving average of its weights (trainer.ema_decay, as `luodi init` writes for images): the
package holds the average, and export and explanations read it like any weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import luodi.api as api
from luodi.package import load_package


def write_split(folder: Path, name: str, rows: int, seed: int) -> Path:
    """A CSV of image paths (relative to it), a 12-value signal, a number, a category and a label."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["bright", "dark"], rows)
    records = []
    for index, label in enumerate(labels):
        pixels = rng.integers(0, 90, (8, 8)) + (120 if label == "bright" else 0)
        path = Path("images") / f"{name}-{index}.png"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / path)
        signal = rng.normal(0, 1, 12) + (0.5 if label == "bright" else -0.5)
        records.append({"photo": path.as_posix(), "signal": " ".join(f"{v:.4f}" for v in signal),
                        "size": rng.normal(), "shop": rng.choice(["a", "b", "c"]), "label": label})
    path = folder / f"{name}.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def mixed_config(folder: Path, device: str = "cpu") -> dict[str, Any]:
    """Train, validation and test splits written into `folder` and a config for a CNN on all four columns."""
    files = {name: write_split(folder, name, rows, seed) for name, rows, seed in
             (("train", 96, 0), ("validation", 24, 1), ("test", 24, 2))}
    return {
        "name": "mixed", "data": {key: str(path) for key, path in files.items()},
        "target": {"name": "label", "task": "binary"},
        "input_features": [
            {"name": "photo", "type": "image", "augment": {"crop_padding": 1, "horizontal_flip": True}},
            {"name": "signal", "type": "sequence"}, {"name": "size", "type": "numeric"},
            {"name": "shop", "type": "category"},
        ],
        "model": {"type": "cnn", "cnn": {"channels": [4, 8]}, "hidden_sizes": [8]},
        "trainer": {"epochs": 8, "batch_size": 16, "seed": 3, "optimizer": {"lr": 0.01}, "ema_decay": 0.9},
        "runtime": {"device": device, "threads": 1},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, api.TrainResult]:
    folder = tmp_path_factory.mktemp("images")
    config = mixed_config(folder)
    (folder / "mixed.yaml").write_text(yaml.safe_dump(config))
    return folder, api.train(folder / "mixed.yaml", home=folder / "home", progress="silent")


def test_package_reproduces_the_trained_models_test_metrics(trained: tuple[Path, api.TrainResult]) -> None:
    folder, result = trained
    assert result.metrics["accuracy"] >= 0.8
    evaluated = api.evaluate(result.package, folder / "test.csv")
    assert evaluated["metrics"] == result.metrics  # bit-identical outputs after save and load


def test_paths_and_bytes_predict_identically(trained: tuple[Path, api.TrainResult]) -> None:
    folder, result = trained
    frame = pd.read_csv(folder / "test.csv").drop(columns=["label"])
    by_path = api.predict(result.package, folder / "test.csv", keep_input=False)
    records = frame.assign(photo=[(folder / path).read_bytes() for path in frame["photo"]]).to_dict("records")
    by_bytes = api.predict(result.package, records, keep_input=False)
    pd.testing.assert_frame_equal(by_path, by_bytes)
    again = load_package(result.package).predict_frame(folder / "test.csv", str(folder / "test.csv"))
    pd.testing.assert_frame_equal(by_path, again)


def test_package_schema_says_what_image_and_sequence_fields_accept(trained: tuple[Path, api.TrainResult]) -> None:
    _, result = trained
    schema = {item["name"]: item for item in load_package(result.package).manifest["input_schema"]}
    assert schema["photo"]["type"] == "image" and "bytes" in schema["photo"]["dtype"]
    assert (schema["photo"]["height"], schema["photo"]["width"], schema["photo"]["channels"]) == (8, 8, 1)
    assert schema["signal"]["length"] == 12


def test_an_unreadable_image_at_predict_time_names_the_file(trained: tuple[Path, api.TrainResult]) -> None:
    folder, result = trained
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    records = [{"photo": str(folder / "broken.png"), "signal": "0 " * 12, "size": 0.0, "shop": "a"}]
    with pytest.raises(api.InputError, match=r"broken\.png: not a readable image"):
        api.predict(result.package, records)


def test_an_augmented_image_run_resumes_exactly(trained: tuple[Path, api.TrainResult], tmp_path: Path,  # type: ignore[no-untyped-def]
                                                ctrl_c_at) -> None:
    """Augmentation draws from the checkpointed CPU generator: interrupted mid-epoch and resumed, the run ends
    with the weights of an uninterrupted one."""
    from luodi.store import Store

    folder, _ = trained
    config = yaml.safe_load((folder / "mixed.yaml").read_text())
    config["trainer"].update(epochs=2, checkpoint_every_steps=4)
    (tmp_path / "resume.yaml").write_text(yaml.safe_dump(config))
    straight = api.train(tmp_path / "resume.yaml", home=tmp_path / "straight", progress="silent")
    ctrl_c_at(9)  # 6 steps per epoch: inside the second epoch, after its first checkpoint
    with pytest.raises(KeyboardInterrupt):
        api.train(tmp_path / "resume.yaml", home=tmp_path / "resumed", progress="silent")
    ctrl_c_at(-1)
    (run,) = Store(tmp_path / "resumed").list_runs()
    resumed = api.train(resume=run.id, home=tmp_path / "resumed", progress="silent")
    assert (Path(resumed.package) / "weights.safetensors").read_bytes() == \
        (Path(straight.package) / "weights.safetensors").read_bytes()


def test_the_averaged_weights_export_and_explain(trained: tuple[Path, api.TrainResult], tmp_path: Path) -> None:
    """The package of an ema_decay run holds the average (the run's best weights): the ONNX export matches it within
    parity, and explanations give one attribution per column."""
    folder, result = trained
    entry = api.export(str(result.package), tmp_path / "onnx")
    assert float(str(entry["parity_max_abs_diff"])) <= 1e-4
    frame = pd.read_csv(folder / "test.csv").drop(columns=["label"]).head(4)
    frame["photo"] = [str(folder / path) for path in frame["photo"]]
    explained = api.explain(str(result.package), frame, steps=8).to_frame()
    assert {"photo_attribution", "signal_attribution", "size_attribution", "shop_attribution"} <= set(explained)
