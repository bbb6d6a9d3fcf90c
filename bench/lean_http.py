"""A lean HTTP/1.1 client for load generation: keep-alive connections, JSON bodies.

The load generator shares the machine with the server and PostgreSQL, so it must cost as
little CPU as possible: a general client (httpx) spends several times more per request than
this, which would be taken from the server being measured. It speaks only what the
benchmark needs: requests with a JSON or form body, responses with ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# uvicorn closes a keep-alive connection idle for 5 s: one idle longer than this is not reused
# (it could be closed by the server just as a request is sent on it).
MAX_IDLE_S = 4.0


class HttpError(Exception):
    """The connection failed or the response could not be read."""


class LeanClient:
    """A pool of up to ``size`` keep-alive connections to one server."""

    def __init__(self, host: str, port: int, *, size: int = 100) -> None:
        self._host, self._port, self._size = host, port, size
        self._idle: list[tuple[Conn, float]] = []
        self._open = 0
        self._freed = asyncio.Condition()

    async def _take(self) -> Conn:
        async with self._freed:
            while not self._idle and self._open >= self._size:
                await self._freed.wait()
            now = asyncio.get_running_loop().time()
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < MAX_IDLE_S:
                    return conn
                conn[1].close()
                self._open -= 1
            self._open += 1
        try:
            return await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            await self._drop()
            raise HttpError(str(exc)) from exc

    async def _give_back(self, conn: Conn) -> None:
        async with self._freed:
            self._idle.append((conn, asyncio.get_running_loop().time()))
            self._freed.notify()

    async def _drop(self, conn: Conn | None = None) -> None:
        if conn is not None:
            conn[1].close()
        async with self._freed:
            self._open -= 1
            self._freed.notify()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON body or None)."""
        body = b""
        extra = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            extra["Content-Type"] = "application/json"
        elif form is not None:
            body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
            extra["Content-Type"] = "application/x-www-form-urlencoded"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        conn = await self._take()
        reader, writer = conn
        try:
            writer.write(head + body)
            status, payload, keep = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self._drop(conn)
            raise HttpError(str(exc) or type(exc).__name__) from exc
        if keep:
            await self._give_back(conn)
        else:
            await self._drop(conn)
        return status, json.loads(payload) if payload else None

    async def close(self) -> None:
        async with self._freed:
            for (_, writer), _since in self._idle:
                writer.close()
            self._idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length, keep = 0, True
    for line in header_lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
        elif name == "transfer-encoding":
            raise ValueError("chunked responses are not supported")
    return status, await reader.readexactly(length) if length else b"", keep
