"""Attachments: a file is known by its content (never by its name or declared type), kept
whole with its digest on the trail, downloaded only as an attachment; too large, empty, of an
unaccepted type or sent to an archived complaint, it is refused and nothing is written."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import Response
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.agents.models import Role
from app.agents.permissions import Principal
from app.complaints import attachments, service
from app.complaints.archive_events import PAYLOADS
from app.complaints.notes import ComplaintReadOnly
from app.complaints.retention import MARKER
from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from tests.complaints.test_archive import (
    CONFIG,
    PDF,
    START,
    archive_sweep,
    audit,
    clock,
    engine,
    finished,
    no_failed_complaint,
    retention_sweep,
    tables,
)
from tests.complaints.test_registration import COMPLAINTS, Clock, complaint_body, register, scalar
from tests.complaints.test_transitions import move
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

__all__ = ["clock", "engine", "no_failed_complaint"]  # fixtures of the archive tests

LIMIT = 1000
MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)
FILES = {
    "application/pdf": PDF,
    "image/png": PNG,
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(16),
    "image/gif": b"GIF89a\x01\x00\x01\x00" + bytes(10),
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(16),
    "text/plain": "客户来电记录\r\n\t金额: 100 元\n".encode(),
}
REFUSED = {
    "an executable": b"MZ\x90\x00\x03\x00\x00\x00" + bytes(20),
    "a zip archive": b"PK\x03\x04\x14\x00" + bytes(20),
    "text not in UTF-8": "客户来电记录".encode("gb18030"),
    "text with a NUL": b"hello\x00world",
    "a WebP missing its mark": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(16),
}


@pytest.fixture
async def app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app of the archive tests, taking files up to ``LIMIT`` bytes."""
    application = create_app(settings)
    freeze_desk(application, clock)
    application.state.complaint_archive = CONFIG.model_copy(update={"attachment_max_bytes": LIMIT})
    async with application.router.lifespan_context(application):
        yield application


def url(cid: int, *rest: object) -> str:
    return "/".join([f"{COMPLAINTS}/{cid}/attachments", *map(str, rest)])


async def upload(
    api: Api, cid: int, content: bytes, name: str = "file.bin", declared: str = "image/png"
) -> Response:
    files = {"file": (name, content, declared)}
    return await api.client.post(url(cid), files=files, headers=api.headers)


async def open_complaint(api: Api) -> int:
    return int((await register(api, complaint_body()))["id"])


