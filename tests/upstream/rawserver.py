"""A tiny asyncio TCP server on 127.0.0.1 for tests that must see bytes, not requests.

It records every connection and the exact bytes received, and answers each request
with what `respond` returns (raw bytes written as they are), so a test can check what
went on the wire (request smuggling), whether anything connected at all (egress
refusals), or play a misbehaving upstream (trickling bodies, UTF-8 headers, gzip
bombs). Runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Responder = Callable[["RawServer", bytes, asyncio.StreamWriter], Awaitable[None]]


async def answer_ok(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()


@dataclass
class RawServer:
    respond: Responder = answer_ok
    port: int = 0
    connections: int = 0
    requests: int = 0
    open_connections: int = 0
    most_open: int = 0
    received: bytearray = field(default_factory=bytearray)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None
    _thread: threading.Thread | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()
                async with self._server:
                    await self._server.serve_forever()

            try:
                loop.run_until_complete(serve())
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("raw server did not start")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shutdown() -> None:
            handlers = [task for task in self._handlers if not task.done()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            # Last, and without awaiting after it: closing ends serve_forever, which
            # ends the loop.
            server.close()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)  # type: ignore[arg-type]
        self.connections += 1
        self.open_connections += 1
        self.most_open = max(self.most_open, self.open_connections)
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    return
                self.received += request
                self.requests += 1
                await self.respond(self, request, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self.open_connections -= 1
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's bytes: the head, then a Content-Length body (or a chunked body
    up to its last chunk); None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = bytearray()
        while not body.endswith(b"0\r\n\r\n"):
            chunk = await reader.read(65536)
            if not chunk:
                break
            body += chunk
        return head + bytes(body)
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1].strip())
            return head + await reader.readexactly(length)
    return head
