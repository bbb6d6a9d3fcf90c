"""Finding complaints by their words: the segmentation (a literal table, and every word of
every labelled complaint finds it), and the list's ``text`` filter over HTTP (Chinese and
English words, one character, AND of several, no false hit, linked facts, archived
complaints, a query with no word), and the migration's fill of existing rows.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.complaints import search_terms
from app.complaints.classifier import DATA_PATH
from app.complaints.router import router as complaints_router
from app.config import Settings
from app.main import create_app
from tests.complaints.test_registration import COMPLAINTS, START, Clock, complaint_body, register
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect

ROOT = Path(__file__).resolve().parents[2]

# --- the segmentation (pure) ------------------------------------------------------------------

STORED = [
    # (text, terms it must be stored with, terms it must not)
    ("我的信用卡被重复扣款", {"信用卡", "信用", "重复", "扣款", "信", "卡"}, {"我的信用卡"}),
    ("The ATM kept my card!", {"the", "atm", "kept", "my", "card"}, {"ATM", "card!"}),
    ("\uff21\uff34\uff2d机吞卡", {"atm", "吞", "卡"}, {"\uff21\uff34\uff2d", "atm机吞卡"}),
    ("C-20261122-000123", {"c", "20261122", "000123"}, {"-"}),
    ("被盗刷", {"被盗", "盗", "刷"}, set()),
    ("refund_request №5", {"refund", "request", "no5"}, {"refund_request", "_"}),
    ("  \uff0c\u3002\uff01\uff1f --- ", set(), {"\uff0c", "-", ""}),
]

QUERIES = [
    # (query, the terms all matched)
    ("信用卡", ["信用卡"]),  # the word: documents hold its inner 信用 too, never needed
    ("卡", ["卡"]),
    ("盗刷", ["盗", "刷"]),  # not a word jieba knows: its characters, which documents hold
    ("Credit CARD", ["credit", "card"]),
    ("信用卡中心", ["信用卡", "中心"]),
    ("信用卡 ATM", ["信用卡", "atm"]),
    ("card card", ["card"]),
    ("!!!", []),
    ("x" * 100, ["x" * search_terms.MAX_WORD]),
]


class TestSegmentation:
    @pytest.mark.parametrize(("given", "present", "absent"), STORED)
    def test_a_text_is_stored_as_its_words_and_its_cjk_characters(
        self, given: str, present: set[str], absent: set[str]
    ) -> None:
        found = search_terms.terms(given)
        assert present <= set(found)
        assert not absent & set(found)
        assert len(found) == len(set(found)), "each term once"

    @pytest.mark.parametrize(("query", "expected"), QUERIES)
    def test_a_query_is_cut_into_its_words_only(self, query: str, expected: list[str]) -> None:
        assert search_terms.query_terms(query) == expected

    def test_every_labelled_complaint_is_found_by_its_text_and_by_each_of_its_words(
        self,
    ) -> None:
        lines = DATA_PATH.read_text(encoding="utf-8").splitlines()
        for line in lines:
            document = json.loads(line)["text"]
            stored = set(search_terms.terms(document))
            assert set(search_terms.query_terms(document)) <= stored, document
            for word in stored:
                assert set(search_terms.query_terms(word)) <= stored, (word, document)

    def test_literals_quote_what_postgresql_would_otherwise_parse(self) -> None:
        assert search_terms.vector(["a'b", "c\\d", "卡"]) == "'a''b' 'c\\\\d' '卡'"
        assert search_terms.tsquery(["信用卡", "atm"]) == "'信用卡' & 'atm'"
        assert search_terms.vector([]) == search_terms.EMPTY

    def test_a_complaint_is_found_by_its_registered_and_linked_facts(self) -> None:
        class Row:
            reference, branch, location = "C-1", "Pudong", "浦东支行"
            description, grounds, request = "ATM吞卡", "卡被吞", "退卡"
            linked: ClassVar = [{"matter": {"description": "second time"}, "grounds": "again"}]

        stored = search_terms.of(Row())
        for word in ("'pudong'", "'atm'", "'second'", "'again'", "'退'", "'c'"):
            assert word in stored.split(" ")


# --- the list's text filter over HTTP ---------------------------------------------------------


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    if not any(getattr(r, "path", None) == COMPLAINTS for r in application.routes):
        application.include_router(complaints_router)
    freeze_desk(application, Clock(START))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def english_body(**overrides: Any) -> dict[str, Any]:
    body = complaint_body(**overrides)
    body["matter"] = {
        **body["matter"],
        "branch": "Central",
        "location": "Queen's Road branch",
        "description": "The ATM swallowed my debit card and nobody answered the phone",
    }
    body["grounds"], body["request"] = "The machine was faulty", "Return the card"
    return body


async def found(api: Api, query: str, **filters: str) -> list[int]:
    page = expect(await api.get(COMPLAINTS, params={"text": query, **filters}), 200)
    return sorted(int(item["id"]) for item in page["items"])


@pytest.fixture
async def two(api: Api) -> tuple[int, int]:
    """A Chinese complaint about a double charge, an English one about an ATM."""
    chinese = int((await register(api, complaint_body()))["id"])
    english = int((await register(api, english_body()))["id"])
    return chinese, english


class TestTextFilter:
    async def test_a_chinese_word_finds_the_complaint_that_contains_it(
        self, api: Api, two: tuple[int, int]
    ) -> None:
        chinese, _ = two
        assert await found(api, "信用卡") == [chinese]
        assert await found(api, "重复扣款") == [chinese]
        assert await found(api, "卡") == [chinese]

    async def test_an_english_word_finds_it_whatever_its_case(
        self, api: Api, two: tuple[int, int]
    ) -> None:
        _, english = two
        assert await found(api, "ATM") == [english]
        assert await found(api, "swallowed Card") == [english]
        assert await found(api, "queen") == [english]

    async def test_an_unrelated_word_finds_nothing(self, api: Api, two: tuple[int, int]) -> None:
        assert await found(api, "贷款") == []
        assert await found(api, "mortgage") == []
        assert await found(api, "信用卡 ATM") == [], "every word must match"

    async def test_the_reference_and_the_branch_find_it_and_other_filters_still_apply(
        self, api: Api, two: tuple[int, int]
    ) -> None:
        chinese, english = two
        detail = expect(await api.get(f"{COMPLAINTS}/{english}"), 200)
        assert await found(api, detail["reference"]) == [english]
        assert await found(api, "pudong") == [chinese]
        assert await found(api, "信用卡", status="registered") == [chinese]
        assert await found(api, "信用卡", status="withdrawn") == []

    async def test_facts_linked_from_another_channel_find_the_complaint(self, api: Api) -> None:
        customer = await api.customer()
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        again = complaint_body(customer={"id": customer["id"]}, channel="web")
        again["grounds"] = "柜台说要找信用卡中心"
        again["request"] = "Please escalate to the head office"
        linked = await register(api, again, status=200)
        assert linked["id"] == first["id"]
        assert await found(api, "escalate") == [first["id"]]

    async def test_an_archived_complaint_is_still_found(
        self, api: Api, two: tuple[int, int]
    ) -> None:
        chinese, _ = two
        for verb in ("withdraw", "archive"):
            expect(await api.post(f"{COMPLAINTS}/{chinese}/{verb}", {"reason": "客户撤回"}), 200)
        assert await found(api, "信用卡") == [chinese]
        assert await found(api, "信用卡", status="archived") == [chinese]

    async def test_a_query_without_a_word_is_refused_naming_the_filter(
        self, api: Api, two: tuple[int, int]
    ) -> None:
        body = expect(await api.get(COMPLAINTS, params={"text": "\uff01\uff1f --"}), 422)
        assert "text" in body["detail"]
        assert len(await found(api, "   ")) == 2, "a blank filter filters nothing"


class TestAFilterWithANul:
    @pytest.mark.parametrize("name", ["text", "branch", "category"])
    async def test_is_a_422_naming_it(self, api: Api, name: str) -> None:
        await register(api, complaint_body())
        body = expect(await api.get(COMPLAINTS, params={name: "Pudong\x00"}), 422)
        assert body["fields"] == [
            {"field": name, "message": "Input should not contain the NUL character (\\u0000)"}
        ]


class TestFillingExistingRows:
    async def test_the_migration_fills_the_vector_of_complaints_written_before_it(
        self, api: Api, engine: AsyncEngine, two: tuple[int, int]
    ) -> None:
        chinese, english = two
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE complaints SET search = ''::tsvector"))
        assert await found(api, "信用卡") == []
        path = ROOT / "migrations" / "versions" / "20261202_0020_complaint_search.py"
        spec = importlib.util.spec_from_file_location("complaint_search_migration", path)
        assert spec is not None
        assert spec.loader is not None
        migration = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(migration)
        async with engine.begin() as conn:
            assert await conn.run_sync(migration.fill) == 2
        assert await found(api, "信用卡") == [chinese]
        assert await found(api, "atm") == [english]
