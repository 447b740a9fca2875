"""A request to an upstream API before it is sent, as data.

Built by the raw invoke route or from an imported operation, then changed by policy
templates, then given credentials and sent. Keeping it plain data lets policies and
tests work without an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OutgoingRequest:
    method: str
    # scheme://host[:port][/basePath], no trailing slash. Policies such as
    # `dynamichosturl` may replace it; it is re-validated before sending.
    base_url: str
    # Path below base_url, starting with "/", each segment already percent-encoded.
    path: str = "/"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        self.remove_header(name)
        self.headers.append((name, value))

    def remove_header(self, name: str) -> None:
        lowered = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lowered]

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def set_query(self, name: str, value: str) -> None:
        self.remove_query(name)
        self.query.append((name, value))

    def remove_query(self, name: str) -> None:
        self.query = [(k, v) for k, v in self.query if k != name]
