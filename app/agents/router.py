"""HTTP routes: token login, skills, agents and their status.

Sign-in (``POST /auth/token``) counts each attempt against two limits, per client address
and per username (``app/agents/security.py``, ``app/ratelimit.py``), before it looks the
user up or hashes anything, so a throttled attempt costs one statement and says nothing
about whether the username exists; a successful one takes its count back.

Who may call a route is the access table's answer (``app/agents/access.py``): each route loads the
agent it acts on and calls ``require`` (or ``allows``, for the private fields of a view)
before it changes anything. What the table cannot say, because it is about the request's
content, stays here: only an admin grants the supervisor or admin role (``can_grant``), and a
move must land where the principal could have created the agent (``can_create``).

Every ``/agents/{agent_id}...`` path takes ``me`` for the signed-in agent as well as an id
(``TargetAgentId``); the error statuses a route can answer beyond those its shape implies are
declared with ``errors(...)`` (see ``app/openapi.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm

from app import ratelimit
from app.agents import actions, service
from app.agents.access import Action, Resource, a_role, allows, require
from app.agents.actions import agent_out, target_of
from app.agents.dependencies import CurrentPrincipal
from app.agents.exceptions import NotAllowed
from app.agents.models import Agent
from app.agents.permissions import Principal, Target, can_create, can_grant
from app.agents.schemas import (
    MAX_ID,
    AgentCreate,
    AgentOut,
    AgentPage,
    AgentPublic,
    AgentUpdate,
    SkillCreate,
    SkillOut,
    SkillPage,
    StatusChangeIn,
    TokenOut,
)
from app.agents.security import (
    SignInLimits,
    hash_password,
    issue_token,
    password_fingerprint,
    sign_in_limits,
    verify_password,
)
from app.db import Session
from app.errors import InvalidInput, Unauthorized
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_json_body)])
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="retry-safe key for this create")
]
AgentRef = Annotated[
    str,
    Path(
        pattern=r"^(me|[0-9]{1,19})$",
        description="the agent's id, or `me` for the signed-in agent",
        examples=["me", "42"],
    ),
]
# Skills page by name (unique): the cursor is the last name of the page before.
SkillCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="the `next_cursor` of the previous page",
    ),
]
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def resolve_agent_ref(principal: Principal, ref: str) -> int:
    """The agent an ``agent_id`` path segment names: ``me`` is the principal."""
    if ref == "me":
        return principal.id
    agent_id = int(ref)
    if not 1 <= agent_id <= MAX_ID:
        raise InvalidInput(f"agent_id {ref} is not an agent id (1 to {MAX_ID})", field="agent_id")
    return agent_id


async def target_agent_id(agent_id: AgentRef, principal: CurrentPrincipal) -> int:
    return resolve_agent_ref(principal, agent_id)


TargetAgentId = Annotated[int, Depends(target_agent_id)]


def login_form_problem(content_type: str | None) -> str | None:
    """What is wrong with a login request's content type, or None if it is a form."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in FORM_TYPES:
        return None
    sent = f"Content-Type {media_type}" if media_type else "no Content-Type"
    return (
        "send username and password as form fields "
        f"(Content-Type: application/x-www-form-urlencoded), not {sent}"
    )


async def login_form(request: Request) -> None:
    """Refuse a login that is not a form with a message that says so."""
    problem = login_form_problem(request.headers.get("content-type"))
    if problem is not None:
        fields = [{"field": name, "message": problem} for name in ("username", "password")]
        raise InvalidInput(problem, fields=fields)


def client_address(request: Request) -> str:
    """The address the connection came from (``X-Forwarded-For`` is not trusted: any
    client can write it)."""
    return request.client.host if request.client else "unknown"


async def count_sign_in(request: Request, username: str) -> SignInLimits:
    """Count a sign-in attempt against its address and its username, before anything is
    hashed, in a transaction of its own (committed even though the attempt then fails);
    raises ``RateLimited`` if either is throttled. The answer is the same whether the
    username exists or not: nothing has been looked up yet."""
    limits = sign_in_limits(request.app.state.settings)
    await ratelimit.hit_all(
        request.app.state.engine,
        [(limits.address, client_address(request)), (limits.user, username)],
    )
    return limits


