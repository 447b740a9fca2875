"""The interactive docs and the OpenAPI document: offline assets, a valid document
(openapi-spec-validator), the bearer scheme, every request body with a schema and an
example, summaries in words; and Schemathesis against the running gateway."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate

from functions.api.openapi import ASSETS_DIR
from tests.conftest import GatewayUnderTest

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ANONYMOUS_OPERATIONS = {("get", "/api/health"), ("get", "/api/oauth/callback")}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with `#/components/...` references resolvable (for jsonschema)."""
    return {**schema, "components": document["components"]}


@pytest.fixture(scope="module")
def document(gateway: GatewayUnderTest) -> dict[str, Any]:
    with gateway.client(user=None) as anonymous:
        response = anonymous.get("/api/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def test_docs_page_and_assets_are_served_by_the_gateway(gateway: GatewayUnderTest) -> None:
    with gateway.client(user=None) as anonymous:
        page = anonymous.get("/api/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        # Nothing is loaded from elsewhere: every URL in the page is the gateway's own.
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        assert urls and all(u.startswith("/api/") for u in urls), urls
        assert "http://" not in page.text and "https://" not in page.text
        # Swagger UI's defaults would call swagger.io's validator from the browser and
        # keep the bearer token in localStorage: both off.
        assert '"validatorUrl": null' in page.text
        assert "persistAuthorization" not in page.text
        for asset, media in (
            ("swagger-ui-bundle.js", "javascript"),
            ("swagger-ui.css", "text/css"),
            ("favicon-32x32.png", "image/png"),
        ):
            response = anonymous.get(f"/api/docs/assets/{asset}")
            assert response.status_code == 200, asset
            assert media in response.headers["content-type"]
            assert response.content == (ASSETS_DIR / asset).read_bytes()
        assert anonymous.get("/api/docs/assets/nope.js").status_code == 404


def test_vendored_swagger_ui_matches_its_recorded_source() -> None:
    """The vendored files are the ones SOURCE.txt names (version, checksums, licence)."""
    source = (ASSETS_DIR / "SOURCE.txt").read_text()
    listed = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", source, re.M)
    )
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"} <= set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (ASSETS_DIR / "LICENSE").read_text()


def test_openapi_document_is_valid(document: dict[str, Any]) -> None:
    validate(document)  # raises with the offending pointer


def test_bearer_scheme_declared_and_anonymous_operations_marked(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": schemes["bearerAuth"]["description"],
        }
    }
    assert document["security"] == [{"bearerAuth": []}]
    for method, path, operation in operations(document):
        if (method, path) in ANONYMOUS_OPERATIONS:
            assert operation["security"] == [], path
        else:
            assert "security" not in operation, (method, path)


def test_the_documented_scheme_works_with_a_development_token(
    gateway: GatewayUnderTest, document: dict[str, Any]
) -> None:
    """What Swagger UI's Authorize sends (`Authorization: Bearer <token>`) is accepted."""
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    header = f"{scheme['scheme'].capitalize()} {gateway.token('docs-user')}"
    with httpx.Client(base_url=gateway.url, trust_env=False) as http:
        assert http.get("/api/connectors").status_code == 401
        assert http.get("/api/connectors", headers={"Authorization": header}).status_code == 200


def test_every_summary_reads_as_words(document: dict[str, Any]) -> None:
    summaries = []
    for method, path, operation in operations(document):
        summary = operation.get("summary", "")
        assert summary and summary[0].isupper(), (method, path)
        # FastAPI's default is the function name in title case ("Invoke Documented").
        words = summary.split()
        assert not (len(words) > 1 and all(w[0].isupper() for w in words)), summary
        assert "Documented" not in summary and "_" not in summary, summary
        summaries.append((summary, method))
    assert len(set(summaries)) == len(summaries)


