"""Matching a raw call (method + path below the base path) to its operation."""

from __future__ import annotations

import gc
import re
import time
from typing import Any

import pytest

from functions.powerplatform import load_definition, parse_definition
from functions.powerplatform.model import ConnectorDefinition
from functions.powerplatform.routing import Router, build_router, match_operation, router_for
from tests.powerplatform.samples import folder_path


def _definition(paths: dict[str, Any], base_path: str = "/") -> ConnectorDefinition:
    document = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "1"},
        "host": "api.example.com",
        "basePath": base_path,
        "paths": paths,
    }
    return parse_definition(document, {})


def _op(operation_id: str, *path_parameters: str, **extra: Any) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "type": "string", **extra}
        for name in path_parameters
    ]
    return {"operationId": operation_id, "parameters": parameters, "responses": {}}


def _matched(router: Router, method: str, path: str, query: Any = None) -> tuple[str, dict]:
    found = router.match(method, path, query)
    assert found is not None, f"{method} {path} matched nothing"
    return found[0].operation_id, found[1]


# --- real samples ---------------------------------------------------------------------


def _sample_router(name: str) -> tuple[ConnectorDefinition, Router]:
    definition = load_definition(folder_path(name))
    return definition, build_router(definition)


def _concrete(path: str) -> str:
    """A request path for a template: each variable becomes a distinct value."""
    counter = iter(range(1, 10_000))
    return re.sub(r"{[^{}]+}", lambda _: f"v{next(counter)}", path.split("#")[0].split("?")[0])


@pytest.mark.parametrize(
    "name",
    [
        "certified-connectors/JIRA",
        "certified-connectors/Blackbaud Church Management",
        "independent-publisher-connectors/Square Payments",
        "certified-connectors/AzureAD",
        "certified-connectors/Jedox OData Hub",
        "independent-publisher-connectors/Open Data Network",
    ],
)
def test_every_sample_operation_routes_to_itself(name: str) -> None:
    definition, router = _sample_router(name)
    assert len(definition.operations) > 0
    for operation in definition.operations.values():
        path = _concrete(operation.path)
        found = router.match(operation.method.lower(), path)
        assert found is not None, f"{operation.method} {path}"
        assert found[0] is operation, f"{operation.method} {path} -> {found[0].operation_id}"
        # Trailing slash tolerant.
        assert router.match(operation.method, path + "/") == found


def test_sample_sizes_are_what_the_brief_promises() -> None:
    assert (
        len(_sample_router("certified-connectors/Blackbaud Church Management")[0].operations) == 138
    )
    assert (
        len(_sample_router("independent-publisher-connectors/Square Payments")[0].operations) == 87
    )


def test_jira_literal_beats_variable_and_values_are_decoded() -> None:
    _, router = _sample_router("certified-connectors/JIRA")
    assert _matched(router, "GET", "/issue/createmeta") == ("ListIssueTypes", {})
    assert _matched(router, "GET", "/issue/ABC-1") == ("GetIssue", {"issueKey": "ABC-1"})
    assert _matched(router, "PUT", "/issue/ABC%201") == ("UpdateIssue", {"issueKey": "ABC 1"})
    assert _matched(router, "POST", "/issue/ABC-1/comment") == ("AddComment", {"issueKey": "ABC-1"})
    assert _matched(router, "GET", "/project/search") == ("ListProjects_V2", {})
    assert _matched(router, "GET", "/project/P1/statuses") == ("ListStatuses", {"projectId": "P1"})
    assert router.match("DELETE", "/issue/ABC-1") is None  # method mismatch
    assert router.match("GET", "/nothing/here") is None


def test_jira_base_path_is_stripped_for_full_paths() -> None:
    definition, router = _sample_router("certified-connectors/JIRA")
    assert router.base_path == "/rest/api"
    relative = router.strip_base_path("/rest/api/issue/ABC-1")
    assert relative == "/issue/ABC-1"
    assert _matched(router, "GET", relative) == ("GetIssue", {"issueKey": "ABC-1"})
    assert router.strip_base_path("/rest/apis/issue") is None
    assert router.strip_base_path("/rest/api") == "/"
    assert build_router(_definition({"/a": {"get": _op("a")}})).strip_base_path("/a/b") == "/a/b"


