"""Reading connector files: encodings, comments and exact error positions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from functions.powerplatform import (
    DefinitionError,
    load_definition,
    load_folder,
    parse_json_document,
)

NAME = "apiProperties.json"


def _error(raw: bytes) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        parse_json_document(NAME, raw)
    return caught.value


def _json_position(text: str) -> tuple[int, int, str]:
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads(text)
    return caught.value.lineno, caught.value.colno, caught.value.msg


def test_plain_utf8_object() -> None:
    assert parse_json_document(NAME, b'{"a": "\xc3\xa9"}') == {"a": "é"}


def test_utf8_bom_is_ignored() -> None:
    assert parse_json_document(NAME, b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_utf8_bom_does_not_shift_error_columns() -> None:
    error = _error(b'\xef\xbb\xbf{"a": 1,}')
    assert (error.line, error.column) == _json_position('{"a": 1,}')[:2]
    assert (
        str(error) == f"{NAME}: line 1 column 9: Expecting property name enclosed in double quotes"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_detected(encoding: str) -> None:
    assert parse_json_document(NAME, '{"a": "ü"}'.encode(encoding)) == {"a": "ü"}


def test_undecodable_bytes_name_the_encoding_offset_and_position() -> None:
    error = _error(b'{\n  "a": "caf\xe9"\n}')
    assert str(error) == f"{NAME}: not valid UTF-8 (byte 0xE9 at offset 13, line 2 column 12)"
    assert error.file == NAME and error.code == "invalid_definition" and error.status == 400


@pytest.mark.parametrize(
    "text",
    [
        '{\n  "a": 1\n  "b": 2\n}',  # missing comma
        '{"a": [1, 2,]}',  # trailing comma
        '{"a": 1}\n}',  # extra data
        '{"a": "unterminated}',
        "",
        "   ",
        '{\r\n  "a": 1\r\n  "b": 2\r\n}',  # CRLF line ends
        '{"a": tru}',
    ],
)
def test_syntax_errors_match_json_module_positions(text: str) -> None:
    line, column, reason = _json_position(text)
    error = _error(text.encode())
    assert (error.file, error.line, error.column, error.reason) == (NAME, line, column, reason)
    assert error.detail == f"{NAME}: line {line} column {column}: {reason}"
    assert error.extra == {"file": NAME, "reason": reason, "line": line, "column": column}


def test_comments_are_accepted() -> None:
    raw = b"""// leading comment
    {
      /* block
         comment */
      "url": "https://example.com//not-a-comment", // trailing
      "b": "/* not a comment either */"
    }"""
    assert parse_json_document(NAME, raw) == {
        "url": "https://example.com//not-a-comment",
        "b": "/* not a comment either */",
    }


def test_errors_after_comments_keep_their_file_positions() -> None:
    text = '// note\n{\n  /* x */ "a": 1,\n}'
    error = _error(text.encode())
    # Same position json.loads reports once the comments are blanked out.
    expected = _json_position(text.replace("// note", "       ").replace("/* x */", "       "))
    assert (error.line, error.column, error.reason) == expected
    assert (error.line, error.column) == (4, 1)


def test_top_level_must_be_an_object() -> None:
    error = _error(b'\n  ["a"]')
    assert (
        str(error) == f"{NAME}: line 2 column 3: the top level must be a JSON object, not an array"
    )


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    error = _error(b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in str(error)


def _write_folder(root: Path, definition: bytes, properties: bytes | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "apiDefinition.swagger.json").write_bytes(definition)
    if properties is not None:
        (root / "apiProperties.json").write_bytes(properties)
    return root


MINIMAL = b'{"swagger": "2.0", "info": {"title": "T"}, "host": "h.example", "paths": {}}'


def test_load_folder_reads_both_files(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "c", MINIMAL, b'{"properties": {}}')
    assert load_folder(folder) == (json.loads(MINIMAL), {"properties": {}})


def test_missing_api_properties_is_a_warning(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "c", MINIMAL)
    assert load_folder(folder)[1] == {}
    definition = load_definition(folder)
    assert definition.warnings[0].startswith("apiProperties.json not found")


def test_missing_api_definition_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    with pytest.raises(DefinitionError) as caught:
        load_folder(tmp_path / "c")
    assert caught.value.detail == f"apiDefinition.swagger.json: not found in {tmp_path / 'c'}"


def test_file_names_match_ignoring_case(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "apidefinition.swagger.json").write_bytes(MINIMAL)
    (folder / "APIPROPERTIES.JSON").write_bytes(b'{"properties": {"connectionParameters": {}}}')
    assert load_folder(folder)[1] == {"properties": {"connectionParameters": {}}}


def test_errors_in_api_properties_name_that_file(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "c", MINIMAL, b'{"properties": {\n  "a": }\n}')
    with pytest.raises(DefinitionError) as caught:
        load_folder(folder)
    assert caught.value.detail == "apiProperties.json: line 2 column 8: Expecting value"


def test_script_is_detected(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "c", MINIMAL, b'{"properties": {}}')
    (folder / "script.csx").write_bytes(b"\xff\xfe not even text")
    definition = load_definition(folder)
    assert definition.has_script and definition.script_operations is None
    assert any("script.csx" in warning for warning in definition.warnings)
