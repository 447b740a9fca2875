"""Domain records: connectors and connections, free of HTTP and storage types."""

from functions.domain.models import (
    AuthScheme,
    Connection,
    ConnectionStatus,
    Connector,
)

__all__ = ["AuthScheme", "Connection", "ConnectionStatus", "Connector"]
