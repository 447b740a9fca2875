"""Every operation of every sample definition, sent through the gateway and compared
at a raw socket with what Power Platform would send.

For each sample (tests/fixtures/connectors), the connector is imported unchanged with
its base URL pointed at a raw-socket recorder, a connection is created (OAuth ones get
their tokens stored as the consent callback would), and each operation is called with
arguments generated from its Swagger: every required parameter, every other optional
one, internal parameters left to their defaults, string values drawn from a pool that
stresses encoding. What the recorder received (request line, headers, body) is compared
with an expectation computed HERE, independently of the gateway's request builder,
from the Swagger 2.0 rules and Power Platform's conventions:

- path values: encodeURIComponent (UTF-8, everything but letters, digits and
  `-_.!~*'()` escaped), twice for `x-ms-url-encoding: double`; literal path text as
  written; a `?query` in the path key is sent, a `#fragment` is not;
- query values: encodeURIComponent too (space as %20); arrays per `collectionFormat`;
- `x-ms-visibility: internal` parameters and body properties: their default is sent;
  optional parameters that were not given are not sent (not even their default);
- headers: as given; Content-Type: the operation's JSON `consumes` type (or
  application/json) for a JSON body, `consumes[0]` for a text body, the form types for
  formData, none at all without a body;
- credentials where the definition puts them (basic, API key header or query, bearer).

Policy templates change requests on purpose; what a policy of an operation touches
(a header or query parameter it sets, the path it routes to, a body it rewrites) is
compared with that policy's declared effect, or left out of the comparison where the
effect is a body rewrite (listed in the report). Operations that cannot run (custom
code, an unsupported policy) must be refused with 501 and named in the import's
warnings; they are listed with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import trustme

from functions.cli.gateway_agent import main as agent_cli
from functions.onprem.agent import AgentConfig
from functions.powerplatform.loading import load_folder
from tests.api.test_import import _complete_consent_directly
from tests.conftest import GatewayUnderTest
from tests.onprem.conftest import AgentProcess
from tests.onprem.conftest import Gateway as OnPremisesGateway
from tests.onprem.test_windows_connections import wait_online
from tests.powerplatform.recorder import Recorded, Recorder
from tests.powerplatform.samples import folder_path, index_entries, sample_folders

# Values that stress encoding (space, '/', '&=', ';,#', '%+', quotes, parentheses,
# non-ASCII). Header values are ASCII (non-ASCII ones are refused: tested elsewhere).
POOL = ["a b", "x/y", "a&b=c", ";,#", "%+1", "\"q\" 'r' (p)", "café ü 日本", "*!~"]
HEADER_POOL = [v for v in POOL if v.isascii()]
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")
SEPARATORS = {"csv": ",", "ssv": " ", "tsv": "\t", "pipes": "|"}
BODY_POLICIES = {"setproperty", "moveproperties", "stringreplace", "setvaluefromurl"}
UNSUPPORTED_STATUS = 501
# Operations that cannot run, each with why; the import must warn with the named
# feature. Everything else must be sent and match.
CANNOT_RUN = {
    ("certified-connectors/AzureAD", "UpdateUser"): "moveproperties",  # policy not supported
    ("certified-connectors/AzureAD", "GetGroupMembers"): "updatenextlink",  # idem (response)
    **{
        ("certified-connectors/Cradl AI", op): "setvaluefromurl"
        for op in ("CreateDocument", "ParseDocument", "GetModels", "GetWorkflows", "CreateRun")
    },  # fetches a token from another URL before each call: not supported
    ("certified-connectors/Scrive eSign", "PollSignedDocuments"): "pollingtrigger",
}
# Headers the HTTP client itself sends on every call (httpx's defaults and framing):
# a declared parameter of that name that was not given does not make them wrong.
CLIENT_DEFAULT_HEADERS = {"accept", "accept-encoding", "user-agent", "connection", "host"}


def uri_component(text: str) -> str:
    """JavaScript's encodeURIComponent."""
    return "".join(
        chr(b) if b < 128 and chr(b) in UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8")
    )


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- reading the Swagger (independently of functions.powerplatform.swagger) -----------


