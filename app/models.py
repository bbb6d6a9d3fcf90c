"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from app.accesslog import AccessLogEntry
from app.agents.api_keys import ApiKey
from app.agents.models import Agent, AgentChannel, AgentSkill, Skill
from app.complaints.approval_models import ComplaintApproval
from app.complaints.attachments import ComplaintAttachment
from app.complaints.export import ComplaintExport
from app.complaints.models import Complaint, ComplaintAudit, ComplaintClock
from app.complaints.notes import ComplaintFeedback, ComplaintNote
from app.complaints.suggestions import ClassifierState
from app.complaints.team_queue import QueuedComplaint
from app.customers.models import Customer
from app.db import Base
from app.events.models import Event
from app.idempotency import IdempotencyKey
from app.ivr.models import IvrCall, IvrFlow, IvrNumber, IvrStep, TelephonySignature
from app.notifications.models import Notification
from app.ratelimit import RateLimitRow
from app.routing.models import Contact, CustomerAffinity, Offer, Queue
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
    "ComplaintApproval",
    "ComplaintAttachment",
    "ComplaintAudit",
    "ComplaintClock",
    "ComplaintExport",
    "ComplaintFeedback",
    "ComplaintNote",
    "Contact",
    "Customer",
    "CustomerAffinity",
    "Event",
    "IdempotencyKey",
    "IvrCall",
    "IvrFlow",
    "IvrNumber",
    "IvrStep",
    "Notification",
    "Offer",
    "Queue",
    "QueuedComplaint",
    "RateLimitRow",
    "Skill",
    "TelephonySignature",
    "Timer",
]