def test_azure_ad_literal_suffix_segments() -> None:
    _, router = _sample_router("certified-connectors/AzureAD")
    assert _matched(router, "DELETE", "/v1.0/groups/g1/members/m1/$ref") == (
        "RemoveMemberFromGroup",
        {"groupId": "g1", "memberId": "m1"},
    )
    # `$` percent-encoded by the client still matches the literal `$ref`.
    assert _matched(router, "POST", "/v1.0/groups/g1/members/%24ref")[0] == "AddUserToGroup"
    assert _matched(router, "GET", "/v1.0/groups/g1/members")[0] == "GetGroupMembers"
    assert _matched(router, "POST", "/v1.0/groups/securityGroup") == ("CreateSecurityGroup", {})


def test_square_payments_more_specific_wins() -> None:
    _, router = _sample_router("independent-publisher-connectors/Square Payments")
    assert _matched(router, "DELETE", "/customers/groups/G1") == (
        "CustomerGroupDelete",
        {"group_id": "G1"},
    )
    assert _matched(router, "DELETE", "/customers/C1/groups/G1") == (
        "CustomerRemoveGroup",
        {"customer_id": "C1", "group_id": "G1"},
    )
    assert _matched(router, "POST", "/customers/search") == ("CustomerSearch", {})


def test_blackbaud_matching_is_cheap() -> None:
    definition, router = _sample_router("certified-connectors/Blackbaud Church Management")
    requests = [(op.method, _concrete(op.path)) for op in definition.operations.values()]
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for method, path in requests:
            router.match(method, path)
    per_match = (time.perf_counter() - started) / (rounds * len(requests))
    # A few microseconds in practice; the bound only catches a linear-scan regression
    # gone quadratic or a per-call compile.
    assert per_match < 0.0005, f"{per_match * 1e6:.0f} us per match"


# --- edge cases -----------------------------------------------------------------------


def test_encoded_slash_stays_inside_its_value() -> None:
    router = build_router(
        _definition(
            {"/files/{path}": {"get": _op("file", "path")}, "/files/a/b": {"get": _op("ab")}}
        )
    )
    assert _matched(router, "GET", "/files/a%2Fb") == ("file", {"path": "a/b"})
    assert _matched(router, "GET", "/files/a/b") == ("ab", {})
    assert router.match("GET", "/files/x/y") is None  # {path} is one segment


def test_variables_with_literal_prefix_and_suffix() -> None:
    router = build_router(
        _definition(
            {
                "/Databases({DatabaseId})": {"get": _op("db", "DatabaseId")},
                "/Databases({DatabaseId})/Cubes({CubeId})": {
                    "get": _op("cube", "DatabaseId", "CubeId")
                },
                "/resource/{id}.json": {"get": _op("json", "id")},
                "/resource/{a}-{b}": {"get": _op("pair", "a", "b")},
            }
        )
    )
    assert _matched(router, "GET", "/Databases(7)") == ("db", {"DatabaseId": "7"})
    assert _matched(router, "GET", "/Databases('a%20b')/Cubes(9)") == (
        "cube",
        {"DatabaseId": "'a b'", "CubeId": "9"},
    )
    assert _matched(router, "GET", "/resource/x.y.json") == ("json", {"id": "x.y"})
    assert _matched(router, "GET", "/resource/x-y") == ("pair", {"a": "x", "b": "y"})
    assert router.match("GET", "/Databases()") is None  # variables are never empty
    assert router.match("GET", "/Databases(7") is None
    assert router.match("GET", "/resource/.json") is None


def test_empty_segments_never_match_variables() -> None:
    router = build_router(_definition({"/items/{id}": {"get": _op("item", "id")}}))
    assert router.match("GET", "/items/") is None
    assert router.match("GET", "/items//") is None
    assert _matched(router, "GET", "/items/1/") == ("item", {"id": "1"})


