"""The embedded PostgreSQL is never orphaned: real processes, real signals, real servers.

Each test has a data folder of its own; the servers here are not the suite's test server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.embedded import PID_FILE, postmaster_pid, serves

REPO = Path(__file__).resolve().parent.parent

# Starts the embedded server in the folder argv[1], prints its URL, exits cleanly on EOF.
HOLDER = """
import sys
from pathlib import Path
from app.embedded import start_embedded
print(start_embedded(Path(sys.argv[1])), flush=True)
sys.stdin.read()
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any database or Hotline setting, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HOTLINE_", "DATABASE_URL", "TEST_DATABASE_URL"))
    }
    return {**env, "PYTHONPATH": str(REPO), **extra}


def until(check: Callable[[], object], *, within: float = 30.0, what: str) -> None:
    """Poll ``check`` until it is truthy, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Holder:
    """A process using the embedded server in ``folder`` until told to exit."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=folder.parent,
            env=clean_env(),
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("postgresql://"), "the holder did not start the server"

    def exit_cleanly(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0
        self._close_pipes()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def answers(url: str) -> bool:
    async def select_one() -> object:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    return asyncio.run(select_one()) == 1


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A data folder; whatever server a failed test left in it is stopped afterwards."""
    data = tmp_path / "data"
    yield data
    pid = postmaster_pid(data / "pg")
    if pid is not None and serves(pid, data / "pg"):
        os.kill(pid, signal.SIGQUIT)


class TestOrphans:
    def test_a_start_after_a_killed_user_reuses_its_server_and_a_clean_exit_then_stops_it(
        self, folder: Path
    ) -> None:
        first = Holder(folder)
        server = postmaster_pid(folder / "pg")
        assert server is not None
        first.kill()
        assert serves(server, folder / "pg"), "SIGKILL leaves the server running (an orphan)"

        second = Holder(folder)
        assert postmaster_pid(folder / "pg") == server, "the orphan is reused, not replaced"
        assert answers(second.url)
        second.exit_cleanly()
        until(lambda: not serves(server, folder / "pg"), what="the adopted server to stop")

    def test_the_server_keeps_running_while_another_process_still_uses_it(
        self, folder: Path
    ) -> None:
        first, second = Holder(folder), Holder(folder)
        server = postmaster_pid(folder / "pg")
        assert server is not None
        first.exit_cleanly()
        assert answers(second.url)
        second.exit_cleanly()
        until(lambda: not serves(server, folder / "pg"), what="the last user to stop it")

    @pytest.mark.parametrize("stale", ["another_program", "a_process_that_is_gone"])
    def test_a_stale_pid_file_does_not_stop_the_server_from_starting_or_stopping(
        self, folder: Path, stale: str
    ) -> None:
        first = Holder(folder)
        crashed = (folder / "pg" / PID_FILE).read_text().split("\n", 1)[1]
        first.exit_cleanly()
        if stale == "another_program":
            other = os.getpid()  # alive, and no PostgreSQL
        else:
            gone = subprocess.Popen([sys.executable, "-c", "pass"])
            gone.wait()
            other = gone.pid
        (folder / "pg" / PID_FILE).write_text(f"{other}\n{crashed}")

        second = Holder(folder)
        server = postmaster_pid(folder / "pg")
        assert server is not None
        assert server != other
        assert answers(second.url)
        second.exit_cleanly()
        until(lambda: not serves(server, folder / "pg"), what="the server to stop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(process: subprocess.Popen[bytes], port: int) -> bool:
    assert process.poll() is None, "hotline serve exited before it was ready"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class TestServeSignals:
    @pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
    def test_a_hang_up_or_terminate_stops_serve_and_its_embedded_server(
        self, folder: Path, sig: signal.Signals
    ) -> None:
        port = free_port()
        env = clean_env(
            HOTLINE_DATA_DIR=str(folder),
            HOTLINE_ADMIN_PASSWORD="admin-password-for-tests",
            HOTLINE_ARGON2_MEMORY_KIB="64",
            HOTLINE_ARGON2_TIME_COST="1",
            HOTLINE_ARGON2_PARALLELISM="1",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--migrate"],
            cwd=folder.parent,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            until(lambda: ready(process, port), within=120, what="hotline serve to be ready")
            server = postmaster_pid(folder / "pg")
            assert server is not None
            assert serves(server, folder / "pg")
            process.send_signal(sig)
            process.wait(timeout=60)
            until(lambda: not serves(server, folder / "pg"), what="the embedded server to stop")
        finally:
            if process.poll() is None:
                process.kill()
