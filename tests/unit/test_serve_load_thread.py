"""`in_passing_thread`: the lifespan loads models in a thread that ends, so its OpenMP team ends with it."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from luodi.serve.state import in_passing_thread


def test_the_loading_thread_returns_raises_and_ends() -> None:
    seen: list[threading.Thread] = []

    def load(width: int) -> float:
        seen.append(threading.current_thread())
        return float(torch.ones(width).sum())

    def broken() -> None:
        raise ValueError("no such package")

    async def both() -> float:
        result = await in_passing_thread(load, 4)
        with pytest.raises(ValueError, match="no such package"):
            await in_passing_thread(broken)
        return result

    assert asyncio.run(both()) == 4.0
    assert seen[0] is not threading.main_thread()
    seen[0].join(timeout=5)
    assert not seen[0].is_alive()