def test_specificity_more_literal_characters_then_fewer_variables() -> None:
    router = build_router(
        _definition(
            {
                "/{a}/{b}": {"get": _op("two_vars", "a", "b")},
                "/items/{id}": {"get": _op("item", "id")},
                "/items/special": {"get": _op("special")},
                "/{kind}/special": {"get": _op("any_special", "kind")},
                "/items/{id}.json": {"get": _op("item_json", "id")},
            }
        )
    )
    assert _matched(router, "GET", "/items/special")[0] == "special"
    assert _matched(router, "GET", "/items/7.json") == ("item_json", {"id": "7"})
    assert _matched(router, "GET", "/items/7") == ("item", {"id": "7"})
    assert _matched(router, "GET", "/other/special") == ("any_special", {"kind": "other"})
    assert _matched(router, "GET", "/x/y") == ("two_vars", {"a": "x", "b": "y"})


def test_same_literal_count_prefers_fewer_variables() -> None:
    router = build_router(
        _definition(
            {
                "/{a}{b}": {"get": _op("split", "a", "b")},
                "/{whole}": {"get": _op("whole", "whole")},
            }
        )
    )
    assert _matched(router, "GET", "/xy") == ("whole", {"whole": "xy"})


def test_root_and_methods() -> None:
    router = build_router(
        _definition({"/": {"get": _op("root"), "post": _op("create")}, "/x": {"get": _op("x")}})
    )
    assert _matched(router, "GET", "/") == ("root", {})
    assert _matched(router, "GET", "") == ("root", {})
    assert _matched(router, "post", "/") == ("create", {})
    assert router.match("PUT", "/") is None
    assert router.match("GET", "/y") is None


def test_literals_compare_decoded_and_case_sensitive() -> None:
    router = build_router(
        _definition({"/a b/c%2Bd": {"get": _op("spaced")}, "/Items": {"get": _op("items")}})
    )
    assert _matched(router, "GET", "/a%20b/c+d")[0] == "spaced"
    assert _matched(router, "GET", "/a%20b/c%2bd")[0] == "spaced"
    assert router.match("GET", "/items") is None


def test_double_encoded_parameters_are_decoded_twice() -> None:
    router = build_router(
        _definition(
            {"/files/{name}": {"get": _op("file", "name", **{"x-ms-url-encoding": "double"})}}
        )
    )
    assert _matched(router, "GET", "/files/a%252Fb%2520c") == ("file", {"name": "a/b c"})


def test_query_in_template_is_a_condition() -> None:
    router = build_router(
        _definition(
            {
                "/items?type=a": {"get": _op("type_a")},
                "/items?type=b": {"get": _op("type_b")},
                "/items": {"get": _op("plain")},
                "/search?q={term}": {"get": _op("search")},
                "/search#2": {"get": _op("search_plain")},
            }
        )
    )
    assert _matched(router, "GET", "/items", "type=b&x=1") == ("type_b", {})
    assert _matched(router, "GET", "/items", [("type", "a")]) == ("type_a", {})
    assert _matched(router, "GET", "/items", "type=c") == ("plain", {})
    assert _matched(router, "GET", "/items") == ("plain", {})
    assert _matched(router, "GET", "/search", "q=hello%20world") == (
        "search",
        {"term": "hello world"},
    )
    assert _matched(router, "GET", "/search") == ("search_plain", {})


def test_fragment_duplicates_are_decided_by_file_order() -> None:
    router = build_router(
        _definition({"/items#1": {"get": _op("first")}, "/items#2": {"get": _op("second")}})
    )
    assert _matched(router, "GET", "/items")[0] == "first"


def test_match_operation_caches_per_definition_object() -> None:
    definition = _definition({"/items/{id}": {"get": _op("item", "id")}})
    found = match_operation(definition, "GET", "/items/1")
    assert found is not None and found[0].operation_id == "item"
    assert router_for(definition) is router_for(definition)
    other = _definition({"/things/{id}": {"get": _op("thing", "id")}})
    assert router_for(other) is not router_for(definition)
    assert match_operation(other, "GET", "/items/1") is None

    from functions.powerplatform import routing

    key = id(other)
    del other
    gc.collect()
    entry = routing._ROUTERS.get(key)
    assert entry is None or entry[0]() is None
