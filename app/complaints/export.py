"""Exporting complaints as CSV or JSON: the rows, their encoding, and the record of each export.

Theory of operation
-------------------

An export is the complaint list (the same filters, the same visibility: a supervisor their
site's complaints, an admin all), archived complaints included, written out whole: one row
per complaint with the columns of ``COLUMNS``, personal data in full (or the marker, once
anonymised). It is read in pages of ``PAGE`` complaints by id (keyset), each page in a short
transaction of its own, and each page is encoded and sent before the next is read: a million
complaints never sit in memory, and no transaction stays open while a slow client reads
(the server would end it after ``idle_in_transaction_session_timeout``, and an open
transaction holds the event log back). Pages read at different moments, so a complaint
changed during the export shows as it was when its page was read; each appears once.

**CSV** (``Accept: text/csv`` or ``format=csv``) has a header row, CRLF line ends and is UTF-8
with a byte-order mark: Excel, which most supervisors open it with, reads a CSV without one
in the machine's legacy code page and garbles Chinese; other tools skip the mark. Every text
cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (or their
full-width forms) is prefixed with ``'`` (``neutralise``), so a complainant's text such as
``=HYPERLINK(...)`` is shown as text and never run as a formula (CSV injection). **JSON** is
one object: the export's id (its record, below), its filters, and ``complaints``, an array of
objects with the CSV's keys, categories as a list, and no prefixes: it is read by programs,
not spreadsheets.

**Every export is on record** before its first byte is sent: a ``complaint_exports`` row
(who, when, the format and the filters) and an access-log entry (``complaint.export``, whose
``subject_id`` is that row and whose ``query`` sums the filters up). When the last page is
sent the row gets the number of complaints sent and ``finished_at``; an export cut short
(the client left, the database failed) keeps the count of what was sent and no
``finished_at``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import anyio
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    String,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column, with_expression

from app.accesslog import Access, AccessKind, AccessOutcome, record_access
from app.agents.permissions import Principal
from app.complaints import service
from app.complaints.calendar import WorkCalendar
from app.complaints.lifecycle import ComplaintStatus
from app.complaints.models import Complaint, iso
from app.customers.models import Customer
from app.db import Base, unit_of_work

PAGE: Final = 500
BOM: Final = "\ufeff"
EXPORT_ACCESS: Final = "complaint.export"  # the access log's kind
# and the full-width forms of the first four, which some spreadsheets read as the same
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


class ComplaintExport(Base):
    """One export: who made it, when, how, with which filters, and how many rows it sent."""

    __tablename__ = "complaint_exports"
    __table_args__ = (CheckConstraint("format IN ('csv', 'json')", name="format"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # No cascade: who exported personal data cannot be deleted out of the record of it.
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), nullable=False)
    format: Mapped[str] = mapped_column(String(8), nullable=False)
    filters: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default="{}", comment="the list filters it was made with"
    )
    rows: Mapped[int | None] = mapped_column(
        BigInteger, comment="complaints sent; null until it ends"
    )
    finished_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="null: cut short (the client left, or it failed)"
    )


@dataclass(frozen=True, slots=True)
class ExportFilters:
    """The list's filters, and the registration period ``[since, until)``."""

    status: ComplaintStatus | None = None
    category: str | None = None
    assignee_id: int | None = None
    branch: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_record(self) -> dict[str, Any]:
        """The filters given, as JSON (what the export record keeps)."""
        found = {k: v for k, v in asdict(self).items() if v is not None}
        return {k: iso(v) if isinstance(v, datetime) else str(v) for k, v in found.items()}

    def summary(self, width: int = 40) -> str:
        """The filters in a few words, for the access log's ``query``."""
        given = self.as_record()
        text = " ".join(f"{k}={v}" for k, v in given.items()) or "all"
        return text if len(text) <= width else text[: width - 1] + "…"


# --- the columns -------------------------------------------------------------------------------


