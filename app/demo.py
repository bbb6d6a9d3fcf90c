"""The demo centre: skills, queues, agents with known passwords, customers of every tier,
the IVR's demo flows, and a few complaints at different points of the desk's workflow.

Idempotent: what exists is left alone, so running it twice changes nothing. The complaints
are added only to a database that has none (a desk in use is never given made-up cases).
"""

# ruff: noqa: RUF001 (Chinese text uses full-width punctuation)

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.agents import service as agents
from app.agents.models import Agent, Role, Skill
from app.agents.permissions import Principal
from app.agents.schemas import AgentCreate, AgentUpdate, SkillLevel
from app.agents.security import hash_password, make_hasher
from app.channels import Channel
from app.complaints import search_terms
from app.complaints import service as complaints
from app.complaints.lifecycle import ComplaintEvent
from app.complaints.models import Complaint
from app.complaints.schemas import ComplaintCreate, TransitionFacts
from app.config import Settings
from app.customers import service as customers
from app.customers.schemas import CustomerCreate
from app.db import create_engine, create_sessionmaker, unit_of_work
from app.ivr import service as ivr
from app.routing import service as routing
from app.routing.schemas import QueueCreate, QueueUpdate

SKILLS = {
    "credit_card": "credit-card accounts, limits and disputes",
    "loans": "personal loans and mortgages",
    "wealth": "deposits, funds and wealth management",
    "complaints": "complaint intake and resolution",
    "mandarin": "speaks Mandarin",
    "english": "speaks English",
}

AgentSeed = tuple[str, str, Role, str, dict[str, int], dict[Channel, int]]
AGENTS: list[AgentSeed] = [
    # username, name, role, site, skills, capacity
    ("li.na", "Li Na", Role.supervisor, "shanghai", {"complaints": 9, "mandarin": 10}, {}),
    ("wang.wei", "Wang Wei", Role.agent, "shanghai", {"credit_card": 8, "mandarin": 10}, {}),
    (
        "zhang.min",
        "Zhang Min",
        Role.agent,
        "shanghai",
        {"loans": 7, "wealth": 9, "mandarin": 9},
        {},
    ),
    ("chen.jie", "Chen Jie", Role.agent, "shanghai", {"complaints": 6, "credit_card": 5}, {}),
    ("liu.yang", "Liu Yang", Role.agent, "beijing", {"credit_card": 4, "english": 8}, {}),
    ("zhao.lei", "Zhao Lei", Role.supervisor, "beijing", {"complaints": 8, "english": 7}, {}),
]

# Every channel a demo queue takes (a demo agent without it would leave its contacts
# waiting): at most one call or callback at once, a few written conversations, many cases.
DEMO_CAPACITY: dict[Channel, int] = {
    Channel.voice: 1,
    Channel.callback: 1,
    Channel.chat: 3,
    Channel.web: 3,
    Channel.app: 3,
    Channel.email: 5,
    Channel.case: 20,
}

QUEUES: list[dict[str, object]] = [
    {
        "name": "general",
        "description": "everything else; the last resort of the other queues",
        "channels": ["voice", "chat", "web", "app", "callback"],
        "steps": [
            {"skills": [{"skill": "mandarin", "min_level": 5}], "expires_after_s": 30},
        ],
    },
    {
        "name": "credit-cards",
        "description": "credit-card centre (press 1)",
        "channels": ["voice", "chat", "app", "callback"],
        "strategy": "most_skilled",
        "steps": [
            {"skills": [{"skill": "credit_card", "min_level": 7}], "expires_after_s": 20},
            {"skills": [{"skill": "credit_card", "min_level": 3}], "expires_after_s": 40},
        ],
        "max_wait_s": 300,
        "overflow_queue": "general",
    },
    {
        "name": "complaints",
        "description": "complaint hotline (press 0)",
        "channels": ["voice", "chat", "web", "app", "email", "case", "callback"],
        "steps": [{"skills": [{"skill": "complaints", "min_level": 5}], "expires_after_s": 60}],
        "service_level": {"threshold_s": 30, "target_pct": 80},
    },
]

