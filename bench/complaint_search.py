"""Complaints at scale, the list: a million complaints bulk-loaded, then the list's filters
and its text search through the HTTP API, each against the bare SQL of the same query.

The second part of ``bench/complaints.py``, which runs it and writes the figures.

**The load.** ``BENCH_COMPLAINTS`` (1,000,000) complaints are written with ``COPY`` (CSV),
their secondary indexes dropped first and rebuilt after (one build per index is faster than
a million index updates), then ``VACUUM ANALYZE``. Their text comes from the labelled set
(``app/complaints/data/labelled.jsonl``, Chinese and English), each description one of its
texts with one of five closing sentences in its language, so about 1,700 distinct
descriptions. Which text a complaint tells follows Zipf's law (the text of rank r is r times
rarer than the most told), as words and complaints do in life: a few matters are common,
most are rare, and the planner's statistics of the search column see that spread. Grounds,
requests, places and 50 branches come from short lists; every reference is its own.
Statuses, categories (the labelled ones), assignees (200 agents) and dates vary.
``RARE_EVERY`` complaints (one in 50,000) also say 貔貅, a word no other says.

**The search column is filled the way the service fills it** (``search_terms``): every
distinct text is cut once and its terms kept; a row's vector is the union of its parts'
vectors. The parts are separate texts, and ``search_terms`` cuts each text on its own (no
word spans two texts), so the union is exactly ``search_terms.of`` of the row.

**The queries**, each ``BENCH_QUERIES`` (200) times, one at a time, as an admin (who sees
everything), pages of 20: status and branch; category and status; an assignee; the text
信用卡, ``refund`` and 貔貅 (20 complaints; the report counts each word's matches); and
信用卡 with a status. The baseline runs the same SQL (the columns the list reads, the same
conditions, order and limit; a text query inline, as the service writes it) on a bare
asyncpg connection.
"""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import asyncpg

from app.complaints import search_terms
from app.complaints.classifier import DATA_PATH
from app.complaints.models import Complaint
from app.db import table_of
from bench.lean_http import LeanClient

RARE_EVERY: Final = 50_000
RARE_WORD: Final = "貔貅"
PAGE: Final = 20
CHUNK: Final = 50_000
AGENTS: Final = 200
rng = random.Random(2026)

STATUSES = [
    ("registered", 10),
    ("classified", 10),
    ("assigned", 15),
    ("in_progress", 30),
    ("paused", 5),
    ("resolved", 10),
    ("closed", 10),
    ("archived", 10),
]
CLOSING = {
    "zh": ["请尽快处理", "这已经是第二次投诉了", "希望给个说法", "请回电联系我", "涉及金额较大"],
    "en": [
        "Please deal with this quickly.",
        "This is my second complaint.",
        "I expect an explanation.",
        "Please call me back.",
        "The amount involved is large.",
    ],
}
GROUNDS = {
    "zh": ["银行未按约定履行义务", "工作人员服务态度恶劣", "收费没有事先告知", "处理时间过长"],
    "en": [
        "The bank did not do what it agreed to",
        "Staff were rude",
        "The fee was never disclosed",
        "It took far too long",
    ],
}
REQUESTS = {
    "zh": ["退还款项", "赔礼道歉", "给出书面答复", "追究相关人员责任"],
    "en": ["Refund the money", "An apology", "A written answer", "Discipline the staff"],
}
CITIES = ["浦东", "静安", "徐汇", "黄浦", "海淀", "朝阳", "天河", "南山", "西湖", "武侯"]
BRANCHES = [
    f"{city}{kind}" for city in CITIES for kind in ("支行", "分行", "营业部", "网点", "中心")
]
PLACES = ["营业厅柜台", "自助银行", "手机银行", "客服热线", "Online banking", "ATM lobby"]
COLUMNS = [
    "reference",
    "status",
    "channel",
    "complainant_name",
    "complainant_contact",
    "complainant_relation",
    "occurred_at",
    "location",
    "branch",
    "description",
    "grounds",
    "request",
    "categories",
    "severity",
    "escalation_level",
    "assignee_id",
    "registered_by",
    "registered_at",
    "due_at",
    "search",
]


@dataclass(frozen=True, slots=True)
class Text:
    """A text and its search vector (cut once)."""

    text: str
    vector: str


def _text(value: str) -> Text:
    return Text(value, search_terms.vector(search_terms.terms(value)))