def _moment(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


# (name, value of the complaint): the same keys in CSV and JSON.
COLUMNS: Final[tuple[tuple[str, Callable[[Complaint], Any]], ...]] = (
    ("id", lambda c: c.id),
    ("reference", lambda c: c.reference),
    ("status", lambda c: c.status),
    ("channel", lambda c: c.channel),
    ("registered_at", lambda c: _moment(c.registered_at)),
    ("occurred_at", lambda c: _moment(c.occurred_at)),
    ("branch", lambda c: c.branch),
    ("location", lambda c: c.location),
    ("categories", lambda c: list(c.categories)),
    ("severity", lambda c: c.severity),
    ("escalation_level", lambda c: c.escalation_level),
    ("assignee_id", lambda c: c.assignee_id),
    ("customer_id", lambda c: c.customer_id),
    ("customer_tier", lambda c: c.tier),
    ("complainant_name", lambda c: c.complainant_name),
    ("complainant_contact", lambda c: c.complainant_contact),
    ("complainant_relation", lambda c: c.complainant_relation),
    ("description", lambda c: c.description),
    ("grounds", lambda c: c.grounds),
    ("request", lambda c: c.request),
    ("due_at", lambda c: _moment(c.due_at)),
    ("archived_at", lambda c: _moment(c.archived_at)),
    ("anonymised_at", lambda c: _moment(c.anonymised_at)),
    ("legal_hold", lambda c: c.legal_hold),
)
HEADER: Final = tuple(name for name, _ in COLUMNS)


def record_of(complaint: Complaint, due: datetime | None = None) -> dict[str, Any]:
    """A complaint as an export row (JSON values); ``due``: its resolution deadline read at
    the export, when the stored one is behind it (a paused complaint's)."""
    record = {name: value(complaint) for name, value in COLUMNS}
    return record if due is None else {**record, "due_at": iso(due)}


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet shows as text: a would-be formula gets a leading ``'``."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    return neutralise(value) if isinstance(value, str) else str(value)


def csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV text (CRLF line ends, quoted as needed, formulas neutralised)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue()


def json_items(records: Sequence[dict[str, Any]], *, first: bool) -> str:
    """Records as the items of a JSON array, continuing one unless ``first``."""
    items = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    return items if first or not items else ",\n" + items


# --- reading ----------------------------------------------------------------------------------


def _period(stmt: Any, filters: ExportFilters) -> Any:
    if filters.since is not None:
        stmt = stmt.where(Complaint.registered_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Complaint.registered_at < filters.until)
    return stmt


# The customer's tier now; an anonymised complaint's customer is unlinked, its tier kept.
_TIER = func.coalesce(
    select(Customer.tier).where(Customer.id == Complaint.customer_id).scalar_subquery(),
    Complaint.customer_tier,
)


async def page(
    session: AsyncSession,
    *,
    principal: Principal,
    filters: ExportFilters,
    after_id: int,
    limit: int = PAGE,
) -> Sequence[Complaint]:
    """The next page of complaints to export, by id after ``after_id``."""
    listed = service.Filters(
        filters.status, filters.category, filters.assignee_id, filters.branch, filters.text
    )
    stmt = (
        select(Complaint)
        .where(service.visible_to(principal), Complaint.id > after_id)
        .options(with_expression(Complaint.tier, _TIER))
    )
    stmt = _period(service._filtered(stmt, listed), filters)
    return (await session.scalars(stmt.order_by(Complaint.id).limit(limit))).all()


# --- the record ---------------------------------------------------------------------------------


async def start(
    session: AsyncSession,
    *,
    principal: Principal,
    filters: ExportFilters,
    format_: ExportFormat,
    now: datetime,
) -> ComplaintExport:
    """Put the export on record (its row and an access-log entry) in the caller's
    transaction, before anything is sent."""
    row = ComplaintExport(
        at=now, agent_id=principal.id, format=format_.value, filters=filters.as_record()
    )
    session.add(row)
    await session.flush()
    access = Access(
        AccessKind(EXPORT_ACCESS), AccessOutcome.found, subject_id=row.id, query=filters.summary()
    )
    await record_access(session, principal, access)
    return row


async def _finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    export_id: int,
    rows: int,
    finished_at: datetime | None,
) -> None:
    async with unit_of_work(sessionmaker) as session:
        row = await session.get(ComplaintExport, export_id)
        if row is not None:
            row.rows, row.finished_at = rows, finished_at


# --- the stream -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    """An export on record, ready to stream."""

    export_id: int
    principal: Principal
    filters: ExportFilters
    format: ExportFormat
    clock: Callable[[], datetime]
    calendar: WorkCalendar


@dataclass(frozen=True, slots=True)
class Page:
    """Complaints read together, with the resolution deadline of the paused ones, by id."""

    complaints: Sequence[Complaint]
    due: dict[int, datetime]


async def _pages(
    sessionmaker: async_sessionmaker[AsyncSession], export: Export
) -> AsyncIterator[Page]:
    after_id, size = 0, PAGE
    while True:
        async with sessionmaker() as session, session.begin():
            found = await page(
                session,
                principal=export.principal,
                filters=export.filters,
                after_id=after_id,
                limit=size,
            )
            due = await service.paused_due(session, found, export.calendar, export.clock())
        if found:
            yield Page(found, due)
        if len(found) < size:
            return
        after_id = found[-1].id


def json_head(export: Export) -> str:
    """The JSON document up to its first complaint."""
    head = json.dumps(
        {"export_id": export.export_id, "filters": export.filters.as_record()},
        ensure_ascii=False,
    )
    return head[:-1] + ', "complaints": [\n'


def _head(export: Export) -> str:
    return BOM + csv_lines([HEADER]) if export.format is ExportFormat.csv else json_head(export)


def _encoded(export: Export, found: Page, *, first: bool) -> str:
    records = [record_of(c, found.due.get(c.id)) for c in found.complaints]
    if export.format is ExportFormat.csv:
        return csv_lines([[record[name] for name in HEADER] for record in records])
    return json_items(records, first=first)


async def stream(
    sessionmaker: async_sessionmaker[AsyncSession], export: Export
) -> AsyncIterator[bytes]:
    """The export's bytes, page by page; the count and the end are recorded at the end."""
    sent, finished_at = 0, None
    try:
        yield _head(export).encode()
        async for found in _pages(sessionmaker, export):
            yield _encoded(export, found, first=sent == 0).encode()
            sent += len(found.complaints)
        if export.format is ExportFormat.json:
            yield b"\n]}\n"
        finished_at = export.clock()
    finally:
        # Also when the client left and the stream was cancelled: record what was sent.
        with anyio.CancelScope(shield=True):
            await _finish(sessionmaker, export.export_id, sent, finished_at)
