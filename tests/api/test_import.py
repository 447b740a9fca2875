"""Power Platform definitions imported unchanged and run: each auth kind against real
samples with the base URL pointed at the echo upstream, credentials exactly where the
definition says, and the effect of each supported policy template."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from functions.services.ids import new_id
from tests.api.helpers import assert_problem
from tests.api.storage_scan import all_table_text
from tests.conftest import JIRA_SITE, GatewayUnderTest, TlsEcho
from tests.doubles.echo import header_values
from tests.powerplatform.samples import require_connectors_dir


def sample(name: str) -> Path:
    return require_connectors_dir() / name


def import_folder(
    client: httpx.Client, folder: Path, base_url: str | None = None
) -> dict[str, Any]:
    files = {
        "apiDefinition": (
            "apiDefinition.swagger.json",
            (folder / "apiDefinition.swagger.json").read_bytes(),
        )
    }
    if (folder / "apiProperties.json").exists():
        files["apiProperties"] = (
            "apiProperties.json",
            (folder / "apiProperties.json").read_bytes(),
        )
    data = {"baseUrl": base_url} if base_url else {}
    response = client.post("/api/connectors/import", files=files, data=data)
    assert response.status_code == 201, response.text
    return response.json()


def connect(
    client: httpx.Client,
    connector: dict[str, Any],
    parameters: dict[str, Any],
    parameter_set: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"displayName": "sample", "parameters": parameters}
    if parameter_set:
        body["parameterSet"] = parameter_set
    response = client.post(f"/api/connectors/{connector['id']}/connections", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def operation(
    client: httpx.Client,
    connection: dict[str, Any],
    operation_id: str,
    parameters: dict[str, Any] | None = None,
    body: Any = None,
) -> httpx.Response:
    payload: dict[str, Any] = {"parameters": parameters or {}}
    if body is not None:
        payload["body"] = body
    return client.post(
        f"/api/connections/{connection['id']}/operations/{operation_id}", json=payload
    )


def query_pairs(report: dict[str, Any]) -> list[tuple[str, str]]:
    return list(httpx.QueryParams(report["query"]).multi_items())


def test_no_auth_sample_form_data_operation(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("pp-none") as client:
        connector = import_folder(
            client, sample("independent-publisher-connectors/LanguageTool"), echo.url + "/v2"
        )
        assert connector["source"] == "powerplatform" and connector["name"].startswith(
            "LanguageTool"
        )
        assert {op["operationId"] for op in connector["definition"]["operations"]} == {
            "CheckAText",
            "ListLanguages",
        }
        connection = connect(client, connector, {})
        response = operation(
            client,
            connection,
            "CheckAText",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "text": "Helo world",
                "language": "en-US",
            },
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["method"] == "POST" and report["path"] == "/v2/check"
        assert dict(httpx.QueryParams(report["body"])) == {
            "text": "Helo world",
            "language": "en-US",
        }
        assert header_values(report, "authorization") == []
        # Validation of operation parameters names the field.
        problem = assert_problem(
            operation(client, connection, "CheckAText", {"text": "x", "bogus": 1}),
            422,
            "validation_error",
        )
        assert any("bogus" in e["field"] for e in problem["errors"]), problem


def test_basic_sample_credential_in_authorization(gateway: GatewayUnderTest, echo: Any) -> None:
    password = "bb-" + new_id()
    with gateway.client("pp-basic") as client:
        connector = import_folder(
            client, sample("certified-connectors/Babybots"), echo.url + "/api"
        )
        connection = connect(client, connector, {"username": "maker", "password": password})
        report = operation(client, connection, "SumNumbers", {"code": "fn-code"}, {"a": 1}).json()
        assert report["path"] == "/api/SumNumbers" and query_pairs(report) == [("code", "fn-code")]
        assert header_values(report, "authorization") == [
            "Basic " + base64.b64encode(f"maker:{password}".encode()).decode()
        ]
        assert json.loads(report["body"]) == {"a": 1}
        tables = all_table_text(gateway.settings)
        assert password not in tables and "maker" not in tables.replace("maker-", "")


def test_api_key_header_sample(gateway: GatewayUnderTest, echo: Any) -> None:
    key = "dr-" + new_id()
    with gateway.client("pp-header") as client:
        connector = import_folder(client, sample("certified-connectors/Docurain"), echo.url)
        connection = connect(client, connector, {"api_key": key})
        response = operation(client, connection, "GetAsyncStatus", {"resultId": "r/1 x"})
        report = response.json()
        # Path values are encoded per segment: a slash in a value cannot add a segment.
        assert report["path"] == "/apiw/async/r%2F1%20x/status"
        assert header_values(report, "authorization") == [key]


def test_api_key_query_sample(gateway: GatewayUnderTest, echo: Any) -> None:
    key = "ah-" + new_id()
    with gateway.client("pp-query") as client:
        connector = import_folder(
            client, sample("independent-publisher-connectors/Abstract Holidays"), echo.url
        )
        connection = connect(client, connector, {"api_key": key})
        report = operation(
            client, connection, "ListHolidays", {"country": "NL", "year": 2026}
        ).json()
        assert report["path"] == "/v1/"
        assert sorted(query_pairs(report)) == sorted(
            [("country", "NL"), ("year", "2026"), ("api_key", key)]
        )
        assert header_values(report, "authorization") == []


def test_set_query_parameter_policies_with_connection_parameters(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    token = "tok-" + new_id()
    with gateway.client("pp-setquery") as client:
        connector = import_folder(
            client,
            sample("independent-publisher-connectors/Abbreviations"),
            echo.url + "/services/v2/",
        )
        connection = connect(client, connector, {"api_key": "uid-1", "api_token": token})
        report = operation(client, connection, "AbbrGet", {"term": "ASAP", "format": "json"}).json()
        pairs = dict(query_pairs(report))
        # apiKey in query (uid) from the security definition; tokenid from the policy.
        assert pairs["uid"] == "uid-1" and pairs["tokenid"] == token and pairs["term"] == "ASAP"


def test_parameter_sets_choose_the_credential(gateway: GatewayUnderTest, echo: Any) -> None:
    folder = sample("independent-publisher-connectors/Open Data Network")
    with gateway.client("pp-sets") as client:
        connector = import_folder(client, folder, echo.url + "/api")
        names = [o["name"] for o in connector["definition"]["authOptions"]]
        assert names == ["api-auth", "basic-auth"]
        problem = assert_problem(
            client.post(
                f"/api/connectors/{connector['id']}/connections",
                json={"displayName": "x", "parameters": {}},
            ),
            422,
            "validation_error",
        )
        assert problem["errors"][0]["field"] == "parameterSet"
        app_token = "odn-" + new_id()
        # `environment` only allows the vendor's hosts; the operations used here do not
        # use it (its dynamichosturl policy covers the Count* operations only).
        bad = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={
                "displayName": "x",
                "parameterSet": "api-auth",
                "parameters": {"api_key": "k", "environment": "evil.example"},
            },
        )
        assert (
            assert_problem(bad, 422, "validation_error")["errors"][0]["field"]
            == "parameters.environment"
        )
        api = connect(
            client,
            connector,
            {"api_key": app_token, "environment": "api.us.socrata.com"},
            parameter_set="api-auth",
        )
        assert api["parameterSet"] == "api-auth"
        report = operation(client, api, "SearchCatalog", {"names": "x"}).json()
        assert header_values(report, "x-app-token") == [app_token]
        assert header_values(report, "authorization") == []
        # setheader policy (existsAction append) adds its header.
        assert header_values(report, "$$version") == ["2.1"]

        basic = connect(
            client,
            connector,
            {"username": "odn-user", "password": "odn-pw-1", "environment": "api.eu.socrata.com"},
            parameter_set="basic-auth",
        )
        report = operation(client, basic, "SearchCatalog").json()
        assert header_values(report, "authorization") == [
            "Basic " + base64.b64encode(b"odn-user:odn-pw-1").decode()
        ]
        assert header_values(report, "x-app-token") == []


def test_dynamic_host_and_route_request_to_endpoint(
    gateway: GatewayUnderTest, tls_echo: TlsEcho
) -> None:
    with gateway.client("pp-jira") as client:
        connector = import_folder(client, sample("certified-connectors/JIRA"))
        assert connector["baseUrl"] == "https://yourhost.yourdomain.com/rest/api"
        connection = connect(
            client,
            connector,
            {"jirainstance": "tenant1", "username": "j@x.io", "password": "jira-pw-1"},
        )
        # CreateIssue (POST /issue) is routed by its policy to /2/issue, on the host
        # the connection names (dynamichosturl https://@connectionParameters('jirainstance')/rest/api).
        response = operation(
            client,
            connection,
            "CreateIssue",
            {"projectKey": "P"},
            {"fields": {"summary": "s", "issuetype": {"id": "1"}}},
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert header_values(report, "host") == [JIRA_SITE]
        assert report["path"] == "/rest/api/2/issue"
        assert header_values(report, "authorization") == [
            "Basic " + base64.b64encode(b"j@x.io:jira-pw-1").decode()
        ]


def test_raw_invoke_matches_operations_and_runs_their_policies(
    gateway: GatewayUnderTest, tls_echo: TlsEcho
) -> None:
    with gateway.client("pp-raw") as client:
        connector = import_folder(client, sample("certified-connectors/JIRA"))
        connection = connect(
            client,
            connector,
            {"jirainstance": "tenant1", "username": "raw", "password": "raw-pw-1"},
        )
        # POST /issue is CreateIssue: its routerequesttoendpoint policy applies.
        report = client.post(
            f"/api/connections/{connection['id']}/invoke/issue?projectKey=P", json={"fields": {}}
        ).json()
        assert report["path"] == "/rest/api/2/issue"
        assert report["query"] == "projectKey=P"
        # A path that matches no operation goes below the base URL with the credential.
        report = client.get(f"/api/connections/{connection['id']}/invoke/unknown/thing").json()
        assert report["path"] == "/rest/api/unknown/thing"
        assert header_values(report, "host") == [JIRA_SITE]
        assert header_values(report, "authorization") == [
            "Basic " + base64.b64encode(b"raw:raw-pw-1").decode()
        ]


def test_dynamic_host_from_a_connection_parameter(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("pp-jedox") as client:
        connector = import_folder(client, sample("certified-connectors/Jedox OData Hub"))
        connection = connect(
            client, connector, {"instanceUrl": echo.url, "username": "jx", "password": "jedox-pw"}
        )
        response = operation(client, connection, "DatabaseById", {"DatabaseId": 42})
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["path"] == "/Databases(42)"
        # An instance URL that is not a usable base URL is refused before sending.
        bad = connect(
            client, connector, {"instanceUrl": "ftp://x", "username": "jx", "password": "jedox-pw"}
        )
        assert_problem(operation(client, bad, "Databases"), 400, "policy_evaluation_failed")


def test_unsupported_policy_answers_501_naming_it(gateway: GatewayUnderTest, echo: Any) -> None:
    folder = sample("certified-connectors/Scrive eSign")
    with gateway.client("pp-501") as client:
        connector = import_folder(client, folder, echo.url)
        assert any("pollingtrigger" in w for w in connector["definition"]["warnings"])
        covered = next(
            p for p in connector["definition"]["policies"] if p["templateId"] == "pollingtrigger"
        )
        assert covered["supported"] is False
        connection = connect(
            client,
            connector,
            {"username": "u@x.io", "password": "scrive-pw"},
            parameter_set="basic-auth",
        )
        problem = assert_problem(
            operation(client, connection, "PollSignedDocuments"), 501, "policy_not_supported"
        )
        assert "pollingtrigger" in problem["detail"] and "PollSignedDocuments" in problem["detail"]


def test_invalid_definitions_store_nothing(gateway: GatewayUnderTest) -> None:
    with gateway.client("pp-bad") as client:
        folder = sample("independent-publisher-connectors/AccuWeather")
        files = {
            "apiDefinition": (
                "apiDefinition.swagger.json",
                (folder / "apiDefinition.swagger.json").read_bytes(),
            ),
            "apiProperties": ("apiProperties.json", (folder / "apiProperties.json").read_bytes()),
        }
        problem = assert_problem(
            client.post("/api/connectors/import", files=files), 400, "invalid_definition"
        )
        assert problem["detail"].startswith("apiDefinition.swagger.json: line 9 column 7:")
        problem = assert_problem(
            client.post(
                "/api/connectors/import", json={"apiDefinition": {"swagger": "3.0", "paths": {}}}
            ),
            400,
            "invalid_definition",
        )
        assert_problem(
            client.post(
                "/api/connectors/import",
                json={"apiDefinition": {"swagger": "2.0", "info": {"title": "t"}, "paths": {}}},
            ),
            422,
            "validation_error",
        )
        assert_problem(
            client.post(
                "/api/connectors/import", files={"apiProperties": ("apiProperties.json", b"{}")}
            ),
            422,
            "validation_error",
        )
        assert client.get("/api/connectors").json()["value"] == []
        tables = all_table_text(gateway.settings)
        assert "AccuWeather" not in tables


def test_json_import_and_native_operations_are_refused(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    folder = sample("independent-publisher-connectors/Nifty Gateway")
    with gateway.client("pp-json") as client:
        response = client.post(
            "/api/connectors/import",
            json={
                "apiDefinition": json.loads(
                    (folder / "apiDefinition.swagger.json").read_text(encoding="utf-8-sig")
                ),
                "apiProperties": json.loads(
                    (folder / "apiProperties.json").read_text(encoding="utf-8-sig")
                ),
                "baseUrl": echo.url,
            },
        )
        assert response.status_code == 201, response.text
        fetched = client.get(f"/api/connectors/{response.json()['id']}").json()
        assert fetched["definition"]["title"] == "Nifty Gateway"
        assert_problem(
            client.put(f"/api/connectors/{fetched['id']}", json={"name": "x", "baseUrl": echo.url}),
            409,
            "connector_is_imported",
        )


def test_export_points_at_the_gateway_and_round_trips(
    gateway: GatewayUnderTest, tls_echo: TlsEcho
) -> None:
    folder = sample("certified-connectors/JIRA")
    with gateway.client("pp-export") as client:
        connector = import_folder(client, folder)
        connection = connect(
            client,
            connector,
            {"jirainstance": "tenant1", "username": "ex", "password": "export-pw-1"},
        )
        response = client.get(
            f"/api/connectors/{connector['id']}/export", params={"connectionId": connection["id"]}
        )
        assert response.status_code == 200, response.text
        exported = response.json()
        swagger, properties = exported["apiDefinition"], exported["apiProperties"]
        assert swagger["host"] == "gateway.example.test" and swagger["schemes"] == ["https"]
        assert "export-pw-1" not in response.text and "jirainstance" not in json.dumps(properties)
        token = properties["properties"]["connectionParameters"]["token"]["oAuthSettings"]
        assert token["identityProvider"] == "aad"
        assert token["customParameters"]["resourceUri"]["value"] == gateway.settings.audiences[0]
        assert properties["properties"]["policyTemplateInstances"] == []

        # Re-importing the export gives the same operations. (Not with the gateway's
        # own URL as the base: a connector calling the gateway would loop, issue 12.)
        original = {
            (op["operationId"], op["method"]) for op in connector["definition"]["operations"]
        }
        looped = client.post(
            "/api/connectors/import",
            json={**exported, "baseUrl": "https://gateway.example.test/api"},
        )
        assert_problem(looped, 422, "loop_detected")
        reimported = client.post(
            "/api/connectors/import",
            json={**exported, "baseUrl": "https://elsewhere.example.test/api"},
        )
        assert reimported.status_code == 201, reimported.text
        assert {
            (op["operationId"], op["method"])
            for op in reimported.json()["definition"]["operations"]
        } == original

        # An exported operation path, called on the gateway, reaches the operation.
        create_issue = swagger["paths"]["/connections/{connectionId}/invoke/issue"]["post"]
        assert create_issue["operationId"] == "CreateIssue"
        report = client.post(
            f"/api/connections/{connection['id']}/invoke/issue?projectKey=P", json={"fields": {}}
        ).json()
        assert report["path"] == "/rest/api/2/issue"

        # Someone else's connection cannot be baked in; native connectors have nothing to export.
        with gateway.client("pp-export-other") as other:
            theirs = import_folder(other, folder)
            their_connection = connect(
                other,
                theirs,
                {"jirainstance": "tenant1", "username": "o", "password": "other-pw-1"},
            )
        assert_problem(
            client.get(
                f"/api/connectors/{connector['id']}/export",
                params={"connectionId": their_connection["id"]},
            ),
            422,
            "validation_error",
        )
        native = client.post(
            "/api/connectors", json={"name": "n", "baseUrl": "http://127.0.0.1:9"}
        ).json()
        assert_problem(
            client.get(f"/api/connectors/{native['id']}/export"), 409, "export_not_available"
        )


def test_cli_import_through_the_real_api(gateway: GatewayUnderTest, echo: Any) -> None:
    import os
    import subprocess
    import sys

    folder = sample("certified-connectors/Babybots")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    command = [
        sys.executable,
        "-m",
        "functions",
        "connectors",
        "import",
        str(folder),
        "--base-url",
        echo.url + "/api",
        "--gateway",
        gateway.url,
        "--token",
        gateway.token("pp-cli"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["source"] == "powerplatform" and created["baseUrl"] == echo.url + "/api"
    with gateway.client("pp-cli") as client:
        assert [c["id"] for c in client.get("/api/connectors").json()["value"]] == [created["id"]]
    bad = sample("certified-connectors/PUG Gamified Engagement")
    done = subprocess.run(
        [*command[:5], str(bad), *command[6:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert (
        "apiDefinition.swagger.json: line 734 column 3" in done.stderr
        and "Traceback" not in done.stderr
    )


def _complete_consent_directly(
    gateway: GatewayUnderTest, connection: dict[str, Any], access_token: str
) -> None:
    """Stand in for a consent at a provider we cannot reach from here (the sample's
    real OAuth endpoints): store tokens the way the callback does."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from functions.oauth import TokenSet
    from functions.oauth.table_store import TableConnectionTokenStore

    state = gateway.state
    store = TableConnectionTokenStore(
        state.metadata.connections_client,
        state.secrets,
        gateway.settings.tenant_ids[0],
        connection["id"],
    )
    tokens = TokenSet(
        access_token=access_token,
        token_type="Bearer",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        refresh_token="rt-" + access_token,
    )
    asyncio.run(store.store_consent(tokens, f"conn-{connection['id']}"))


