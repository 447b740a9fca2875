"""Issue 12: a percent-encoded connection id in the invoke route keeps the caller's path
(it used to be dropped silently); a path the gateway cannot split reliably is refused."""

from __future__ import annotations

from typing import Any

from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest


def _encoded(value: str) -> str:
    return "".join(f"%{ord(ch):02X}" for ch in value)


def test_an_encoded_connection_id_keeps_the_path(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("encoder") as client:
        connector = create_connector(client, echo.url + "/v1")
        connection = create_connection(client, connector["id"])
        cid = connection["id"]
        for id_form in (_encoded(cid[:1]) + cid[1:], _encoded(cid)):
            response = client.get(f"/api/connections/{id_form}/invoke/deep/path?x=1")
            assert response.status_code == 200, response.text
            report = response.json()
            assert report["path"] == "/v1/deep/path"
            assert report["query"] == "x=1"
        # With nothing after invoke: the base path itself.
        bare = client.get(f"/api/connections/{_encoded(cid[:1]) + cid[1:]}/invoke")
        assert bare.json()["path"] == "/v1"


def test_an_encoded_invoke_segment_is_refused(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("encoder-2") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        response = client.get(f"/api/connections/{connection['id']}/%69nvoke/deep/path")
        assert_problem(response, 400, "invalid_path")
