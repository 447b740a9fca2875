"""Pieces of the portal's API without a browser: uploaded zips, origin settings, return
URLs."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from functions.errors import BadRequestError, ConfigurationError, ValidationFailedError
from functions.services.connect_sessions import _origin, _with_query
from functions.services.definition_packages import MAX_MEMBER_BYTES, read_package
from functions.settings import Settings

SWAGGER = {"swagger": "2.0", "info": {"title": "Z", "version": "1"}, "paths": {}}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_package_in_a_folder_with_script_and_noise() -> None:
    package = zipped(
        {
            "Folder/apiDefinition.swagger.json": json.dumps(SWAGGER).encode(),
            "Folder/apiProperties.json": b'{"properties": {}}',
            "Folder/script.csx": b"public class Script {}",
            "__MACOSX/Folder/._apiDefinition.swagger.json": b"\x00junk",
            "Folder/deeper/other/apiProperties.json": b"not read",
        }
    )
    files = read_package(package)
    assert files == {
        "apiDefinition": SWAGGER,
        "apiProperties": {"properties": {}},
        "script": "public class Script {}",
    }


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"apiProperties.json": b"{}"}, "holds no apiDefinition.swagger.json"),
        (
            {"a/apiDefinition.swagger.json": b"{}", "b/apiDefinition.swagger.json": b"{}"},
            "more than one apiDefinition.swagger.json",
        ),
        ({"apiDefinition.swagger.json": b" " * (MAX_MEMBER_BYTES + 1)}, "larger than"),
    ],
)
def test_bad_packages_are_refused_in_words(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(ValidationFailedError) as raised:
        read_package(zipped(files))
    assert message in raised.value.detail


def test_json_errors_name_the_file_and_position() -> None:
    with pytest.raises(BadRequestError, match=r"apiDefinition.swagger.json: line 1 column 2"):
        read_package(zipped({"apiDefinition.swagger.json": b"{not json"}))


def test_not_a_zip() -> None:
    with pytest.raises(ValidationFailedError, match="not a zip file"):
        read_package(b"PK but not really")


def test_origin_settings_are_checked() -> None:
    env = {
        "GATEWAY_ENVIRONMENT": "development",
        "GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "GATEWAY_LOCAL_SECRET_KEY": "x",
    }
    ok = Settings.from_env(
        {**env, "GATEWAY_CONNECT_RETURN_ORIGINS": "https://a.example, http://127.0.0.1:3000"}
    )
    assert ok.connect_return_origins == ("https://a.example", "http://127.0.0.1:3000")
    for bad in ("https://a.example/path", "a.example", "ftp://a.example", "https://u@a.example"):
        with pytest.raises(ConfigurationError, match="GATEWAY_CONNECT_RETURN_ORIGINS"):
            Settings.from_env({**env, "GATEWAY_CONNECT_RETURN_ORIGINS": bad})
    with pytest.raises(ConfigurationError, match="GATEWAY_CONNECT_FRAME_ANCESTORS"):
        Settings.from_env({**env, "GATEWAY_CONNECT_FRAME_ANCESTORS": "*"})


def test_return_url_origin_and_query() -> None:
    assert _origin("https://App.Example:443/x?y") == "https://app.example:443"
    assert _origin("https://app.example/x") == "https://app.example"
    assert _origin("javascript:alert(1)") is None
    assert _origin("https://user@app.example/") is None
    assert _origin("http://[::1]:99999/") is None
    assert (
        _with_query("https://app.example/back?a=1&connectionId=old", connectionId="new")
        == "https://app.example/back?a=1&connectionId=new"
    )
