"""Fixtures for the web UI: a store holding the session's tiny model plus made-up runs, and a real UI server on
127.0.0.1 (luodi.ui.server.background) with an httpx client."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ui_helpers import UIServer

from luodi.serve.settings import make_config
from luodi.ui.server import background


@pytest.fixture
def ui_home(trained_store: Path) -> Path:
    """The store the UI shows: a private copy holding the session's tiny model as tiny/1."""
    return trained_store


@pytest.fixture
def ui_server(ui_home: Path) -> Callable[..., contextlib.AbstractContextManager[UIServer]]:
    """`with ui_server(api_keys=(...), admin_keys=(...)) as ui:` a real UI server over `ui_home` on 127.0.0.1."""

    @contextlib.contextmanager
    def start(**settings: Any) -> Iterator[UIServer]:
        config = make_config(**{"port": 0, **settings})
        with background(config, ui_home) as running, \
                httpx.Client(base_url=running.url, timeout=60, follow_redirects=False) as client:
            yield UIServer(running.url, client, running.app)

    return start
