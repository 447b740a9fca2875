"""Which operation a raw request is: method + path matched against the `paths` templates.

API Management matches an incoming call to an operation by its URL template; the
gateway's raw `invoke/{path}` route does the same so it can run the operation's policies
(and answer 501 for unsupported ones) on calls that did not name an operation, such as
those from an exported connector (export.py).

    router = build_router(definition)          # once per definition; cheap to keep
    router.match("GET", "/issue/ABC-1")        # -> (Operation, {"issueKey": "ABC-1"}) | None
    match_operation(definition, method, path)  # the same, with the router cached

Contract:
- `path` is the request path *below the connector's base path* (`basePath` of the
  swagger), percent-encoded as sent, starting with "/". `Router.strip_base_path` removes
  the base path from a full path for callers that receive one (exported connectors send
  `<basePath><path>` after `invoke`).
- The path is split on "/" *before* decoding, so an encoded slash (`%2F`) stays inside
  its segment and its value. Segments are then percent-decoded (UTF-8, invalid bytes
  replaced) and compared with the template's decoded literal text, case-sensitively.
- `{name}` matches one non-empty segment, or a non-empty part of one between literal
  text (`/items({id})`, `/{file}.json`, `/{a}-{b}`). Values come back decoded; a
  parameter declared `x-ms-url-encoding: double` is decoded twice, so the value is
  what the caller meant (what `routerequesttoendpoint` re-encodes).
- One trailing slash is ignored on both sides; `""` and `"/"` are the root.
- A `?query` in a template key (definitions use it to make otherwise identical paths
  unique, e.g. `/items?type=a`) is a condition on the request's query: each `name=value`
  pair must be present with that value, `name={var}` or a bare `name` only requires the
  parameter (a `{var}` value is returned with the path values). `query=None` means the
  request had no query string, so such templates do not match it. A `#fragment` is
  dropped, as Power Platform drops it.
- Several matches: the one with more literal characters in its path wins (most
  specific), then the one with more query conditions, then fewer variables, then file
  order. Two operations with the same method and the same template (differing only in
  a fragment) are therefore decided by file order.
- Methods compare case-insensitively; there is no HEAD-to-GET fallback.

Cost: templates are compiled once (`build_router`). A match looks only at templates
with the request's method, segment count and first segment (when the template's is
literal), tried in specificity order, so the first hit is the answer.
The definition is treated as immutable after parsing (as everywhere else).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from functions.powerplatform.model import ConnectorDefinition, Operation

_VARIABLE = re.compile(r"{([^{}]+)}")

Match = tuple[Operation, dict[str, str]]


@dataclass(frozen=True)
class _Segment:
    """One template segment: a decoded literal, or a pattern over the decoded segment."""

    literal: str | None
    pattern: re.Pattern[str] | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class _QueryCondition:
    name: str
    value: str | None  # None: the parameter only has to be present
    variable: str | None = None  # `name={variable}`: its value is returned


@dataclass(frozen=True)
class _Route:
    operation: Operation
    segments: tuple[_Segment, ...]
    query: tuple[_QueryCondition, ...]
    double_encoded: frozenset[str]
    sort_key: tuple[int, int, int, int]

    def match(self, segments: Sequence[str], query: dict[str, list[str]]) -> dict[str, str] | None:
        values: dict[str, str] = {}
        for template, actual in zip(self.segments, segments, strict=True):
            if template.literal is not None:
                if template.literal != actual:
                    return None
                continue
            assert template.pattern is not None  # a segment is a literal or a pattern
            found = template.pattern.fullmatch(actual)
            if found is None:
                return None
            for name, value in zip(template.names, found.groups(), strict=True):
                values.setdefault(name, value)
        for condition in self.query:
            given = query.get(condition.name)
            if given is None:
                return None
            if condition.value is not None and condition.value not in given:
                return None
            if condition.variable is not None:
                values.setdefault(condition.variable, given[0])
        for name in self.double_encoded & values.keys():
            values[name] = unquote(values[name])
        return values


class Router:
    """The compiled `paths` of one definition; see the module docstring for the rules."""

    def __init__(self, routes: Iterable[_Route], base_path: str) -> None:
        buckets: dict[tuple[str, int], list[_Route]] = {}
        for route in routes:
            buckets.setdefault((route.operation.method, len(route.segments)), []).append(route)
        # (METHOD, segment count) -> (first literal segment -> candidates, candidates for
        # any other first segment); each list most specific first. A route whose first
        # segment is a pattern is in every list of its bucket.
        self._table: dict[tuple[str, int], tuple[dict[str, list[_Route]], list[_Route]]] = {}
        for key, bucket in buckets.items():
            bucket.sort(key=lambda route: route.sort_key)
            open_first = [r for r in bucket if not r.segments or r.segments[0].literal is None]
            by_first: dict[str, list[_Route]] = {}
            for route in bucket:
                first = route.segments[0].literal if route.segments else None
                if first is not None and first not in by_first:
                    by_first[first] = [r for r in bucket if r.segments[0].literal in (first, None)]
            self._table[key] = (by_first, open_first)
        self.base_path = base_path

    def match(
        self,
        method: str,
        path: str,
        query: str | Sequence[tuple[str, str]] | None = None,
    ) -> Match | None:
        """The best (operation, decoded path values) for the request, or None.

        `query` is the raw query string or its parsed pairs; it matters only for
        templates with a `?query` part.
        """
        segments = _split(path)
        entry = self._table.get((method.upper(), len(segments)))
        if entry is None:
            return None
        decoded = [unquote(segment) for segment in segments]
        by_first, open_first = entry
        candidates = by_first.get(decoded[0], open_first) if decoded else open_first
        pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query or ()
        by_name: dict[str, list[str]] = {}
        for name, value in pairs:
            by_name.setdefault(name, []).append(value)
        for route in candidates:
            values = route.match(decoded, by_name)
            if values is not None:
                return route.operation, values
        return None

    def strip_base_path(self, path: str) -> str | None:
        """`path` below the definition's base path, or None when it is not under it.

        Compares percent-decoded segments, so `/rest%2Fapi` is not `/rest/api`.
        """
        base = _split(self.base_path)
        segments = _split(path)
        if [unquote(s) for s in segments[: len(base)]] != [unquote(s) for s in base]:
            return None
        rest = path.split("/")[len(base) + 1 :] if base else path.split("/")[1:]
        return "/" + "/".join(rest)


def build_router(definition: ConnectorDefinition) -> Router:
    """Compile every operation's template once."""
    routes = [
        _compile(operation, index) for index, operation in enumerate(definition.operations.values())
    ]
    base_path = definition.api_definition.get("basePath")
    return Router(routes, base_path if isinstance(base_path, str) else "")


