"""Tool and argument names: what an MCP client may accept, derived stably from the
definition and the connection.

MCP clients (and the model APIs behind them) accept tool names of at most 64 characters
from `[a-zA-Z0-9_-]`, and some refuse argument names outside `[a-zA-Z0-9_.-]`. The
mapping (docs/mcp.md says the same):

- tool name: the operationId with every other character replaced by `_` (runs collapsed,
  ends trimmed); a name longer than the room left is cut and given `_<8 hex of a SHA-256
  of the operationId>`, so two long ids never meet; a name another operation already
  took gets `_2`, `_3`... in file order. The same definition always gives the same names.
- prefix (only on `/api/mcp`, which serves many connections): the connection's display
  name made valid the same way and cut to 24 characters, then `__`. Two connections
  whose prefixes would be equal each get `_<first 6 characters of the connection id>`.
- argument name: the parameter name with characters outside `[a-zA-Z0-9_.-]` replaced
  by `_` (`$filter` becomes `_filter`); a clash gets `_2`, `_3`...
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

MAX_TOOL_NAME = 64
MAX_PREFIX = 24
PREFIX_SEPARATOR = "__"
_INVALID_TOOL_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_INVALID_ARGUMENT_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def valid_name(text: str, *, fallback: str = "tool") -> str:
    """`text` with runs of characters outside `[a-zA-Z0-9_-]` replaced by one `_`."""
    cleaned = _INVALID_TOOL_CHARS.sub("_", text).strip("_")
    return cleaned or fallback


def fit(name: str, room: int, *, source: str) -> str:
    """`name` cut to `room` characters, with a hash of `source` when it had to be cut."""
    if len(name) <= room:
        return name
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:8]
    return name[: room - len(digest) - 1].rstrip("_") + "_" + digest


def unique_names(sources: Iterable[str], *, room: int = MAX_TOOL_NAME) -> list[str]:
    """One valid, distinct tool name per source (operationIds, in file order)."""
    taken: set[str] = set()
    names: list[str] = []
    for source in sources:
        wanted = fit(valid_name(source), room, source=source)
        name = wanted
        counter = 2
        while name in taken:
            suffix = f"_{counter}"
            name = fit(wanted, room - len(suffix), source=source) + suffix
            counter += 1
        taken.add(name)
        names.append(name)
    return names


def connection_prefixes(connections: Mapping[str, str]) -> dict[str, str]:
    """Connection id -> tool name prefix (with the separator), from display names."""
    base = {
        connection_id: valid_name(display_name, fallback="connection")[:MAX_PREFIX].rstrip("_")
        or "connection"
        for connection_id, display_name in connections.items()
    }
    counts: dict[str, int] = {}
    for value in base.values():
        counts[value] = counts.get(value, 0) + 1
    return {
        connection_id: (value if counts[value] == 1 else f"{value}_{valid_name(connection_id)[:6]}")
        + PREFIX_SEPARATOR
        for connection_id, value in base.items()
    }


def prefixed(prefix: str, name: str, *, source: str) -> str:
    """A tool name behind a connection prefix, still within 64 characters."""
    return prefix + fit(name, MAX_TOOL_NAME - len(prefix), source=source)


def argument_names(parameter_names: Iterable[str], reserved: Iterable[str] = ()) -> list[str]:
    """One distinct argument name per parameter name (same order)."""
    taken = set(reserved)
    result: list[str] = []
    for parameter in parameter_names:
        wanted = _INVALID_ARGUMENT_CHARS.sub("_", parameter)[:MAX_TOOL_NAME] or "_"
        name = wanted
        counter = 2
        while name in taken:
            name = f"{wanted[: MAX_TOOL_NAME - 4]}_{counter}"
            counter += 1
        taken.add(name)
        result.append(name)
    return result
