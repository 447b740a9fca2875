"""`build_upstream_url`: the origin comes from the base URL alone, paths and queries
are joined as encoded text, and an unencoded '?' or '#' is refused."""

from __future__ import annotations

import pytest

from functions.errors import BadRequestError
from functions.upstream.urls import build_upstream_url


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("https://api.example.com", "/v1/items", [], "https://api.example.com/v1/items"),
        ("https://api.example.com/base/", "/x", [("a", "1")], "https://api.example.com/base/x?a=1"),
        ("http://127.0.0.1:8080/api", "", [("q", "a b&c")], "http://127.0.0.1:8080/api?q=a%20b%26c"),
        ("http://[::1]:9000", "/%2e%2e", [], "http://[::1]:9000/%2e%2e"),
        (
            "https://api.example.com",
            "//evil.example/x",
            [],
            "https://api.example.com//evil.example/x",
        ),
        (
            "https://api.example.com",
            "/caf%C3%A9",
            [("k", "é")],
            "https://api.example.com/caf%C3%A9?k=%C3%A9",
        ),
    ],
)
def test_joins_on_the_base_origin(
    base: str, path: str, query: list[tuple[str, str]], expected: str
) -> None:
    url = build_upstream_url(base, path, query)
    assert str(url) == expected
    assert url.host == build_upstream_url(base, "", []).host


@pytest.mark.parametrize("path", ["/a?b=1", "/a#frag"])
def test_unencoded_query_or_fragment_in_a_path_is_refused(path: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        build_upstream_url("https://api.example.com", path, [])
    assert caught.value.code == "invalid_path"
