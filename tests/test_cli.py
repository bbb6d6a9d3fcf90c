"""The ``hotline`` command as an operator runs it: real processes against the test database."""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from httpx import AsyncClient

from app.cli import Demo, demo_choice, prepare, should_seed
from app.config import Settings, get_settings
from app.db import plain_url
from app.demo import AGENTS
from tests.fixtures.factories import ADMIN_PASSWORD, Api, expect, login
from tests.test_cli_embedded import clean_env

NEW_PASSWORD = "a-new-admin-password"


async def hotline(
    *args: str, env: dict[str, str], stdin: bytes | None = b"", cwd: Path | None = None
) -> tuple[int, str]:
    """Run ``hotline ARGS``; its exit code and what it wrote to stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def operator_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None
    return clean_env(
        DATABASE_URL=settings.database_url,
        HOTLINE_ARGON2_MEMORY_KIB="64",
        HOTLINE_ARGON2_TIME_COST="1",
        HOTLINE_ARGON2_PARALLELISM="1",
    )


async def signs_in(client: AsyncClient, password: str) -> bool:
    response = await client.post(
        "/api/v1/auth/token", data={"username": "admin", "password": password}
    )
    return response.status_code == 200


async def password_events(settings: Settings) -> list[asyncpg.Record]:
    assert settings.database_url is not None
    conn = await asyncpg.connect(plain_url(settings.database_url))
    try:
        return await conn.fetch(  # type: ignore[no-any-return]
            "SELECT actor, data FROM events WHERE type = 'agent.updated' "
            "AND data->'fields' ? 'password'"
        )
    finally:
        await conn.close()


class TestSetPassword:
    async def test_sets_the_password_revokes_earlier_tokens_and_records_an_event(
        self, api: Api, settings: Settings
    ) -> None:
        code, err = await hotline(
            "set-password", "admin", env=operator_env(settings), stdin=f"{NEW_PASSWORD}\n".encode()
        )
        assert code == 0, err
        assert (await api.get("/api/v1/agents/me")).status_code == 401
        assert await signs_in(api.client, NEW_PASSWORD)
        assert not await signs_in(api.client, ADMIN_PASSWORD)
        [event] = await password_events(settings)
        assert event["actor"].startswith("operator")

    async def test_refuses_an_unknown_user(self, api: Api, settings: Settings) -> None:
        code, err = await hotline(
            "set-password", "nobody", env=operator_env(settings), stdin=b"whatever-password\n"
        )
        assert code == 1
        assert "no user named 'nobody'" in err
        assert await password_events(settings) == []

    async def test_refuses_a_password_the_api_would_refuse_and_changes_nothing(
        self, api: Api, settings: Settings
    ) -> None:
        code, err = await hotline("set-password", "admin", env=operator_env(settings), stdin=b"")
        assert code == 1
        assert "password refused" in err
        expect(await api.get("/api/v1/agents/me"), 200)
        assert await signs_in(api.client, ADMIN_PASSWORD)
        assert await password_events(settings) == []

    async def test_on_a_terminal_two_different_entries_change_nothing(
        self, api: Api, settings: Settings
    ) -> None:
        code, err = await typed_on_a_terminal(settings, [NEW_PASSWORD, NEW_PASSWORD + "x"])
        assert code == 1, err
        assert "differ" in err
        assert await signs_in(api.client, ADMIN_PASSWORD)

    async def test_on_a_terminal_the_password_typed_twice_is_set(
        self, api: Api, settings: Settings
    ) -> None:
        code, err = await typed_on_a_terminal(settings, [NEW_PASSWORD, NEW_PASSWORD])
        assert code == 0, err
        assert await signs_in(api.client, NEW_PASSWORD)
        await login(api.client, "admin", NEW_PASSWORD)


async def typed_on_a_terminal(settings: Settings, entries: list[str]) -> tuple[int, str]:
    """Run set-password with a terminal as stdin, typing each entry after its prompt."""
    controller, terminal = pty.openpty()
    # A new session has no controlling terminal: getpass reads the pty given as stdin.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "set-password",
        "admin",
        env=operator_env(settings),
        stdin=terminal,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(terminal)
    assert process.stderr is not None
    seen = b""
    try:
        for entry in entries:
            while b"password" not in seen.lower().rsplit(b"\n", 1)[-1]:
                chunk = await asyncio.wait_for(process.stderr.read(1), timeout=60)
                assert chunk, f"exited before asking: {seen!r}"
                seen += chunk
            seen += b"\n"  # the prompt is answered; wait for the next one
            os.write(controller, f"{entry}\n".encode())
        rest = await asyncio.wait_for(process.stderr.read(), timeout=60)
        code = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        os.close(controller)
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, (seen + rest).decode()


class TestServePort:
    async def test_a_taken_port_fails_before_any_one_time_work_and_says_what_to_do(
        self, tmp_path: Path
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = clean_env(HOTLINE_DATA_DIR=str(tmp_path / "data"))
            code, err = await hotline(
                "serve", "--port", str(port), "--migrate", env=env, cwd=tmp_path
            )
        assert code == 1
        assert f"port {port} on 127.0.0.1 is already in use" in err
        assert f"make run PORT={port + 1}" in err
        assert not (tmp_path / "data" / "pg").exists(), "no database was started"

    async def test_the_port_can_be_chosen_by_hotline_port(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = clean_env(HOTLINE_DATA_DIR=str(tmp_path / "data"), HOTLINE_PORT=str(port))
            code, err = await hotline("serve", env=env, cwd=tmp_path)
        assert code == 1
        assert f"port {port} on 127.0.0.1 is already in use" in err


class TestDemoChoice:
    @pytest.mark.parametrize(
        ("choice", "embedded", "seeded"),
        [
            (Demo.AUTO, True, True),
            (Demo.AUTO, False, False),
            (Demo.YES, True, True),
            (Demo.YES, False, True),
            (Demo.NO, True, False),
            (Demo.NO, False, False),
        ],
    )
    def test_the_demo_is_seeded_when_asked_or_automatically_only_on_the_embedded_server(
        self, choice: Demo, embedded: bool, seeded: bool
    ) -> None:
        assert should_seed(choice, embedded=embedded) is seeded

    @pytest.mark.parametrize(
        ("word", "choice"),
        [("1", Demo.YES), ("yes", Demo.YES), ("0", Demo.NO), ("", Demo.NO), ("AUTO", Demo.AUTO)],
    )
    def test_make_style_values_are_understood(self, word: str, choice: Demo) -> None:
        assert demo_choice(word) is choice

    def test_an_unknown_value_is_refused(self) -> None:
        with pytest.raises(argparse.ArgumentTypeError, match="auto, yes or no"):
            demo_choice("maybe")


async def agent_count(url: str) -> int:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM agents"))
    finally:
        await conn.close()


class TestPrepareWithDatabaseUrl:
    @pytest.mark.parametrize(("demo", "agents"), [(Demo.AUTO, 0), (Demo.YES, len(AGENTS))])
    async def test_make_run_seeds_a_configured_database_only_when_asked(
        self, db: str, monkeypatch: pytest.MonkeyPatch, demo: Demo, agents: int
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", db)
        monkeypatch.setenv("HOTLINE_ARGON2_MEMORY_KIB", "64")
        monkeypatch.setenv("HOTLINE_ARGON2_TIME_COST", "1")
        get_settings.cache_clear()
        try:
            await asyncio.to_thread(prepare, argparse.Namespace(migrate=False, demo=demo))
        finally:
            get_settings.cache_clear()
        assert await agent_count(db) == agents
