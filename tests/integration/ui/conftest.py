"""Fixtures for the web UI: a store holding the session's tiny model plus made-up runs, and a real UI server on
127.0.0.1 (luodi.ui.server.background) with an httpx client."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from luodi.serve.settings import make_config
from luodi.store import Store
from luodi.ui.server import background

READ_KEY = "read-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"


def add_run(store: Store, name: str, *, status: str = "finished", metrics: dict[str, float] | None = None,
            tags: list[str] | None = None, day: str | None = None, epochs: int = 3, **config: Any) -> str:
    """A run recorded through the store as a training job records one (row, epochs, end), on `day` if given."""
    run = store.create_run(name, {"name": name, "tags": tags or [], **config}, {})
    for epoch in range(1, epochs + 1):
        store.log_epoch(run.id, epoch, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                                        "val_accuracy": 0.5 + 0.1 * epoch})
    if status != "running":
        store.update_run(run.id, status=status, metrics=metrics or {})
    if day is not None:
        with store.transaction() as connection:
            connection.execute("UPDATE runs SET created_at = ? WHERE id = ?", (f"{day}T12:00:00+0000", run.id))
    return run.id


@pytest.fixture
def ui_home(trained_package: Path, tmp_path: Path) -> Path:
    """A private copy of the store holding the session's tiny model as tiny/1."""
    home = tmp_path / "store"
    shutil.copytree(trained_package.parents[2], home)
    return home


@dataclass
class UIServer:
    url: str
    client: httpx.Client
    app: Any

    def csrf(self, path: str, **headers: str) -> str:
        """The CSRF token of the forms on the page at `path`."""
        page = self.client.get(path, headers=headers)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert found is not None, "no form with a CSRF token on " + path
        return found.group(1)

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        """A form POST from this site's own pages (Origin set as a browser sets it)."""
        return self.client.post(path, data=data, headers={"Origin": self.url, **headers})


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
