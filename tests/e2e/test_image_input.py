"""Image folders through the real CLI: init infers a CNN config that trains; bad images, an empty class folder,
a gray image among color ones (strict) and a missing file are exit code 2 naming the file; skipping is logged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from test_bad_input import expect_error, nothing_registered  # tests/e2e is on sys.path (no __init__)

pytestmark = pytest.mark.e2e


def photos(folder: Path, per_class: int = 12) -> Path:
    """photos/red and photos/blue: 10x12 color images told apart by their dominant channel."""
    rng = np.random.default_rng(0)
    for label, channel in (("red", 0), ("blue", 2)):
        (folder / "photos" / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 80, (10, 12, 3))
            pixels[..., channel] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / "photos" / label / f"{index}.png")
    return folder / "photos"


def test_init_on_an_image_folder_trains_a_cnn_that_predicts_image_paths(luodi, tmp_path: Path) -> None:
    photos(tmp_path)
    made = luodi("init", "--data", "photos", "--json")
    assert made.code == 0, made.stderr
    assert made.json()["features"] == {"image": "image: paths to image files: 12x10 color"}
    config = yaml.safe_load((tmp_path / "luodi.yaml").read_text())
    assert config["model"]["type"] == "cnn" and config["target"] == {"name": "label", "task": "binary",
                                                                      "class_weights": "none",
                                                                      "positive_class": "red",
                                                                      "label_smoothing": 0.1}
    assert config["input_features"][0] == {"name": "image", "type": "image", "height": 10, "width": 12,
                                           "channels": 3, "augment": {"crop_padding": 1}}
    trained = luodi("train", "luodi.yaml", "--set", "trainer.epochs=3", "--json")
    assert trained.code == 0, trained.stderr
    assert trained.json()["rows"] == {"train": 16, "validation": 4, "test": 4}
    # Predicting: paths relative to the table that lists them; a missing one is an error naming it.
    pd.DataFrame({"image": ["photos/red/0.png", "photos/red/nope.png"]}).to_csv(tmp_path / "new.csv", index=False)
    expect_error(luodi("predict", "photos", "--data", "new.csv", "--out", "scored.csv"), "nope.png",
                 "file not found")
    assert not (tmp_path / "scored.csv").exists()
    pd.DataFrame({"image": ["photos/red/0.png"]}).to_csv(tmp_path / "one.csv", index=False)
    scored = luodi("predict", "photos", "--data", "one.csv", "--json")
    assert scored.code == 0, scored.stderr
    assert scored.json()["predictions"][0]["image"] == "photos/red/0.png"  # the input as given, not resolved


def test_a_corrupt_image_is_an_error_naming_it_unless_skipped(luodi, tmp_path: Path) -> None:
    photos(tmp_path)
    assert luodi("init", "--data", "photos").code == 0
    (tmp_path / "photos" / "red" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    expect_error(luodi("train", "luodi.yaml"), "3.png", "not a readable image")
    nothing_registered(luodi)
    skipped = luodi("train", "luodi.yaml", "--set", "input_features.image.on_bad_image=skip",
                    "--set", "trainer.epochs=2")
    assert skipped.code == 0, skipped.stderr
    assert "skipped 1 row(s) that cannot be read" in skipped.stderr and "3.png" in skipped.stderr


def test_an_empty_class_folder_is_an_error_naming_it(luodi, tmp_path: Path) -> None:
    photos(tmp_path)
    (tmp_path / "photos" / "green").mkdir()
    expect_error(luodi("init", "--data", "photos"), "photos/green", "holds no images")


def test_gray_among_color_is_converted_or_an_error_when_strict(luodi, tmp_path: Path) -> None:
    photos(tmp_path)
    Image.fromarray(np.full((10, 12), 99, dtype=np.uint8)).save(tmp_path / "photos" / "blue" / "gray.png")
    assert luodi("init", "--data", "photos").code == 0
    expect_error(luodi("train", "luodi.yaml", "--set", "input_features.image.strict_channels=true"),
                 "gray.png", "a gray image among color ones")
    nothing_registered(luodi)
