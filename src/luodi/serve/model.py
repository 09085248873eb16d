"""A served model: its loaded, warmed version (swapped atomically on reload) and the batch function it runs.

A request is validated against the version that is current when it arrives and runs on that same version,
even if a reload swaps in a newer one meanwhile; so a reload under load never mixes schemas and never fails
a request. A batch that fails on one request's rows (an infinite number, an undecodable image) is re-run
request by request, so only the bad request gets the error and its batch-mates their results.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from luodi.errors import InputError
from luodi.features.unseen import Unseen
from luodi.package import ModelPackage, load_package, verify_package
from luodi.serve.backends import Backend, check_backend, choose_backend
from luodi.serve.schema import Limits, ServingSchema, concat_columns
from luodi.serve.settings import ServeConfig
from luodi.store import Store, parse_reference
from luodi.tasks import Predictions

log = logging.getLogger("luodi.serve")


@dataclass(frozen=True)
class Reference:
    """What `luodi serve` was asked for: a store reference (name, name@alias, name/3) or a package folder."""

    text: str
    home: Path | None

    @functools.cached_property
    def store(self) -> Store:
        """Opened once: the reload watcher resolves the reference every couple of seconds."""
        return Store(self.home)

    @property
    def follows_alias(self) -> bool:
        return not Path(self.text).is_dir() and parse_reference(self.text).follows_alias

    def resolve(self) -> tuple[str, int, Path]:
        """(model name, version, package folder) the reference points at now."""
        path = Path(self.text)
        if path.is_dir() and (path / "package.json").exists():  # a folder: its name says the version (vN), or 0
            manifest = json.loads((path / "package.json").read_text(encoding="utf-8"))
            version = int(path.name[1:]) if re.fullmatch(r"v[0-9]{1,9}", path.name) else 0
            return str(manifest.get("name", path.name)), version, path
        found = self.store.resolve(self.text)
        return found.name, found.version, found.path


@dataclass(frozen=True)
class Loaded:
    """One verified, warmed package version with its backend and request schema."""

    name: str
    version: int
    package: ModelPackage
    backend: Backend
    schema: ServingSchema
    loaded_at: float
    strict: bool = False  # values never seen in training are an InputError (422), not a warning


@dataclass(frozen=True)
class Payload:
    """One request's rows as columns, tied to the version that validated them."""

    loaded: Loaded
    columns: dict[str, Any]
    rows: int


def preflight(reference: Reference, config: ServeConfig) -> str:
    """Everything that can be checked before a server starts (InputError, exit 2): the reference resolves, the
    package verifies, its fields are servable, the backend exists. Returns 'reference -> name/version'."""
    name, version, path = reference.resolve()
    manifest = verify_package(path)
    ServingSchema(manifest, Limits(config.max_rows, config.max_string_length))
    check_backend(manifest, config.backend, path)
    return f"{reference.text} -> {name}/{version}"


def load_version(reference: Reference, config: ServeConfig) -> Loaded:
    """Resolve, verify, load and warm the version a reference points at (raises InputError when it is broken)."""
    name, version, path = reference.resolve()
    package = load_package(path)
    schema = ServingSchema(package.manifest, Limits(config.max_rows, config.max_string_length))
    loaded = Loaded(name, version, package, choose_backend(package, config.backend, config.threads), schema,
                    time.time(), config.strict)
    warm_up(loaded, config.max_batch_size)
    return loaded


def warm_up(loaded: Loaded, max_batch_size: int) -> None:
    """Run the model on sample rows at batch 1 and at the largest batch, so the first callers pay no set-up."""
    if hasattr(loaded.package.pipeline.target, "prompt_ids"):  # text_generation: an empty sample text has no rows
        from luodi.models.generation import Sampling

        for _ in loaded.package.generate("a", Sampling(max_tokens=2)):
            pass
        return
    for rows in sorted({1, min(max_batch_size, 256)}):
        records = [loaded.schema.sample_record] * rows
        results = run_batch([Payload(loaded, loaded.schema.columns(records), rows)])
        if isinstance(results[0], Exception):
            raise InputError(f"{loaded.name}/{loaded.version}: warm-up failed: {results[0]}")