@dataclass(frozen=True, slots=True)
class Corpus:
    """Every distinct text the load uses, cut once."""

    descriptions: list[tuple[Text, str, list[str], str]]  # text, language, categories, severity
    weights: list[float]  # cumulative: Zipf's law over the labelled texts
    grounds: dict[str, list[Text]]
    requests: dict[str, list[Text]]
    places: list[Text]
    branches: list[Text]
    rare: Text

    @classmethod
    def build(cls) -> Corpus:
        lines = [json.loads(line) for line in DATA_PATH.read_text(encoding="utf-8").splitlines()]
        rng.shuffle(lines)  # which text is common is chance, not the file's order
        descriptions, weights, total = [], [], 0.0
        for rank, item in enumerate(lines, start=1):
            lang = item["language"]
            for closing in CLOSING[lang]:
                glue = "\uff0c" if lang == "zh" else " "  # a full-width comma
                text = _text(item["text"] + glue + closing)
                descriptions.append((text, lang, item["categories"], item["severity"]))
                total += 1 / rank / len(CLOSING[lang])
                weights.append(total)
        return cls(
            descriptions,
            weights,
            {k: [_text(v) for v in vs] for k, vs in GROUNDS.items()},
            {k: [_text(v) for v in vs] for k, vs in REQUESTS.items()},
            [_text(p) for p in PLACES],
            [_text(b) for b in BRANCHES],
            _text(f"客户还提到{RARE_WORD}摆件被遗失"),
        )


def _status() -> str:
    return rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]


def _row(n: int, corpus: Corpus, agents: list[int], epoch: datetime) -> list[Any]:
    """One complaint as a CSV row (``COLUMNS``)."""
    [described] = rng.choices(corpus.descriptions, cum_weights=corpus.weights)
    text, lang, categories, severity = described
    grounds, request = rng.choice(corpus.grounds[lang]), rng.choice(corpus.requests[lang])
    place, branch = rng.choice(corpus.places), rng.choice(corpus.branches)
    registered = epoch + timedelta(seconds=n * 31)
    reference = f"C-{registered:%Y%m%d}-{n:07d}"
    description, vectors = text.text, [text.vector]
    if n % RARE_EVERY == 7:
        description += "。" + corpus.rare.text
        vectors.append(corpus.rare.vector)
    vectors += [grounds.vector, request.vector, place.vector, branch.vector]
    vectors.append(search_terms.vector(search_terms.terms(reference)))
    assigned = rng.random() < 0.7
    return [
        reference,
        _status(),
        rng.choice(("phone", "web", "app", "counter")),
        "Bench",
        "+8613800000000",
        "self",
        registered - timedelta(days=2),
        place.text,
        branch.text,
        description,
        grounds.text,
        request.text,
        "{" + ",".join(categories) + "}",
        severity,
        "agent",
        rng.choice(agents) if assigned else None,
        "system",
        registered,
        registered + timedelta(days=3),
        " ".join(vectors),
    ]


async def _chunks(count: int, make: Callable[[int], list[Any]]) -> AsyncIterator[bytes]:
    for start in range(0, count, CHUNK):
        out = io.StringIO()
        writer = csv.writer(out)
        for n in range(start, min(start + CHUNK, count)):
            writer.writerow(make(n))
        yield out.getvalue().encode()


async def _secondary_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """The complaints table's indexes that no constraint owns: (name, definition)."""
    rows = await conn.fetch(
        """SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = 'complaints'::regclass
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"""
    )
    return [(r["name"], r["definition"]) for r in rows]


async def load(conn: asyncpg.Connection, count: int) -> dict[str, float]:
    """Bulk-load ``count`` complaints; seconds spent on each step."""
    spent: dict[str, float] = {}
    began = time.perf_counter()
    corpus = Corpus.build()
    await conn.executemany(
        "INSERT INTO agents (username, name, password_hash, role, status, site) "
        "VALUES ($1, $1, 'x', 'agent', 'offline', 'bench')",
        [(f"bench-agent-{i}",) for i in range(AGENTS)],
    )
    agents = [r["id"] for r in await conn.fetch("SELECT id FROM agents WHERE site = 'bench'")]
    spent["texts cut"] = time.perf_counter() - began
    indexes = await _secondary_indexes(conn)
    for name, _ in indexes:
        await conn.execute(f'DROP INDEX "{name}"')
    began = time.perf_counter()
    epoch = datetime(2025, 12, 1, tzinfo=UTC)
    source = _chunks(count, lambda n: _row(n, corpus, agents, epoch))
    await conn.copy_to_table("complaints", source=source, columns=COLUMNS, format="csv")
    spent["COPY"] = time.perf_counter() - began
    began = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for _, definition in indexes:
        await conn.execute(definition)
    spent["indexes rebuilt"] = time.perf_counter() - began
    began = time.perf_counter()
    await conn.execute("VACUUM ANALYZE complaints")
    spent["VACUUM ANALYZE"] = time.perf_counter() - began
    return spent