async def signed_in(request: Request, limits: SignInLimits, username: str) -> None:
    """A successful sign-in is no failure: the username's failures are forgotten, and the
    attempt counted against the address is taken back."""
    async with request.app.state.engine.begin() as conn:
        await ratelimit.clear(conn, limits.user, username)
        await ratelimit.forgive(conn, limits.address, client_address(request))


async def find_agent(request: Request, username: str) -> Agent | None:
    """The agent signing in, read in a session of its own: none is held while the password
    is checked (which may wait for a hashing slot)."""
    async with request.app.state.sessionmaker() as session:
        return await service.get_by_username(session, username)


@router.post(
    "/auth/token",
    response_model=TokenOut,
    tags=["auth"],
    responses=errors(401, 429),
    dependencies=[Depends(login_form)],
)
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenOut:
    """Exchange a username and password for a signed, expiring bearer token.

    Failed sign-ins are limited per username and per client address (429 with
    `Retry-After`, for longer each time the limit is reached again); a successful one
    clears the username's failures. When too many passwords are being checked at once the
    answer is a 503 with `Retry-After`."""
    username = form.username.lower()
    limits = await count_sign_in(request, username)
    agent = await find_agent(request, username)
    hasher = request.app.state.hasher
    ok = await verify_password(hasher, agent.password_hash if agent else None, form.password)
    if agent is None or not ok or not agent.active:
        raise Unauthorized("invalid username or password")
    await signed_in(request, limits, username)
    issued = issue_token(
        request.app.state.jwt_secret,
        agent_id=agent.id,
        ttl_s=request.app.state.settings.token_ttl_s,
        version=agent.token_version,
    )
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)


@router.post(
    "/skills",
    response_model=SkillOut,
    status_code=201,
    tags=["agents"],
    responses=errors(403, 409),
)
async def create_skill(
    body: SkillCreate, session: Session, principal: CurrentPrincipal, key: IdempotencyKey = None
) -> JSONResponse:
    """Add a skill agents can be rated in (supervisors and admins)."""
    require(principal, Resource.skills, Action.create)

    async def create() -> tuple[int, Any]:
        skill = await service.create_skill(session, name=body.name, description=body.description)
        return 201, SkillOut.model_validate(skill).model_dump(mode="json")

    code, payload = await run_once(
        session, scope=f"{principal.id}:skills", key=key, payload=body.model_dump(), create=create
    )
    return JSONResponse(payload, status_code=code)


@router.get("/skills", response_model=SkillPage, tags=["agents"], responses=errors(403))
async def list_skills(
    session: Session, principal: CurrentPrincipal, limit: Limit = 100, cursor: SkillCursor = None
) -> SkillPage:
    """Skills by name."""
    require(principal, Resource.skills, Action.list)
    skills = await service.list_skills(session, after_name=cursor, limit=limit)
    return SkillPage(
        items=[SkillOut.model_validate(s) for s in skills],
        next_cursor=skills[-1].name if len(skills) == limit else None,
    )


def agent_view(principal: Principal, agent: Agent) -> AgentOut | AgentPublic:
    """The full record when the principal may see it, the public view otherwise."""
    full = agent_out(agent)
    owner_ids, target = (agent.id,), target_of(agent)
    if allows(principal, Resource.agents, Action.read_private, owner_ids=owner_ids, agent=target):
        return full
    return AgentPublic.model_validate(full.model_dump(include=set(AgentPublic.model_fields)))


