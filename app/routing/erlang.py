"""Erlang C staffing: how many agents a queue needs to meet its service-level target.

Theory of operation
-------------------

Contacts arrive at ``arrival_rate_per_s`` (λ) and each takes ``aht_s`` seconds on average to
handle, so the offered traffic is ``A = λ · AHT`` erlangs. With ``N`` agents, the Erlang C
formula gives the probability that a contact has to wait at all; the classic M/M/N results
follow from it:

- service level (fraction answered within ``t`` seconds): ``1 - C · exp(-(N - A) · t / AHT)``;
- average speed of answer: ``C · AHT / (N - A)``.

The textbook form of C uses ``A^N / N!``, which overflows a float for a few hundred agents.
Here C is derived from Erlang B, computed by the recursion ``B(0) = 1``,
``B(n) = A·B(n-1) / (n + A·B(n-1))``, whose terms all stay in ``[0, 1]``; then
``C = N·B / (N - A·(1 - B))``. The same recursion, advanced one agent at a time, makes the
staffing search in ``agents_needed`` linear in the number of agents tried.

A queue with ``N <= A`` is unstable (it grows without bound): every contact waits, so
``C = 1``, the service level is 0 and the ASA is undefined (``None``). With no traffic at all
nobody waits, whatever the staffing: ``C = 0``, the service level is 1, the ASA 0, and no agent
is needed. Nothing here does I/O or reads a clock.
"""

import math
from collections.abc import Iterator
from itertools import islice

__all__ = ["agents_needed", "asa", "erlang_c", "service_level"]


def erlang_c(agents: int, traffic_erlangs: float) -> float:
    """Probability that a contact waits, for ``agents`` agents and the offered traffic."""
    _require_agents(agents)
    _require(
        _finite_at_least_zero(traffic_erlangs),
        "traffic_erlangs",
        "a finite number >= 0",
        traffic_erlangs,
    )
    if traffic_erlangs == 0:
        return 0.0
    if agents <= traffic_erlangs:
        return 1.0
    _, blocking = next(islice(_erlang_b(traffic_erlangs), agents, None))
    return _waiting(agents, traffic_erlangs, blocking)


def service_level(
    agents: int, arrival_rate_per_s: float, aht_s: float, threshold_s: float
) -> float:
    """Fraction of contacts answered within ``threshold_s`` seconds (0.0 when unstable)."""
    _require_agents(agents)
    traffic = _offered_traffic(arrival_rate_per_s, aht_s)
    _require_threshold(threshold_s)
    if traffic == 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    return _answered_within(agents, traffic, erlang_c(agents, traffic), aht_s, threshold_s)


def asa(agents: int, arrival_rate_per_s: float, aht_s: float) -> float | None:
    """Average speed of answer in seconds; ``None`` when the queue is unstable."""
    _require_agents(agents)
    traffic = _offered_traffic(arrival_rate_per_s, aht_s)
    if traffic == 0:
        return 0.0
    if agents <= traffic:
        return None
    return erlang_c(agents, traffic) * aht_s / (agents - traffic)


def agents_needed(
    arrival_rate_per_s: float,
    aht_s: float,
    threshold_s: float,
    target_pct: float,
    *,
    max_agents: int = 10_000,
) -> int | None:
    """Least number of agents whose service level meets ``target_pct``; ``None`` past max."""
    traffic = _offered_traffic(arrival_rate_per_s, aht_s)
    _require_threshold(threshold_s)
    _require(0 < target_pct <= 100, "target_pct", "a number in (0, 100]", target_pct)
    _require(max_agents >= 0, "max_agents", "an integer >= 0", max_agents)
    if traffic == 0:
        return 0
    # Below floor(A) + 1 the queue is unstable and the service level is 0, under any target;
    # above it the service level only grows with N, so the first N that meets it is the least.
    first = math.floor(traffic) + 1
    if first > max_agents:
        return None
    target = target_pct / 100
    for agents, blocking in islice(_erlang_b(traffic), first, max_agents + 1):
        waiting = _waiting(agents, traffic, blocking)
        if _answered_within(agents, traffic, waiting, aht_s, threshold_s) >= target:
            return agents
    return None


def _erlang_b(traffic: float) -> Iterator[tuple[int, float]]:
    """Erlang B blocking probability for 0, 1, 2, ... agents, each in [0, 1]."""
    agents, blocking = 0, 1.0
    while True:
        yield agents, blocking
        agents += 1
        blocking = traffic * blocking / (agents + traffic * blocking)


def _waiting(agents: int, traffic: float, blocking: float) -> float:
    """Erlang C from Erlang B, for a stable queue (``agents > traffic``)."""
    return agents * blocking / (agents - traffic * (1.0 - blocking))


def _answered_within(
    agents: int, traffic: float, waiting: float, aht_s: float, threshold_s: float
) -> float:
    return 1.0 - waiting * math.exp(-(agents - traffic) * threshold_s / aht_s)


def _offered_traffic(arrival_rate_per_s: float, aht_s: float) -> float:
    """Validated offered traffic in erlangs (λ · AHT)."""
    rate_ok = _finite_at_least_zero(arrival_rate_per_s)
    _require(rate_ok, "arrival_rate_per_s", "a finite number >= 0", arrival_rate_per_s)
    _require(math.isfinite(aht_s) and aht_s > 0, "aht_s", "a finite number > 0", aht_s)
    return arrival_rate_per_s * aht_s


def _require_agents(agents: int) -> None:
    _require(agents >= 0, "agents", "an integer >= 0", agents)


def _require_threshold(threshold_s: float) -> None:
    _require(_finite_at_least_zero(threshold_s), "threshold_s", "a finite number >= 0", threshold_s)


def _finite_at_least_zero(value: float) -> bool:
    # NaN fails both comparisons, so it is rejected with the negative numbers.
    return math.isfinite(value) and value >= 0


def _require(condition: bool, name: str, rule: str, value: object) -> None:
    if not condition:
        raise ValueError(f"{name} must be {rule}, got {value!r}")