def test_oauth_sample_with_set_property_policies(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("pp-oauth") as client:
        # Request section: Blackbaud's CreateGift wraps body().payments into an array.
        blackbaud = import_folder(
            client, sample("certified-connectors/Blackbaud Church Management"), echo.url
        )
        created = client.post(
            f"/api/connectors/{blackbaud['id']}/connections", json={"displayName": "bb"}
        )
        assert_problem(created, 409, "oauth_client_not_configured")
        configured = client.put(
            f"/api/connectors/{blackbaud['id']}/oauth-client",
            json={"clientId": "bb-client", "clientSecret": "bb-secret-1"},
        )
        assert (
            configured.status_code == 200
            and configured.json()["oauthClient"]["clientSecretSet"] is True
        )
        created = client.post(
            f"/api/connectors/{blackbaud['id']}/connections", json={"displayName": "bb"}
        )
        assert created.status_code == 201, created.text
        connection = created.json()
        assert connection["status"] == "consent_required"
        consent_query = parse_qs(urlsplit(connection["consentUrl"]).query)
        assert connection["consentUrl"].startswith("https://oauth2.sky.blackbaud.com/authorization")
        assert consent_query["client_id"] == ["bb-client"] and consent_query[
            "code_challenge_method"
        ] == ["S256"]
        _complete_consent_directly(gateway, connection, "bb-access-1")
        # Through the raw route: the gateway matches POST /gift/v1/gifts to CreateGift.
        response = client.post(
            f"/api/connections/{connection['id']}/invoke/gift/v1/gifts",
            json={"constituent_id": "1", "payments": {"method": "Cash"}, "receipts": {"amount": 1}},
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert header_values(report, "authorization") == ["Bearer bb-access-1"]
        sent = json.loads(report["body"])
        assert sent["payments"] == [{"method": "Cash"}] and sent["receipts"] == [{"amount": 1}]
        # setheader (all operations, existsAction override) from the same definition.
        assert header_values(report, "bb-api-subscription-key") == ["PLACEHOLDER_API_KEY"]

        # Response section: FreeAgent's ListInvoices adds a title to each invoice.
        freeagent = import_folder(
            client, sample("independent-publisher-connectors/FreeAgent"), echo.url + "/v2"
        )
        client.put(
            f"/api/connectors/{freeagent['id']}/oauth-client",
            json={"clientId": "fa", "clientSecret": "fa-secret-1"},
        ).raise_for_status()
        fa = client.post(
            f"/api/connectors/{freeagent['id']}/connections", json={"displayName": "fa"}
        ).json()
        _complete_consent_directly(gateway, fa, "fa-access-1")
        canned = json.dumps(
            {
                "invoices": [
                    {"url": "https://api.freeagent.com/v2/invoices/7", "reference": "INV-7"},
                    {"url": "https://api.freeagent.com/v2/invoices/8", "reference": "INV-8"},
                ]
            }
        )
        listed = client.get(
            f"/api/connections/{fa['id']}/invoke/invoices", headers={"X-Echo-Respond": canned}
        )
        assert listed.status_code == 200, listed.text
        invoices = listed.json()["invoices"]
        # stringreplace: id from the URL; then setproperty: title from id and reference.
        assert [i["id"] for i in invoices] == ["7", "8"]
        assert [i["title"] for i in invoices] == ["7-INV-7", "8-INV-8"]
        assert "content-encoding" not in listed.headers


def test_a_definition_is_parsed_once_per_version(start_gateway: Any, echo: Any) -> None:
    """The metadata cache expires (here after 0.3 s) and the connection row is read
    again, but the parsed definition is kept: its key is the connector's update time,
    so it cannot be stale, and parsing again stalled every call in flight."""
    quick = start_gateway(metadata_cache_seconds=0.3)
    with quick.client("pp-parse-once") as client:
        connector = import_folder(client, sample("certified-connectors/Babybots"), echo.url)
        connection = connect(client, connector, {"username": "maker", "password": "pw"})
        definitions = quick.state.connectors._definitions
        assert operation(client, connection, "SumNumbers", {"code": "c"}, {"a": 1}).is_success
        reads, rows = definitions.reads, quick.state.metadata.counters.reads
        time.sleep(0.5)
        assert operation(client, connection, "SumNumbers", {"code": "c"}, {"a": 2}).is_success
        assert quick.state.metadata.counters.reads > rows  # the metadata did expire
        assert definitions.reads == reads
