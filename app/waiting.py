"""Waiting for a wake-up with a time limit, safely under cancellation.

On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives just as the
awaited event fires, so a background loop would never stop. ``asyncio.timeout`` cancels
correctly; background loops wait through ``wait_for_wake``.
"""

from __future__ import annotations

import asyncio


async def wait_for_wake(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
