"""Nothing luodi loads can run code or slip past its checks: pickles, tampered weights, absurd headers, YAML tags.

RELIABILITY.md items 1-3 and 8.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from luodi.errors import InputError
from luodi.io import sha256_file
from luodi.package import MANIFEST, WEIGHTS, load_package, read_safetensors_header
from luodi.store import Store
from luodi.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint


class Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def pickles(marker: Path, tmp_path: Path) -> dict[str, bytes]:
    """The payload as a bare pickle (two protocols) and inside a torch.save zip, as a checkpoint would be."""
    saved = tmp_path / "saved.pt"
    torch.save({"model": Payload(marker), "step": 1}, saved)
    return {"pickle-2": pickle.dumps(Payload(marker), protocol=2), "pickle-5": pickle.dumps(Payload(marker), 5),
            "torch.save": saved.read_bytes()}


def test_the_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    """Control for the tests below: loaded unsafely, every form of the payload creates its marker."""
    for kind, data in pickles(tmp_path / "control", tmp_path).items():
        (tmp_path / "control").unlink(missing_ok=True)
        if kind == "torch.save":
            (tmp_path / "unsafe.pt").write_bytes(data)
            torch.load(tmp_path / "unsafe.pt", weights_only=False)
        else:
            pickle.loads(data)  # noqa: S301 - the point of the control
        assert (tmp_path / "control").exists(), kind


def copy_package(trained_package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_package, tmp_path / "package"))


def rehash(package: Path) -> None:
    """Update package.json to the weights as they are now, so only the checks after the hash can object."""
    manifest = json.loads((package / MANIFEST).read_text())
    weights = package / WEIGHTS
    manifest["files"][WEIGHTS] = {"sha256": sha256_file(weights), "bytes": weights.stat().st_size}
    (package / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["pickle-2", "pickle-5", "torch.save"])
def test_pickled_checkpoint_is_refused_and_runs_nothing(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    store = Store(tmp_path / "home")
    run_dir = store.run_dir(store.create_run("tiny", {}, {}).id)
    (run_dir / CHECKPOINT_NAME).write_bytes(pickles(marker, tmp_path)[kind])
    with pytest.raises(InputError, match="checkpoint cannot be read"):
        load_checkpoint(run_dir)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle-2", "torch.save"])
@pytest.mark.parametrize("hashes", ["stale", "updated"])
def test_pickled_weights_are_refused_and_run_nothing(trained_package: Path, tmp_path: Path, kind: str,
                                                     hashes: str) -> None:
    marker = tmp_path / "marker"
    package = copy_package(trained_package, tmp_path)
    (package / WEIGHTS).write_bytes(pickles(marker, tmp_path)[kind])
    if hashes == "updated":
        rehash(package)
    with pytest.raises(InputError, match="sha256" if hashes == "stale" else "safetensors header"):
        load_package(package)
    assert not marker.exists()


def test_cut_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    """A torn file (disk full, a copy cut short) is reported as unreadable, not as an internal error."""
    path = save_checkpoint(tmp_path, {"step": 3, "weights": torch.ones(1000)})
    data = path.read_bytes()
    for length in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:length])
        with pytest.raises(InputError, match="checkpoint cannot be read"):
            load_checkpoint(tmp_path)


def test_one_flipped_byte_fails_the_sha256_check(trained_package: Path, tmp_path: Path) -> None:
    package = copy_package(trained_package, tmp_path)
    load_package(package)  # intact, it loads
    weights = bytearray((package / WEIGHTS).read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (package / WEIGHTS).write_bytes(bytes(weights))
    with pytest.raises(InputError, match=f"{WEIGHTS} does not match its sha256"):
        load_package(package)


def tampered(tensors: dict[str, torch.Tensor], change: str, name: str) -> dict[str, torch.Tensor]:
    tensors = dict(tensors)
    if change == "shape":
        tensors[name] = tensors[name].t().contiguous()
    elif change == "flat":
        tensors[name] = tensors[name].flatten()
    elif change == "dtype":
        tensors[name] = tensors[name].double()
    elif change == "missing":
        del tensors[name]
    else:
        tensors["extra.weight"] = torch.zeros(2, 2)
        name = "extra.weight"
    return tensors


@pytest.mark.parametrize("change", ["shape", "flat", "dtype", "missing", "extra"])
def test_weights_that_do_not_fit_the_architecture_are_rejected_by_name(trained_package: Path, tmp_path: Path,
                                                                        change: str) -> None:
    package = copy_package(trained_package, tmp_path)
    tensors = load_file(str(package / WEIGHTS))
    name = next(key for key, tensor in tensors.items() if tensor.ndim == 2 and tensor.shape[0] != tensor.shape[1])
    save_file(tampered(tensors, change, name), str(package / WEIGHTS), metadata={"format": "pt"})
    rehash(package)
    with pytest.raises(InputError, match="extra.weight" if change == "extra" else name.replace(".", r"\.")):
        load_package(package)


@pytest.mark.parametrize("length", [2**60, 2**64 - 1, (100 << 20) + 1, 10_000])
def test_an_absurd_header_length_is_rejected_at_once(trained_package: Path, tmp_path: Path, length: int) -> None:
    package = copy_package(trained_package, tmp_path)
    (package / WEIGHTS).write_bytes(struct.pack("<Q", length) + b'{"a": {}}' + b"\0" * 100)
    rehash(package)
    started = time.perf_counter()
    with pytest.raises(InputError, match="header claims"):
        load_package(package)
    with pytest.raises(InputError, match="header claims"):
        read_safetensors_header(package / WEIGHTS)
    assert time.perf_counter() - started < 1.0


YAML_TAG = '!!python/object/apply:os.system ["touch {marker}"]'


def test_yaml_python_tag_is_a_config_error_and_runs_nothing(table_csv, tiny_config, tmp_path: Path) -> None:
    marker, control = tmp_path / "MARKER", tmp_path / "CONTROL"
    yaml.unsafe_load(YAML_TAG.format(marker=control))  # control: an unsafe loader does run it
    assert control.exists()

    config = tiny_config(tmp_path / "tiny.yaml", table_csv(tmp_path / "table.csv", rows=200))
    text = config.read_text().replace("name: tiny", "name: " + YAML_TAG.format(marker=marker))
    assert "python/object" in text
    config.write_text(text)
    env = {**os.environ, "LUODI_HOME": str(tmp_path / "home")}
    env.pop("LUODI_DEBUG", None)
    for args in (["train", str(config)],
                 ["train", str(tiny_config(tmp_path / "clean.yaml", tmp_path / "table.csv")),
                  "--set", "name=" + YAML_TAG.format(marker=marker)]):
        done = subprocess.run([sys.executable, "-m", "luodi.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
        assert not marker.exists()
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())
