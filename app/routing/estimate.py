"""Estimated wait and announced queue position, as told to a waiting customer.

Theory of operation
-------------------

``estimate_wait`` spreads the work ahead of a contact over the staffed agents:
``position * mean handle time / staffed agents``, rounded to whole seconds (``round``, so an
exact half goes to the even neighbour). It never guesses: with fewer than ``min_samples``
recent handle times, or nobody staffed, the estimate is ``None`` with basis ``"unknown"``.
A contact at position 0 is being offered right now, so its wait is 0 whatever the data.
The caller decides which handle times are "recent"; every one it passes is used.

``announce_position`` keeps the promise made to the customer: the position they are told
never goes backwards (never grows), even when the computed position does (a higher-priority
contact joined ahead of them). Positions start at 1.

Nothing here does I/O or reads a clock.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

__all__ = [
    "BASIS_OFFERED",
    "BASIS_UNKNOWN",
    "MIN_SAMPLES",
    "RECENT_SAMPLES",
    "RECENT_WINDOW",
    "WaitEstimate",
    "announce_position",
    "estimate_wait",
]

BASIS_UNKNOWN: Final = "unknown"
BASIS_OFFERED: Final = "offered"
MIN_SAMPLES: Final = 5
# What the service passes as recent: the last handle times of the queue, within an hour.
RECENT_WINDOW: Final = timedelta(hours=1)
RECENT_SAMPLES: Final = 50


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """An estimated wait in seconds (``None`` when unknown) and what it was based on."""

    seconds: int | None
    basis: str


def estimate_wait(
    position: int,
    handle_times_s: Sequence[float],
    staffed_agents: int,
    *,
    min_samples: int = MIN_SAMPLES,
) -> WaitEstimate:
    """Estimated wait for the contact at ``position``; unknown when the data is thin."""
    _require(position >= 0, "position", "an integer >= 0", position)
    _require(staffed_agents >= 0, "staffed_agents", "an integer >= 0", staffed_agents)
    _require(min_samples >= 1, "min_samples", "an integer >= 1", min_samples)
    bad = next((t for t in handle_times_s if not (math.isfinite(t) and t >= 0)), None)
    _require(bad is None, "handle_times_s", "finite numbers >= 0", bad)
    if position == 0:
        return WaitEstimate(0, BASIS_OFFERED)
    samples = len(handle_times_s)
    if staffed_agents == 0 or samples < min_samples:
        return WaitEstimate(None, BASIS_UNKNOWN)
    aht = math.fsum(handle_times_s) / samples
    basis = f"aht={round(aht)}s agents={staffed_agents} samples={samples}"
    return WaitEstimate(round(position * aht / staffed_agents), basis)


def announce_position(computed: int, previously_announced: int | None) -> int:
    """Position to tell the customer: the computed one, but never more than told before."""
    _require(computed >= 1, "computed", "an integer >= 1", computed)
    if previously_announced is None:
        return computed
    _require(
        previously_announced >= 1, "previously_announced", "an integer >= 1", previously_announced
    )
    return min(computed, previously_announced)


def _require(condition: bool, name: str, rule: str, value: object) -> None:
    if not condition:
        raise ValueError(f"{name} must be {rule}, got {value!r}")
