"""The reference profile the training job writes into every package: covered by the package's hashes, describing
every feature type (images and sequences included) and the outputs; off with monitor.profile: false."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from test_image_package import mixed_config

import luodi.api as api
from luodi.errors import InputError
from luodi.monitor.profile import PROFILE_FILE, read_profile
from luodi.package import load_package, verify_package


def test_the_profile_is_a_hashed_package_file(trained_package: Path, tmp_path: Path) -> None:
    manifest = verify_package(trained_package)
    assert PROFILE_FILE in manifest["files"]
    profile = read_profile(trained_package, manifest)
    assert set(profile["features"]) == {"size", "age", "income", "color"}
    assert set(profile["outputs"]) == {"prediction", "probabilities.no", "probabilities.yes"}
    assert profile["outputs_split"] == "validation" and profile["rows"] == manifest["data"]["rows"]["train"]
    assert (trained_package / PROFILE_FILE).stat().st_size < 64_000
    changed = tmp_path / "changed"
    shutil.copytree(trained_package, changed)
    text = (changed / PROFILE_FILE).read_text()
    (changed / PROFILE_FILE).write_text(text.replace('"format":1', '"format":1 '))
    with pytest.raises(InputError, match="profile.json does not match its sha256"):
        load_package(changed)


def test_images_and_sequences_are_profiled(tmp_path: Path) -> None:
    config = mixed_config(tmp_path)
    config["trainer"]["epochs"] = 1
    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(config))
    package = Path(api.train(tmp_path / "mixed.yaml", home=tmp_path / "home", progress="silent").package)
    profile = json.loads((package / PROFILE_FILE).read_text())
    photo = profile["features"]["photo"]
    assert photo["type"] == "image" and set(photo["aspects"]) == {"width", "height", "brightness"}
    assert photo["aspects"]["width"]["quantiles"][0] == 8 and photo["aspects"]["height"]["quantiles"][-1] == 8
    brightness = photo["aspects"]["brightness"]
    assert 0.05 < brightness["quantiles"][0] < brightness["quantiles"][-1] < 0.9  # dark and bright images
    assert set(profile["features"]["signal"]["aspects"]) == {"mean"}


def test_the_profile_can_be_turned_off(tmp_path: Path, table_csv: Callable[..., Path],
                                      tiny_config: Callable[..., Path]) -> None:
    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=120), epochs=1)
    result = api.train(config, ["monitor.profile=false"], home=tmp_path / "home", progress="silent")
    manifest = verify_package(Path(result.package))
    assert PROFILE_FILE not in manifest["files"]
    with pytest.raises(InputError, match="no reference profile"):
        read_profile(Path(result.package), manifest)
