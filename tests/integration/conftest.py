"""Fixtures for integration tests: a fork server of writer processes that a test kills with SIGKILL."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

WRITERS = Path(__file__).with_name("writers.py")


def _exited(pid: int) -> bool:
    """A child of the fork server that has exited but is not reaped yet (a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False


class Writers:
    """Drives writers.py: fork writer children, collect the changes they committed, kill them, reap them."""

    def __init__(self, home: Path, package: Path):
        self.process = subprocess.Popen([sys.executable, str(WRITERS), str(home), str(package)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.control: queue.Queue[str] = queue.Queue()
        self.committed: dict[int, list[list[str]]] = {}
        self.lock = threading.Lock()
        self.live: set[int] = set()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            words = line.split()
            if words and words[0] in ("child", "reaped"):
                self.control.put(line.strip())
            elif words and words[0].isdigit():
                with self.lock:
                    self.committed.setdefault(int(words[0]), []).append(words[1:])

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def _expect(self, prefix: str, timeout: float = 60) -> str:
        line = self.control.get(timeout=timeout)
        assert line.startswith(prefix), line
        return line

    def fork(self, kind: str, seed: int) -> int:
        """Start a child writing `kind`; returns its pid."""
        self._send(f"fork {kind} {seed}")
        pid = int(self._expect("child").split()[1])
        self.live.add(pid)
        return pid

    def changes(self, pid: int | None = None) -> list[list[str]]:
        """Committed changes (["version", "alpha", "3"], ...) of one child, or of all children."""
        with self.lock:
            if pid is not None:
                return list(self.committed.get(pid, []))
            return [change for changes in self.committed.values() for change in changes]

    def wait_for_commits(self, pid: int, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.changes(pid)) < count:
            assert time.monotonic() < deadline, f"writer {pid} committed nothing in {timeout} s"
            assert self.process.poll() is None, "the fork server died"
            assert not _exited(pid), f"writer {pid} exited on its own (see its traceback above)"
            time.sleep(0.002)

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.live.discard(pid)

    def reap(self) -> dict[int, int]:
        """Wait for every child; returns pid -> wait status. Every child must have died by SIGKILL."""
        self._send("reap")
        statuses = {}
        while (line := self._expect("reaped")) != "reaped":
            _, pid, status = line.split()
            statuses[int(pid)] = int(status)
        for pid, status in statuses.items():  # none stopped early on an error of its own
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                f"writer {pid} ended with wait status {status}, not by SIGKILL (see its traceback above)"
        return statuses

    def close(self) -> None:
        for pid in list(self.live):
            self.kill(pid)
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def writers(tmp_path: Path, trained_package: Path) -> Iterator[Writers]:
    """A fork server of writers over an empty store in tmp_path/store (registering copies of a tiny model)."""
    server = Writers(tmp_path / "store", trained_package)
    try:
        yield server
    finally:
        server.close()