def resolve(document: dict[str, Any], node: Any, depth: int = 0) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < 20:
        target: Any = document
        for part in node["$ref"].lstrip("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        node = target
        depth += 1
    return node


@dataclass
class SwaggerOperation:
    operation_id: str
    method: str
    path_key: str
    parameters: list[dict[str, Any]]
    consumes: list[str]


def swagger_operations(document: dict[str, Any]) -> list[SwaggerOperation]:
    found = []
    global_consumes = document.get("consumes") or []
    for path_key, item in (document.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = [resolve(document, p) for p in item.get("parameters") or []]
        for method in ("get", "put", "post", "delete", "options", "head", "patch"):
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            own = [resolve(document, p) for p in operation.get("parameters") or []]
            merged: dict[tuple[str, str], dict[str, Any]] = {}
            for parameter in shared + own:
                if isinstance(parameter, dict) and "name" in parameter and "in" in parameter:
                    merged[(parameter["name"], parameter["in"])] = parameter
            consumes = operation.get("consumes", global_consumes) or []
            found.append(
                SwaggerOperation(
                    str(operation.get("operationId") or ""),
                    method.upper(),
                    path_key,
                    list(merged.values()),
                    [c for c in consumes if isinstance(c, str)],
                )
            )
    return found


def internal(node: dict[str, Any]) -> bool:
    return str(node.get("x-ms-visibility", "")).lower() == "internal"


# --- generating arguments ---------------------------------------------------------------


class Values:
    """Deterministic choices: pool values in turn, every other optional parameter."""

    def __init__(self) -> None:
        self.turn = 0

    def pick(self, pool: list[str]) -> str:
        self.turn += 1
        return pool[self.turn % len(pool)]

    def include_optional(self) -> bool:
        self.turn += 1
        return self.turn % 2 == 0

    def scalar(self, node: dict[str, Any], pool: list[str]) -> Any:
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self.turn % len(enum)] if enum[0] is not None else enum[-1]
        kind = node.get("type")
        if kind == "integer":
            return 7
        if kind == "number":
            return 2.5
        if kind == "boolean":
            return True
        if kind == "array":
            items = node.get("items") if isinstance(node.get("items"), dict) else {}
            return [self.scalar(items, pool), self.scalar(items, pool)]
        return self.pick(pool)

    def body(self, document: dict[str, Any], schema: Any, depth: int = 0) -> Any:
        schema = resolve(document, schema)
        if not isinstance(schema, dict) or depth > 5:
            return "text"
        kind = schema.get("type")
        properties = schema.get("properties")
        if kind == "object" or (kind is None and isinstance(properties, dict)):
            required = schema.get("required") if isinstance(schema.get("required"), list) else []
            value: dict[str, Any] = {}
            for name, raw in (properties or {}).items():
                prop = resolve(document, raw)
                if not isinstance(prop, dict):
                    continue
                if internal(prop) and ("default" in prop or name not in required):
                    continue  # left to its default, as Power Platform's designer does
                if name in required or (depth == 0 and self.include_optional()):
                    value[name] = self.body(document, prop, depth + 1)
            return value
        if kind == "array":
            return [self.body(document, schema.get("items") or {}, depth + 1)]
        if kind is None:
            return self.pick(POOL)
        return self.scalar(schema, POOL)


def with_sent_defaults(document: dict[str, Any], schema: Any, value: Any, depth: int = 0) -> Any:
    """The body Power Platform sends: required and internal properties that were not
    given take their default."""
    schema = resolve(document, schema)
    if not isinstance(schema, dict) or depth > 64:
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else []
        out = dict(value)
        for name, raw in properties.items():
            prop = resolve(document, raw)
            if name not in out and isinstance(prop, dict) and "default" in prop:
                if name in required or internal(prop):
                    out[name] = prop["default"]
        for name, item in list(out.items()):
            if name in properties:
                out[name] = with_sent_defaults(document, properties[name], item, depth + 1)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_sent_defaults(document, schema["items"], v, depth + 1) for v in value]
    return value


# --- the expectation --------------------------------------------------------------------


