"""Reading connector files: bytes to JSON objects, with errors that point at the problem.

Contract of `parse_json_document(file_name, raw)`:
- the encoding is detected as JSON requires (RFC 8259 / `json.detect_encoding`): UTF-8
  with or without a BOM, UTF-16 and UTF-32 with a BOM or by their zero-byte pattern;
- bytes that do not decode give `<file>: not valid UTF-8 (byte 0xE9 at offset 812,
  line 20 column 15)` (naming the encoding that was tried);
- `//` and `/* */` comments are accepted (Microsoft publishes files with them); they
  are blanked out with spaces, so every position still matches the file;
- any other syntax error gives `<file>: line L column C: <reason>` with the line,
  column (1-based, counted in characters after any BOM) and reason exactly as
  `json.JSONDecodeError` reports them;
- the top level must be an object.

`load_folder(path)` reads `apiDefinition.swagger.json` (required) and
`apiProperties.json` (optional: a definition without one has no connection parameters
or policies). File names are matched case-insensitively when the exact name is absent,
as folders made on Windows often differ in case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from functions.powerplatform.errors import DefinitionError

API_DEFINITION_FILE = "apiDefinition.swagger.json"
API_PROPERTIES_FILE = "apiProperties.json"
SCRIPT_FILE = "script.csx"

# A JSON string, or a comment. Strings are matched so `//` inside them is left alone.
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def _too_many_digits(file_name: str) -> DefinitionError:
    error = DefinitionError(file_name, "holds a number with too many digits")
    error.code = "json_number_too_long"  # the code hostile JSON gets on every route
    return error


def parse_json_document(file_name: str, raw: bytes) -> dict[str, Any]:
    """Decode and parse one JSON file; raise DefinitionError naming file and position."""
    text = _decode(file_name, raw)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as strict_error:
        without_comments = _blank_comments(text)
        if without_comments == text:
            raise _syntax_error(file_name, strict_error) from None
        try:
            value = json.loads(without_comments)
        except json.JSONDecodeError as error:
            raise _syntax_error(file_name, error) from None
        except RecursionError:
            raise DefinitionError(file_name, "nested too deeply") from None
        except ValueError:
            raise _too_many_digits(file_name) from None
    except RecursionError:
        raise DefinitionError(file_name, "nested too deeply") from None
    except ValueError:
        # Not a syntax error: an integer literal longer than Python converts (4,300
        # digits); every caller (import, inspect, the CLI) gets a clear error, not a 500.
        raise _too_many_digits(file_name) from None
    if not isinstance(value, dict):
        line, column = _first_value_position(text)
        raise DefinitionError(
            file_name,
            f"the top level must be a JSON object, not {_json_kind(value)}",
            line=line,
            column=column,
        )
    return value


def find_file(folder: Path, name: str) -> Path | None:
    """`folder/name`, or the one entry whose name matches ignoring case, or None."""
    exact = folder / name
    if exact.is_file():
        return exact
    lowered = name.lower()
    matches = [entry for entry in folder.iterdir() if entry.name.lower() == lowered]
    return matches[0] if len(matches) == 1 and matches[0].is_file() else None


def read_document(path: Path) -> dict[str, Any]:
    """Read and parse one file; errors name the file by its base name."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DefinitionError(path.name, f"cannot be read ({exc.strerror or exc})") from None
    return parse_json_document(path.name, raw)


def load_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parsed (apiDefinition.swagger.json, apiProperties.json) of a connector folder.

    A missing apiProperties.json reads as `{}`. Raises DefinitionError.
    """
    folder = Path(path)
    if not folder.is_dir():
        reason = "no such folder" if not folder.exists() else "not a folder"
        raise DefinitionError(str(path), reason)
    try:
        definition_path = find_file(folder, API_DEFINITION_FILE)
        properties_path = find_file(folder, API_PROPERTIES_FILE)
    except OSError as exc:
        raise DefinitionError(str(path), f"cannot be listed ({exc.strerror or exc})") from None
    if definition_path is None:
        raise DefinitionError(API_DEFINITION_FILE, f"not found in {path}")
    api_definition = read_document(definition_path)
    api_properties = read_document(properties_path) if properties_path is not None else {}
    return api_definition, api_properties


def _decode(file_name: str, raw: bytes) -> str:
    encoding = json.detect_encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = raw[:offset].count(b"\n") + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        name = {"utf-8-sig": "UTF-8"}.get(encoding, encoding.upper())
        raise DefinitionError(
            file_name,
            f"not valid {name} (byte 0x{raw[offset]:02X} at offset {offset}, "
            f"line {line} column {column})",
        ) from None
    # utf-8-sig and the UTF-16/32 codecs with a BOM drop it; a BOM left over (for
    # example UTF-16 detected from its zero bytes) is not part of the document either.
    return text[1:] if text.startswith("\ufeff") else text


def _blank_comments(text: str) -> str:
    def blank(match: re.Match[str]) -> str:
        token = match.group()
        if token.startswith('"'):
            return token
        return re.sub(r"[^\n]", " ", token)

    return _STRING_OR_COMMENT.sub(blank, text)


def _syntax_error(file_name: str, error: json.JSONDecodeError) -> DefinitionError:
    return DefinitionError(file_name, error.msg, line=error.lineno, column=error.colno)


def _first_value_position(text: str) -> tuple[int, int]:
    stripped = len(text) - len(text.lstrip())
    line = text.count("\n", 0, stripped) + 1
    column = stripped - (text.rfind("\n", 0, stripped) + 1) + 1
    return line, column


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"
