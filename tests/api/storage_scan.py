"""Read everything the gateway wrote to Table Storage, to assert what is not there."""

from __future__ import annotations

import gzip
import json

from azure.data.tables import TableServiceClient

from functions.settings import Settings


def _readable(value: object) -> str:
    """Binary properties as the text they hold: gzip-compressed ones (audit events,
    definitions) decompressed, so a secret cannot hide in them from the scan."""
    if isinstance(value, bytes):
        if value[:2] == b"\x1f\x8b":
            try:
                value = gzip.decompress(value)
            except (OSError, EOFError):
                pass  # one chunk of a larger gzip stream: scanned as it is
        return value.decode("utf-8", errors="replace")
    return str(value)


def all_table_text(settings: Settings, *, exclude: tuple[str, ...] = ()) -> str:
    assert settings.storage_connection_string
    service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    chunks = []
    for table in service.list_tables():
        if not table.name.startswith(settings.table_prefix):
            continue
        if table.name[len(settings.table_prefix) :] in exclude:
            continue
        for entity in service.get_table_client(table.name).list_entities():
            chunks.append(json.dumps(dict(entity), default=_readable))
    return "\n".join(chunks)