def test_every_request_body_has_a_schema_and_a_valid_example(
    document: dict[str, Any],
) -> None:
    documented = 0
    for method, path, operation in operations(document):
        body = operation.get("requestBody")
        if method in ("post", "put", "patch") and "/invoke/" not in path:
            takes_body = not path.endswith(("/disable", "/enable", "/reauthorize", "/rotate-secret"))
            assert (body is not None) == takes_body, (method, path)
        if body is None or "/invoke/" in path:
            continue
        content = body["content"]["application/json"]
        assert content["schema"]["$ref"].startswith("#/components/schemas/"), path
        name = content["schema"]["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
        jsonschema.validate(content["example"], resolve(document, schema))
        documented += 1
    # The share deletions take a body too (DELETE with a principal).
    assert documented >= 13
    shares = document["paths"]["/api/connections/{connection_id}/shares"]["delete"]
    assert "requestBody" in shares


def test_documented_examples_are_accepted_by_the_gateway(
    gateway: GatewayUnderTest, document: dict[str, Any]
) -> None:
    """The examples are not decoration: the create examples work as they are."""

    def example(path: str, method: str = "post") -> Any:
        operation = document["paths"][path][method]
        return operation["requestBody"]["content"]["application/json"]["example"]

    with gateway.client("docs-examples") as client:
        connector = client.post("/api/connectors", json=example("/api/connectors"))
        assert connector.status_code == 201, connector.text
        imported = client.post("/api/connectors/import", json=example("/api/connectors/import"))
        assert imported.status_code == 201, imported.text
        connection = client.post(
            f"/api/connectors/{connector.json()['id']}/connections",
            json=example("/api/connectors/{connector_id}/connections"),
        )
        assert connection.status_code == 201, connection.text
        renamed = client.patch(
            f"/api/connections/{connection.json()['id']}",
            json=example("/api/connections/{connection_id}", "patch"),
        )
        assert renamed.status_code == 200, renamed.text


def test_errors_are_documented_as_problem_json(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(document)
    for _, path, operation in operations(document):
        responses = operation["responses"]
        assert "default" in responses, path
        if "/invoke/" in path or "/operations/" in path:
            continue  # the upstream's answers: any content type
        assert "application/problem+json" in responses["default"]["content"], path


# -- Schemathesis against the running gateway -------------------------------------------
# Driven through its strategies (one test per operation) rather than its pytest plugin,
# which does not run under pytest 9.


def operation_labels() -> list[str]:
    from functions.app import create_app

    document = create_app().openapi()
    return [f"{method.upper()} {path}" for method, path, _ in operations(document)]


@pytest.fixture(scope="module")
def fuzzed_gateway(start_gateway: Any) -> GatewayUnderTest:
    """A gateway with its own tables: the fuzzer's data never meets other tests'."""
    gateway: GatewayUnderTest = start_gateway()
    return gateway


@pytest.fixture(scope="module")
def api_schema(fuzzed_gateway: GatewayUnderTest) -> Any:
    with httpx.Client(base_url=fuzzed_gateway.url, trust_env=False) as http:
        raw = http.get("/api/openapi.json").json()
    return schemathesis.openapi.from_dict(raw)


@pytest.fixture(scope="module")
def fuzz_session(fuzzed_gateway: GatewayUnderTest) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment sees the token
    session.headers["Authorization"] = f"Bearer {fuzzed_gateway.token('schemathesis')}"
    yield session
    session.close()


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.mark.parametrize("label", operation_labels())
def test_api_fuzzing_no_server_error_and_responses_match_the_schema(
    label: str, api_schema: Any, fuzzed_gateway: GatewayUnderTest, fuzz_session: requests.Session
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    # Bounded: a few examples per operation, no shrinking, a fixed seed (derandomize):
    # seconds per operation, and the same cases every run.
    @given(case=operation.as_strategy())
    @settings(
        max_examples=6,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=fuzzed_gateway.url, session=fuzz_session, checks=CHECKS, timeout=60
        )

    run()
