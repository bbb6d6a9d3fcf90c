"""Every place that writes a contact's status agrees with the lifecycle table.

SQL statements are read from the text the service runs (every module-level string of the
``app`` package that names the ``contacts`` table): an ``INSERT`` must create the table's
first status, an ``UPDATE`` that sets a status must make only moves the table lists (from
the statuses its text requires of the rows it updates), and no statement, index or check
constraint names a status the enum lacks. In Python, only ``contacts.move`` changes a
contact's status (the admission statement sets the first one).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import asyncpg

import app
from app.db import plain_url, table_of
from app.routing.contact_states import INITIAL, ContactStatus, moves
from app.routing.models import Contact

ROOT = Path(__file__).resolve().parents[2]
KNOWN = frozenset(s.value for s in ContactStatus)
TABLE_MOVES = frozenset((before.value, after.value) for (before, _), after in moves().items())

_CONTACTS = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+contacts\b", re.IGNORECASE)
_ALIAS = re.compile(r"\b(?:FROM|JOIN|UPDATE)\s+contacts(?:\s+(?:AS\s+)?(\w+))?", re.IGNORECASE)
_KEYWORDS = frozenset({"where", "set", "on", "join", "left", "inner", "order", "group", "limit"})
_INSERT = re.compile(
    r"INSERT\s+INTO\s+contacts\s*\(([^)]*)\)\s*SELECT\s+(.*?)\s+FROM\s", re.IGNORECASE | re.DOTALL
)
_UPDATE = re.compile(
    r"UPDATE\s+contacts(?:\s+(?:AS\s+)?\w+)?\s+SET\s+(.*?)\s+(?:FROM|WHERE|RETURNING)\b",
    re.IGNORECASE | re.DOTALL,
)
_SET_STATUS = re.compile(r"(?:\b\w+\.)?\bstatus\s*=\s*(\S+)", re.IGNORECASE)
_LITERAL = re.compile(r"'(\w+)'")


def contact_statements() -> dict[str, str]:
    """Every module-level string of the app that names the contacts table, by dotted name."""
    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(app.__path__, "app."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, str) and _CONTACTS.search(value):
                found[f"{info.name}.{name}"] = value
    return found


def contact_aliases(sql: str) -> set[str]:
    """The names the statement gives the contacts table (the table's own name included)."""
    aliases = {"contacts"}
    for match in _ALIAS.finditer(sql):
        alias = match.group(1)
        if alias and alias.lower() not in _KEYWORDS:
            aliases.add(alias)
    return aliases


def compared_statuses(sql: str) -> set[str]:
    """The statuses the text compares a contacts status column with (``=``, ``<>``, IN)."""
    names = "|".join(re.escape(a) for a in sorted(contact_aliases(sql)))
    column = rf"\b(?:{names})\.status"
    statuses: set[str] = set()
    for match in re.finditer(rf"{column}\s*(?:=|<>|!=)\s*('\w+')", sql, re.IGNORECASE):
        statuses.update(_LITERAL.findall(match.group(1)))
    for match in re.finditer(rf"{column}\s+(?:NOT\s+)?IN\s*\(([^)]*)\)", sql, re.IGNORECASE):
        statuses.update(_LITERAL.findall(match.group(1)))
    return statuses


def split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def inserted_statuses(sql: str) -> Iterator[str]:
    """The status each ``INSERT INTO contacts (...) SELECT ...`` writes (a literal)."""
    for match in _INSERT.finditer(sql):
        columns = [c.strip().lower() for c in match.group(1).split(",")]
        values = split_top_level(match.group(2))
        assert len(columns) == len(values), f"cannot pair the columns of {match.group(0)!r}"
        written = values[columns.index("status")]
        literal = re.fullmatch(r"'(\w+)'", written)
        assert literal, f"a contact is inserted with a status that is not a literal: {written}"
        yield literal.group(1)


def updated_moves(sql: str) -> Iterator[tuple[str, str]]:
    """The (from, to) moves of each ``UPDATE contacts ... SET status = '...'``.

    From: the statuses the statement's text requires of contacts rows, outside the SET.
    """
    for match in _UPDATE.finditer(sql):
        assignment = _SET_STATUS.search(match.group(1))
        if assignment is None:
            continue  # updates other columns only
        literal = re.fullmatch(r"'(\w+)',?", assignment.group(1))
        assert literal, f"a contact's status is set to something not a literal: {assignment}"
        guards = compared_statuses(sql.replace(match.group(1), ""))
        assert guards, f"a status is set without requiring a status first: {match.group(0)!r}"
        for before in sorted(guards):
            yield before, literal.group(1)


class TestStatementsThatWriteAStatus:
    def test_the_reader_finds_the_intake_and_the_rounds_write(self) -> None:
        statements = contact_statements()
        intake = statements["app.routing.admission_statement.STATEMENT"]
        write = statements["app.routing.rounds._WRITE"]
        assert list(inserted_statuses(intake)) == ["queued"]
        assert list(updated_moves(write)) == [("queued", "offered")]

    def test_every_inserted_contact_starts_in_the_tables_first_status(self) -> None:
        inserted = {
            name: list(inserted_statuses(sql)) for name, sql in contact_statements().items()
        }
        assert {
            name: statuses
            for name, statuses in inserted.items()
            if statuses and set(statuses) != {INITIAL.value}
        } == {}

    def test_every_status_update_is_a_move_of_the_table(self) -> None:
        made = {
            (name, move)
            for name, sql in contact_statements().items()
            for move in updated_moves(sql)
        }
        assert made, "no statement sets a contact's status: the reader is broken"
        assert {(name, move) for name, move in made if move not in TABLE_MOVES} == set()


class TestStatusNamesInSql:
    """The statuses SQL names stay in step with the enum."""

    def test_every_status_a_statement_names_is_in_the_enum(self) -> None:
        named = {
            name: compared_statuses(sql)
            | set(inserted_statuses(sql))
            | {after for _, after in updated_moves(sql)}
            for name, sql in contact_statements().items()
        }
        assert set().union(*named.values()), "no status found: the reader is broken"
        assert {name: found - KNOWN for name, found in named.items() if found - KNOWN} == {}

    def test_every_status_an_index_of_contacts_names_is_in_the_enum(self) -> None:
        predicates = [
            str(index.dialect_options["postgresql"]["where"])
            for index in table_of(Contact).indexes
            if index.dialect_options["postgresql"]["where"] is not None
        ]
        named = {status for p in predicates for status in _bare_statuses(p)}
        assert named
        assert named <= KNOWN

    async def test_the_databases_status_check_allows_exactly_the_enum(self, db: str) -> None:
        conn = await asyncpg.connect(plain_url(db))
        try:
            definition = await conn.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'ck_contacts_status'"
            )
        finally:
            await conn.close()
        assert set(_LITERAL.findall(definition)) == KNOWN

    def test_the_reader_sees_a_status_the_enum_lacks(self) -> None:
        sql = "SELECT 1 FROM contacts w WHERE w.status IN ('queued', 'parked')"
        assert compared_statuses(sql) - KNOWN == {"parked"}