@dataclass
class Expected:
    method: str
    path: str | None  # None: not compared (explained in `partial`)
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case name -> value
    absent_headers: set[str]
    content_type: str | None  # None: no Content-Type at all
    body: Any  # ("json", value) | ("raw", bytes) | ("form", pairs) | ("multipart", dict)
    ignore_query: set[str] = field(default_factory=set)
    ignore_headers: set[str] = field(default_factory=set)
    partial: list[str] = field(default_factory=list)


def render(template: str, raw_values: dict[str, tuple[str, str]]) -> str:
    def one(match: re.Match[str]) -> str:
        text, encoding = raw_values[match.group(1)]
        once = uri_component(text)
        return uri_component(once) if encoding == "double" else once

    return re.sub(r"{([^{}]+)}", one, template)


@dataclass
class Case:
    folder: str
    operation: SwaggerOperation
    parameters: dict[str, Any]
    body: Any
    expected: Expected


def build_case(
    folder: str,
    document: dict[str, Any],
    operation: SwaggerOperation,
    base_path: str,
    credential: tuple[str, str, str] | None,
    policies: list[dict[str, Any]],
    values: Values,
    host_values: dict[str, str],
    connection_values: dict[str, Any],
) -> Case:
    given: dict[str, Any] = {}
    body: Any = None
    path_values: dict[str, tuple[str, str]] = {}
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    absent: set[str] = set()
    form: list[tuple[str, str]] = []
    files = False
    json_body: Any = None
    has_body = False
    for parameter in operation.parameters:
        name, where = parameter["name"], parameter["in"]
        required = where == "path" or parameter.get("required") is True
        if where == "body":
            schema = parameter.get("schema") or {}
            if required or values.include_optional():
                body = values.body(document, schema)
                json_body = with_sent_defaults(document, schema, body)
                has_body = True
            continue
        value: Any = None
        if internal(parameter) and "default" in parameter:
            value = parameter["default"]  # left to its default: Power Platform sends it
        elif required or (not internal(parameter) and values.include_optional()):
            if where == "header" and name.lower() in ("content-type", "accept"):
                value = parameter.get("default") or (parameter.get("enum") or [None])[0]
                if value is None:
                    value = "application/json"
            else:
                value = values.scalar(parameter, HEADER_POOL if where == "header" else POOL)
            given[name] = value
        elif required and "default" in parameter:
            value = parameter["default"]
        if value is None:
            if where == "header":
                absent.add(name.lower())
            continue
        items = value if isinstance(value, list) else None
        fmt = parameter.get("collectionFormat", "csv")
        joined = (
            SEPARATORS.get(fmt, ",").join(text_of(v) for v in items)
            if items is not None
            else text_of(value)
        )
        if where == "path":
            path_values[name] = (joined, str(parameter.get("x-ms-url-encoding", "single")))
        elif where == "query":
            if items is not None and fmt == "multi":
                query.extend((uri_component(name), uri_component(text_of(v))) for v in items)
            else:
                query.append((uri_component(name), uri_component(joined)))
        elif where == "header":
            headers[name.lower()] = joined
        elif where == "formData":
            files = files or parameter.get("type") == "file"
            form.append((name, joined))
    path_key = operation.path_key.split("#", 1)[0]
    template, _, key_query = path_key.partition("?")
    template_query = [
        (uri_component(k), uri_component(v)) for k, v in parse_qsl(key_query, keep_blank_values=True)
    ]
    relative = render(template if template.startswith("/") else "/" + template, path_values)
    expected = Expected(
        method=operation.method,
        path=None,
        query=template_query + query,
        headers=headers,
        absent_headers=absent - set(headers),
        content_type=None,
        body=None,
    )
    if has_body:
        json_type = next((c for c in operation.consumes if "json" in c.lower()), None)
        if json_type is None and operation.consumes and isinstance(json_body, str):
            expected.body = ("raw", json_body.encode("utf-8"))
            expected.content_type = operation.consumes[0]
        else:
            expected.body = ("json", json_body)
            expected.content_type = json_type or "application/json"
    elif form:
        if files or any("multipart/form-data" in c.lower() for c in operation.consumes):
            expected.body = ("multipart", dict(form))
            expected.content_type = "multipart/form-data"
        else:
            expected.body = ("form", form)
            expected.content_type = "application/x-www-form-urlencoded"
    if "content-type" in headers:
        expected.content_type = headers["content-type"]
    if credential is not None:
        kind, name, value = credential
        if kind == "header":
            expected.headers[name.lower()] = value
        else:
            expected.query.append((uri_component(name), uri_component(value)))
    apply_policy_expectations(
        expected,
        operation,
        policies,
        path_values,
        base_path,
        relative,
        host_values,
        connection_values,
    )
    return Case(folder, operation, given, body, expected)