# Routers by definition identity. ConnectorDefinition is an unhashable dataclass, so a
# WeakKeyDictionary cannot hold it; the weak reference stored beside the router both
# evicts the entry when the definition goes away and guards against a reused id().
_ROUTERS: dict[int, tuple[weakref.ref[ConnectorDefinition], Router]] = {}
_ROUTERS_LOCK = threading.Lock()


def router_for(definition: ConnectorDefinition) -> Router:
    """The definition's router, built on first use and kept while the definition lives."""
    key = id(definition)
    entry = _ROUTERS.get(key)
    if entry is not None and entry[0]() is definition:
        return entry[1]
    router = build_router(definition)

    def evict(ref: weakref.ref[ConnectorDefinition], key: int = key) -> None:
        with _ROUTERS_LOCK:
            current = _ROUTERS.get(key)
            if current is not None and current[0] is ref:
                del _ROUTERS[key]

    with _ROUTERS_LOCK:
        _ROUTERS[key] = (weakref.ref(definition, evict), router)
    return router


def match_operation(
    definition: ConnectorDefinition,
    method: str,
    relative_path: str,
    query: str | Sequence[tuple[str, str]] | None = None,
) -> Match | None:
    """The operation a request below the base path calls, and its decoded path values."""
    return router_for(definition).match(method, relative_path, query)


# --- compiling ------------------------------------------------------------------------


def _split(path: str) -> list[str]:
    """Raw segments of a path, ignoring the leading and one trailing slash."""
    if path.startswith("/"):
        path = path[1:]
    if path.endswith("/"):
        path = path[:-1]
    return path.split("/") if path else []


def _compile(operation: Operation, index: int) -> _Route:
    template = operation.path.split("#", 1)[0]
    path_part, _, query_part = template.partition("?")
    segments: list[_Segment] = []
    literal_chars = 0
    variables = 0
    for raw in _split(path_part):
        pieces = _VARIABLE.split(raw)  # literal, name, literal, name, ..., literal
        if len(pieces) == 1:
            literal = unquote(raw)
            literal_chars += len(literal)
            segments.append(_Segment(literal=literal))
            continue
        pattern: list[str] = []
        names: list[str] = []
        for position, piece in enumerate(pieces):
            if position % 2:
                names.append(piece.strip())
                pattern.append("(.+?)")
            else:
                literal = unquote(piece)
                literal_chars += len(literal)
                pattern.append(re.escape(literal))
        variables += len(names)
        segments.append(
            _Segment(
                literal=None, pattern=re.compile("".join(pattern), re.DOTALL), names=tuple(names)
            )
        )
    conditions: list[_QueryCondition] = []
    for name, value in parse_qsl(query_part, keep_blank_values=True):
        variable = _VARIABLE.fullmatch(value)
        if variable is not None:
            conditions.append(_QueryCondition(name, None, variable.group(1).strip()))
        else:
            conditions.append(_QueryCondition(name, value or None))
    double = frozenset(
        p.name for p in operation.parameters if p.location == "path" and p.url_encoding == "double"
    )
    return _Route(
        operation=operation,
        segments=tuple(segments),
        query=tuple(conditions),
        double_encoded=double,
        sort_key=(-literal_chars, -len(conditions), variables, index),
    )
