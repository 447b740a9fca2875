"""Policy templates applied to real samples' requests and responses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.powerplatform import (
    ConnectorDefinition,
    PolicyEvaluationError,
    PolicyNotSupportedError,
    apply_request_policies,
    apply_response_policies,
    ensure_operation_supported,
    load_definition,
    parse_definition,
    prepare_operation,
)
from functions.upstream.request import OutgoingRequest
from tests.powerplatform.samples import folder_path


def sample(name: str) -> ConnectorDefinition:
    return load_definition(folder_path(name))


def run(
    definition: ConnectorDefinition,
    operation_id: str,
    connection: dict[str, Any],
    parameters: dict[str, Any] | None = None,
    body: Any = None,
) -> OutgoingRequest:
    prepared = prepare_operation(definition, operation_id, None, parameters or {}, body)
    return apply_request_policies(
        definition,
        operation_id,
        prepared.request,
        connection,
        path_parameters=prepared.path_parameters,
    )


# --- 3E Events: dynamichosturl, setqueryparameter (skip), scoped setheader ------------

EVENTS = "certified-connectors/3E Events"
EVENTS_CONNECTION = {"token:customHost": "api.elite.com", "token:3eInstanceId": "inst-1"}
SUBSCRIPTION = {"callbackUrl": "https://flow.example/cb", "object": "Matter", "state": "Created"}
DELETE = {"subscriptionId": "s1", "type": "dataobject", "tenantId": "t1"}


def test_host_query_and_header_policies() -> None:
    events = sample(EVENTS)
    connection = {**EVENTS_CONNECTION, "token:customHost": "eu.elite.example"}
    request = run(events, "DataObjectEventTrigger", connection, body=SUBSCRIPTION)
    assert request.base_url == "https://eu.elite.example/3e/events/webhook"
    assert request.path == "/v1/subscriptions/event/dataobject"
    assert request.query == [("3eInstanceId", "inst-1")]
    # The internal body property `application` got its default.
    assert json.loads(request.body or b"")["application"] == "MsPowerPlatform"
    # `@connectionParameters('token:notes','')`: unset, so the default "" is sent.
    assert request.header("X-notes") == ""
    noted = run(
        events, "DataObjectEventTrigger", {**connection, "token:notes": "hi"}, body=SUBSCRIPTION
    )
    assert noted.header("X-notes") == "hi"


def test_operation_scoping() -> None:
    events = sample(EVENTS)
    assert "DeleteSubscription" in events.operations
    prepared = prepare_operation(events, "DeleteSubscription", None, DELETE)
    request = apply_request_policies(
        events,
        "DeleteSubscription",
        prepared.request,
        EVENTS_CONNECTION,
        path_parameters=prepared.path_parameters,
    )
    assert request.header("X-notes") is None  # setheader names other operations only
    assert request.query_value("3eInstanceId") == "inst-1"  # unscoped: every operation


def test_exists_action_skip_keeps_the_callers_value() -> None:
    events = sample(EVENTS)
    request = OutgoingRequest("GET", "https://api.elite.com/3e/events/webhook", "/x")
    request.query.append(("3eInstanceId", "mine"))
    result = apply_request_policies(events, None, request, EVENTS_CONNECTION)
    assert result.query == [("3eInstanceId", "mine")]
    assert request.query == [("3eInstanceId", "mine")]  # the input is not modified


def test_raw_invoke_gets_only_unscoped_policies() -> None:
    events = sample(EVENTS)
    request = OutgoingRequest("GET", "https://unused.example", "/v1/anything")
    result = apply_request_policies(events, None, request, EVENTS_CONNECTION)
    assert result.base_url == "https://api.elite.com/3e/events/webhook"
    assert result.path == "/v1/anything"
    assert result.query == [("3eInstanceId", "inst-1")]
    assert result.header("X-notes") is None


def test_missing_host_parameter_is_a_policy_error() -> None:
    events = sample(EVENTS)
    with pytest.raises(PolicyEvaluationError) as caught:
        run(events, "DeleteSubscription", {"token:3eInstanceId": "i"}, DELETE)
    assert caught.value.template_id == "dynamichosturl"
    assert caught.value.code == "policy_evaluation_failed" and caught.value.status == 400


# --- JIRA: routerequesttoendpoint + dynamichosturl ------------------------------------

JIRA_CONNECTION = {"jirainstance": "acme", "username": "ann", "password": "pw"}


def test_route_request_to_endpoint_substitutes_path_parameters() -> None:
    jira = sample("certified-connectors/JIRA")
    request = run(jira, "AddComment", JIRA_CONNECTION, {"issueKey": "ABC-1"}, {"body": "hi"})
    assert request.method == "POST"  # @Request.OriginalHTTPMethod keeps it
    assert request.base_url == "https://acme.atlassian.net/rest/api"
    assert request.path == "/2/issue/ABC-1/comment"
    assert json.loads(request.body or b"") == {"body": "hi"}
    listing = run(jira, "ListProjects", JIRA_CONNECTION)
    assert listing.path == "/2/project"


def test_route_path_values_are_encoded() -> None:
    jira = sample("certified-connectors/JIRA")
    request = run(jira, "AddComment", JIRA_CONNECTION, {"issueKey": "A B/../C"}, {"body": "x"})
    assert request.path == "/2/issue/A%20B%2F..%2FC/comment"


def test_route_without_path_parameters_is_a_policy_error() -> None:
    jira = sample("certified-connectors/JIRA")
    prepared = prepare_operation(jira, "AddComment", None, {"issueKey": "K"}, {"body": "x"})
    with pytest.raises(PolicyEvaluationError) as caught:
        apply_request_policies(jira, "AddComment", prepared.request, JIRA_CONNECTION)
    assert "path parameter 'issueKey'" in caught.value.detail


# --- AzureAD: setproperty on the request, relative route, unsupported templates -------

AZUREAD = "certified-connectors/AzureAD"


def test_set_property_on_the_request_body() -> None:
    azuread = sample(AZUREAD)
    request = run(azuread, "AddUserToGroup", {}, {"id": "g1"}, {"@odata.id": "u1"})
    assert json.loads(request.body or b"") == {
        "@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/u1"
    }
    assert request.path == "/v1.0/groups/g1/members/$ref"


def test_route_without_a_leading_slash() -> None:
    azuread = sample(AZUREAD)
    body = {"groupIds": ["a"]}
    request = run(azuread, "CheckMemberGroupsV2", {}, {"id": "u/1"}, body)
    assert request.path == "/v1.0/users/u%2F1/checkMemberGroups"


def test_unsupported_templates_answer_501_for_the_operations_they_cover() -> None:
    azuread = sample(AZUREAD)
    with pytest.raises(PolicyNotSupportedError) as caught:
        ensure_operation_supported(azuread, "UpdateUser")
    assert caught.value.status == 501 and caught.value.code == "policy_not_supported"
    assert caught.value.feature == "moveproperties" and caught.value.operation_id == "UpdateUser"
    assert "moveproperties" in caught.value.detail and "UpdateUser" in caught.value.detail
    with pytest.raises(PolicyNotSupportedError) as paging:
        run(azuread, "GetGroupMembers", {}, {"id": "g"})
    assert paging.value.feature == "updatenextlink"
    ensure_operation_supported(azuread, "AddUserToGroup")  # not covered: fine
    ensure_operation_supported(azuread, None)


# --- Blackbaud: chained setproperty, route with a path parameter, static header -------


GIFT = {
    "constituent_id": "c1",
    "amount": {"value": 5},
    "date": "2024-01-01",
    "type": "Donation",
    "gift_splits": [{"fund_id": "f1", "amount": {"value": 5}}],
    "payments": {"payment_method": "Cash"},
}


def test_chained_set_properties_and_route() -> None:
    blackbaud = sample("certified-connectors/Blackbaud Church Management")
    gift = {**GIFT, "receipts": {"amount": {"value": 5}}}
    request = run(blackbaud, "AddGiftToBatch", {}, {"batch_id": "B7"}, {"gifts": gift})
    assert request.path == "/gift/v1/giftbatches/B7/gifts"
    assert request.header("Bb-Api-Subscription-Key") == "PLACEHOLDER_API_KEY"
    (sent,) = json.loads(request.body or b"")["gifts"]  # the gift was wrapped in an array
    assert sent["payments"] == [{"payment_method": "Cash"}]
    assert sent["receipts"] == [{"amount": {"value": 5}, "status": "NeedsReceipt"}]
    assert sent["origin"] == '{ "name": "Power Platform" }'  # internal defaults were filled
    assert sent["gift_splits"] == GIFT["gift_splits"]


def test_set_property_skips_values_that_are_missing() -> None:
    blackbaud = sample("certified-connectors/Blackbaud Church Management")
    request = run(blackbaud, "CreateGift", {}, None, GIFT)
    sent = json.loads(request.body or b"")
    assert sent["payments"] == [{"payment_method": "Cash"}]
    assert "receipts" not in sent


# --- Scrive: pollingtrigger ------------------------------------------------------------


def test_polling_trigger_is_not_supported() -> None:
    scrive = sample("certified-connectors/Scrive eSign")
    prepared = prepare_operation(
        scrive, "PollSignedDocuments", None, _required(scrive, "PollSignedDocuments")
    )
    with pytest.raises(PolicyNotSupportedError) as caught:
        apply_request_policies(scrive, "PollSignedDocuments", prepared.request, {})
    assert caught.value.feature == "pollingtrigger"
    assert caught.value.operation_id == "PollSignedDocuments"
    other = next(op for op in scrive.operations if op != "PollSignedDocuments")
    ensure_operation_supported(scrive, other)


def _required(definition: ConnectorDefinition, operation_id: str) -> dict[str, Any]:
    operation = definition.operation(operation_id)
    values: dict[str, Any] = {}
    for parameter in operation.parameters:
        if parameter.required and parameter.location != "body" and not parameter.sends_default:
            values[parameter.name] = 1 if parameter.type in ("integer", "number") else "x"
    return values


# --- custom code -----------------------------------------------------------------------


def test_script_operations_answer_501_and_others_run() -> None:
    bridge = sample("certified-connectors/Connect Bridge")
    with pytest.raises(PolicyNotSupportedError) as caught:
        ensure_operation_supported(bridge, "FormatQuery")
    assert caught.value.feature == "script.csx"
    request = OutgoingRequest("POST", "https://localhost:4433", "/x", query=[("format", "xml")])
    result = apply_request_policies(bridge, "ExecuteQuery", request, {})
    assert result.query == [("format", "json")]  # override


def test_script_without_operation_list_covers_everything() -> None:
    forcemanager = sample("certified-connectors/ForceManager CRM")
    for operation_id in [*forcemanager.operations, None]:
        with pytest.raises(PolicyNotSupportedError):
            ensure_operation_supported(forcemanager, operation_id)


def test_unsupported_policy_for_all_operations_blocks_raw_invoke_too() -> None:
    cradl = sample("certified-connectors/Cradl AI")
    with pytest.raises(PolicyNotSupportedError) as caught:
        apply_request_policies(
            cradl, None, OutgoingRequest("GET", "https://api.lucidtech.ai/v1"), {}
        )
    assert caught.value.feature == "setvaluefromurl" and caught.value.operation_id is None


# --- connection parameters into query parameters ---------------------------------------


def test_query_parameters_from_connection_parameters() -> None:
    tools = sample("certified-connectors/DomainToolsIrisEnrich")
    operation_id = next(iter(tools.operations))
    prepared = prepare_operation(tools, operation_id, None, _required(tools, operation_id))
    request = apply_request_policies(
        tools, operation_id, prepared.request, {"username": "ann", "password": "key"}
    )
    assert request.query[-5:] == [
        ("api_username", "ann"),
        ("api_key", "key"),
        ("app_partner", "azure"),
        ("app_name", "sentinel"),
        ("app_version", "2.0"),
    ]


def test_optional_parameter_without_default_sets_nothing() -> None:
    diffchecker = sample("independent-publisher-connectors/Diffchecker")
    request = OutgoingRequest("POST", "https://api.diffchecker.com", "/public/text")
    assert apply_request_policies(diffchecker, None, request, {}).query == []
    with_email = apply_request_policies(diffchecker, None, request, {"emailaddress": "a@b.c"})
    assert with_email.query == [("email", "a@b.c")]


# --- FreeAgent: setproperty on the response --------------------------------------------


def test_set_property_on_the_response_for_each_array_item() -> None:
    freeagent = sample("independent-publisher-connectors/FreeAgent")
    body = json.dumps(
        {"invoices": [{"id": 1, "reference": "A"}, {"id": 2, "reference": "B"}]}
    ).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    new_headers, new_body = apply_response_policies(freeagent, "ListInvoices", 200, headers, body)
    assert json.loads(new_body) == {
        "invoices": [
            {"id": 1, "reference": "A", "title": "1-A"},
            {"id": 2, "reference": "B", "title": "2-B"},
        ]
    }
    assert dict(new_headers)["Content-Length"] == str(len(new_body))
    # Another operation: untouched, byte for byte.
    assert apply_response_policies(freeagent, "GetContacts", 200, headers, body) == (headers, body)
    # Not JSON: left alone.
    assert apply_response_policies(freeagent, "ListInvoices", 200, [], b"<xml/>") == ([], b"<xml/>")


# --- hand-written definitions for the remaining rules ----------------------------------


def _with_policies(*policies: dict[str, Any]) -> ConnectorDefinition:
    document = {
        "swagger": "2.0",
        "info": {"title": "T"},
        "host": "api.example.com",
        "paths": {"/a": {"get": {"operationId": "A"}}},
    }
    return parse_definition(document, {"properties": {"policyTemplateInstances": list(policies)}})


def _header(
    name: str, value: str, action: str = "override", section: str = "Request"
) -> dict[str, Any]:
    return {
        "templateId": "setheader",
        "parameters": {
            "x-ms-apimTemplateParameter.name": name,
            "x-ms-apimTemplateParameter.value": value,
            "x-ms-apimTemplateParameter.existsAction": action,
            "x-ms-apimTemplate-policySection": section,
        },
    }


def test_exists_actions_for_headers() -> None:
    definition = _with_policies(
        _header("X-Over", "new"),
        _header("X-Skip", "new", "skip"),
        _header("X-Add", "new", "append"),
        _header("x-gone", "", "delete"),
        _header("X-Fresh", "v", "skip"),
    )
    request = OutgoingRequest(
        "GET",
        "https://api.example.com",
        headers=[("x-over", "old"), ("X-Skip", "old"), ("X-Add", "old"), ("X-Gone", "old")],
    )
    result = apply_request_policies(definition, "A", request, {})
    assert result.headers == [
        ("X-Skip", "old"),
        ("X-Add", "old"),
        ("X-Over", "new"),
        ("X-Add", "new"),
        ("X-Fresh", "v"),
    ]


def test_later_policies_see_earlier_ones() -> None:
    definition = _with_policies(
        _header("Authorization", "Basic @connectionParameters('key')"),
        _header("X-Echo", "was: @headers('Authorization')"),
    )
    result = apply_request_policies(
        definition, "A", OutgoingRequest("GET", "https://a.example"), {"key": "k"}
    )
    assert result.header("X-Echo") == "was: Basic k"


def test_header_injection_through_a_value_is_refused() -> None:
    definition = _with_policies(_header("X-Region", "@connectionParameters('region')"))
    with pytest.raises(PolicyEvaluationError):
        apply_request_policies(
            definition,
            "A",
            OutgoingRequest("GET", "https://a.example"),
            {"region": "eu\r\nX-Evil: 1"},
        )


def test_response_and_failure_headers() -> None:
    definition = _with_policies(
        _header("X-Seen", "yes", section="Response"),
        _header("X-Failed", "@headers('X-Status')", section="Failure"),
    )
    ok_headers, _ = apply_response_policies(definition, "A", 200, [("X-Status", "fine")], b"")
    assert ok_headers == [("X-Status", "fine"), ("X-Seen", "yes")]
    failed_headers, _ = apply_response_policies(definition, "A", 503, [("X-Status", "down")], b"")
    assert failed_headers == [("X-Status", "down"), ("X-Seen", "yes"), ("X-Failed", "down")]
    # Response-section policies do not run on the request.
    request = apply_request_policies(
        definition, "A", OutgoingRequest("GET", "https://a.example"), {}
    )
    assert request.headers == []


def test_dynamic_host_without_scheme_and_with_query() -> None:
    definition = _with_policies(
        {
            "templateId": "DynamicHostUrl",
            "parameters": {
                "x-ms-apimTemplateParameter.urlTemplate": "@connectionParameters('host')"
            },
        }
    )
    request = OutgoingRequest("GET", "https://api.example.com", "/a", query=[("q", "1")])
    result = apply_request_policies(
        definition, "A", request, {"host": "eu.example.com:8443/base/?tenant=t"}
    )
    assert result.base_url == "https://eu.example.com:8443/base"
    assert result.path == "/a"
    assert result.query == [("tenant", "t"), ("q", "1")]
    for bad in ("ftp://x.example", "https://", "https://host:99999"):
        with pytest.raises(PolicyEvaluationError):
            apply_request_policies(definition, "A", request, {"host": bad})


def test_route_with_method_and_expression() -> None:
    definition = _with_policies(
        {
            "templateId": "routerequesttoendpoint",
            "parameters": {
                "x-ms-apimTemplateParameter.newPath": "/@queryParameters('version')/things",
                "x-ms-apimTemplateParameter.httpMethod": "PUT",
            },
        }
    )
    request = OutgoingRequest("GET", "https://a.example", "/a", query=[("version", "v2")])
    result = apply_request_policies(definition, "A", request, {})
    assert (result.method, result.path) == ("PUT", "/v2/things")
    with pytest.raises(PolicyEvaluationError):
        apply_request_policies(
            definition,
            "A",
            OutgoingRequest("GET", "https://a.example", query=[("version", "..")]),
            {},
        )


def test_header_values_can_read_the_json_body() -> None:
    definition = _with_policies(_header("X-Id", "item-@{body().id}"))
    request = OutgoingRequest("POST", "https://a.example", body=b'{"id": 5}')
    assert apply_request_policies(definition, "A", request, {}).header("X-Id") == "item-5"
    no_body = apply_request_policies(
        definition, "A", OutgoingRequest("GET", "https://a.example"), {}
    )
    assert no_body.header("X-Id") == "item-"