# name, phone, resident ID, tier, relationship manager, language
CUSTOMERS = [
    ("Huang Mei", "+8613800000001", "11010519491231002X", "platinum", "zhang.min", "zh-CN"),
    ("Sun Hao", "+8613800000002", None, "gold", "wang.wei", "zh-CN"),
    ("Zhou Xin", "+8613800000003", None, "silver", None, "zh-CN"),
    ("Wu Tao", "+8613800000004", None, "standard", None, "zh-CN"),
    ("Alice Smith", "+442071234567", None, "standard", None, "en-GB"),
]


async def _seed_queues(session: AsyncSession) -> None:
    """Create the demo queues; a demo queue created by an older seed gets the channels the
    demo flows need (nothing else of it is changed)."""
    for spec in QUEUES:
        queue = await routing.get_queue(session, str(spec["name"]))
        if queue is None:
            await routing.create_queue(
                session, data=QueueCreate.model_validate(spec), actor="system"
            )
            continue
        wanted = QueueCreate.model_validate(spec).channels
        missing = [c for c in wanted if c.value not in queue.channels]
        if missing:
            changes = QueueUpdate(channels=[*(Channel(c) for c in queue.channels), *missing])
            await routing.update_queue(session, queue, changes=changes, actor="system")


async def _add_channels(session: AsyncSession, agent: Agent, wanted: dict[Channel, int]) -> None:
    """A demo agent created by an older seed gets the channels it lacks (nothing else of it
    is changed: capacities someone set stay)."""
    agent = await agents.get_or_raise(session, agent.id, for_update=True)
    has = {row.channel: row.capacity for row in agent.channels}
    missing = {c: n for c, n in wanted.items() if c.value not in has}
    if missing:
        capacity = {**{Channel(c): n for c, n in has.items()}, **missing}
        changes = AgentUpdate(capacity=capacity)
        await agents.update_agent(
            session, agent, changes=changes, password_hash=None, actor="system"
        )


# customer's phone, channel, days ago, where, branch, what happened, grounds, request, and
# the desk's moves so far (the verb, its facts; an assignee by username): li.na registers
# and assigns, an assignee starts the work.
ComplaintSeed = tuple[str, str, int, str, str, str, str, str, list[tuple[str, dict[str, object]]]]
COMPLAINTS: list[ComplaintSeed] = [
    (
        "+8613800000002",
        "phone",
        1,
        "浦东支行营业厅",
        "Pudong",
        "信用卡同一笔消费被扣款两次，到柜台要求处理被拒绝",
        "同一笔消费被重复扣款",
        "退还重复扣除的款项",
        [],
    ),
    (
        "+8613800000001",
        "app",
        2,
        "手机银行",
        "Jing'an",
        "理财经理推荐的产品风险等级与介绍不符，购买时未告知可能亏损本金",
        "销售时未如实告知产品风险",
        "按本金赎回并赔偿损失",
        [
            (
                "classify",
                {"categories": ["wealth_management", "information_asymmetry"], "severity": "high"},
            ),
            ("assign", {"assignee": "li.na"}),
        ],
    ),
    (
        "+8613800000003",
        "web",
        3,
        "网上银行",
        "Xuhui",
        "提前还清贷款时被收取了合同中没有约定的手续费",
        "借款合同未约定提前还款手续费",
        "退还提前还款手续费",
        [
            ("classify", {"categories": ["loans"], "severity": "medium"}),
            ("assign", {"assignee": "chen.jie"}),
            ("start", {}),
        ],
    ),
]


