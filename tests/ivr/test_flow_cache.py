"""A call's flow is parsed from its stored document once per process: webhooks read only the
version's key, and a version this process has not met yet has its document read once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event

from tests.fixtures.factories import Api
from tests.ivr.telephony import CARDS_NUMBER, TwilioCall, centre, upload

STRANGER = "+8613912345678"


@pytest.fixture
async def flows(api: Api) -> None:
    await centre(api)
    await upload(api, "credit_card_centre")


@contextmanager
def document_reads(app: FastAPI) -> Iterator[list[str]]:
    """The statements that read a flow's document while the block runs."""
    seen: list[str] = []
    engine = app.state.engine.sync_engine

    def before(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "ivr_flows.document" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def walk(client: AsyncClient) -> None:
    phone = TwilioCall(client, STRANGER, CARDS_NUMBER)
    await phone.start()
    await phone.press("1")
    await phone.status("completed")


class TestFlowCache:
    async def test_a_version_is_read_once_and_then_only_by_its_key(
        self, app: FastAPI, client: AsyncClient, flows: None
    ) -> None:
        with document_reads(app) as first:
            await walk(client)
        with document_reads(app) as later:
            await walk(client)
            await walk(client)
        assert len(first) <= 1  # this version is new to the process: read once at most
        assert later == []