@router.post(
    "/agents",
    response_model=AgentOut,
    status_code=201,
    tags=["agents"],
    responses=errors(403, 409),
)
async def create_agent(
    request: Request,
    body: AgentCreate,
    session: Session,
    principal: CurrentPrincipal,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Create an agent (admins: anyone; supervisors: agents of their own site)."""
    if not can_grant(principal, body.role):
        # Before the site rule, whose refusal ("own site only") would not be the reason.
        raise NotAllowed(f"only an admin can create {a_role(body.role.value)}")
    require(principal, Resource.agents, Action.create, agent=Target(-1, body.role, body.site))

    async def create() -> tuple[int, Any]:
        password_hash = await hash_password(request.app.state.hasher, body.password)
        agent = await service.create_agent(
            session, data=body, password_hash=password_hash, actor=principal.actor
        )
        return 201, agent_out(agent).model_dump(mode="json")

    # The stored fingerprint is a fast hash: the password goes into it only as a digest keyed
    # with the signing secret, which an offline guess cannot reproduce.
    fingerprint = body.model_dump(mode="json", exclude={"password"})
    fingerprint["password"] = password_fingerprint(request.app.state.jwt_secret, body.password)
    code, payload = await run_once(
        session, scope=f"{principal.id}:agents", key=key, payload=fingerprint, create=create
    )
    return JSONResponse(payload, status_code=code)


@router.get("/agents", response_model=AgentPage, tags=["agents"], responses=errors(403))
async def list_agents(
    session: Session,
    principal: CurrentPrincipal,
    site: str | None = None,
    limit: Limit = 100,
    cursor: PageCursor = None,
) -> AgentPage:
    """Agents by id; full records where the caller may see them, public views otherwise."""
    require(principal, Resource.agents, Action.list)
    agents = await service.list_agents(
        session, site=site, after_id=decode_id_cursor(cursor), limit=limit
    )
    return AgentPage(
        items=[agent_view(principal, a) for a in agents],
        next_cursor=next_id_cursor([a.id for a in agents], limit),
    )


@router.get(
    "/agents/{agent_id}",
    response_model=AgentOut | AgentPublic,
    tags=["agents"],
    responses=errors(403),
)
async def get_agent(
    agent_id: TargetAgentId, session: Session, principal: CurrentPrincipal
) -> AgentOut | AgentPublic:
    """One agent (`me`: yourself): the full record for themselves, their supervisor and
    admins."""
    require(principal, Resource.agents, Action.read)
    return agent_view(principal, await service.get_or_raise(session, agent_id))


def _check_update(principal: Principal, agent: Agent, body: AgentUpdate) -> None:
    """The table's ``update`` (name, password) and, for any other field, ``manage``; then the
    rules about the change itself."""
    target = target_of(agent)
    owner_ids = (agent.id,)
    require(principal, Resource.agents, Action.update, owner_ids=owner_ids, agent=target)
    managing = body.model_dump(exclude_unset=True, exclude={"name", "password"})
    if not managing:
        return
    require(principal, Resource.agents, Action.manage, owner_ids=owner_ids, agent=target)
    if body.role is not None and not can_grant(principal, body.role):
        raise NotAllowed(f"only an admin can grant the {body.role.value} role")
    new_site = body.site if "site" in body.model_fields_set else agent.site
    new_role = body.role or target.role
    # A move must land where the principal could have created the agent: otherwise a
    # supervisor could move themselves to another site and take over its agents.
    moved = (new_role, new_site) != (target.role, target.site)
    if moved and not can_create(principal, role=new_role, site=new_site):
        raise NotAllowed("you may not move this agent out of your site")


@router.patch(
    "/agents/{agent_id}", response_model=AgentOut, tags=["agents"], responses=errors(403, 409)
)
async def update_agent(
    request: Request,
    agent_id: TargetAgentId,
    body: AgentUpdate,
    session: Session,
    principal: CurrentPrincipal,
) -> AgentOut:
    """Change an agent. Agents may change their own name and password only."""
    agent = await service.get_or_raise(session, agent_id, for_update=True)
    _check_update(principal, agent, body)
    password_hash = (
        await hash_password(request.app.state.hasher, body.password) if body.password else None
    )
    agent = await service.update_agent(
        session, agent, changes=body, password_hash=password_hash, actor=principal.actor
    )
    return agent_out(agent)


@router.post(
    "/agents/{agent_id}/status",
    response_model=AgentOut,
    tags=["agents"],
    responses=errors(403, 409),
)
async def change_status(
    agent_id: TargetAgentId, body: StatusChangeIn, session: Session, principal: CurrentPrincipal
) -> AgentOut:
    """Set an agent's status (available, away with a reason, offline): the agent's choice."""
    agent = await actions.set_status(session, principal, agent_id=agent_id, change=body)
    return agent_out(agent)
