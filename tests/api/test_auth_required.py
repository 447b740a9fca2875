"""No route but health answers without a valid token."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_problem
from tests.conftest import GatewayUnderTest

ROUTES = [
    ("GET", "/api/connectors"),
    ("POST", "/api/connectors"),
    ("GET", "/api/connectors/0123456789abcdef0123456789abcdef"),
    ("PUT", "/api/connectors/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/api/connectors/0123456789abcdef0123456789abcdef"),
    ("POST", "/api/connectors/0123456789abcdef0123456789abcdef/connections"),
    ("GET", "/api/connections"),
    ("GET", "/api/connections/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/api/connections/0123456789abcdef0123456789abcdef"),
    ("GET", "/api/connections/0123456789abcdef0123456789abcdef/invoke/x"),
    ("POST", "/api/connections/0123456789abcdef0123456789abcdef/invoke"),
]


def test_health_is_anonymous(gateway: GatewayUnderTest) -> None:
    with gateway.client(user=None) as client:
        response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic YWxpY2U6cHc="])
def test_routes_need_a_valid_token(
    gateway: GatewayUnderTest, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with gateway.client(user=None) as client:
        response = client.request(method, path, headers=headers)
    code = "unauthenticated" if authorization in (None, "Basic YWxpY2U6cHc=") else "invalid_token"
    body = assert_problem(response, 401, code)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert body["correlationId"] == response.headers["x-correlation-id"]


def test_token_for_another_tenant_is_refused(gateway: GatewayUnderTest) -> None:
    with gateway.client(user="mallory", tenant="11111111-1111-4111-8111-111111111111") as client:
        response = client.get("/api/connectors")
    assert_problem(response, 401, "invalid_token")


def test_unknown_route_is_problem_json(gateway: GatewayUnderTest) -> None:
    with gateway.client() as client:
        response = client.get("/api/nope")
    assert_problem(response, 404, "route_not_found")
