"""Fixtures for serving tests: a private store with the session's tiny model, and real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import Server

from luodi.serve.model import Reference
from luodi.serve.server import background
from luodi.serve.settings import make_config


@pytest.fixture
def store_home(trained_package: Path, tmp_path: Path) -> Path:
    """A private copy of the store that holds the session's tiny model as tiny/1."""
    home = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], home)
    return home


@pytest.fixture
def serve(store_home: Path) -> Iterator[Callable[..., contextlib.AbstractContextManager[Server]]]:
    """`with serve("tiny", max_batch_size=8, loader=..., endpoints=[...]) as server:` a real server on 127.0.0.1.

    `endpoints` are extension endpoint factories (functions of the ServerState), as `create_app` takes them.
    """

    @contextlib.contextmanager
    def start(*models: str, loader: Any = None, headers: dict[str, str] | None = None,
              endpoints: Sequence[Any] = (), **settings: Any) -> Iterator[Server]:
        config = make_config(**{"port": 0, "reload_interval_s": 0, "log_flush_s": 0.2, **settings})
        extra: dict[str, Any] = {"loader": loader} if loader is not None else {}
        if endpoints:
            extra["endpoints"] = endpoints
        references = [Reference(model, store_home) for model in (models or ("tiny",))]
        with background(references, config, store_home, **extra) as running, \
                httpx.Client(base_url=running.url, timeout=30, headers=headers) as client:
            yield Server(running, client)

    yield start
