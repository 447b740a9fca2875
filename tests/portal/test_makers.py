"""Makers: import a sample connector by upload (files, or a zip), see the inspection
with its warnings before saving, save, export; a hostile definition renders as text."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from functions.powerplatform import inspect_dict
from functions.powerplatform.definition import load_definition
from tests.portal.conftest import Browsing, Portal

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "connectors"
CRADL = SAMPLES / "certified-connectors" / "Cradl AI"
ELEAD = SAMPLES / "certified-connectors" / "EleadSalesOpportunities"


def test_import_by_upload_shows_warnings_saves_and_exports(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    expected = inspect_dict(load_definition(CRADL))
    assert expected["warnings"], "the sample was chosen for its warnings"
    b = browse()
    b.sign_in("maker-mia")
    b.goto("/portal/import.html")
    assert b.axe() == []
    b.page.get_by_label("apiDefinition.swagger.json").set_input_files(
        str(CRADL / "apiDefinition.swagger.json")
    )
    b.page.get_by_label("apiProperties.json").set_input_files(str(CRADL / "apiProperties.json"))
    b.page.get_by_label("script.csx (optional)").set_input_files(str(CRADL / "script.csx"))
    b.page.get_by_role("button", name="Inspect").click()

    # Every warning, in words, before anything is stored.
    warnings = b.page.locator("#warnings li")
    expect(warnings).to_have_count(len(expected["warnings"]))
    for index, text in enumerate(expected["warnings"]):
        expect(warnings.nth(index)).to_have_text(text)
    expect(b.page.locator("#auth-options")).to_contain_text("apiKey")
    expect(b.page.get_by_role("table", name="Operations")).to_contain_text(
        expected["operations"][0]["operationId"]
    )
    with portal.gateway.client("maker-mia") as client:
        assert client.get("/api/connectors").json()["value"] == []
    assert b.axe() == []
    b.screenshot("import-inspect")

    b.page.get_by_label("Base URL").fill(portal.return_origin + "/cradl")
    b.page.get_by_role("button", name="Save connector").click()
    b.page.wait_for_url(re.compile(r".*/portal/connector\.html\?id=[0-9a-f]{32}&imported=1$"))
    connector_id = b.page.url.split("id=", 1)[1].split("&", 1)[0]
    expect(b.page.locator("h1")).to_have_text(expected["title"])
    with portal.gateway.client("maker-mia") as client:
        stored = client.get(f"/api/connectors/{connector_id}").json()
    assert stored["source"] == "powerplatform"
    assert stored["baseUrl"] == portal.return_origin + "/cradl"
    assert stored["definition"]["warnings"] == expected["warnings"]
    assert b.axe() == []

    # Export: the two files a maker uploads to Power Platform, pointing at the gateway.
    with b.page.expect_download() as download:
        b.page.get_by_role("button", name="Download apiDefinition.swagger.json").click()
    exported = json.loads(Path(download.value.path()).read_text("utf-8"))
    assert exported["host"] == portal.url.split("://", 1)[1]
    assert download.value.suggested_filename == "apiDefinition.swagger.json"
    with b.page.expect_download() as download:
        b.page.get_by_role("button", name="Download apiProperties.json").click()
    properties = json.loads(Path(download.value.path()).read_text("utf-8"))
    assert "properties" in properties


def test_import_a_zip_of_the_folder(browse: Callable[[], Browsing], portal: Portal) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("apiDefinition.swagger.json", "apiProperties.json"):
            archive.write(ELEAD / name, f"EleadSalesOpportunities/{name}")
    package = {"name": "elead.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()}
    b = browse()
    b.sign_in("maker-zed")
    b.goto("/portal/import.html")
    b.page.get_by_label("Or a zip of the folder").set_input_files(package)
    b.page.get_by_role("button", name="Inspect").click()
    expected = inspect_dict(load_definition(ELEAD))
    expect(b.page.locator("#warnings li")).to_have_count(len(expected["warnings"]))
    b.page.get_by_role("button", name="Save connector").click()
    b.page.wait_for_url(re.compile(r".*/portal/connector\.html\?id=[0-9a-f]{32}&imported=1$"))
    expect(b.page.locator("h1")).to_have_text(expected["title"])

    # A file that is not a zip is refused in words.
    b.goto("/portal/import.html")
    bad = {"name": "x.zip", "mimeType": "application/zip", "buffer": b"not a zip"}
    b.page.get_by_label("Or a zip of the folder").set_input_files(bad)
    b.page.get_by_role("button", name="Inspect").click()
    expect(b.page.locator("#error")).to_contain_text("not a zip file")


HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def hostile_definition() -> tuple[dict[str, object], dict[str, object]]:
    definition = json.loads((CRADL / "apiDefinition.swagger.json").read_text("utf-8"))
    definition["info"]["title"] = "Evil " + HOSTILE
    definition["info"]["description"] = HOSTILE
    for path in definition["paths"].values():
        for operation in path.values():
            if isinstance(operation, dict) and "operationId" in operation:
                operation["operationId"] = operation["operationId"] + HOSTILE[:20]
                break
        break
    properties = json.loads((CRADL / "apiProperties.json").read_text("utf-8"))
    for spec in properties["properties"]["connectionParameters"].values():
        spec.setdefault("uiDefinition", {})
        spec["uiDefinition"]["displayName"] = "Key " + HOSTILE
        spec["uiDefinition"]["description"] = HOSTILE
        spec["uiDefinition"]["tooltip"] = HOSTILE
    return definition, properties


def test_hostile_definition_renders_as_text(
    browse: Callable[[], Browsing], portal: Portal, tmp_path: Path
) -> None:
    definition, properties = hostile_definition()
    (tmp_path / "apiDefinition.swagger.json").write_text(json.dumps(definition))
    (tmp_path / "apiProperties.json").write_text(json.dumps(properties))
    b = browse()
    b.sign_in("maker-xss")
    b.goto("/portal/import.html")
    b.page.get_by_label("apiDefinition.swagger.json").set_input_files(
        str(tmp_path / "apiDefinition.swagger.json")
    )
    b.page.get_by_label("apiProperties.json").set_input_files(str(tmp_path / "apiProperties.json"))
    b.page.get_by_role("button", name="Inspect").click()
    expect(b.page.locator("#inspect h2")).to_contain_text("<script>")
    b.page.get_by_label("Base URL").fill(portal.return_origin)
    b.page.get_by_role("button", name="Save connector").click()
    b.page.wait_for_url(re.compile(r".*/portal/connector\.html\?id=[0-9a-f]{32}&imported=1$"))
    connector_id = b.page.url.split("id=", 1)[1].split("&", 1)[0]
    expect(b.page.locator("h1")).to_contain_text("<img src=x onerror")
    b.goto("/portal/connectors.html")
    expect(b.page.locator("#connectors")).to_contain_text("<script>")
    b.goto(f"/portal/new-connection.html?connector={connector_id}")
    expect(b.page.locator("#parameters label").first).to_contain_text("Key <script>")
    expect(b.page.locator("#parameters .hint").first).to_contain_text("onerror=")
    b.page.wait_for_timeout(500)
    # Nothing ran, and no element came from the definition's markup.
    assert b.page.evaluate("window.__pwned") is None
    assert b.page.locator("main img, main script").count() == 0
    assert b.axe() == []
