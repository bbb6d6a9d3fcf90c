"""complaint_search: the words each complaint is found by, with a GIN index

``complaints.search`` is a ``tsvector`` of the complaint's terms as
``app/complaints/search_terms.py`` cuts them (jieba search mode for Chinese, plus every CJK
character; lower-cased words for other scripts), over its reference, branch, location,
description, grounds, request and the facts of the registrations linked to it. The service
writes it with every change to that text; the list's ``text`` filter matches it through
``ix_complaints_search``.

The column keeps ten times PostgreSQL's default statistics (``_STATISTICS``): the planner
estimates how many complaints a word matches from the most common words ANALYZE saw, and a
word missing from that list is taken to be half as common as the least common one listed.
With the default list a rare word looks common enough that walking the complaints in id
order for a page of 20 seems cheaper than the index, and the walk then reads the whole
table; the longer list makes the unlisted words rare, as they are.

The upgrade adds the column (empty), fills it for every existing complaint in pages of
``_PAGE`` by id, with the same module the service uses, then builds the index (one build over
the filled table is faster than updating the index row by row). The downgrade drops the
index and the column.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 23:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.complaints import search_terms

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE = 1000
_STATISTICS = 1000
_READ = sa.text(
    "SELECT id, reference, branch, location, description, grounds, request, linked "
    "FROM complaints WHERE id > :after ORDER BY id LIMIT :page"
)
_WRITE = sa.text(
    "UPDATE complaints SET search = filled.search::tsvector "
    "FROM unnest(:ids, :searches) AS filled(id, search) WHERE complaints.id = filled.id"
).bindparams(
    sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger())),
    sa.bindparam("searches", type_=postgresql.ARRAY(sa.Text())),
)


def fill(connection: sa.Connection) -> int:
    """Write every complaint's search vector from its text; how many were written."""
    after, count = 0, 0
    while rows := connection.execute(_READ, {"after": after, "page": _PAGE}).all():
        searches = [search_terms.of(row) for row in rows]
        connection.execute(_WRITE, {"ids": [r.id for r in rows], "searches": searches})
        after, count = rows[-1].id, count + len(rows)
    return count


def upgrade() -> None:
    op.add_column(
        "complaints",
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            server_default=sa.text("''::tsvector"),
            nullable=False,
            comment="the words it is found by (app.complaints.search_terms)",
        ),
    )
    op.execute(f"ALTER TABLE complaints ALTER COLUMN search SET STATISTICS {_STATISTICS}")
    fill(op.get_bind())
    op.create_index(
        "ix_complaints_search", "complaints", ["search"], unique=False, postgresql_using="gin"
    )


def downgrade() -> None:
    op.drop_index("ix_complaints_search", table_name="complaints", postgresql_using="gin")
    op.drop_column("complaints", "search")
