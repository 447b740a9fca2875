"""Running policy templates on a call, as Power Platform runs them.

Order of a call through a Power Platform connector, and where each function fits:

    prepare_operation / build_operation_request   (operations.py)
    apply_request_policies(...)                    here: Request-section policies
    credentials, send                              (the gateway's upstream layer)
    apply_response_policies(...)                   here: Response (and Failure) policies

Contract:
- Policies run in file order; each sees the request as the previous ones left it (so
  `@headers('Authorization')` reads a header an earlier `setheader` set).
- A policy applies when its `x-ms-apimTemplate-operationName` list is empty or names
  the operation. For calls without an operation (the raw invoke route) only policies
  for all operations apply.
- Before anything else, `apply_request_policies` raises PolicyNotSupportedError (501)
  when an unsupported policy (of any section) or custom code covers the call: sending
  it without that step would silently differ from Power Platform.
- `setheader` / `setqueryparameter`: `existsAction` override (default) replaces every
  value, skip keeps an existing one, append adds another value, delete removes it.
  A value template that is only an expression whose value does not exist (e.g.
  `@connectionParameters('optional')` unset and no default) sets nothing.
- `dynamichosturl` replaces `base_url` (scheme, host, port and base path) and keeps the
  operation path; a value without a scheme gets `https://`. The result must be an
  http(s) URL with a host, else PolicyEvaluationError; the caller re-validates it
  against its own rules before sending.
- `routerequesttoendpoint` replaces the path (relative to `base_url`); `{name}` takes the
  operation's path parameter `name` from `path_parameters` (raw values, encoded as the
  operation declares). `httpMethod`, unless `@Request.OriginalHTTPMethod`, replaces
  the method. Dot segments and unknown `{name}`s are PolicyEvaluationError.
- `setproperty` edits JSON bodies (request or response). The parent path selects an
  object, or every object of an array (`item()` is each one); the property is created
  or replaced. A value that references something missing leaves that object alone.
  Bodies that are not JSON are left alone.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from functions.powerplatform.errors import PolicyEvaluationError, PolicyNotSupportedError
from functions.powerplatform.expressions import MISSING, EvaluationContext, evaluate
from functions.powerplatform.loading import SCRIPT_FILE
from functions.powerplatform.model import ConnectorDefinition, PolicyTemplateInstance
from functions.powerplatform.operations import (
    MissingPathVariable,
    encode_path_value,
    render_path,
)
from functions.upstream.request import OutgoingRequest

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
Pairs = list[tuple[str, str]]


def ensure_operation_supported(definition: ConnectorDefinition, operation_id: str | None) -> None:
    """Raise PolicyNotSupportedError if an unsupported policy or custom code covers the call."""
    for policy in definition.policies:
        if not policy.supported and policy.applies_to(operation_id):
            raise PolicyNotSupportedError(
                policy.template_id or f"policy {policy.index + 1}", operation_id, policy.problem
            )
    if definition.script_covers(operation_id):
        raise PolicyNotSupportedError(
            SCRIPT_FILE, operation_id, "custom code is not run by the gateway"
        )


def apply_request_policies(
    definition: ConnectorDefinition,
    operation_id: str | None,
    request: OutgoingRequest,
    connection_parameters: Mapping[str, Any],
    *,
    path_parameters: Mapping[str, str] | None = None,
) -> OutgoingRequest:
    """Return a copy of `request` with every applicable Request-section policy applied."""
    ensure_operation_supported(definition, operation_id)
    out = replace(request, query=list(request.query), headers=list(request.headers))
    for policy in definition.policies:
        if policy.section != "request" or not policy.applies_to(operation_id):
            continue
        context = EvaluationContext(
            connection_parameters=connection_parameters,
            headers=tuple(out.headers),
            query=tuple(out.query),
            # Parsed per policy (a previous one may have changed it), only when read.
            body=_parse_json(out.body) if _reads_body(policy) else MISSING,
        )
        template = policy.template_id
        if template == "setheader":
            out.headers = _set_pair(policy, out.headers, context, is_header=True)
        elif template == "setqueryparameter":
            out.query = _set_pair(policy, out.query, context, is_header=False)
        elif template == "dynamichosturl":
            _set_host(policy, out, context)
        elif template == "routerequesttoendpoint":
            _route(policy, definition, operation_id, out, context, path_parameters or {})
        elif template == "setproperty" and context.body is not MISSING:
            if _set_property(policy, context):
                out.body = _dump_json(context.body)
        elif template == "stringreplace" and context.body is not MISSING:
            if _string_replace(policy, context):
                out.body = _dump_json(context.body)
    return out


def apply_response_policies(
    definition: ConnectorDefinition,
    operation_id: str | None,
    status: int,
    headers: Sequence[tuple[str, str]],
    body_bytes: bytes,
    *,
    connection_parameters: Mapping[str, Any] | None = None,
    request: OutgoingRequest | None = None,
) -> tuple[Pairs, bytes]:
    """Apply Response-section policies (and Failure ones for status >= 400).

    Returns new (headers, body). A changed JSON body is re-serialized and a
    Content-Length header, if present, is updated.
    """
    out_headers: Pairs = list(headers)
    document: Any = MISSING
    parsed = False
    changed = False
    for policy in definition.policies:
        if not policy.supported or not policy.applies_to(operation_id):
            continue
        if not (policy.section == "response" or (policy.section == "failure" and status >= 400)):
            continue
        if policy.template_id in BODY_TEMPLATES and not parsed:
            document, parsed = _parse_json(body_bytes), True
        context = EvaluationContext(
            connection_parameters=connection_parameters or {},
            headers=tuple(out_headers),
            query=tuple(request.query) if request is not None else (),
            body=document,
        )
        if policy.template_id == "setheader":
            out_headers = _set_pair(policy, out_headers, context, is_header=True)
        elif policy.template_id == "setproperty" and document is not MISSING:
            changed = _set_property(policy, context) or changed
        elif policy.template_id == "stringreplace" and document is not MISSING:
            changed = _string_replace(policy, context) or changed
    if not changed:
        return out_headers, body_bytes
    new_body = _dump_json(document)
    if any(k.lower() == "content-length" for k, _ in out_headers):
        out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
        out_headers.append(("Content-Length", str(len(new_body))))
    return out_headers, new_body


# --- setheader / setqueryparameter ----------------------------------------------------


def _set_pair(
    policy: PolicyTemplateInstance, pairs: Pairs, context: EvaluationContext, *, is_header: bool
) -> Pairs:
    name: str | None = policy.compiled["name"].render(context)
    action: str = policy.compiled["existsAction"]
    if not name:
        return pairs
    if is_header and not _HEADER_NAME.match(name):
        raise PolicyEvaluationError(policy.template_id, f"{name!r} is not a valid header name")

    wanted = name.lower() if is_header else name

    def same(key: str) -> bool:
        return (key.lower() if is_header else key) == wanted

    exists = any(same(key) for key, _ in pairs)
    if action == "delete":
        return [(k, v) for k, v in pairs if not same(k)]
    value = policy.compiled["value"].render(context)
    if value is None or (action == "skip" and exists):
        return pairs
    if is_header and any(ch in value for ch in "\r\n\0"):
        raise PolicyEvaluationError(policy.template_id, f"the value for {name!r} has a line break")
    if action == "append":
        return [*pairs, (name, value)]
    return [(k, v) for k, v in pairs if not same(k)] + [(name, value)]


# --- dynamichosturl -------------------------------------------------------------------


def _set_host(
    policy: PolicyTemplateInstance, request: OutgoingRequest, context: EvaluationContext
) -> None:
    url = policy.compiled["urlTemplate"].render(context)
    if url is None or not url.strip():
        raise PolicyEvaluationError(
            policy.template_id,
            "the host URL template gave no value (a connection parameter, header or query "
            "value it uses is not set)",
        )
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        valid = False
    if not valid:
        raise PolicyEvaluationError(
            policy.template_id, "the host URL template did not give an http(s) URL with a host"
        )
    request.base_url = f"{parts.scheme.lower()}://{parts.netloc}{parts.path}".rstrip("/")
    if parts.query:
        request.query = parse_qsl(parts.query, keep_blank_values=True) + request.query


# --- routerequesttoendpoint -----------------------------------------------------------


def _route(
    policy: PolicyTemplateInstance,
    definition: ConnectorDefinition,
    operation_id: str | None,
    request: OutgoingRequest,
    context: EvaluationContext,
    path_parameters: Mapping[str, str],
) -> None:
    template = policy.compiled["newPath"].render(context)
    if template is None:
        raise PolicyEvaluationError(policy.template_id, "the new path template gave no value")
    operation = definition.operations.get(operation_id) if operation_id else None
    encoded = {}
    for name, raw in path_parameters.items():
        declared = operation.parameter(name, "path") if operation else None
        encoded[name] = encode_path_value(str(raw), declared.url_encoding if declared else "single")
    try:
        path, query = render_path(template, encoded, strict=True)
    except MissingPathVariable as missing:
        raise PolicyEvaluationError(
            policy.template_id, f"the new path needs path parameter {missing.name!r}, not given"
        ) from None
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        raise PolicyEvaluationError(policy.template_id, "the new path has '.' or '..' segments")
    request.path = path
    request.query = query + request.query
    if policy.compiled["httpMethod"]:
        request.method = policy.compiled["httpMethod"]


# --- setproperty ----------------------------------------------------------------------


def _set_property(policy: PolicyTemplateInstance, context: EvaluationContext) -> bool:
    """Apply one setproperty to `context.body` in place; True when something changed."""
    parent = evaluate(policy.compiled["parent"], context)
    targets = parent if isinstance(parent, list) else [parent]
    keys: tuple[str | int, ...] = policy.compiled["subPath"]
    changed = False
    for target in targets:
        if not isinstance(target, dict):
            continue
        value = policy.compiled["value"].evaluate(context.with_item(target))
        if value is MISSING:
            continue
        # A copy: the value may be part of the document it is written into.
        changed = _assign(target, keys, copy.deepcopy(value)) or changed
    return changed


# --- stringreplace --------------------------------------------------------------------


def _string_replace(policy: PolicyTemplateInstance, context: EvaluationContext) -> bool:
    """For each item under the parent path, replace `source` in its string property and
    write the result to the target path (the same property by default)."""
    parent = evaluate(policy.compiled["parent"], context)
    targets = parent if isinstance(parent, list) else [parent]
    changed = False
    for item in targets:
        if not isinstance(item, dict):
            continue
        value = _lookup(item, policy.compiled["subPath"])
        if not isinstance(value, str):
            continue
        replaced = value.replace(policy.compiled["source"], policy.compiled["replacement"])
        changed = _assign(item, policy.compiled["target"], replaced) or changed
    return changed


def _lookup(node: Any, keys: Sequence[str | int]) -> Any:
    for key in keys:
        if isinstance(node, dict) and isinstance(key, str):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def _assign(target: Any, keys: Sequence[str | int], value: Any) -> bool:
    node = target
    for key, following in zip(keys[:-1], keys[1:], strict=True):
        if isinstance(node, dict) and isinstance(key, str):
            child = node.get(key)
            if not isinstance(child, dict | list):
                child = [] if isinstance(following, int) else {}
                node[key] = child
            node = child
        elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        else:
            return False
    last = keys[-1]
    if isinstance(node, dict):
        node[str(last)] = value
        return True
    if isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
        node[last] = value
        return True
    return False


BODY_TEMPLATES = frozenset({"setproperty", "stringreplace"})


def _reads_body(policy: PolicyTemplateInstance) -> bool:
    return policy.template_id in BODY_TEMPLATES or bool(
        policy.template_functions & {"body", "item"}
    )


def _parse_json(raw: bytes | None) -> Any:
    if not raw:
        return MISSING
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return MISSING


def _dump_json(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
