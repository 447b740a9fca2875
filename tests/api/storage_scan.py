"""Read everything the gateway wrote to Table Storage, to assert what is not there."""

from __future__ import annotations

import json

from azure.data.tables import TableServiceClient

from functions.settings import Settings


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
            chunks.append(json.dumps(dict(entity), default=str))
    return "\n".join(chunks)