# --- the queries ------------------------------------------------------------------------------

LISTED = ", ".join(c.name for c in table_of(Complaint).columns if c.name != "search")


@dataclass(frozen=True, slots=True)
class Query:
    """One kind of list request, and its bare SQL: each call picks its arguments."""

    name: str
    params: Callable[[], dict[str, str]]
    where: str
    args: Callable[[dict[str, str]], list[Any]]

    @property
    def sql(self) -> str:
        return (
            f"SELECT {LISTED} FROM complaints WHERE {self.where} AND id > 0 "
            f"ORDER BY id LIMIT {PAGE}"
        )

    async def matches(self, conn: asyncpg.Connection) -> int:
        """How many complaints match (for one choice of the arguments)."""
        sql = f"SELECT count(*) FROM complaints WHERE {self.where}"
        return int(await conn.fetchval(sql, *self.args(self.params())))


def _matching(text: str) -> str:
    """The search condition as the service writes it: the query inline, as a literal."""
    query = search_terms.tsquery(search_terms.query_terms(text))
    return "search @@ '" + query.replace("'", "''") + "'::tsquery"


def queries(agents: list[int]) -> list[Query]:
    def text(word: str) -> Query:
        return Query(
            f"text {word}",
            lambda: {"text": word},
            _matching(word),
            lambda p: [],
        )

    return [
        Query(
            "status + branch",
            lambda: {"status": "in_progress", "branch": rng.choice(BRANCHES)},
            "status = $1 AND branch = $2",
            lambda p: [p["status"], p["branch"]],
        ),
        Query(
            "category + status",
            lambda: {"category": "credit_card", "status": rng.choice(("registered", "paused"))},
            "$1 = ANY(categories) AND status = $2",
            lambda p: [p["category"], p["status"]],
        ),
        Query(
            "assignee",
            lambda: {"assignee": str(rng.choice(agents))},
            "assignee_id = $1",
            lambda p: [int(p["assignee"])],
        ),
        text("信用卡"),
        text("refund"),
        text(RARE_WORD),
        Query(
            "text 信用卡 + status",
            lambda: {"text": "信用卡", "status": "paused"},
            _matching("信用卡") + " AND status = $1",
            lambda p: [p["status"]],
        ),
    ]


@dataclass(frozen=True, slots=True)
class Timed:
    name: str
    matches: int  # complaints matching (one choice of the arguments)
    p50_ms: float
    p99_ms: float
    bare_p50_ms: float
    bare_p99_ms: float


def _quantiles(times: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(times, n=100) if len(times) >= 2 else [times[0]] * 99
    return q[49], q[98]


async def _over_http(
    client: LeanClient, headers: dict[str, str], query: Query, count: int
) -> list[float]:
    times = []
    for _ in range(count):
        params = {**query.params(), "limit": str(PAGE)}
        path = "/api/v1/complaints?" + "&".join(
            f"{k}={quote(v, safe='')}" for k, v in params.items()
        )
        began = time.perf_counter()
        status, page = await client.request("GET", path, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        if status != 200:
            raise RuntimeError(f"{path}: {status} {page}")
    return times


async def _bare_sql(conn: asyncpg.Connection, query: Query, count: int) -> list[float]:
    statement = await conn.prepare(query.sql)
    times = []
    for _ in range(count):
        args = query.args(query.params())
        began = time.perf_counter()
        await statement.fetch(*args)
        times.append((time.perf_counter() - began) * 1000)
    return times


async def measure(
    client: LeanClient, headers: dict[str, str], conn: asyncpg.Connection, count: int
) -> list[Timed]:
    agents = [r["id"] for r in await conn.fetch("SELECT id FROM agents WHERE site = 'bench'")]
    found = []
    for query in queries(agents):
        await _over_http(client, headers, query, max(count // 10, 2))  # plans, pools, pages
        times = await _over_http(client, headers, query, count)
        await _bare_sql(conn, query, max(count // 10, 2))
        bare = await _bare_sql(conn, query, count)
        p50, p99 = _quantiles(times)
        b50, b99 = _quantiles(bare)
        found.append(Timed(query.name, await query.matches(conn), p50, p99, b50, b99))
    return found


def rows(results: list[Timed]) -> list[str]:
    """The Markdown table of the list's figures."""
    lines = [
        "| request (page of 20) | matching | p50 | p99 | bare SQL p50 | bare SQL p99 | p99 ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.matches:,} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | "
            f"{r.bare_p50_ms:.2f} ms | {r.bare_p99_ms:.2f} ms | "
            f"{r.p99_ms / max(r.bare_p99_ms, 0.001):.1f}x |"
        )
    return lines