def _bare_statuses(predicate: str) -> set[str]:
    found: set[str] = set()
    for match in re.finditer(r"\bstatus\s*(?:=\s*('\w+')|IN\s*\(([^)]*)\))", predicate):
        found.update(_LITERAL.findall(match.group(1) or match.group(2)))
    return found


class TestPythonWrites:
    @staticmethod
    def status_writes() -> set[tuple[str, str, str]]:
        """(file, function, target) of every assignment to a ``.status`` attribute in app/."""
        writes: set[tuple[str, str, str]] = set()
        for path in sorted((ROOT / "app").rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for function in ast.walk(tree):
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    for target in _assigned(function):
                        if isinstance(target, ast.Attribute) and target.attr == "status":
                            where = str(path.relative_to(ROOT))
                            writes.add((where, function.name, ast.unparse(target)))
        return writes

    def test_only_the_lifecycles_move_changes_a_contacts_status(self) -> None:
        # Offers, agents, complaints, notifications and IVR calls have status machines of
        # their own; everything else written to a ``.status`` is a contact's, and must come
        # from the table.
        others = {"offer.status", "agent.status", "self.status", "complaint.status"}
        own_machines = ("app/complaints/", "app/notifications/", "app/ivr/")
        contact_writes = {
            w
            for w in self.status_writes()
            if w[2] not in others and not w[0].startswith(own_machines)
        }
        assert contact_writes == {
            ("app/routing/contacts.py", "move", "contact.status"),
        }

    def test_no_contact_is_built_or_updated_with_a_status_keyword(self) -> None:
        found = []
        for path in sorted((ROOT / "app").rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and _builds_contact_status(node):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        assert found == []


def _assigned(function: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(function):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            yield from target.elts if isinstance(target, ast.Tuple) else [target]


def _builds_contact_status(call: ast.Call) -> bool:
    """``Contact(status=...)`` or ``update(Contact)...values(status=...)``."""
    callee = ast.unparse(call.func)
    has_status = any(k.arg == "status" for k in call.keywords)
    return has_status and (callee == "Contact" or "update(Contact)" in callee)