def _run_group(loaded: Loaded, payloads: list[Payload]) -> list[Predictions | Exception]:
    names = loaded.schema.names
    columns = {name: concat_columns([payload.columns[name] for payload in payloads]) for name in names}
    try:
        _, encoded = loaded.package.encode(loaded.schema.table(columns), "request", strict=loaded.strict)
        outputs = loaded.backend.run(encoded)
    except InputError as error:
        if len(payloads) == 1:
            return [error]
        return [_run_group(loaded, [payload])[0] for payload in payloads]  # isolate the bad request
    predictions = loaded.package.decode(outputs)
    if len(payloads) == 1:
        return [_with_unseen(predictions, encoded.unseen)]
    results: list[Predictions | Exception] = []
    start = 0
    for payload in payloads:
        end = start + payload.rows
        part = predictions.slice(start, end)
        results.append(_with_unseen(part, _unseen(loaded, payload)) if encoded.unseen.counts else part)
        start = end
    return results


def _unseen(loaded: Loaded, payload: Payload) -> Unseen:
    """Which of a batch's requests brought the unseen values: each is encoded again alone (only when some did)."""
    _, encoded = loaded.package.encode(loaded.schema.table(payload.columns), "request")
    return encoded.unseen


def _with_unseen(predictions: Predictions, unseen: Unseen) -> Predictions:
    return replace(predictions, warnings=tuple(unseen.messages()), unseen=tuple(unseen.counts.items()))


def _runner(payload: Any) -> Callable[[Loaded, list[Any]], list[Any]]:
    """How a group of such payloads runs on one version: predictions, or what another kind of payload names as its
    `run_group` (embeddings, serve/embeddings.py), so every request to a model shares its one queue and thread."""
    return getattr(payload, "run_group", _run_group)


def run_batch(payloads: list[Any]) -> list[Any]:
    """Run one batch (in the model's worker thread): per payload, in order, its result (the task's typed
    predictions for a `Payload`) or an error."""
    first = (_runner(payloads[0]), payloads[0].loaded)
    if all(_runner(payload) is first[0] and payload.loaded is first[1] for payload in payloads):
        return first[0](first[1], payloads)
    results: dict[int, Any] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for index, payload in enumerate(payloads):  # a reload happened between these requests, or kinds differ
        groups.setdefault((id(_runner(payload)), id(payload.loaded)), []).append(index)
    for indices in groups.values():
        group = [payloads[index] for index in indices]
        results.update(zip(indices, _runner(group[0])(group[0].loaded, group), strict=True))
    return [results[index] for index in range(len(payloads))]


class ServedModel:
    """The name clients call; `current` is replaced in one assignment when a reload succeeds."""

    def __init__(self, reference: Reference, loaded: Loaded):
        self.reference = reference
        self.current = loaded
        self.refused: int | None = None  # a version that failed to load: not retried until the alias moves again

    @property
    def name(self) -> str:
        return self.current.name

    def pending_version(self) -> tuple[int, Path] | None:
        """The version the alias points at now, when it differs from the one served and was not refused."""
        if not self.reference.follows_alias:
            return None
        _, version, path = self.reference.resolve()
        if version == self.current.version or version == self.refused:
            return None
        return version, path

    def reload(self, config: ServeConfig, loader: Callable[[Reference, ServeConfig], Loaded] | None = None) -> bool:
        """Load, verify and warm the alias's new version, then swap; a broken version is refused. Blocking."""
        pending = self.pending_version()
        if pending is None:
            return False
        try:
            loaded = (loader or load_version)(self.reference, config)
        except Exception as error:  # noqa: BLE001 - whatever breaks the new version, the old one keeps serving
            self.refused = pending[0]
            log.error("refusing %s/%s: %s; still serving version %s", self.name, pending[0], error,
                      self.current.version)
            raise
        if loaded.name != self.current.name:
            raise InputError(f"{self.reference.text} now names model {loaded.name!r}, not {self.current.name!r}")
        previous, self.current, self.refused = self.current, loaded, None
        log.info("serving %s/%s (was %s)", loaded.name, loaded.version, previous.version)
        return True
