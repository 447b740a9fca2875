"""A raw-socket HTTP/1.1 recorder: what an upstream really received, byte for byte.

A small asyncio TCP server (its own thread and event loop, on 127.0.0.1) that reads
each request's request line, header section and body (Content-Length or chunked)
without any HTTP library interpreting them, keeps them, and answers 200 with
`{"recorded": N}` and an `X-Recorded: N` header, so a test can find what its call
sent even when calls run concurrently. Keep-alive is honoured, so pooled connections
are exercised as in production.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from dataclasses import dataclass, field

# A header name (RFC 9110 token), written out here rather than taken from the gateway.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class Recorded:
    request_line: str  # e.g. "GET /a%3Bb?x=1 HTTP/1.1", exactly as received (latin-1)
    headers: list[tuple[str, str]]  # names and values exactly as received
    body: bytes
    raw_head: bytes = field(repr=False, default=b"")

    @property
    def method(self) -> str:
        return self.request_line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str | None:
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else None

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Recorder:
    def __init__(self, tls: ssl.SSLContext | None = None, first: int = 1) -> None:
        """`tls`: serve HTTPS with this context; `first`: the first record number (two
        recorders behind one gateway number their records apart)."""
        self._tls = tls
        self._first = first
        self.records: dict[int, Recorded] = {}
        self.malformed: list[bytes] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Recorder:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls), self._loop
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, number: int) -> Recorded:
        with self._lock:
            return self.records[number]

    def last(self) -> Recorded:
        with self._lock:
            return self.records[max(self.records)]

    def owns(self, number: int) -> bool:
        with self._lock:
            return number in self.records

    def _keep(self, record: Recorded) -> int:
        with self._lock:
            number = len(self.records) + self._first
            self.records[number] = record
            return number

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_requests(reader, writer)
        except asyncio.CancelledError:
            pass  # stopped: ending quietly (a cancelled handler task is logged by asyncio)
        finally:
            writer.close()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ConnectionError,
                ssl.SSLError,
            ):
                return
            record = await self._read_request(reader, head)
            if record is None:
                self.malformed.append(head)
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            number = self._keep(record)
            payload = json.dumps({"recorded": number}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"X-Recorded: {number}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader, head: bytes) -> Recorded | None:
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                return None  # not a header line: a malformed header section
            headers.append((name, value.strip(" \t")))
        lowered = {k.lower(): v for k, v in headers}
        body = b""
        if lowered.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(data[:-2])
            body = b"".join(chunks)
        elif "content-length" in lowered:
            body = await reader.readexactly(int(lowered["content-length"]))
        return Recorded(lines[0], headers, body, raw_head=head)
