"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.customers.models import Customer
from app.db import Base
from app.events.models import Event
from app.idempotency import IdempotencyKey
from app.routing.models import Contact, Offer, Queue
from app.secrets import AppSecret
from app.timers.models import Timer

__all__ = [
    "Agent",
    "AgentChannel",
    "AgentSkill",
    "AppSecret",
    "Base",
    "Contact",
    "Customer",
    "Event",
    "IdempotencyKey",
    "Offer",
    "Queue",
    "Skill",
    "Timer",
]
