"""Policy-template expressions: every distinct expression in the samples, and odd cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.powerplatform.expressions import (
    MISSING,
    EvaluationContext,
    ExpressionError,
    evaluate,
    parse_expression,
    parse_property_path,
    parse_template,
    parse_value_template,
)
from tests.powerplatform.samples import require_connectors_dir, sample_folders

CONNECTION = {
    "token:customHost": "api.elite.com",
    "token:3eInstanceId": "instance-1",
    "token:env": "https://api-sandbox.workspan.com",
    "apiKey": "cog-key",
    "api_key": "the-key",
    "api_token": "the-token",
    "username": "ann",
    "password": "pw",
    "public_key": "pub",
    "private_key": "priv",
    "subdomain": "acme",
    "jirainstance": "acme",
    "instanceUrl": "https://odata.acme.cloud.jedox.com",
    "new_url": "qpp.acme.com",
    "client_id": "cid",
    "emailaddress": "ann@acme.com",
    "environment": "api.eu.socrata.com",
    "port": 8443,
    "cat": "bar",
    "subPath": "path",
}
HEADERS = [
    ("Authorization", "abc"),
    ("authTokenforHeader", "tok"),
    ("test", "foo"),
    ("port", "1234"),
]
QUERY = [("domain", "pqr"), ("version", "v2")]
CONTEXT = EvaluationContext(connection_parameters=CONNECTION, headers=HEADERS, query=QUERY)

# Every string template found in the samples' policy parameters (urlTemplate, value,
# name, newPath, httpMethod, nextLinkPropertyName), with what it renders to above.
SAMPLE_TEMPLATES: dict[str, str | None] = {
    "https://@connectionParameters('token:customHost')/3e/events/webhook": (
        "https://api.elite.com/3e/events/webhook"
    ),
    "@connectionParameters('token:3eInstanceId')": "instance-1",
    "@connectionParameters('token:notes','')": "",
    "@connectionParameters('siteUrl','https://westus.api.cognitive.microsoft.com')": (
        "https://westus.api.cognitive.microsoft.com"
    ),
    "@connectionParameters('apiKey')": "cog-key",
    "Basic @connectionParameters('api_key')": "Basic the-key",
    "@headers('Authorization')": "abc",
    "Bearer @headers('Authorization')": "Bearer abc",
    "@connectionParameters('username')": "ann",
    "@connectionParameters('password')": "pw",
    "@connectionParameters('public_key')": "pub",
    "@connectionParameters('private_key')": "priv",
    "https://@connectionParameters('subdomain').inserve.nl": "https://acme.inserve.nl",
    "https://@connectionParameters('jirainstance').atlassian.net/rest/api/": (
        "https://acme.atlassian.net/rest/api/"
    ),
    "@connectionParameters('instanceUrl')": "https://odata.acme.cloud.jedox.com",
    "https://@connectionParameters('new_url')/": "https://qpp.acme.com/",
    "@connectionParameters('client_id')": "cid",
    "@connectionParameters('new_url')": "qpp.acme.com",
    "@connectionParameters('api_key')": "the-key",
    "Bearer @headers('authTokenforHeader')": "Bearer tok",
    "@connectionParameters('token:HostName','')": "",
    "@connectionParameters('token:env')": "https://api-sandbox.workspan.com",
    "@connectionParameters('api_token')": "the-token",
    "@connectionParameters('emailaddress')": "ann@acme.com",
    "https://@connectionParameters('environment')/api": "https://api.eu.socrata.com/api",
    # Not expressions: literal text that happens to contain "@".
    "@odata.nextLink": "@odata.nextLink",
    "@Request.OriginalHTTPMethod": "@Request.OriginalHTTPMethod",
    "$$version": "$$version",
    # Route templates: `{name}` is a path parameter, filled in by the policy, not here.
    "/v1.0/users/{id}/getMemberGroups": "/v1.0/users/{id}/getMemberGroups",
    "v1.0/users/{id}/checkMemberGroups": "v1.0/users/{id}/checkMemberGroups",
    "/2/issue/{issueKey}": "/2/issue/{issueKey}",
    "/2/issue/{issueKey}/comment": "/2/issue/{issueKey}/comment",
    "/2/project/{projectId}/statuses": "/2/project/{projectId}/statuses",
    "/gift/v1/giftbatches/{batch_id}/gifts": "/gift/v1/giftbatches/{batch_id}/gifts",
}

# Every setproperty / path expression in the samples, evaluated against BODY.
BODY = {
    "@odata.id": "user-1",
    "payments": {"amount": 5},
    "gifts": {"payments": {"amount": 1}, "receipts": {"n": 2}},
    "invoices": [{"id": 7, "reference": "INV-7"}],
    "access_token": "tok",
}
SAMPLE_EXPRESSIONS: dict[str, Any] = {
    "@body()": BODY,
    "body()": BODY,
    "@body().gifts": BODY["gifts"],
    "@body().invoices": BODY["invoices"],
    "@body().contacts": MISSING,
    "@body().access_token": "tok",
    "@item().id": 7,
}
SAMPLE_VALUE_TEMPLATES: dict[str, Any] = {
    "https://graph.microsoft.com/v1.0/directoryObjects/{@body()['@odata.id']}": (
        "https://graph.microsoft.com/v1.0/directoryObjects/user-1"
    ),
    "[{@body().payments}]": [{"amount": 5}],
    "[{@body().receipts}]": MISSING,
    "[{@body().gifts.payments}]": [{"amount": 1}],
    "[{@body().gifts.receipts}]": [{"n": 2}],
    "[{@body().gifts}]": [BODY["gifts"]],
    "'{@item()['id']}-{@item()['reference']}'": "7-INV-7",
}
SAMPLE_PROPERTY_PATHS: dict[str, tuple[str | int, ...]] = {
    "['@odata.id']": ("@odata.id",),
    "payments": ("payments",),
    "receipts": ("receipts",),
    "gifts": ("gifts",),
    "title": ("title",),
    "url": ("url",),
    "customProperties": ("customProperties",),
}
# Expressions of templates the gateway does not run: they must fail clearly.
SAMPLE_UNSUPPORTED = {
    "@{triggerBody().documents[0].mtime}": "triggerBody",
    "@triggerBody().documents": "triggerBody",
}


@pytest.mark.parametrize(("source", "expected"), SAMPLE_TEMPLATES.items())
def test_sample_templates(source: str, expected: str | None) -> None:
    assert parse_template(source).render(CONTEXT) == expected


@pytest.mark.parametrize(("source", "expected"), SAMPLE_EXPRESSIONS.items())
def test_sample_expressions(source: str, expected: Any) -> None:
    context = EvaluationContext(body=BODY, item=BODY["invoices"][0])
    assert evaluate(parse_expression(source), context) == expected


@pytest.mark.parametrize(("source", "expected"), SAMPLE_VALUE_TEMPLATES.items())
def test_sample_value_templates(source: str, expected: Any) -> None:
    context = EvaluationContext(body=BODY, item=BODY["invoices"][0])
    assert parse_value_template(source).evaluate(context) == expected


@pytest.mark.parametrize(("source", "expected"), SAMPLE_PROPERTY_PATHS.items())
def test_sample_property_paths(source: str, expected: tuple[str | int, ...]) -> None:
    assert parse_property_path(source) == expected


@pytest.mark.parametrize(("source", "function"), SAMPLE_UNSUPPORTED.items())
def test_unknown_functions_are_named_with_the_supported_list(source: str, function: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template(source)
    message = str(caught.value)
    assert f"unknown function '{function}'" in message
    assert "connectionParameters, headers, queryParameters, body, item" in message
    assert caught.value.source == source


def _expression_strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_expression_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_expression_strings(v) for v in value)) if value else set()
    if isinstance(value, str) and ("@" in value or "{" in value or "(" in value):
        return {value}
    return set()


def test_every_expression_in_the_samples_is_covered_here() -> None:
    root = require_connectors_dir()
    found: set[str] = set()
    for name in sample_folders():
        raw = (root / name / "apiProperties.json").read_bytes().decode("utf-8-sig")
        policies = json.loads(raw).get("properties", {}).get("policyTemplateInstances", [])
        for policy in policies:
            found |= _expression_strings(policy.get("parameters", {}))
    covered = (
        set(SAMPLE_TEMPLATES)
        | set(SAMPLE_EXPRESSIONS)
        | set(SAMPLE_VALUE_TEMPLATES)
        | set(SAMPLE_PROPERTY_PATHS)
        | set(SAMPLE_UNSUPPORTED)
    )
    assert found - covered == set()


# --- Microsoft's documented examples --------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("https://@header('test').abc.xyz:@header('port')", "https://foo.abc.xyz:1234"),
        ("https://@connectionParameters('cat').abc.xyz", "https://bar.abc.xyz"),
        ("https://test.abc.xyz", "https://test.abc.xyz"),
        (
            "https://@header('test').abc.@queryParameters('domain')/@connectionParameters('subPath')",
            "https://foo.abc.pqr/path",
        ),
        ("https://@header('test123', 'default').abc.xyz", "https://default.abc.xyz"),
        ("@headers('test')moo", "foomoo"),
        ("moo@headers('test')", "moofoo"),
        ("@connectionParameters('cat', '')", "bar"),
        ("@connectionParameters('name', '')", ""),
        ("/@queryParameters('version')/get/{id}", "/v2/get/{id}"),
        ("/@header('version', 'v1')/get/{id}", "/v1/get/{id}"),
        ("http://@headers('test').azure.net", "http://foo.azure.net"),
    ],
)
def test_documented_examples(source: str, expected: str) -> None:
    assert parse_template(source).render(CONTEXT) == expected


# --- odd cases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("@@connectionParameters('cat')", "@connectionParameters('cat')"),  # @@ is a literal @
        ("a@@b", "a@b"),
        ("ann@acme.com", "ann@acme.com"),  # no call: literal
        ("@", "@"),
        ("trailing @", "trailing @"),
        ("@{connectionParameters('port')}", "8443"),  # numbers become text
        ("port @{connectionParameters('port')}!", "port 8443!"),
        ("@{headers('test')}.@{queryParameters('domain')}", "foo.pqr"),
        ("@ConnectionParameters('cat')", "bar"),  # function names ignore case
        ("@QUERYPARAMETER('domain')", "pqr"),
        ("@headers('TEST')", "foo"),  # header names ignore case
        ("@queryParameters('DOMAIN', 'x')", "x"),  # query names do not
        ("@connectionParameters( 'cat' , 'dflt' )", "bar"),
        ("@connectionParameters(\u2018cat\u2019, \u2018\u2019)", "bar"),  # typographic quotes
        ("@connectionParameters('missing', 'it''s')", "it's"),  # '' is a quote
        ("@connectionParameters('missing', '''')", "'"),
        ("@connectionParameters('missing', 'a,b)c')", "a,b)c"),
        ("@connectionParameters('missing', 42)", "42"),
        ("@connectionParameters('missing', null)", ""),
        ("x@connectionParameters('missing')y", "xy"),  # missing inside text: empty
        ("{literal braces}", "{literal braces}"),
        ("", ""),
    ],
)
def test_odd_templates(source: str, expected: str) -> None:
    assert parse_template(source).render(CONTEXT) == expected


def test_a_lone_missing_expression_renders_none() -> None:
    assert parse_template("@connectionParameters('missing')").render(CONTEXT) is None
    assert parse_template("@{connectionParameters('missing')}").render(CONTEXT) is None
    assert parse_template("@headers('missing')").evaluate(CONTEXT) is MISSING


def test_repeated_headers_are_joined() -> None:
    context = EvaluationContext(headers=[("Accept", "a"), ("accept", "b")])
    assert parse_template("@headers('Accept')").render(context) == "a, b"


def test_templates_report_the_functions_they_use() -> None:
    template = parse_template("https://@headers('a')/@{connectionParameters('b')}")
    assert template.functions() == {"headers", "connectionParameters"}
    assert not template.is_constant
    assert parse_template("plain").is_constant


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("@connectionParameters()", "connectionParameters() takes 1 or 2 argument(s), got 0"),
        ("@connectionParameters('a','b','c')", "takes 1 or 2 argument(s), got 3"),
        ("@body('x')", "body() takes 0 argument(s), got 1"),
        ("@connectionParameters('a'", "expected ',' or ')'"),
        ("@connectionParameters('a)", "unterminated string"),
        ("@{connectionParameters('a')", "expected '}' to close '@{'"),
        ("@{}", "unexpected character '}'"),
        ("@{body().}", "expected a property name after '.'"),
        ("@{body()[0}", "expected ']'"),
        ("@{utcNow()}", "unknown function 'utcNow'"),
        ("@concat('a', 'b')", "unknown function 'concat'"),
    ],
)
def test_parse_errors_are_precise(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template(source)
    assert message in str(caught.value)
    assert repr(source) in str(caught.value)


def test_error_positions_point_at_the_problem() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("https://x/@nope('a')")
    assert caught.value.position == 11  # the function name, 0-based
    assert "at character 12" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("@body()?.gifts?.payments", {"amount": 1}),
        ("@body()['gifts']['receipts']['n']", 2),
        ("@body().invoices[0].reference", "INV-7"),
        ("@body().invoices[-1].id", 7),
        ("@body().invoices[5]", MISSING),
        ("@body().invoices.id", MISSING),  # no implicit projection over arrays
        ("@body().missing.deeper", MISSING),
        ("@body()[connectionParameters('key')]", "tok"),
        ("'literal'", "literal"),
        ("12", 12),
        ("1.5", 1.5),
        ("true", True),
        ("null", None),
    ],
)
def test_path_expressions(source: str, expected: Any) -> None:
    context = EvaluationContext(connection_parameters={"key": "access_token"}, body=BODY)
    assert evaluate(parse_expression(source), context) == expected


def test_body_is_a_live_reference() -> None:
    body: dict[str, Any] = {"a": {}}
    node = evaluate(parse_expression("@body().a"), EvaluationContext(body=body))
    node["b"] = 1
    assert body == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("30", "30"),  # constants stay strings, as Microsoft's example shows
        ("USA", "USA"),
        ("{@body().payments}", {"amount": 5}),
        ("{body().payments.amount}", 5),
        ("[]", []),
        ("[1, 2]", [1, 2]),  # a JSON literal
        ('{"fixed": true}', {"fixed": True}),
        ("[{@body().payments}, 'x {@body().access_token}']", [{"amount": 5}, "x tok"]),
        ("{@body().access_token} and {@body()['@odata.id']}", "tok and user-1"),
        ("'quoted {@body().access_token}'", "quoted tok"),
        ("{@body().nothing}", MISSING),
        ("prefix {@body().nothing}", MISSING),
    ],
)
def test_value_templates(source: str, expected: Any) -> None:
    assert parse_value_template(source).evaluate(EvaluationContext(body=BODY)) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [("a.b", ("a", "b")), ("a[0].b", ("a", 0, "b")), ("['x y']['z']", ("x y", "z"))],
)
def test_property_paths(source: str, expected: tuple[str | int, ...]) -> None:
    assert parse_property_path(source) == expected


@pytest.mark.parametrize("source", ["", "  ", "a b", "[connectionParameters('a')]", "."])
def test_bad_property_paths(source: str) -> None:
    with pytest.raises(ExpressionError):
        parse_property_path(source)