class TestUpload:
    async def test_kept_whole_listed_and_downloaded_as_an_attachment(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await open_complaint(api)
        made = expect(await upload(api, cid, PDF, "回执 3.pdf", declared="image/png"), 201)
        assert (made["name"], made["content_type"], made["size"]) == (
            "回执 3.pdf",
            "application/pdf",
            len(PDF),
        )
        assert made["sha256"] == hashlib.sha256(PDF).hexdigest()
        assert made["uploaded_by"] == f"agent:{api.me['id']}"
        listed = expect(await api.get(url(cid)), 200)
        assert listed["items"] == [made]
        got = await api.get(url(cid, made["id"]))
        assert (got.status_code, got.content) == (200, PDF)
        assert got.headers["content-type"] == "application/pdf"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"] == (
            "attachment; filename=\"__ 3.pdf\"; filename*=UTF-8''%E5%9B%9E%E6%89%A7%203.pdf"
        )

    async def test_the_trail_holds_the_digest_never_the_name_and_an_event_is_declared(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await open_complaint(api)
        made = expect(await upload(api, cid, PDF, "王芳身份证.pdf"), 201)
        trail = await audit(api, cid)
        entry = trail["entries"][-1]
        assert (trail["verified"], entry["action"]) == (True, "attachment")
        assert entry["data"] == {
            "attachment_id": made["id"],
            "sha256": made["sha256"],
            "size": len(PDF),
            "content_type": "application/pdf",
        }
        assert "王芳" not in str(trail)
        async with engine.connect() as conn:
            [data] = (
                await conn.execute(
                    text("SELECT data FROM events WHERE type = 'complaint.attachment_added'")
                )
            ).scalars()
        TypeAdapter(PAYLOADS["complaint.attachment_added"]).validate_python(data)

    @pytest.mark.parametrize(("kind", "content"), sorted(FILES.items()))
    async def test_each_accepted_type_is_known_by_its_content(
        self, api: Api, kind: str, content: bytes
    ) -> None:
        cid = await open_complaint(api)
        made = expect(await upload(api, cid, content, "x.exe", "application/x-msdownload"), 201)
        assert made["content_type"] == kind
        got = await api.get(url(cid, made["id"]))
        assert got.content == content
        assert got.headers["content-type"].split(";")[0] == kind

    async def test_a_name_keeps_no_folder(self, api: Api) -> None:
        cid = await open_complaint(api)
        made = expect(await upload(api, cid, PDF, "C:\\Users\\wang/../回执.pdf"), 201)
        assert made["name"] == "回执.pdf"
        blank = expect(await upload(api, cid, PDF, "folder/"), 201)
        assert blank["name"] == "attachment"

    @pytest.mark.parametrize(
        ("given", "kept"),
        [
            ("pass\x07wd\u202e.pdf", "passwd.pdf"),  # a bell, a right-to-left override
            ("  a\r\nb.txt ", "ab.txt"),
            (None, "attachment"),
            ("x" * 300, "x" * 255),
        ],
    )
    def test_a_name_keeps_no_control_character(self, given: str | None, kept: str) -> None:
        assert attachments.clean_name(given) == kept


class TestRefusals:
    @pytest.mark.parametrize(("what", "content"), sorted(REFUSED.items()))
    async def test_a_file_of_no_accepted_type_is_a_422(
        self, api: Api, engine: AsyncEngine, what: str, content: bytes
    ) -> None:
        cid = await open_complaint(api)
        before = await tables(engine)
        body = expect(await upload(api, cid, content, "ok.pdf", "application/pdf"), 422)
        assert [f["field"] for f in body["fields"]] == ["file"]
        assert "text/plain" in body["detail"]
        assert await tables(engine) == before

    async def test_an_empty_file_is_a_422(self, api: Api) -> None:
        cid = await open_complaint(api)
        body = expect(await upload(api, cid, b""), 422)
        assert [f["field"] for f in body["fields"]] == ["file"]

    async def test_a_file_past_the_limit_is_a_413_and_one_at_it_is_taken(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await open_complaint(api)
        before = await tables(engine)
        body = expect(await upload(api, cid, b"a" * (LIMIT + 1)), 413)
        assert str(LIMIT) in body["detail"]
        assert await tables(engine) == before
        expect(await upload(api, cid, b"a" * LIMIT), 201)

    async def test_a_body_declared_too_large_is_refused_before_it_is_read(self, api: Api) -> None:
        cid = await open_complaint(api)
        pulled: list[int] = []

        async def body() -> AsyncIterator[bytes]:
            for _ in range(4):
                pulled.append(1)
                yield b"x" * (64 * 1024)

        headers = {
            **api.headers,
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(4 * 64 * 1024),
        }
        response = await api.client.post(url(cid), content=body(), headers=headers)
        assert response.status_code == 413, response.text
        assert pulled == []

    async def test_anything_but_one_file_in_a_part_named_file_is_a_422(self, api: Api) -> None:
        cid = await open_complaint(api)
        as_json = await api.post(url(cid), {"file": "JVBERi0="})
        other_part = await api.client.post(
            url(cid), files={"upload": ("a.pdf", PDF)}, headers=api.headers
        )
        two_files = await api.client.post(
            url(cid),
            files=[("file", ("a.pdf", PDF)), ("file", ("b.pdf", PDF))],
            headers=api.headers,
        )
        with_field = await api.client.post(
            url(cid), files={"file": ("a.pdf", PDF)}, data={"name": "x"}, headers=api.headers
        )
        for response in (as_json, other_part, two_files, with_field):
            body = expect(response, 422)
            assert [f["field"] for f in body["fields"]] == ["file"], body

    async def test_an_archived_complaint_takes_no_file(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        cid = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        before = await tables(engine)
        body = expect(await upload(api, cid, PDF), 409)
        assert (body["status"], "archived" in body["detail"]) == ("archived", True)
        assert await tables(engine) == before

    async def test_a_complaint_archived_while_its_file_was_sent_takes_none(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        cid = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        before = await tables(engine)
        with pytest.raises(ComplaintReadOnly):
            async with unit_of_work(app.state.sessionmaker) as session:
                await attach_locked(session, cid, api.me["id"])
        assert await tables(engine) == before


async def attach_locked(session: AsyncSession, cid: int, agent_id: int) -> None:
    """What the route does once the file is in hand: lock the complaint, attach."""
    complaint = await service.get_or_raise(session, cid, for_update=True)
    principal = Principal(id=agent_id, username="admin", role=Role.admin, site=None)
    await attachments.add(
        session,
        complaint,
        name="a.pdf",
        content=PDF,
        content_type="application/pdf",
        principal=principal,
        now=START,
    )


class TestWhoMay:
    async def test_as_for_notes_act_to_attach_read_to_list_and_download(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        registrar = await api.signed_in_as(await api.agent())
        stranger = await api.signed_in_as(await api.agent())
        cid = int((await register(registrar, complaint_body()))["id"])
        made = expect(await upload(api, cid, PDF), 201)
        expect(await upload(registrar, cid, PDF), 403)
        assert len(expect(await registrar.get(url(cid)), 200)["items"]) == 1
        assert (await registrar.get(url(cid, made["id"]))).status_code == 200
        for response in (
            await upload(stranger, cid, PDF),
            await stranger.get(url(cid)),
            await stranger.get(url(cid, made["id"])),
        ):
            expect(response, 404)
        assert await scalar(engine, "SELECT count(*) FROM complaint_attachments") == 1
        await move(api, cid, "assign", {"assignee": registrar.me["id"]})
        expect(await upload(registrar, cid, PDF), 201)

    async def test_a_refusal_comes_before_any_of_the_file_is_read(
        self, api: Api, app: FastAPI
    ) -> None:
        stranger = await api.signed_in_as(await api.agent())
        archived = await finished(api)
        await archive_sweep(app, START + timedelta(days=30))
        pulled: list[int] = []

        async def body() -> AsyncIterator[bytes]:
            pulled.append(1)
            yield PDF

        for caller, cid, status in ((stranger, archived, 404), (api, archived, 409)):
            headers = {**caller.headers, "Content-Type": "multipart/form-data; boundary=b"}
            response = await api.client.post(url(cid), content=body(), headers=headers)
            assert response.status_code == status, response.text
        assert pulled == []

    async def test_an_unknown_file_or_another_complaints_is_a_404(self, api: Api) -> None:
        first, second = await open_complaint(api), await open_complaint(api)
        made = expect(await upload(api, first, PDF), 201)
        expect(await api.get(url(second, made["id"])), 404)
        expect(await api.get(url(first, 424242)), 404)

    async def test_lists_and_downloads_are_on_the_access_log(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await open_complaint(api)
        made = expect(await upload(api, cid, PDF), 201)
        expect(await api.get(url(cid)), 200)
        assert (await api.get(url(cid, made["id"]))).status_code == 200
        reads = await scalar(
            engine,
            "SELECT count(*) FROM access_log WHERE kind = 'complaint.read' AND subject_id = :id",
            id=cid,
        )
        assert reads == 2


class TestAnonymised:
    async def test_a_removed_file_is_a_404_saying_so_and_its_row_keeps_no_name(
        self, api: Api, app: FastAPI
    ) -> None:
        done = await register(api, complaint_body())
        cid = int(done["id"])
        made = expect(await upload(api, cid, PDF, "王芳.pdf"), 201)
        await move(api, cid, "withdraw")
        await archive_sweep(app, START + timedelta(days=30))
        assert await retention_sweep(app, START + timedelta(days=30 + 4 * 365)) == 1
        body = expect(await api.get(url(cid, made["id"])), 404)
        assert "anonymised" in body["detail"]
        [listed] = expect(await api.get(url(cid)), 200)["items"]
        assert (listed["name"], listed["sha256"]) == (MARKER, made["sha256"])


class TestTheDefaultLimit:
    @pytest.fixture
    async def app(self, db: str, clock: Clock) -> AsyncIterator[FastAPI]:
        """The app with the default limit, and a body limit on complaints that allows it."""
        settings = make_settings(db, max_body_bytes_by_path={f"{COMPLAINTS}/": 11 * MiB})
        application = create_app(settings)
        freeze_desk(application, clock)
        async with application.router.lifespan_context(application):
            yield application

    async def test_ten_mib_is_taken_and_a_byte_more_refused(self, api: Api) -> None:
        cid = await open_complaint(api)
        at_limit: Any = b"a" * (10 * MiB)
        expect(await upload(api, cid, at_limit), 201)
        expect(await upload(api, cid, at_limit + b"a"), 413)


class TestRetries:
    async def test_a_file_retried_with_its_key_is_attached_once(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        cid = await open_complaint(api)
        key = {"Idempotency-Key": "upload-retry-1"}
        files = {"file": ("回执.pdf", PDF, "application/pdf")}
        headers = {**api.headers, **key}
        first = expect(await api.client.post(url(cid), files=files, headers=headers), 201)
        again = expect(await api.client.post(url(cid), files=files, headers=headers), 201)
        assert again == first
        other = {"file": ("回执.pdf", PDF + b"\n", "application/pdf")}
        refused = expect(await api.client.post(url(cid), files=other, headers=headers), 409)
        assert "Idempotency-Key" in refused["detail"]
        listed = expect(await api.get(url(cid)), 200)
        assert [a["id"] for a in listed["items"]] == [first["id"]]
