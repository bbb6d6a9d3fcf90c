"""Scoring benchmark: ``match`` against the reference implementation, per (contact, agent) pair.

Builds a batch like the dispatcher's (default 500 waiting contacts x 2,000 routable agents,
50 skills at random levels, 50 queues whose first routing step needs one or two skills and
expires after 5-30 s, four tiers, relationship managers, last agents and exclusions, chat and
voice), once per strategy, and times ``app.routing.scoring.match`` and the straightforward
reference kept in ``tests/routing/test_scoring.py`` on the same inputs in the same run. It
checks that both return identical matches and reasons, and prints microseconds per pair for
each and the speed-up.

Usage: ``python bench/scoring.py [--contacts N] [--agents N] [--seed N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.routing.scoring import (  # noqa: E402
    AgentView,
    ContactView,
    DispatchSettings,
    Match,
    QueueRules,
    SkillReq,
    Step,
    Strategy,
    TierPolicy,
    match,
)
from tests.routing.test_scoring import reference_match  # noqa: E402

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SETTINGS = DispatchSettings(starvation_bound_s=30)
SKILLS = [f"skill_{i}" for i in range(50)]
QUEUES = 50
TIERS = [
    (TierPolicy("platinum", sl_target_s=10, rank=1, rm_affinity_s=20), 0.01),
    (TierPolicy("gold", sl_target_s=20, rank=2), 0.19),
    (TierPolicy("silver", sl_target_s=40, rank=3), 0.30),
    (TierPolicy("standard", sl_target_s=60, rank=4), 0.50),
]

Waiting = list[tuple[QueueRules, ContactView]]
MatchFn = Callable[
    [Sequence[tuple[QueueRules, ContactView]], Sequence[AgentView], datetime, DispatchSettings],
    list[Match],
]


def ago(rng: random.Random, max_s: int) -> datetime:
    return NOW - timedelta(microseconds=rng.randrange(max_s * 1_000_000))


def make_queues(rng: random.Random, strategy: Strategy) -> list[QueueRules]:
    queues = []
    for index in range(QUEUES):
        reqs = tuple(
            SkillReq(skill, rng.randint(1, 5)) for skill in rng.sample(SKILLS, rng.randint(1, 2))
        )
        steps = [Step(reqs, rng.choice([5, 10, 30]))]
        if rng.random() < 0.5:
            # A wider second step; half of them never expire.
            steps.append(Step(reqs[:1], rng.choice([None, 30])))
        queues.append(QueueRules(index + 1, strategy, tuple(steps)))
    return queues


def make_agents(rng: random.Random, count: int) -> list[AgentView]:
    agents = []
    for agent_id in range(1, count + 1):
        chat = rng.randint(1, 3)
        agents.append(
            AgentView(
                id=agent_id,
                skills={s: rng.randint(1, 10) for s in rng.sample(SKILLS, rng.randint(3, 8))},
                idle_since=ago(rng, 900),
                load={"chat": rng.randrange(chat), "voice": 0},
                capacity={"chat": chat, "voice": rng.choice([0, 1])},
                contacts_today=rng.randint(0, 40),
                last_offer_at=ago(rng, 3600) if rng.random() < 0.9 else None,
            )
        )
    return agents


def pick_tier(rng: random.Random) -> TierPolicy:
    roll, total = rng.random(), 0.0
    for tier, share in TIERS:
        total += share
        if roll < total:
            return tier
    return TIERS[-1][0]


def make_waiting(rng: random.Random, count: int, queues: list[QueueRules], agents: int) -> Waiting:
    waiting: Waiting = []
    for contact_id in range(1, count + 1):
        waited = rng.randrange(60_000_000)
        contact = ContactView(
            id=contact_id,
            channel=rng.choice(["chat", "chat", "voice"]),
            tier=pick_tier(rng),
            enqueued_at=NOW - timedelta(microseconds=waited),
            routing_started_at=NOW - timedelta(microseconds=rng.randrange(waited + 1)),
            relationship_manager_id=rng.randint(1, agents) if rng.random() < 0.3 else None,
            last_agent_id=rng.randint(1, agents) if rng.random() < 0.2 else None,
            last_agent_until=NOW + timedelta(seconds=rng.randint(-30, 30)),
            excluded_agent_ids=frozenset(rng.sample(range(1, agents + 1), rng.randint(0, 2))),
        )
        waiting.append((rng.choice(queues), contact))
    return waiting


def timed(
    fn: MatchFn, waiting: Waiting, agents: list[AgentView], repeat: int
) -> tuple[float, list[Match]]:
    best, result = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(waiting, agents, NOW, SETTINGS)
        best = min(best, time.perf_counter() - started)
    return best, result


def row(label: str, matched: str, slow: float, fast: float, pairs: int) -> str:
    reference, optimised = slow / pairs * 1e6, fast / pairs * 1e6
    return (
        f"{label:<16} {matched:>7} {reference:>9.3f} µs {optimised:>9.3f} µs {slow / fast:>8.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=3, help="optimised runs (best taken)")
    args = parser.parse_args()
    pairs = args.contacts * args.agents
    print(f"match: {args.contacts} contacts x {args.agents} agents = {pairs:,} pairs per run")
    print("time per (contact, agent) pair, reference vs optimised:")
    print(f"{'strategy':<16} {'matched':>7} {'reference':>12} {'optimised':>12} {'speed-up':>9}")
    slow_total = fast_total = 0.0
    for strategy in Strategy:
        rng = random.Random(f"{args.seed}-{strategy.value}")
        agents = make_agents(rng, args.agents)
        waiting = make_waiting(rng, args.contacts, make_queues(rng, strategy), args.agents)
        slow, expected = timed(reference_match, waiting, agents, 1)
        fast, got = timed(match, waiting, agents, args.repeat)
        if got != expected:
            raise SystemExit(f"{strategy}: optimised match differs from the reference")
        slow_total += slow
        fast_total += fast
        print(row(strategy.value, str(len(got)), slow, fast, pairs))
    slow, fast = slow_total / len(Strategy), fast_total / len(Strategy)
    print(row("mean", "", slow, fast, pairs))
    print(
        f"per contact: reference {slow / args.contacts * 1e3:.2f} ms, "
        f"optimised {fast / args.contacts * 1e3:.3f} ms; matches and reasons identical"
    )


if __name__ == "__main__":
    main()