async def _seed_complaints(
    session: AsyncSession, settings: Settings, ids: dict[str, int], now: datetime
) -> None:
    """Register the demo complaints and make their moves, only where there are none."""
    if await session.scalar(select(func.count()).select_from(Complaint)):
        return
    desk = complaints.desk_for(settings)
    people = {
        ids[username]: Principal(id=ids[username], username=username, role=role, site=site)
        for username, _, role, site, _, _ in AGENTS
    }
    boss = people[ids["li.na"]]
    for phone, channel, days, where, branch, what, grounds, wanted, moves in COMPLAINTS:
        customer = await customers.get_by_phone(session, phone)
        assert customer is not None  # seeded above
        data = ComplaintCreate.model_validate(
            {
                "channel": channel,
                "customer": {"id": customer.id},
                "complainant": {"name": customer.name, "contact": phone, "relation": "self"},
                "matter": {
                    "occurred_at": now - timedelta(days=days),
                    "location": where,
                    "branch": branch,
                    "description": what,
                },
                "grounds": grounds,
                "request": wanted,
            }
        )
        done = await complaints.register(session, data=data, actor=boss.actor, now=now, desk=desk)
        complaint = done.complaint
        for verb, facts in moves:
            given = dict(facts)
            if "assignee" in given:
                given["assignee"] = ids[str(given["assignee"])]
            complaint = await complaints.get_or_raise(session, complaint.id, for_update=True)
            by = (
                people[complaint.assignee_id] if verb == "start" and complaint.assignee_id else boss
            )
            await complaints.transition(
                session,
                complaint,
                event=ComplaintEvent(verb),
                facts=TransitionFacts.model_validate(given),
                principal=by,
                now=now,
                desk=desk,
            )


def demo_password(username: str) -> str:
    return f"demo-{username.replace('.', '-')}"


async def seed(settings: Settings) -> None:
    """Create whatever part of the demo centre is missing and print the sign-ins."""
    assert settings.database_url is not None
    engine = create_engine(
        settings.database_url,
        pool_size=2,
        idle_tx_timeout_ms=settings.idle_in_transaction_timeout_ms,
    )
    sessionmaker = create_sessionmaker(engine)
    hasher = make_hasher(settings)
    # The seed is one transaction: jieba's dictionary (for the complaints' search terms) is
    # read before it begins, not inside it while the server counts the session idle.
    await asyncio.to_thread(search_terms.warm)
    try:
        async with unit_of_work(sessionmaker) as session:
            existing = set((await session.scalars(select(Skill.name))).all())
            for name, description in SKILLS.items():
                if name not in existing:
                    await agents.create_skill(session, name=name, description=description)
            ids: dict[str, int] = {}
            for username, name, role, site, skills, capacity in AGENTS:
                agent = await agents.get_by_username(session, username)
                if agent is None:
                    data = AgentCreate(
                        name=name,
                        username=username,
                        password=demo_password(username),
                        role=role,
                        site=site,
                        team="retail",
                        skills=[SkillLevel(skill=s, level=lvl) for s, lvl in skills.items()],
                        capacity=capacity or DEMO_CAPACITY,
                        endpoint=f"client:{username}",
                    )
                    password_hash = await hash_password(hasher, data.password)
                    agent = await agents.create_agent(
                        session, data=data, password_hash=password_hash, actor="system"
                    )
                else:
                    await _add_channels(session, agent, capacity or DEMO_CAPACITY)
                ids[username] = agent.id
            await _seed_queues(session)
            today = datetime.now(UTC).date()
            for name, phone, id_number, tier, manager, language in CUSTOMERS:
                if await customers.get_by_phone(session, phone) is None:
                    data_c = CustomerCreate(
                        name=name,
                        phone=phone,
                        id_number=id_number,
                        tier=tier,
                        language=language,
                        relationship_manager_id=ids[manager] if manager else None,
                    )
                    await customers.create(
                        session, data=data_c, settings=settings, today=today, actor="system"
                    )
            now = datetime.now(UTC)
            await ivr.install_demo_flows(session, region=settings.default_phone_region, now=now)
            await _seed_complaints(session, settings, ids, now)
    finally:
        await engine.dispose()
    print("Demo centre ready. Sign in with (username / password):")
    for username, _, role, site, _, _ in AGENTS:
        print(f"  {username:<10} / {demo_password(username):<16} {role.value} at {site}")
