"""Models and runs in the store: `load_model`, runs and versions listed and shown, alias moves, history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from luodi.config import is_valid_name
from luodi.errors import InputError
from luodi.store import ModelVersion, Run, Store, observed, parse_reference

if TYPE_CHECKING:
    from luodi.package import ModelPackage


def load_model(model: str | Path | ModelPackage | dict[str, Any], *, home: str | Path | None = None,
               base: str | Path | None = None) -> Any:
    """A verified, loaded package from a reference (`name`, `name@alias`, `name/version`) or a folder path (or the
    package itself, already loaded, or `train(...).model`, `{"name": ..., "version": ...}`).

    `base`: for a LoRA adapter package, where its base checkpoint is now (default $LUODI_BASE, else the folder it
    was trained from); its sha256 must be the recorded one."""
    from luodi.package import ModelPackage, load_package

    if isinstance(model, ModelPackage):
        return model
    if isinstance(model, dict):
        if not isinstance(model.get("name"), str) or not isinstance(model.get("version"), int):
            raise InputError(f"model {model!r}: expected a reference, a package folder or train(...).model, "
                             "{'name': ..., 'version': ...}")
        model = f"{model['name']}/{model['version']}"
    path = Path(model)
    if _is_package_folder(path):
        return load_package(path, base)
    not_found = InputError(f"{model}: not a model package folder nor a model reference (name, name@alias, name/3)")
    if isinstance(model, Path):
        raise not_found
    if "/" in model and not is_valid_name(model.partition("@")[0].partition("/")[0]):
        raise not_found  # a path that is not a package folder, rather than a misspelt version
    reference = parse_reference(model)
    return load_package(Store(home).resolve(reference).path, base)


def _is_package_folder(path: Path) -> bool:
    """A folder holding package.json; a name the OS refuses (too long, a NUL byte) is no folder, not a crash."""
    try:
        return path.is_dir() and (path / "package.json").exists()
    except (OSError, ValueError):
        return False


def list_runs(*, name: str | None = None, limit: int = 50, home: str | Path | None = None) -> list[Run]:
    """Runs, newest first; a 'running' run whose process is gone reads 'stopped'."""
    return [observed(run) for run in Store(home).list_runs(name, limit)]


def show_run(run_id: str, *, home: str | Path | None = None) -> dict[str, Any]:
    store = Store(home)
    run = observed(store.get_run(run_id))
    return {**run.to_dict(), "history": store.epoch_history(run.id), "dir": str(store.run_dir(run.id))}


def list_models(*, home: str | Path | None = None) -> list[dict[str, Any]]:
    return Store(home).list_models()


def show_model(model: str, *, home: str | Path | None = None) -> list[ModelVersion]:
    """All versions of a model name, or the one version a reference points at."""
    store = Store(home)
    reference = parse_reference(model)
    if not reference.bare:
        return [store.resolve(reference)]
    return store.list_versions(model)


def promote(name: str, version: int, alias: str, *, reason: str = "", home: str | Path | None = None) -> dict[str, Any]:
    """Point `name@alias` at `version` (recorded in the event log)."""
    return Store(home).set_alias(name, alias, version, reason)


def rollback(name: str, alias: str, *, reason: str = "", home: str | Path | None = None) -> dict[str, Any]:
    """Point `name@alias` back at the version it pointed at before its last move (recorded in the event log)."""
    return Store(home).rollback_alias(name, alias, reason)


def history(model: str, *, home: str | Path | None = None) -> list[dict[str, Any]]:
    """The event log for a model: registrations and alias moves, newest first."""
    store = Store(home)
    store.list_versions(model)  # an unknown (or invalid) name is an error, not an empty history
    return store.model_events(model)
