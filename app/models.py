"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from app.accesslog import AccessLogEntry
from app.agents.api_keys import ApiKey
from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.complaints.models import Complaint, ComplaintAudit, ComplaintClock
from app.complaints.notes import ComplaintFeedback, ComplaintNote
from app.complaints.suggestions import ClassifierState
from app.customers.models import Customer
from app.db import Base
from app.events.models import Event
from app.idempotency import IdempotencyKey
from app.notifications.models import Notification
from app.ratelimit import RateLimitRow
from app.routing.models import Contact, Offer, Queue
from app.secrets import AppSecret
from app.timers.models import Timer

__all__ = [
    "AccessLogEntry",
    "Agent",
    "AgentChannel",
    "AgentSkill",
    "ApiKey",
    "AppSecret",
    "Base",
    "ClassifierState",
    "Complaint",
    "ComplaintAudit",
    "ComplaintClock",
    "ComplaintFeedback",
    "ComplaintNote",
    "Contact",
    "Customer",
    "Event",
    "IdempotencyKey",
    "Notification",
    "Offer",
    "Queue",
    "RateLimitRow",
    "Skill",
    "Timer",
]
