"""A loopback TCP proxy that can stall or cut a backend, to test storage outages.

Modes:
    "pass"    relays both ways
    "freeze"  accepts and reads, but relays nothing either way (a hung backend)
    "down"    closes every connection at once (a backend that is gone)
`block` (bytes): a client connection whose request contains it is closed (one table
down while the others work: requests carry the table name in their path).
"""

from __future__ import annotations

import socket
import threading
from typing import Literal

from functions.devtools.processes import free_port

Mode = Literal["pass", "freeze", "down"]


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode: Mode = "pass"
        self.block: bytes | None = None
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.mode == "down" or (
                    from_client and self.block is not None and self.block in data
                ):
                    break
                while self.mode == "freeze" and not self._closed.is_set():
                    self._closed.wait(0.05)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
