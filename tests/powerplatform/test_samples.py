"""Every shared sample folder through `inspect`, in-process and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from functions.cli.connectors import inspect_folder
from functions.powerplatform import load_definition
from functions.powerplatform.model import HTTP_METHODS
from tests.powerplatform.samples import (
    folder_path,
    index_entries,
    malformed_folders,
    require_connectors_dir,
    sample_folders,
)

REPO = Path(__file__).resolve().parents[2]
FILES = ("apiDefinition.swagger.json", "apiProperties.json")
TOP_KEYS = ["source", "title", "baseUrl", "authOptions", "operations", "policies", "warnings"]
AUTH_TYPES = {"none", "basic", "apiKey", "oauth2", "windows"}


def _raw(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_bytes().decode("utf-8-sig"))


def _json_error(folder: Path) -> str | None:
    """What json.loads itself says about the first unreadable file, in our format."""
    for name in FILES:
        try:
            _raw(folder, name)
        except json.JSONDecodeError as exc:
            return f"{name}: line {exc.lineno} column {exc.colno}: {exc.msg}"
    return None


def test_the_samples_are_available() -> None:
    root = require_connectors_dir()
    assert len(sample_folders()) == 43
    assert set(index_entries()) == set(sample_folders()), f"INDEX.md and {root} disagree"


@pytest.mark.parametrize("name", sample_folders())
def test_every_folder_inspects_without_a_crash(name: str) -> None:
    folder = folder_path(name)
    result = inspect_folder(str(folder))
    assert result["source"] == str(folder)
    expected_error = _json_error(folder)
    if expected_error is not None:
        assert result == {"source": str(folder), "error": expected_error}
        return
    assert list(result) == TOP_KEYS
    json.dumps(result)  # plain JSON all the way down
    assert isinstance(result["title"], str) and result["title"]
    assert result["baseUrl"] is None or result["baseUrl"].startswith(("https://", "http://"))
    assert result["authOptions"], "at least one way to connect"
    for option in result["authOptions"]:
        assert option["type"] in AUTH_TYPES
        assert isinstance(option["gateway"], bool)
        assert ("apiKey" in option) == (option["type"] == "apiKey")
        assert ("oauth2" in option) == (option["type"] == "oauth2")
        for parameter in option["parameters"]:
            assert list(parameter) == ["name", "type", "required", "secret"]
    assert all(isinstance(w, str) and w for w in result["warnings"])


@pytest.mark.parametrize("name", malformed_folders())
def test_malformed_samples_name_file_line_and_column(name: str) -> None:
    folder = folder_path(name)
    expected = _json_error(folder)
    assert expected is not None, f"{name} is listed as malformed but parses"
    assert inspect_folder(str(folder)) == {"source": str(folder), "error": expected}


@pytest.mark.parametrize("name", sample_folders())
def test_operations_are_every_method_of_every_path(name: str) -> None:
    folder = folder_path(name)
    if _json_error(folder) is not None:
        return
    paths = _raw(folder, FILES[0])["paths"]
    expected = [
        (method.upper(), path)
        for path, item in paths.items()
        for method in HTTP_METHODS
        if method in item
    ]
    result = inspect_folder(str(folder))
    assert [(op["method"], op["path"]) for op in result["operations"]] == expected
    ids = [op["operationId"] for op in result["operations"]]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", sample_folders())
def test_policies_are_listed_in_order(name: str) -> None:
    folder = folder_path(name)
    if _json_error(folder) is not None:
        return
    declared = _raw(folder, FILES[1])["properties"].get("policyTemplateInstances", [])
    result = inspect_folder(str(folder))
    assert [p["templateId"] for p in result["policies"]] == [
        p["templateId"].lower() for p in declared
    ]
    tags = index_entries()[name]
    for tag in tags:
        if tag.startswith("pol:"):
            assert tag[4:] in {p["templateId"] for p in result["policies"]}
    for policy in result["policies"]:
        if not policy["supported"]:
            assert any(f"'{policy['templateId']}'" in w for w in result["warnings"])


@pytest.mark.parametrize("name", sample_folders())
def test_auth_options_match_the_index(name: str) -> None:
    """INDEX.md describes each connector's top-level authentication; check ours agrees.

    Parameter sets decide per set (3E Events has no security definition, tagged
    `none`, but every one of its sets signs in with OAuth), so `none` is only
    required of connectors without sets.
    """
    folder = folder_path(name)
    tags = index_entries()[name]
    if "malformed" in tags:
        return
    result = inspect_folder(str(folder))
    options = result["authOptions"]
    types = {o["type"] for o in options}
    properties = _raw(folder, FILES[1])["properties"]
    sets = properties.get("connectionParameterSets", {}).get("values", [])
    if sets:
        assert [o["name"] for o in options] == [s["name"] for s in sets]
    else:
        assert [o["name"] for o in options] == [None]
    for tag in tags:
        if tag == "none" and not sets:
            assert types == {"none"}
        elif tag == "basic":
            assert "basic" in types
        elif tag.startswith("apikey:"):
            assert any(o["type"] == "apiKey" and o["apiKey"]["in"] == tag[7:] for o in options)
        elif tag.startswith("oauth:"):
            providers = {o["oauth2"]["identityProvider"] for o in options if o["type"] == "oauth2"}
            assert tag[6:] in providers
        elif tag == "oauth2 definition":
            assert "oauth2" in types
        elif tag == "github":
            assert any("github.com" in (o["oauth2"]["authorizationUrl"] or "") for o in options)
        elif tag in ("gateway", "on-premises gateway setting"):
            assert any(o["gateway"] for o in options)
        elif tag.startswith("securestring parameters"):
            assert any(
                o["type"] == "none" and any(p["secret"] for p in o["parameters"]) for o in options
            )
        elif tag == "script":
            assert any("script.csx" in w for w in result["warnings"])
    if "no security definition" in " ".join(tags):
        assert types == {"none"}


def test_secure_parameters_are_secret_and_api_keys_named_by_the_definition() -> None:
    cradl = inspect_folder(str(folder_path("certified-connectors/Cradl AI")))
    (option,) = cradl["authOptions"]
    assert option["apiKey"] == {"in": "header", "name": "ClientCredentials"}
    assert option["parameters"] == [
        {"name": "api_key", "type": "securestring", "required": True, "secret": True}
    ]
    abbreviations = inspect_folder(
        str(folder_path("independent-publisher-connectors/Abbreviations"))
    )
    (option,) = abbreviations["authOptions"]
    assert option["apiKey"] == {"in": "query", "name": "uid"}
    assert {p["name"]: p["secret"] for p in option["parameters"]} == {
        "api_key": True,
        "api_token": True,
    }


def test_oauth_settings_come_from_api_properties() -> None:
    blackbaud = inspect_folder(str(folder_path("certified-connectors/Blackbaud Church Management")))
    assert blackbaud["authOptions"][0]["oauth2"] == {
        "identityProvider": "oauth2",
        "authorizationUrl": "https://oauth2.sky.blackbaud.com/authorization",
        "tokenUrl": "https://oauth2.sky.blackbaud.com/token",
        "refreshUrl": "https://oauth2.sky.blackbaud.com/token",
        "scopes": [],
    }
    acronyms = load_definition(folder_path("independent-publisher-connectors/Microsoft Acronyms"))
    oauth = acronyms.auth_options[0].oauth2
    assert oauth is not None and oauth.identity_provider == "aad"
    assert oauth.custom_parameters["resourceUri"] == "https://graph.microsoft.com"
    assert oauth.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"


def test_parameter_sets_infer_their_own_scheme() -> None:
    odn = inspect_folder(str(folder_path("independent-publisher-connectors/Open Data Network")))
    by_name = {o["name"]: o for o in odn["authOptions"]}
    assert by_name["api-auth"]["type"] == "apiKey"
    assert by_name["api-auth"]["apiKey"] == {"in": "header", "name": "X-App-Token"}
    assert by_name["basic-auth"]["type"] == "basic"
    scrive = inspect_folder(str(folder_path("certified-connectors/Scrive eSign")))
    assert [(o["name"], o["type"]) for o in scrive["authOptions"]] == [
        ("basic-auth", "none"),
        ("OAuth", "oauth2"),
    ]


def test_cli_inspects_all_samples_quickly() -> None:
    root = require_connectors_dir()
    folders = [str(root / name) for name in sample_folders()]
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "functions", "connectors", "inspect", *folders],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [line["source"] for line in lines] == folders
    errors = {
        Path(line["source"]).relative_to(root).as_posix() for line in lines if "error" in line
    }
    assert errors == set(malformed_folders())
    assert elapsed < 5, f"inspect took {elapsed:.1f}s"


def test_cli_exit_status_is_zero_when_every_folder_reads() -> None:
    folder = str(folder_path("certified-connectors/JIRA"))
    completed = subprocess.run(
        [sys.executable, "-m", "functions", "connectors", "inspect", folder],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.splitlines()
    assert json.loads(line)["title"] == "JIRA"


def test_cli_reports_unreadable_folders_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "apiDefinition.swagger.json").write_bytes(b'{"swagger": "2.0", "paths": {\xff}}')
    missing = tmp_path / "missing"
    completed = subprocess.run(
        [sys.executable, "-m", "functions", "connectors", "inspect", str(broken), str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    first, second = (json.loads(line) for line in completed.stdout.splitlines())
    assert first == {
        "source": str(broken),
        "error": "apiDefinition.swagger.json: not valid UTF-8 (byte 0xFF at offset 29, "
        "line 1 column 30)",
    }
    assert second == {"source": str(missing), "error": f"{missing}: no such folder"}
