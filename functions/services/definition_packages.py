"""A Power Platform connector folder uploaded as a zip (issue 16, the portal's import).

The zip holds `apiDefinition.swagger.json`, `apiProperties.json` and maybe `script.csx`,
at the top or inside one folder (how people zip a folder). Only those names are read;
sizes are checked from the directory and again while reading, so a zip bomb stops at
the limit.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from functions.errors import ValidationFailedError
from functions.powerplatform import API_DEFINITION_FILE, API_PROPERTIES_FILE, parse_json_document

SCRIPT_FILE = "script.csx"
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 1000


def _invalid(message: str) -> ValidationFailedError:
    return ValidationFailedError(message, errors=[{"field": "package", "message": message}])


def read_package(raw: bytes) -> dict[str, Any]:
    """`{apiDefinition, apiProperties, script}` (parsed JSON; script text or None)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise _invalid("the uploaded package is not a zip file") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise _invalid(f"the zip holds more than {MAX_MEMBERS} entries")
        found: dict[str, zipfile.ZipInfo] = {}
        for member in members:
            if member.is_dir():
                continue
            parts = member.filename.replace("\\", "/").split("/")
            name = parts[-1]
            # Top level or one folder down; macOS resource forks are not definitions.
            if len(parts) > 2 or parts[0] == "__MACOSX":
                continue
            if name in (API_DEFINITION_FILE, API_PROPERTIES_FILE, SCRIPT_FILE):
                if name in found:
                    raise _invalid(f"the zip holds more than one {name}")
                found[name] = member
        if API_DEFINITION_FILE not in found:
            raise _invalid(f"the zip holds no {API_DEFINITION_FILE}")
        contents = {name: _read(archive, member) for name, member in found.items()}
    script = contents.get(SCRIPT_FILE)
    return {
        "apiDefinition": parse_json_document(API_DEFINITION_FILE, contents[API_DEFINITION_FILE]),
        "apiProperties": parse_json_document(API_PROPERTIES_FILE, contents[API_PROPERTIES_FILE])
        if API_PROPERTIES_FILE in contents
        else {},
        "script": script.decode("utf-8", errors="replace") if script is not None else None,
    }


def _read(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    if member.file_size > MAX_MEMBER_BYTES:
        raise _invalid(f"{member.filename} is larger than {MAX_MEMBER_BYTES} bytes")
    try:
        with archive.open(member) as stream:
            data = stream.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError) as exc:
        raise _invalid(f"{member.filename} cannot be read from the zip ({exc})") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise _invalid(f"{member.filename} is larger than {MAX_MEMBER_BYTES} bytes")
    return data
