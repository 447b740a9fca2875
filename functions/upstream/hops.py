"""Loop detection: the gateway marks every upstream request with a `Via` entry
(RFC 9110 section 7.6.3) naming itself, and refuses a request that arrives carrying
that entry: a connector whose upstream is the gateway (under any name the address
policy did not catch) is stopped at the first hop, not after 128 nested calls."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from functions.errors import LoopDetectedError

PSEUDONYM = "connector-gateway"


def hop_marker(public_base_url: str | None) -> str:
    """This installation's `Via` entry: its public host, or a fixed pseudonym."""
    host = urlsplit(public_base_url).hostname if public_base_url else None
    return f"1.1 {host or PSEUDONYM}"


def refuse_looped(headers: Iterable[tuple[str, str]], marker: str) -> None:
    """Raise 508 `loop_detected` when a `Via` entry is this gateway's."""
    wanted = marker.lower()
    for name, value in headers:
        if name.lower() != "via":
            continue
        for entry in value.split(","):
            # "1.1 host (comment)": compare protocol and received-by, not the comment.
            if " ".join(entry.split()[:2]).lower() == wanted:
                raise LoopDetectedError(
                    "this request already went through the gateway (its Via header names "
                    "it): a connector's upstream leads back to the gateway",
                )
