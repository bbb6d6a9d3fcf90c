"""Compression per socket under ``hotline serve`` (``app/realtime/protocol.py``): a console is
served without ``permessage-deflate`` even when its client offers it; a wallboard gets it when
offered, and nothing when not. The handshake answers before the token is looked at, so no
sign-in is needed to see what was agreed (the socket is then closed 4401)."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.realtime.protocol import UNCOMPRESSED_PATHS
from tests.fixtures.served import served

WITHIN_S = 30


async def agreed(base: str, path: str, *, offer: bool) -> str | None:
    """The ``Sec-WebSocket-Extensions`` the server answered to a handshake on ``path``."""
    compression = "deflate" if offer else None
    async with connect(base + path, compression=compression, open_timeout=WITHIN_S) as ws:
        assert ws.response is not None
        answer = ws.response.headers.get("Sec-WebSocket-Extensions")
        with pytest.raises(ConnectionClosed):  # no token: 4401
            await ws.recv()
        assert ws.close_code == 4401
    return answer


async def test_consoles_go_uncompressed_and_wallboards_compressed(db: str) -> None:
    assert "/ws/agent" in UNCOMPRESSED_PATHS
    async with served(db) as instance:
        assert await agreed(instance.ws, "/ws/agent?token=", offer=True) is None
        wallboard = await agreed(instance.ws, "/ws/wallboard?token=", offer=True)
        assert wallboard is not None
        assert wallboard.startswith("permessage-deflate")
        assert await agreed(instance.ws, "/ws/wallboard?token=", offer=False) is None