def apply_policy_expectations(
    expected: Expected,
    operation: SwaggerOperation,
    policies: list[dict[str, Any]],
    path_values: dict[str, tuple[str, str]],
    base_path: str,
    relative: str,
    host_values: dict[str, str],
    connection_values: dict[str, Any],
) -> None:
    routed: str | None = None
    for policy in policies:
        parameters = policy.get("parameters") or {}
        scope = parameters.get("x-ms-apimTemplate-operationName")
        if isinstance(scope, list) and scope and operation.operation_id not in scope:
            continue
        section = str(parameters.get("x-ms-apimTemplate-policySection", "Request")).lower()
        template = str(policy.get("templateId", "")).lower()
        name = str(parameters.get("x-ms-apimTemplateParameter.name", ""))
        value = policy_value(parameters, connection_values)
        declared = {p["name"].lower() for p in operation.parameters}
        simple = value is not None and name.lower() not in declared
        if template == "setheader" and section == "request":
            if simple and name.lower() not in expected.headers and name.lower() != "content-type":
                expected.headers[name.lower()] = str(value)  # a constant or connection value
                continue
            expected.ignore_headers.add(name.lower())
            expected.partial.append(f"header {name} set by a policy")
            if name.lower() == "content-type":
                expected.content_type = "<policy>"
        elif template == "setqueryparameter":
            if simple and not any(k == uri_component(name) for k, _ in expected.query):
                expected.query.append((uri_component(name), uri_component(str(value))))
                continue
            expected.ignore_query.add(uri_component(name))
            expected.partial.append(f"query {name} set by a policy")
        elif template == "routerequesttoendpoint":
            new_path = str(parameters.get("x-ms-apimTemplateParameter.newPath", ""))
            routed = render("/" + new_path.lstrip("/"), path_values)
        elif template == "dynamichosturl":
            url = host_url(str(parameters.get("x-ms-apimTemplateParameter.urlTemplate")), host_values)
            base_path = urlsplit(url).path.rstrip("/")
        elif template in BODY_POLICIES and section == "request":
            expected.body = ("any", None)
            expected.partial.append(f"body rewritten by {template}")
    expected.path = base_path + (routed if routed is not None else relative)


def policy_value(parameters: dict[str, Any], connection_values: dict[str, Any]) -> str | None:
    """What a set-header/query policy sets when its value is a constant or one
    connection parameter with `existsAction: override` (None: not computed here)."""
    if str(parameters.get("x-ms-apimTemplateParameter.existsAction", "override")) != "override":
        return None
    template = parameters.get("x-ms-apimTemplateParameter.value")
    if not isinstance(template, str):
        return None
    match = CONNECTION_PARAMETER.fullmatch(template.strip())
    if match:
        found = connection_values.get(match.group(1), match.group(2))
        return None if found is None else text_of(found)
    return None if "@" in template else template


CONNECTION_PARAMETER = re.compile(r"@connectionParameters\('([^']+)'(?:,\s*'([^']*)')?\)")


def host_url(template: str, host_values: dict[str, str]) -> str:
    """A dynamichosturl template with the connection's values."""
    return CONNECTION_PARAMETER.sub(
        lambda m: host_values.get(m.group(1), m.group(2) or ""), template
    )


