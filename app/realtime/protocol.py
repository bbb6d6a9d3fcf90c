"""The websocket protocol ``hotline serve`` runs: uvicorn's own (its sans-I/O implementation
over the ``websockets`` package, what uvicorn picks by default), with compression where it
pays and lighter waiting.

uvicorn offers ``permessage-deflate`` on every socket or on none. The compressor's and the
decompressor's state are most of what an idle socket weighs (about 35 KB of an idle
console's 90, measured with ``bench/fanout.py``), and a console receives little: its agent's
offers and status changes, a few small messages a minute. A wallboard receives every event
of the centre, where compression saves the network more than it costs. So consoles
(``UNCOMPRESSED_PATHS``) are served without it, and every other socket with it as the client
offers; a client that offers nothing gets nothing either way. The extensions are agreed when
the handshake request is accepted, and the path is read from that request.

The protocol's queue of received messages (one consumer: the application's ``receive``)
and its "writable" event are replaced by ``Mailbox`` and ``Flag``
(``app/realtime/lean.py``), which behave alike in what uvicorn uses of them (``get``,
``put_nowait``, ``empty``; ``set``, ``clear``, ``wait``) and weigh a fraction. The names
replaced are uvicorn's (``conn.available_extensions``, ``queue``, ``writable``), pinned by
the lock file; ``tests/realtime/test_compression.py`` and the suite's websocket tests, which
run over ``hotline serve``, would show a change.
"""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from app.realtime.lean import Flag, Mailbox

UNCOMPRESSED_PATHS: Final = frozenset({"/ws/agent"})
# How ``hotline serve`` names this class to uvicorn.
IMPORT_PATH: Final = "app.realtime.protocol:HotlineWebSocketProtocol"
# The received-message queue is bounded by uvicorn itself (it stops reading the socket while
# a message waits), so its mailbox is never full.
_RECEIVED_MAX: Final = 2**31


class HotlineWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, without compression on consoles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Mailbox(_RECEIVED_MAX)  # type: ignore[assignment]
        self.writable = Flag()
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        path = event.path.partition("?")[0]
        if path in UNCOMPRESSED_PATHS:
            self.conn.available_extensions = []
        super().handle_connect(event)
