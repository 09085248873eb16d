"""What the UI tests share: keys, a run recorded through the store, and a client of a running UI server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from luodi.store import Store

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