def dynamic_host_values(properties: dict[str, Any], recorder_base: str) -> dict[str, str]:
    """Connection values for the parameters host templates use: the recorder's URL
    for a whole-URL template, a host label for one inside a host name."""
    values: dict[str, str] = {}
    for policy in (properties.get("properties") or {}).get("policyTemplateInstances") or []:
        if str(policy.get("templateId", "")).lower() != "dynamichosturl":
            continue
        template = str((policy.get("parameters") or {}).get("x-ms-apimTemplateParameter.urlTemplate"))
        for match in CONNECTION_PARAMETER.finditer(template):
            whole = template.strip() == match.group(0)
            allowed = allowed_values(properties, match.group(1))
            if allowed:  # the host is then one the definition lists: resolved to the recorder
                values[match.group(1)] = allowed[0]
            else:
                values[match.group(1)] = recorder_base if whole else "corpus"
    return values


def allowed_values(properties: dict[str, Any], name: str) -> list[str]:
    """The allowed values a definition lists for a connection parameter (any set)."""
    root = properties.get("properties") or {}
    specs = [(root.get("connectionParameters") or {}).get(name)]
    for parameter_set in (root.get("connectionParameterSets") or {}).get("values") or []:
        specs.append((parameter_set.get("parameters") or {}).get(name))
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        constraints = (spec.get("uiDefinition") or {}).get("constraints") or {}
        for source in (spec.get("allowedValues"), constraints.get("allowedValues")):
            if isinstance(source, list) and source:
                return [str(v.get("value") if isinstance(v, dict) else v) for v in source]
    return []


# --- comparison -------------------------------------------------------------------------


def compare(case: Case, received: Recorded) -> list[str]:
    expected = case.expected
    problems: list[str] = []
    if received.method != expected.method:
        problems.append(f"method {received.method} != {expected.method}")
    if expected.path is not None and received.path != expected.path:
        problems.append(f"path {received.path!r} != {expected.path!r}")
    got_query = sorted(
        tuple(pair.split("=", 1)) if "=" in pair else (pair, "")
        for pair in (received.query or "").split("&")
        if pair
    )
    want_query = sorted(expected.query)
    got_query = [p for p in got_query if p[0] not in expected.ignore_query]
    want_query = [p for p in want_query if p[0] not in expected.ignore_query]
    if got_query != want_query:
        problems.append(f"query {received.query!r} != {want_query!r}")
    for name, value in expected.headers.items():
        if name in expected.ignore_headers:
            continue
        if received.header_values(name) != [value]:
            problems.append(f"header {name}: {received.header_values(name)!r} != [{value!r}]")
    for name in expected.absent_headers - expected.ignore_headers - CLIENT_DEFAULT_HEADERS:
        if received.header_values(name):
            problems.append(f"header {name} sent but not given")
    content_types = received.header_values("content-type")
    if expected.content_type != "<policy>":
        if expected.content_type is None and content_types:
            problems.append(f"Content-Type {content_types} sent without a body")
        elif expected.content_type is not None and (
            len(content_types) != 1 or not content_types[0].startswith(expected.content_type)
        ):
            problems.append(f"Content-Type {content_types} != {expected.content_type!r}")
    problems.extend(compare_body(expected, received.body))
    return problems


def compare_body(expected: Expected, body: bytes) -> list[str]:
    if expected.body is None:
        return [] if body == b"" else [f"unexpected body {body[:80]!r}"]
    kind, value = expected.body
    if kind == "any":
        return []
    if kind == "raw":
        return [] if body == value else [f"body {body[:80]!r} != {value[:80]!r}"]
    if kind == "json":
        try:
            sent = json.loads(body)
        except ValueError:
            return [f"body is not JSON: {body[:80]!r}"]
        return [] if sent == value else [f"JSON body {sent!r} != {value!r}"]
    if kind == "form":
        sent_pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True)
        return [] if sent_pairs == value else [f"form {sent_pairs!r} != {value!r}"]
    parts = {}
    for chunk in body.split(b"\r\n--"):
        match = re.search(rb'name="([^"]*)"[^\r]*\r\n(?:[^\r]+\r\n)*\r\n(.*)', chunk, re.S)
        if match:
            parts[match.group(1).decode()] = match.group(2).removesuffix(b"\r\n").decode()
    return [] if parts == value else [f"multipart {parts!r} != {value!r}"]


# --- running the corpus ---------------------------------------------------------------


def loadable_samples() -> list[str]:
    malformed = {name for name, tags in index_entries().items() if "malformed" in tags}
    return [name for name in sample_folders() if name not in malformed]


TLS_FIRST = 1_000_000


@dataclass
class Sample:
    name: str
    base_path: str
    document: dict[str, Any]
    properties: dict[str, Any]
    host_values: dict[str, str]
    onprem_gateway_id: str = ""
    connection_values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    gateway: GatewayUnderTest
    plain: Recorder
    tls: Recorder
    samples: list[Sample]

    def received(self, number: int) -> Recorded:
        return (self.tls if number >= TLS_FIRST else self.plain).get(number)


@pytest.fixture(scope="module")
def corpus(
    start_gateway: Callable[..., GatewayUnderTest],
    tmp_path_factory: pytest.TempPathFactory,
    azurite: Any,
) -> Iterator[Corpus]:
    """One gateway for the whole corpus. Hosts that `dynamichosturl` policies build
    (`https://<instance>.atlassian.net/...`) are resolved to an HTTPS recorder with a
    certificate for them (GATEWAY_DEV_UPSTREAM_RESOLVE), so nothing leaves loopback."""
    plain = Recorder().start()
    samples = []
    hosts: set[str] = set()
    for index, name in enumerate(loadable_samples()):
        document, properties = load_folder(folder_path(name))
        base_path = f"/c{index}"
        host_values = dynamic_host_values(properties, plain.url + base_path)
        samples.append(Sample(name, base_path, document, properties, host_values))
        for policy in (properties.get("properties") or {}).get("policyTemplateInstances") or []:
            if str(policy.get("templateId", "")).lower() == "dynamichosturl":
                template = str(
                    (policy.get("parameters") or {}).get("x-ms-apimTemplateParameter.urlTemplate")
                )
                parts = urlsplit(host_url(template, host_values))
                if parts.scheme == "https" and parts.hostname:
                    hosts.add(parts.hostname)
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*sorted(hosts)).configure_cert(context)
    ca_file = tmp_path_factory.mktemp("corpus-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = Recorder(context, first=TLS_FIRST).start()
    gateway = start_gateway(
        upstream_ca_file=str(ca_file),
        dev_upstream_resolve=",".join(f"{host}:443=127.0.0.1:{tls.port}" for host in sorted(hosts)),
    )
    gateway_id, agent = start_agent(gateway, tmp_path_factory.mktemp("corpus-agent"), azurite.connection_string())
    for sample in samples:
        sample.onprem_gateway_id = gateway_id
    try:
        yield Corpus(gateway, plain, tls, samples)
    finally:
        agent.stop()
        plain.stop()
        tls.stop()


def import_sample(client: httpx.Client, folder: Path, base_url: str) -> dict[str, Any]:
    files = {
        "apiDefinition": (
            "apiDefinition.swagger.json",
            (folder / "apiDefinition.swagger.json").read_bytes(),
        )
    }
    if (folder / "apiProperties.json").exists():
        files["apiProperties"] = ("apiProperties.json", (folder / "apiProperties.json").read_bytes())
    response = client.post("/api/connectors/import", files=files, data={"baseUrl": base_url})
    assert response.status_code == 201, response.text
    return dict(response.json())


def start_agent(
    gateway: GatewayUnderTest, folder: Path, storage: str
) -> tuple[str, AgentProcess]:
    """An on-premises gateway with its agent running (Connect Bridge's calls are relayed
    through it, and the agent sends them to the recorder)."""
    key_file = folder / "agent-key.pem"
    status = agent_cli(
        [
            "gateway-agent",
            "register",
            "--name",
            "corpus-office",
            "--gateway",
            gateway.url,
            "--token",
            gateway.token("corpus-user"),
            "--key-file",
            str(key_file),
        ]
    )
    assert status == 0
    config = AgentConfig.load(key_file.with_suffix(".json"))
    record = asyncio.run(
        gateway.state.onprem_registry.get(gateway.settings.tenant_ids[0], config.gateway_id)
    )
    assert record is not None
    agent = AgentProcess(OnPremisesGateway(record, key_file, config), storage)
    with gateway.client("corpus-user") as client:
        wait_online(client, record.id, agent)
    return record.id, agent


def connection_values(
    client: httpx.Client, option: dict[str, Any], sample: Sample, recorder_base: str
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for parameter in option["parameters"]:
        kind = parameter["type"]
        if kind == "oauthSetting":
            continue
        if parameter["name"] in sample.host_values:
            values[parameter["name"]] = sample.host_values[parameter["name"]]
            continue
        if kind == "gatewaySetting":
            values[parameter["name"]] = sample.onprem_gateway_id
            continue
        if kind == "int":
            values[parameter["name"]] = 3
        elif kind == "bool":
            values[parameter["name"]] = True
        elif parameter["name"].lower().endswith("url"):
            values[parameter["name"]] = recorder_base
        else:
            values[parameter["name"]] = f"{parameter['name']}-value"
    return values


def client_certificate() -> str:
    """A PEM bundle (private key + certificate) for an OAuth client's certificate."""
    import trustme

    ca = trustme.CA()
    return ca.issue_cert("corpus-client.example").private_key_and_cert_chain_pem.bytes().decode()


def connect(
    gateway: GatewayUnderTest,
    client: httpx.Client,
    connector: dict[str, Any],
    sample: Sample,
    recorder_base: str,
) -> tuple[str | None, tuple[str, str, str] | None]:
    """A connection through the first auth option the gateway supports (non-OAuth ones
    first: their credentials need no provider)."""
    options = sorted(
        connector["definition"]["authOptions"], key=lambda o: o["type"] in ("oauth2", "windows")
    )
    refusals = []
    for option in options:
        values = connection_values(client, option, sample, recorder_base)
        body: dict[str, Any] = {"displayName": "corpus", "parameters": values}
        if option["name"]:
            body["parameterSet"] = option["name"]
        if option["type"] == "oauth2":
            # `aadcertificate` authenticates the client with a certificate (issue 18).
            secret: dict[str, str] = (
                {"clientCertificate": client_certificate()}
                if (option.get("oauth2") or {}).get("identityProvider") == "aadcertificate"
                else {"clientSecret": "corpus-secret"}
            )
            client.put(
                f"/api/connectors/{connector['id']}/oauth-client",
                json={"clientId": "corpus-client", **secret},
            ).raise_for_status()
        for _ in range(4):  # allowed values are not listed by the import: take the first
            response = client.post(f"/api/connectors/{connector['id']}/connections", json=body)
            if response.status_code != 422:
                break
            for error in response.json().get("errors", []):
                choices = re.match(r"must be one of: ([^,]+)", error["message"])
                if choices:
                    values[error["field"].split(".", 1)[1]] = choices.group(1)
        if response.status_code == 201:
            sample.connection_values = values
            return str(response.json()["id"]), credential_of(
                gateway, option, values, response.json()
            )
        assert response.status_code == UNSUPPORTED_STATUS, response.text
        refusals.append(response.text)
    return None, None  # no option the gateway supports: every operation cannot run


def credential_of(
    gateway: GatewayUnderTest,
    option: dict[str, Any],
    values: dict[str, Any],
    connection: dict[str, Any],
) -> tuple[str, str, str] | None:
    if option["type"] == "oauth2":
        _complete_consent_directly(gateway, connection, "corpus-token")
        return ("header", "Authorization", "Bearer corpus-token")
    if option["type"] == "basic":
        pair = f"{values.get('username')}:{values.get('password')}".encode()
        return ("header", "Authorization", "Basic " + base64.b64encode(pair).decode())
    if option["type"] == "apiKey":
        key = option["apiKey"]
        return (key["in"], key["name"], str(values.get("api_key")))
    return None


@dataclass
class Outcome:
    case: Case
    status: int
    problems: list[str]
    detail: str = ""


def test_every_sample_operation_is_sent_as_power_platform_would(corpus: Corpus) -> None:
    started = time.monotonic()
    gateway = corpus.gateway
    cases: list[tuple[str | None, str, Case]] = []  # (connection id, encoded operation id, case)
    warnings: dict[str, list[str]] = {}
    with gateway.client("corpus-user") as client:
        for sample in corpus.samples:
            base_url = corpus.plain.url + sample.base_path
            connector = import_sample(client, folder_path(sample.name), base_url)
            warnings[sample.name] = connector["definition"]["warnings"]
            connection, credential = connect(gateway, client, connector, sample, base_url)
            policies = (sample.properties.get("properties") or {}).get(
                "policyTemplateInstances"
            ) or []
            listed = {
                (op["method"], op["path"]): op["encodedOperationId"]
                for op in connector["definition"]["operations"]
            }
            values = Values()
            for operation in swagger_operations(sample.document):
                encoded = listed[(operation.method, operation.path_key)]
                case = build_case(
                    sample.name,
                    sample.document,
                    operation,
                    sample.base_path,
                    credential,
                    policies,
                    values,
                    sample.host_values,
                    sample.connection_values,
                )
                cases.append((connection, encoded, case))

    def run(item: tuple[str | None, str, Case]) -> Outcome:
        connection, encoded, case = item
        if connection is None:
            return Outcome(case, UNSUPPORTED_STATUS, [], "no supported auth option")
        payload: dict[str, Any] = {"parameters": case.parameters}
        if case.body is not None:
            payload["body"] = case.body
        client = clients.__dict__.get("client")
        if client is None:  # one client (and keep-alive connection) per worker thread
            client = clients.client = gateway.client("corpus-user")
            opened.append(client)
        response = client.post(f"/api/connections/{connection}/operations/{encoded}", json=payload)
        if response.status_code != 200 or "x-recorded" not in response.headers:
            return Outcome(case, response.status_code, [], response.text[:300])
        received = corpus.received(int(response.headers["x-recorded"]))
        return Outcome(case, 200, compare(case, received))

    clients = threading.local()
    opened: list[httpx.Client] = []
    prepared = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(run, cases))
    finally:
        for client in opened:
            client.close()
    print(f"\nsetup {prepared - started:.1f} s, calls {time.monotonic() - prepared:.1f} s")

    failures = []
    refused = []
    for outcome in outcomes:
        key = (outcome.case.folder, outcome.case.operation.operation_id)
        label = " ".join(key)
        if key in CANNOT_RUN:
            feature = CANNOT_RUN[key]
            refused.append((label, feature))
            if outcome.status != UNSUPPORTED_STATUS:
                failures.append(f"{label}: expected 501 ({feature}), got {outcome.status}")
            if not any(
                feature in w and "not supported" in w for w in warnings[outcome.case.folder]
            ):
                failures.append(f"{label}: cannot run ({feature}) but the import did not warn")
        elif outcome.status != 200:
            failures.append(f"{label}: HTTP {outcome.status} {outcome.detail}")
        elif outcome.problems:
            failures.append(f"{label}: " + "; ".join(outcome.problems))
    for label, detail in refused:
        print(f"refused: {label}: {detail}")
    partial = [o for o in outcomes if o.case.expected.partial]
    reasons = sorted({r for o in partial for r in o.case.expected.partial})
    print(f"partly policy-defined: {len(partial)} operations; left out: {', '.join(reasons)}")
    checked = len(outcomes) - len(refused)
    print(f"\ncorpus: {len(outcomes)} operations, {checked} sent and compared, "
          f"{len(refused)} refused as unsupported")
    assert corpus.plain.malformed == [] and corpus.tls.malformed == []
    assert not failures, f"{len(failures)} of {len(outcomes)}:\n" + "\n".join(failures[:80])


def test_import_warnings_know_the_supported_identity_providers() -> None:
    from functions.powerplatform.auth import SUPPORTED_IDENTITY_PROVIDERS
    from functions.services.oauth import POWER_PLATFORM_PROVIDERS

    assert set(POWER_PLATFORM_PROVIDERS) == SUPPORTED_IDENTITY_PROVIDERS
